#!/usr/bin/env bash
# mission-control against a bare HTTP queue (loadtest/src/bin/bare.rs: axum, one Mutex around
# a VecDeque, nothing persisted, tasks answered as the API's task), alternating in one run so
# the ratio means something on a noisy machine. BARE_ARGS="--answers minimal" answers with
# the seven fields the load generator reads instead, as comparisons before the fifth pass did. For each agent count in AGENTS_LIST (default 64) and ROUNDS rounds (default
# 3): a fresh mission-control (batch durability, fresh file, --no-seed), then a fresh
# bare-queue, each followed by the loadtest invocation of ab.sh. Prints one TSV line per run,
# then the medians and the ratio mission-control ÷ bare per agent count.
# Usage: AGENTS_LIST="64 256" ROUNDS=3 bash loadtest/baseline.sh   (BASELINE_NO_BUILD=1 to skip
# the release build). Loopback only; each load run is bounded by `timeout`. Not run in CI.
set -euo pipefail
agents_list=${AGENTS_LIST:-${AGENTS:-64}}
rounds=${ROUNDS:-3}
mode=${MODE:-batch}
port=${BASELINE_PORT:-3941}
cd "$(dirname "$0")/.."
[ -n "${BASELINE_NO_BUILD:-}" ] || nice -n 10 cargo build --release -p loadtest -p mission-control >&2
bin=./target/release
. loadtest/alternate.sh
printf 'server\tagents\tcycles_per_s\tclaim_p99_ms\tdouble_claims\tcapital_consistent\terrors\twindow_s\n' | tee "$work/runs.tsv"
for agents in $agents_list; do
  for _ in $(seq "$rounds"); do
    for name in mission-control bare; do
      start_server "$name"
      result=$(timeout 300 "$bin/loadtest" --url "http://127.0.0.1:$port" --agents "$agents" --tasks 140000 --duration 5 --warmup 1 || true)
      stop_server
      echo "$result" | python3 loadtest/summary_row.py "=$name" "=$agents" cycles_per_s claim_ms.p99 double_claims \
        capital_consistent errors window_s | tee -a "$work/runs.tsv"
    done
  done
done
python3 - "$work/runs.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print()
print("agents\tmc_cycles_per_s\tbare_cycles_per_s\tratio_mc_over_bare\tmc_claim_p99_ms\tbare_claim_p99_ms\tall_checks_pass")
for agents in dict.fromkeys(r["agents"] for r in rows):
    def median(server, column):
        return statistics.median(float(r[column]) for r in rows if r["agents"] == agents and r["server"] == server)
    ok = all(r["double_claims"] == "0" and r["capital_consistent"] == "True" for r in rows if r["agents"] == agents)
    mc, bare = median("mission-control", "cycles_per_s"), median("bare", "cycles_per_s")
    print(f"{agents}\t{mc:.1f}\t{bare:.1f}\t{mc / bare:.3f}\t{median('mission-control', 'claim_p99_ms'):.3f}\t"
          f"{median('bare', 'claim_p99_ms'):.3f}\t{ok}")
EOF
