#!/usr/bin/env bash
# Soak test (not run in CI): 64 agents loop claim -> complete -> create against a release
# server for N minutes (default 30), on loopback only. Finished tasks stay (history lives
# in the database, not in memory), so memory must stay flat while the file grows; with
# SOAK_RETAIN set (e.g. "--retain-completed 2m --retain-activity 2m") the file must stop
# growing too. Every minute it prints the server's resident memory, its open file
# descriptors, the database's size, and that minute's throughput and claim p99.
set -euo pipefail
minutes=${1:-30}
port=${SOAK_PORT:-3919}
cd "$(dirname "$0")/.."
[ -n "${SOAK_NO_BUILD:-}" ] || cargo build --release --workspace --bins >&2
work=$(mktemp -d)
# shellcheck disable=SC2086 # SOAK_RETAIN holds several options
./target/release/mission-control --db "$work/soak.db" --addr "127.0.0.1:$port" --no-seed ${SOAK_RETAIN:-} >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server $load 2>/dev/null || true; rm -rf "$work"' EXIT
load=
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
./target/release/loadtest --url "http://127.0.0.1:$port" --agents 64 --tasks 5000 --refill \
  --warmup 0 --duration $((minutes * 60)) --report-every 60 >"$work/load.jsonl" &
load=$!
printf 'minute\trss_mib\topen_files\tdb_mib\tcycles_per_s\tclaim_p99_ms\terrors\n'
for minute in $(seq 1 "$minutes"); do
  sleep 60
  rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$server/status")
  files=$(ls "/proc/$server/fd" | wc -l)
  db=$(du -cm "$work"/soak.db* | awk 'END {print $1}')
  figures=$(tail -n 1 "$work/load.jsonl" | python3 -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
    print("%s\t%s\t%s" % (d["cycles_per_s"], d["claim_ms"]["p99"], d["errors"]))
except (ValueError, KeyError):
    print("-\t-\t-")' || true)
  printf '%s\t%s\t%s\t%s\t%s\n' "$minute" "$rss" "$files" "$db" "$figures"
done
wait $load
echo "summary: $(tail -n 1 "$work/load.jsonl")"
