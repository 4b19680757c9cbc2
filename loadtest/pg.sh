# A throwaway PostgreSQL cluster for the load scripts, sourced by them: initdb in a temporary
# directory, `postgres` on a free loopback port (as the `postgres` user when run as root,
# which PostgreSQL refuses to run as), fsync and synchronous commit left at their defaults.
# pg_start DIR sets PG_PORT; pg_createdb NAME prints the database's URL; pg_stop stops it.
pg_bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
pg_dir=
pg_as_server_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
pg_start() {
  pg_dir=$1
  mkdir -p "$pg_dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pg_dir"; fi
  pg_as_server_user "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U mc --no-sync -E UTF8 >/dev/null
  PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  pg_as_server_user timeout 60 "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$pg_dir -c max_connections=300" start >/dev/null
}
pg_createdb() {
  timeout 30 psql -q -h 127.0.0.1 -p "$PG_PORT" -U mc -d postgres -c "CREATE DATABASE $1" >/dev/null
  echo "postgres://mc@127.0.0.1:$PG_PORT/$1"
}
pg_stop() {
  if [ -n "$pg_dir" ] && [ -f "$pg_dir/data/postmaster.pid" ]; then
    pg_as_server_user timeout 60 "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
  fi
}
