#!/usr/bin/env bash
# Failover under load on PostgreSQL. A throwaway loopback cluster (loadtest/pg.sh), two
# mission-control nodes on one database (release build, --no-seed, batch durability), and
# RUNS runs (argument, default 10; `loadtest/failover.sh 100` is the soak) of: the load test
# at AGENTS agents (default 64) against both addresses; once it is claiming, `kill -9` of
# the node that leads; a restart of that node, which rejoins as a standby. Per run it prints
# the failover gap (first failed request to the first claim answered after it), the requests
# failed in it, the acknowledged completions lost (must be 0), the double holds (must be 0)
# and whether capital is consistent; at the end the median and worst gap.
# Environment: LEASE (--leader-lease-seconds, default 5), TASKS (default 20000), DURATION
# (the measured window, default 14), KILL_AFTER (seconds of claiming before the kill, default
# 3), FAILOVER_NO_BUILD=1 to skip the release build, PORT_A/PORT_B (default: free ports).
# Loopback only; every process is bounded by `timeout` and stopped on exit.
set -euo pipefail
runs=${1:-10}
agents=${AGENTS:-64}
lease=${LEASE:-5}
tasks=${TASKS:-20000}
duration=${DURATION:-14}
kill_after=${KILL_AFTER:-3}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ports=("${PORT_A:-$(free_port)}" "${PORT_B:-$(free_port)}")
cd "$(dirname "$0")/.."
[ -n "${FAILOVER_NO_BUILD:-}" ] || CARGO_INCREMENTAL=0 nice -n 10 cargo build --release -p loadtest -p mission-control >&2
bin=${BIN_DIR:-$PWD/target/release}
. loadtest/pg.sh
work=$(mktemp -d)
chmod 755 "$work"
pids=("" "")
load=
# `kill -9` of a node: the server under its `timeout`, then the `timeout`.
kill_node() {
  local pid=${pids[$1]}
  [ -n "$pid" ] || return 0
  kill -KILL $(pgrep -P "$pid") "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pids[$1]=
}
cleanup() {
  kill_node 0
  kill_node 1
  if [ -n "$load" ]; then kill -KILL "$load" 2>/dev/null || true; fi
  pg_stop
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
pg_start "$work/pg"
db=$(pg_createdb mc)

start_node() {
  local i=$1 port=${ports[$1]}
  timeout -s KILL 7200 "$bin/mission-control" --db "$db" --addr "127.0.0.1:$port" --advertise-url "http://127.0.0.1:$port" \
    --no-seed --leader-lease-seconds "$lease" >>"$work/node$i.log" 2>&1 &
  pids[i]=$!
}
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${ports[$1]}$2" || true; }
# Prints the index of the node whose /readyz answers 200, once the other one is up too
# (unless the argument says there is only one).
wait_for_leader() {
  for _ in $(seq 300); do
    for i in 0 1; do
      if [ "$(status_of "$i" /readyz)" = 200 ] && { [ "${1:-}" = alone ] || [ "$(status_of $((1 - i)) /healthz)" = 200 ]; }; then
        echo "$i"
        return
      fi
    done
    sleep 0.1
  done
  echo "no leader within 30 s" >&2
  exit 1
}

start_node 0
wait_for_leader alone >/dev/null
start_node 1
printf 'run\tkilled\tfailover_gap_ms\tfailed_in_gap\tacknowledged\tacknowledged_lost\tdouble_holds\tcapital_consistent\tcycles_per_s\n' | tee "$work/runs.tsv"
for run in $(seq "$runs"); do
  leader=$(wait_for_leader)
  timeout 300 "$bin/loadtest" --url "http://127.0.0.1:${ports[0]},http://127.0.0.1:${ports[1]}" --agents "$agents" \
    --tasks "$tasks" --duration "$duration" --warmup 1 --report-every 1 >"$work/load.out" 2>"$work/load.err" &
  load=$!
  # Interval lines start once the tasks are created and the agents claim.
  for _ in $(seq 600); do
    [ "$(wc -l <"$work/load.out")" -ge "$kill_after" ] && break
    sleep 0.1
  done
  leader=$(wait_for_leader)
  kill_node "$leader"
  sleep 1
  start_node "$leader"
  wait "$load" || true
  load=
  # The summary is the last line; without one (the load test stopped early) the run fails.
  grep '"acknowledged_completions"' "$work/load.out" | tail -n 1 | python3 -c '
import json, sys
run, killed = sys.argv[1], sys.argv[2]
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    print("\t".join([run, killed, "nan", "-", "-", "-", "-", "False", "-"]))
    sys.exit(0)
print("\t".join(str(x) for x in [run, killed, d["failover_gap_ms"], d["failed_in_gap"], d["acknowledged_completions"],
      d["acknowledged_lost"], d["double_claims"], d["capital_consistent"], d["cycles_per_s"]]))' "$run" "${ports[$leader]}" | tee -a "$work/runs.tsv"
  if [ -s "$work/load.err" ]; then sed 's/^/  loadtest: /' "$work/load.err" | head -n 5 >&2; fi
  # Failovers the script did not cause show as more than one gap.
  grep '"acknowledged_completions"' "$work/load.out" | tail -n 1 | python3 -c '
import json, sys
try:
    gaps = json.loads(sys.stdin.read())["gaps_ms"]
except (ValueError, KeyError):
    sys.exit(0)
if len(gaps) > 1:
    print("  gaps in this run (ms):", gaps, file=sys.stderr)' || true
  cp "$work/load.out" "$work/load$run.out"
done
python3 - "$work/runs.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
gaps = [float(r["failover_gap_ms"]) for r in rows if r["failover_gap_ms"] not in ("None", "nan")]
lost = sum(int(r["acknowledged_lost"]) for r in rows if r["acknowledged_lost"].isdigit())
doubles = sum(int(r["double_holds"]) for r in rows if r["double_holds"].isdigit())
consistent = all(r["capital_consistent"] == "True" for r in rows)
print()
print("runs\tgaps_measured\tmedian_gap_ms\tworst_gap_ms\tacknowledged_lost\tdouble_holds\tcapital_consistent_every_run")
median = f"{statistics.median(gaps):.0f}" if gaps else "-"
worst = f"{max(gaps):.0f}" if gaps else "-"
print(f"{len(rows)}\t{len(gaps)}\t{median}\t{worst}\t{lost}\t{doubles}\t{consistent}")
PY
