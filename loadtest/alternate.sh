# Sourced by the scripts that run servers in turn on one port (ab.sh: two builds of
# mission-control; baseline.sh, cpu_split.sh: mission-control and bare-queue): a scratch folder
# and a server, both gone on exit, and a fresh server of either kind. Expects `bin` (the
# binaries' folder) and `port`; `mode` (durability, default batch) and BARE_ARGS are optional.
work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# start_server mission-control|bare: a fresh server (mission-control on a fresh file, with
# --no-seed), bounded by `timeout`, once it answers /healthz. Sets `server` (the `timeout`
# around it) and `server_pid` (the server itself).
start_server() {
  rm -f "$work"/m.db*
  if [ "$1" = mission-control ]; then
    timeout 600 "$bin/mission-control" --db "$work/m.db" --addr "127.0.0.1:$port" --no-seed \
      --durability "${mode:-batch}" >"$work/server.log" 2>&1 &
  else
    # shellcheck disable=SC2086 # BARE_ARGS is a list of arguments.
    timeout 600 "$bin/bare-queue" --addr "127.0.0.1:$port" ${BARE_ARGS:-} >"$work/server.log" 2>&1 &
  fi
  server=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  server_pid=$(pgrep -P "$server" || echo "$server")
}

stop_server() {
  kill -TERM "$server"
  wait "$server" || true
  server=
}
