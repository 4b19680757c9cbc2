#!/usr/bin/env bash
# The worker's overhead per task (docs/PERFORMANCE.md, "Worker"): a release server on a
# database holding N queued tasks (default 2,000; written straight through SQLite), then
# `mission-control work --concurrency C --max-tasks N -- true` for each C given (default
# 1 and 8), timed from launch to exit: claim, spawn, wait, report, all included.
# Usage: loadtest/worker.sh [N] [C...]. Not run in CI.
set -euo pipefail
n=${1:-2000}
shift || true
if [ $# -gt 0 ]; then concurrencies=("$@"); else concurrencies=(1 8); fi
cd "$(dirname "$0")/.."
[ -n "${WORKER_NO_BUILD:-}" ] || nice -n 10 cargo build --release --bin mission-control >&2
bin=./target/release/mission-control
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
for c in "${concurrencies[@]}"; do
  db="$work/c$c.db"
  $bin migrate --db "$db" >/dev/null 2>&1
  python3 - "$db" "$n" <<'PY'
import sqlite3, sys
path, n = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(path)
now = "2026-11-23T00:00:00.000Z"
conn.execute("INSERT INTO Venture (id, name, icon, status, priority, capitalSpent, capitalBudget, createdAt, updatedAt) VALUES ('v', 'v', 'x', 'active', 'medium', 0, 0, ?, ?)", (now, now))
conn.executemany(
    "INSERT INTO Task (id, title, status, priority, ventureId, attempts, maxAttempts, leaseSeconds, createdAt, updatedAt) VALUES (?, ?, 'queue', 'medium', 'v', 0, 3, 1800, ?, ?)",
    ((f"t{i:07}", f"task {i}", now, now) for i in range(n)))
conn.commit()
PY
  $bin serve --db "$db" --addr 127.0.0.1:0 --no-seed >"$work/out" 2>"$work/server.log" &
  server=$!
  until grep -q listening "$work/out" 2>/dev/null; do sleep 0.02; done
  url=$(awk '/listening/ {print $NF}' "$work/out")
  started=$(date +%s.%N)
  RUST_LOG=warn timeout 600 $bin work --url "$url" --agent-id "bench-$c" --venture v \
    --concurrency "$c" --max-tasks "$n" -- true
  ended=$(date +%s.%N)
  done_count=$(curl -sf "$url/api/tasks?status=completed" | python3 -c "import json, sys; print(len(json.load(sys.stdin)))")
  python3 -c "import sys; n, c, d, s, e = map(float, sys.argv[1:]); print(f'concurrency {int(c)}: {int(d)} of {int(n)} completed in {e - s:.2f} s: {d / (e - s):.0f} tasks/s')" \
    "$n" "$c" "$done_count" "$started" "$ended"
  kill "$server"; wait "$server" || true; server=
done
