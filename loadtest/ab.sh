#!/usr/bin/env bash
# A/B throughput of two release builds, alternating on the same machine in one run, so the
# ratio means something on a noisy machine. Each run is a fresh server on a fresh file and
# one loadtest of AGENTS agents (default 64) for 5 s after a 1 s warm-up, claim -> complete.
# Usage: loadtest/ab.sh DIR_A DIR_B   (each holding mission-control and loadtest binaries,
# e.g. copies of target/release from two commits). TASKS=N sets the pool (default 140,000;
# creating it is most of each run's time). Prints one line per run. Loopback only.
set -euo pipefail
a=${1:?usage: ab.sh DIR_A DIR_B}
b=${2:?usage: ab.sh DIR_A DIR_B}
rounds=${ROUNDS:-3}
agents=${AGENTS:-64}
mode=${MODE:-batch}
port=${AB_PORT:-3931}
. "$(dirname "$0")/alternate.sh"
printf 'build\tcycles_per_s\tclaim_p99_ms\tdouble_claims\tcapital_consistent\terrors\n'
for _ in $(seq "$rounds"); do
  for dir in "$a" "$b"; do
    bin=$dir
    start_server mission-control
    result=$("$b/loadtest" --url "http://127.0.0.1:$port" --agents "$agents" --tasks "${TASKS:-140000}" --duration 5 --warmup 1 || true)
    stop_server
    echo "$result" | python3 "$(dirname "$0")/summary_row.py" "=$dir" cycles_per_s claim_ms.p99 double_claims \
      capital_consistent errors
  done
done
