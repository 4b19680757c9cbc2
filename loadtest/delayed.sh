#!/usr/bin/env bash
# Lateness of delayed tasks: ROUNDS (default 3) fresh release servers on fresh files, each
# loaded once with `loadtest --delayed N` (default 500 tasks, runAt spread over 5 s, 32
# parked claimers). Prints each run's JSON line. Loopback only; each run is bounded by
# `timeout`. Usage: loadtest/delayed.sh [BIN_DIR]   (default target/release)
set -euo pipefail
bin=${1:-target/release}
rounds=${ROUNDS:-3}
tasks=${TASKS:-500}
spread=${SPREAD:-5}
claimers=${CLAIMERS:-32}
port=${DELAYED_PORT:-3947}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for _ in $(seq "$rounds"); do
  rm -f "$work"/m.db*
  "$bin/mission-control" --db "$work/m.db" --addr "127.0.0.1:$port" --no-seed >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  timeout 60 "$bin/loadtest" --url "http://127.0.0.1:$port" --delayed "$tasks" --spread "$spread" --claimers "$claimers" || true
  kill -TERM $server; wait $server || true
done
