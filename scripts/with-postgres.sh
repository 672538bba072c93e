#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL server: EMBER_DATABASE is set
# to its (fresh) database, and the server is stopped and removed after.
#   usage: scripts/with-postgres.sh COMMAND [ARG…]
# initdb refuses root: as root the server runs as user postgres.
set -euo pipefail
pg_bin=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")
[ -x "$pg_bin/initdb" ] || { echo "with-postgres: no PostgreSQL server binaries (initdb)" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/ember-pg.XXXXXX")
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$pg_bin/initdb" -D "$dir/data" -A trust -U ember >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
cleanup() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
# initdb's own `postgres` database is fresh: use it.
export EMBER_DATABASE="postgres://ember@127.0.0.1:$port/postgres"
"$@"
