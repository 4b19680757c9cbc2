#!/usr/bin/env bash
# Claim → complete cycles/s at AGENTS agents (default 64) on four servers, alternating in one
# run so the ratios mean something on a noisy machine: mission-control on SQLite,
# mission-control on PostgreSQL, a plain SKIP LOCKED queue on PostgreSQL
# (loadtest/src/bin/skip_locked.rs) and the bare in-memory queue (loadtest/src/bin/bare.rs).
# ROUNDS rounds (argument, default 3); each server starts fresh (a new SQLite file, a new
# database on one throwaway loopback cluster, see loadtest/pg.sh) with batch durability where
# that applies, and gets the same load run. Prints one TSV line per run, then the medians.
# Environment: TASKS (default 60000; TASKS_BARE for the bare queue, default 140000), DURATION (default 5), POSTGRES_NO_BUILD=1 to skip the
# release build. Loopback only; every process is bounded by `timeout` and stopped on exit.
set -euo pipefail
rounds=${1:-3}
agents=${AGENTS:-64}
tasks=${TASKS:-60000}
tasks_bare=${TASKS_BARE:-140000}
duration=${DURATION:-5}
cd "$(dirname "$0")/.."
[ -n "${POSTGRES_NO_BUILD:-}" ] || CARGO_INCREMENTAL=0 nice -n 10 cargo build --release -p loadtest -p mission-control >&2
bin=${BIN_DIR:-$PWD/target/release}
. loadtest/pg.sh
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
chmod 755 "$work"
server=
stop_server() {
  if [ -n "$server" ]; then
    kill -TERM $(pgrep -P "$server") 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
  fi
}
cleanup() {
  stop_server
  pg_stop
  rm -rf "$work"
}
trap cleanup EXIT
pg_start "$work/pg"
servers=(mc-sqlite mc-postgres skip-locked bare)
printf 'server\tagents\tcycles_per_s\tclaim_p50_ms\tclaim_p99_ms\tdouble_claims\tcapital_consistent\terrors\twindow_s\n' | tee "$work/runs.tsv"
n=0
for _ in $(seq "$rounds"); do
  for name in "${servers[@]}"; do
    n=$((n + 1))
    case $name in
      mc-sqlite)
        timeout -s KILL 900 "$bin/mission-control" --db "$work/m$n.db" --addr "127.0.0.1:$port" --no-seed >"$work/server.log" 2>&1 & ;;
      mc-postgres)
        timeout -s KILL 900 "$bin/mission-control" --db "$(pg_createdb "mc$n")" --addr "127.0.0.1:$port" --no-seed >"$work/server.log" 2>&1 & ;;
      skip-locked)
        timeout -s KILL 900 "$bin/skip-locked-queue" --db "$(pg_createdb "sl$n")" --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 & ;;
      bare)
        timeout -s KILL 900 "$bin/bare-queue" --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 & ;;
    esac
    server=$!
    # mission-control on PostgreSQL serves once it leads: /readyz says so.
    ready=/healthz
    case $name in mc-*) ready=/readyz ;; esac
    for _ in $(seq 100); do curl -sf --max-time 2 "http://127.0.0.1:$port$ready" >/dev/null && break; sleep 0.2; done
    result=$(timeout 600 "$bin/loadtest" --url "http://127.0.0.1:$port" --agents "$agents" --tasks "$([ "$name" = bare ] && echo "$tasks_bare" || echo "$tasks")" \
      --duration "$duration" --warmup 1 || true)
    stop_server
    rm -f "$work"/m*.db*
    echo "$result" | python3 loadtest/summary_row.py "=$name" "=$agents" cycles_per_s claim_ms.p50 claim_ms.p99 \
      double_claims capital_consistent errors window_s | tee -a "$work/runs.tsv"
  done
done
python3 - "$work/runs.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print()
print("server\truns\tmedian_cycles_per_s\tmedian_claim_p50_ms\tmedian_claim_p99_ms\tall_checks_pass")
for server in dict.fromkeys(r["server"] for r in rows):
    mine = [r for r in rows if r["server"] == server]
    median = lambda column: statistics.median(float(r[column]) for r in mine)
    ok = all(r["double_claims"] == "0" and r["capital_consistent"] == "True" for r in mine)
    print(f"{server}\t{len(mine)}\t{median('cycles_per_s'):.1f}\t{median('claim_p50_ms'):.2f}\t{median('claim_p99_ms'):.2f}\t{ok}")
PY
