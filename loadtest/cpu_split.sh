#!/usr/bin/env bash
# Where a cycle's CPU goes, the load generator's included: alternating, ROUNDS times (default
# 3), a fresh mission-control (batch durability, fresh file, --no-seed) and a fresh bare-queue,
# each under `loadtest --agents AGENTS --tasks 140000 --duration 6 --warmup 1` (AGENTS default
# 64). A second into the measured window it reads, over the next SAMPLE seconds (default 2),
# the CPU time of the server and of the load generator (/proc/PID/stat), the idle share of the
# machine's cores (/proc/stat), and for mission-control its commits and its server-side time
# per request (/metrics). Prints one TSV row per run, then the medians per server and whether
# every run had 0 double claims.
# Usage: ROUNDS=3 bash loadtest/cpu_split.sh   (CPU_SPLIT_NO_BUILD=1 to skip the release build;
# BIN=DIR runs the binaries in DIR). Loopback only; each run is bounded by `timeout`. Not run in CI.
set -euo pipefail
rounds=${ROUNDS:-3}
agents=${AGENTS:-64}
sample=${SAMPLE:-2}
port=${CPU_SPLIT_PORT:-3961}
cd "$(dirname "$0")/.."
[ -n "${CPU_SPLIT_NO_BUILD:-}" ] || nice -n 10 cargo build --release -p loadtest -p mission-control >&2
bin=${BIN:-./target/release}
. loadtest/alternate.sh
ticks=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks; 0 once it has gone (a run that failed early).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The first line of /proc/stat: the machine's CPU time by kind, in clock ticks.
machine() { head -1 /proc/stat; }
printf 'server\tcycles_per_s\tserver_cores\tloadgen_cores\tidle_cores\tserver_us_per_cycle\tloadgen_us_per_cycle\tcommits_per_s\tcommit_ms\tserver_ms_per_request\tdouble_claims\n' | tee "$work/runs.tsv"
for _ in $(seq "$rounds"); do
  for name in mission-control bare; do
    start_server "$name"
    timeout 300 "$bin/loadtest" --url "http://127.0.0.1:$port" --agents "$agents" --tasks 140000 --duration 6 --warmup 1 \
      --report-every 1 >"$work/summary.json" &
    loadgen=$!
    # Its first progress line comes a second after the agents start, at the end of the warm-up.
    for _ in $(seq 1200); do [ -s "$work/summary.json" ] && break; sleep 0.1; done
    loadgen_pid=$(pgrep -P "$loadgen" || echo "$loadgen")
    sleep 1
    [ "$name" = mission-control ] && curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics0"
    s0=$(cpu_ticks "$server_pid"); l0=$(cpu_ticks "$loadgen_pid"); m0=$(machine)
    sleep "$sample"
    s1=$(cpu_ticks "$server_pid"); l1=$(cpu_ticks "$loadgen_pid"); m1=$(machine)
    [ "$name" = mission-control ] && curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics1"
    wait "$loadgen" || true
    stop_server
    python3 - "$name" "$work" "$sample" "$ticks" "$s0" "$s1" "$l0" "$l1" "$m0" "$m1" <<'PY' | tee -a "$work/runs.tsv"
import json, sys
name, work, sample, ticks = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
s0, s1, l0, l1 = (float(x) for x in sys.argv[5:9])
m0, m1 = ([float(x) for x in m.split()[1:9]] for m in sys.argv[9:11])
# The summary is the last line with the run's checks; the lines before it are progress. A run
# that failed has none: its row says nan, and the checks below refuse it.
lines = [json.loads(line) for line in open(f"{work}/summary.json") if line.strip().startswith("{")]
summary = next((line for line in reversed(lines) if "double_claims" in line), None)
cycles = summary["cycles_per_s"] if summary else float("nan")
server_cores = (s1 - s0) / ticks / sample
loadgen_cores = (l1 - l0) / ticks / sample
spent = [b - a for a, b in zip(m0, m1)]
idle_cores = (spent[3] + spent[4]) / ticks / sample  # idle and iowait
# Microseconds of CPU per cycle; nan when no cycle was measured.
per_cycle = lambda cores: cores / cycles * 1e6 if cycles else float("nan")
commits = commit_ms = per_request = float("nan")
if name == "mission-control":
    def load(path):
        values = {}
        for line in open(path):
            if line.startswith("#") or not line.strip():
                continue
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
        return values
    a, b = load(f"{work}/metrics0"), load(f"{work}/metrics1")
    delta = lambda key: b.get(key, 0.0) - a.get(key, 0.0)
    n = delta("mission_control_persist_commit_duration_seconds_count")
    commits = n / sample
    commit_ms = delta("mission_control_persist_commit_duration_seconds_sum") / n * 1000 if n else float("nan")
    routes = ['"/api/tasks/claim"', '"/api/tasks/complete"']
    count = sum(delta(f"mission_control_http_request_duration_seconds_count{{route={r}}}") for r in routes)
    total = sum(delta(f"mission_control_http_request_duration_seconds_sum{{route={r}}}") for r in routes)
    per_request = total / count * 1000 if count else float("nan")
print("\t".join([name, f"{cycles:.1f}", f"{server_cores:.2f}", f"{loadgen_cores:.2f}", f"{idle_cores:.2f}",
                 f"{per_cycle(server_cores):.0f}", f"{per_cycle(loadgen_cores):.0f}",
                 f"{commits:.0f}", f"{commit_ms:.3f}", f"{per_request:.3f}",
                 str(summary["double_claims"]) if summary else "nan"]))
PY
  done
done
python3 - "$work/runs.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print()
columns = [c for c in rows[0] if c not in ("server", "double_claims")]
print("median\t" + "\t".join(columns))
for server in dict.fromkeys(r["server"] for r in rows):
    mine = [r for r in rows if r["server"] == server]
    medians = (statistics.median(float(r[c]) for r in mine) for c in columns)
    print(server + "\t" + "\t".join(f"{m:.0f}" if m >= 100 else f"{m:.3g}" for m in medians))
print("all_checks_pass\t" + str(all(r["double_claims"] == "0" for r in rows)))
EOF
