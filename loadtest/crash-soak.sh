#!/usr/bin/env bash
# Crash soak (not run in CI): the batch-mode kill -9 test with many more cycles than the
# suite's ten. Each cycle starts the server on the same file, runs 8 agents for 250 ms,
# kills it with SIGKILL, and at the end every acknowledged claim and completion is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
MC_CRASH_CYCLES=${1:-100} cargo test --release --test faults kill_9_cycles_under_load -- --nocapture
