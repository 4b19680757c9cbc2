#!/usr/bin/env bash
# Claim latency with and without listings during load (docs/PERFORMANCE.md). Builds a
# database holding FINISHED completed tasks (default 50,000, 200-byte outputs) straight
# through SQLite; then, ROUNDS times (default 3), two runs in turn on fresh copies of it, a
# release server each: AGENTS agents (default 256) claim -> complete for DURATION seconds
# (default 5) after a 1 s warm-up, without listers and then with LISTERS clients (default 2)
# fetching GET /api/tasks (every task, LISTING_PATH to change it) in a loop. Prints one TSV
# row per run, then the medians and the ratio of claim p99 with listings to without.
# BIN=DIR runs the binaries in DIR. Loopback only; every run is bounded by `timeout`. Not run in CI.
set -euo pipefail
finished=${FINISHED:-50000}
rounds=${ROUNDS:-3}
agents=${AGENTS:-256}
listers=${LISTERS:-2}
duration=${DURATION:-5}
listing_path=${LISTING_PATH:-/api/tasks}
port=${LISTING_PORT:-3951}
cd "$(dirname "$0")/.."
[ -n "${LISTING_NO_BUILD:-}" ] || cargo build --release --workspace --bins >&2
bin=${BIN:-./target/release}
work=$(mktemp -d)
server=
trap '[ -z "$server" ] || kill -TERM "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
$bin/mission-control migrate --db "$work/history.db" >/dev/null 2>&1
python3 - "$work/history.db" "$finished" <<'PY'
import sqlite3, sys
path, finished = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(path)
now = "2026-11-23T00:00:00.000Z"
conn.execute("INSERT INTO Venture (id, name, icon, status, priority, capitalSpent, capitalBudget, createdAt, updatedAt) VALUES ('history', 'history', 'x', 'active', 'medium', 0, 0, ?, ?)", (now, now))
conn.executemany(
    "INSERT INTO Task (id, title, status, priority, ventureId, attempts, maxAttempts, leaseSeconds, output, createdAt, updatedAt, completedAt) VALUES (?, ?, 'completed', 'medium', 'history', 1, 3, 1800, ?, ?, ?, ?)",
    ((f"done{i}", f"done {i}", "o" * 200, now, now, now) for i in range(finished)))
conn.commit()
PY
# Enough tasks that no run drains: the most this machine does at 256 agents, plus the warm-up.
tasks=$(( (duration + 1) * 8000 ))
printf 'round\tlisters\tcycles_per_s\tclaim_p50_ms\tclaim_p99_ms\tlistings\tlisting_mean_ms\tlisting_mb\tcommit_mean_ms/over_50ms\terrors\tdouble_claims\n' | tee "$work/rows"
for round in $(seq "$rounds"); do
  for n in 0 "$listers"; do
    rm -f "$work"/run.db*
    cp "$work/history.db" "$work/run.db"
    $bin/mission-control --db "$work/run.db" --addr "127.0.0.1:$port" --no-seed >"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
    result=$(timeout $(( duration + 120 )) $bin/loadtest --url "http://127.0.0.1:$port" --agents "$agents" \
      --tasks "$tasks" --duration "$duration" --warmup 1 --listers "$n" --listing-path "$listing_path" \
      --listers-nice "${LISTERS_NICE:-0}" || true)
    # The persister's mean commit time and its commits over 50 ms: does the record stall?
    commit_ms=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '
      /^mission_control_persist_commit_duration_seconds_sum/ {s=$2}
      /^mission_control_persist_commit_duration_seconds_count/ {n=$2}
      /^mission_control_persist_commit_duration_seconds_bucket\{le="0.05"\}/ {fast=$2}
      END {if (n > 0) printf "%.2f/%d", s / n * 1000, n - fast; else print "-"}')
    kill -TERM "$server"; wait "$server" || true
    server=
    echo "$result" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
l = d.get("listings") or {}
print("\t".join(str(x) for x in [sys.argv[1], sys.argv[2], d["cycles_per_s"], d["claim_ms"]["p50"], d["claim_ms"]["p99"],
      l.get("completed", 0), l.get("mean_ms", "-"), l.get("mb", 0), sys.argv[3], sum(d["errors"].values()),
      d["double_claims"]]))' "$round" "$n" "$commit_ms" | tee -a "$work/rows"
  done
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])][1:]
def median(listers, column):
    return statistics.median(float(r[column]) for r in rows if r[1] == listers)
without, with_ = "0", max(r[1] for r in rows)
ratios = [float(b[4]) / float(a[4]) for a, b in zip(rows[0::2], rows[1::2])]
print(f"median\t0\t{median(without, 2)}\t{median(without, 3)}\t{median(without, 4)}")
print(f"median\t{with_}\t{median(with_, 2)}\t{median(with_, 3)}\t{median(with_, 4)}\t{median(with_, 5)}\t{median(with_, 6)}")
print("claim p99 with / without, per round: " + " ".join(f"{r:.2f}" for r in ratios)
      + f"; of the medians: {median(with_, 4) / median(without, 4):.2f}"
      + f"; claims/s with / without: {median(with_, 2) / median(without, 2):.2f}")
PY
