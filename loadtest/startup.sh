#!/usr/bin/env bash
# Start-up time and memory per queued task (docs/PERFORMANCE.md). Builds a database with N
# queued tasks (default 1,000,000; short titles) and FINISHED completed ones (default 0;
# each with a 200-byte output) straight through SQLite, then times a release server from
# launch to its "listening" line and reads its resident memory, against the same for an
# empty database. History must not count: `FINISHED=1000000 ./startup.sh 1000`. BIN=path measures
# another build (with STARTUP_NO_BUILD=1). Not run in CI.
set -euo pipefail
n=${1:-1000000}
finished=${FINISHED:-0}
cd "$(dirname "$0")/.."
[ -n "${STARTUP_NO_BUILD:-}" ] || cargo build --release --bins >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=${BIN:-./target/release/mission-control}
for db in empty full; do $bin migrate --db "$work/$db.db" >/dev/null 2>&1; done
python3 - "$work/full.db" "$n" "$finished" <<'PY'
import sqlite3, sys
path, n, finished = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = sqlite3.connect(path)
now = "2026-11-23T00:00:00.000Z"
conn.execute("INSERT INTO Venture (id, name, icon, status, priority, capitalSpent, capitalBudget, createdAt, updatedAt) VALUES ('v', 'v', 'x', 'active', 'medium', 0, 0, ?, ?)", (now, now))
prio = ("high", "medium", "low")
conn.executemany(
    "INSERT INTO Task (id, title, status, priority, ventureId, attempts, maxAttempts, leaseSeconds, createdAt, updatedAt) VALUES (?, ?, 'queue', ?, 'v', 0, 3, 1800, ?, ?)",
    ((f"t{i}", f"task {i}", prio[i % 3], now, now) for i in range(n)))
conn.executemany(
    "INSERT INTO Task (id, title, status, priority, ventureId, attempts, maxAttempts, leaseSeconds, output, createdAt, updatedAt, completedAt) VALUES (?, ?, 'completed', 'medium', 'v', 1, 3, 1800, ?, ?, ?, ?)",
    ((f"done{i}", f"done {i}", "o" * 200, now, now, now) for i in range(finished)))
conn.commit()
PY
measure() {
  local started line pid rss
  rm -f "$work/out"
  started=$(date +%s.%N)
  $bin serve --db "$1" --addr 127.0.0.1:0 --no-seed >"$work/out" 2>"$work/err" &
  pid=$!
  until grep -q listening "$work/out" 2>/dev/null; do sleep 0.005; done
  line=$(python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 3))" "$(date +%s.%N)" "$started")
  sleep "${STARTUP_SETTLE_S:-1}"
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  kill -TERM $pid; wait $pid || true
  echo "$line $rss"
}
read -r empty_s empty_kib <<<"$(measure "$work/empty.db")"
read -r full_s full_kib <<<"$(measure "$work/full.db")"
echo "tasks=$n finished=$finished startup_empty_s=$empty_s startup_full_s=$full_s rss_empty_mib=$((empty_kib / 1024)) rss_full_mib=$((full_kib / 1024)) bytes_per_task=$(( (full_kib - empty_kib) * 1024 / n ))"
