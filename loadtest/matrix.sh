#!/usr/bin/env bash
# The throughput table of docs/PERFORMANCE.md: for each durability mode and agent count, a
# fresh release server on a fresh file, then one loadtest run; prints one TSV row per run.
# Loopback only; each run is bounded by --duration. Not run in CI.
set -euo pipefail
agents_list=${AGENTS:-"1 8 64 256 1024"}
modes=${MODES:-"batch async"}
duration=${DURATION:-5}
port=${MATRIX_PORT:-3920}
cd "$(dirname "$0")/.."
[ -n "${MATRIX_NO_BUILD:-}" ] || cargo build --release --workspace --bins >&2
work=$(mktemp -d)
trap 'pkill -f "mission-control --db $work" 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'mode\tagents\tcycles_per_s\tclaim_p50_ms\tclaim_p99_ms\tcomplete_p99_ms\terrors\tdouble_claims\tcapital_consistent\n'
for mode in $modes; do
  for agents in $agents_list; do
    rm -f "$work"/m.db*
    ./target/release/mission-control --db "$work/m.db" --addr "127.0.0.1:$port" --no-seed --durability "$mode" >"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
    # Enough tasks that the run never drains: ~20,000 cycles/s at most, plus the warm-up.
    tasks=$(( (duration + 1) * 20000 ))
    result=$(./target/release/loadtest --url "http://127.0.0.1:$port" --agents "$agents" --tasks "$tasks" \
      --duration "$duration" --warmup 1 || true)
    kill -TERM $server; wait $server || true
    echo "$result" | python3 loadtest/summary_row.py "=$mode" agents cycles_per_s claim_ms.p50 claim_ms.p99 \
      complete_ms.p99 errors double_claims capital_consistent
  done
done
