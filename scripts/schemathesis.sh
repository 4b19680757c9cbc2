#!/usr/bin/env bash
# Property-based API testing: schemathesis (from PyPI) against a live debug server on a
# fresh seeded database, driven by the OpenAPI document the server serves at /openapi.json.
#
# Two runs against the same server, each with valid and invalid data (`--mode all`):
#   operations  every operation on its own (examples, coverage, fuzzing), at most
#               ST_MAX_EXAMPLES cases per operation (default 100);
#   stateful    sequences of calls along the document's links and the ones schemathesis
#               infers, drawing new scenarios until the time budget is spent.
# One worker: CPython 3.11 keeps the AST constructor's recursion depth per interpreter, not
# per thread, so hypothesis describing strategies on two threads at once can fail a case with
# "AST constructor recursion depth mismatch" (CPython gh-106905), an error of the tool's own.
# Checks: no 5xx, every status documented, content types, headers and bodies as documented,
# and invalid data refused with a 4xx. The server runs with an API token, so requests
# without it must get 401. `/api/events` is left out: its stream never ends.
#
# ST_MAX_TIME bounds the whole run in seconds (default 150). ST_SEED fixes the random seed
# (default a fixed one, so CI is repeatable; ST_SEED=random draws one). ST_NO_BUILD=1 tests
# target/debug/mission-control as it is (CI: the binary the test suite has just built and
# tested, rather than a second build with other features). Prints the number of test cases
# run; exits non-zero on any failure. Reports: target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

version=4.32.5
venv=target/schemathesis-venv
max_examples=${ST_MAX_EXAMPLES:-100}
max_time=${ST_MAX_TIME:-150}
seed=${ST_SEED:-20261123}

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

[ -n "${ST_NO_BUILD:-}" ] || cargo build --quiet --bin mission-control

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the kernel picks a free port and the server prints the address it bound. With a
# token, so that requests without it or with a wrong one are refused.
token=schemathesis-$RANDOM$RANDOM
mkfifo "$work/stdout"
./target/debug/mission-control --db "$work/st.db" --addr 127.0.0.1:0 --api-token "$token" \
  >"$work/stdout" 2>"$work/server.log" &
server=$!
exec 3<"$work/stdout"
if ! read -r -t 30 line <&3; then
  echo "schemathesis: the server did not start" >&2
  cat "$work/server.log" >&2
  exit 1
fi
cat <&3 >/dev/null & # keep the pipe drained
base=${line##* }
case "$base" in
  http://127.0.0.1:*) ;;
  *) echo "schemathesis: unexpected start line: $line" >&2; exit 1 ;;
esac
echo "server at $base (seeded database)"

reports=target/schemathesis
rm -rf "$reports"
mkdir -p "$reports"
common=(
  --header "Authorization: Bearer $token"
  --mode all
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection
  --exclude-path /api/events
  --max-examples "$max_examples"
  --workers 1
  --request-timeout 10
  --suppress-health-check all
  --generation-database none
  --output-truncate true
  --no-color
)
if [ "$seed" != random ]; then common+=(--seed "$seed"); fi

status=0
run() {
  local name=$1
  shift
  echo "== schemathesis: $name"
  # From the reports directory: schemathesis keeps a `.schemathesis/` cache in its working directory.
  (
    cd "$reports"
    SCHEMATHESIS_HOOKS=$root/scripts/schemathesis_hooks.py "$root/$venv/bin/schemathesis" \
      --config-file "$root/scripts/schemathesis.toml" \
      run "$base/openapi.json" "${common[@]}" "$@" \
      --report ndjson,junit --report-dir . --report-ndjson-path "$name.ndjson" --report-junit-path "$name.xml"
  ) || status=1
}
started=$(date +%s)
run operations --phases examples,coverage,fuzzing
elapsed=$(($(date +%s) - started))
run stateful --phases stateful --max-time "$((max_time - elapsed > 20 ? max_time - elapsed : 20))"
elapsed=$(($(date +%s) - started))

# The test cases run: the requests schemathesis sent, each recorded with its checks in the
# reports' ScenarioFinished events. A case failed when any of its checks did.
count_cases() {
  "$venv/bin/python" - "$@" <<'PY'
import json, sys
sent, failed = set(), set()
for path in sys.argv[1:]:
    with open(path) as events:
        for line in events:
            body = json.loads(line).get("ScenarioFinished")
            if not body:
                continue
            recorder = body.get("recorder") or {}
            sent.update(recorder.get("interactions", {}))
            for case, checks in (recorder.get("checks") or {}).items():
                if any(check.get("status") not in ("success", "skip") for check in checks):
                    failed.add(case)
print(len(sent - failed), len(failed & sent))
PY
}
read -r passed failed < <(count_cases "$reports"/*.ndjson) || { passed="?"; failed="?"; }

if ! kill -0 "$server" 2>/dev/null; then
  echo "schemathesis: the server died during the run" >&2
  tail -50 "$work/server.log" >&2
  status=1
fi
echo "schemathesis $version: ${elapsed}s, seed $seed, $max_examples examples per operation, ${max_time}s budget, exit $status"
echo "schemathesis: $passed passed, $failed failed"
if [ "$status" -ne 0 ]; then
  echo "schemathesis: failures above; the server's warnings and errors follow" >&2
  grep -E "ERROR|WARN|panick" "$work/server.log" | tail -50 >&2 || true
fi
exit "$status"
