#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster on 127.0.0.1 and a free port, with its
# data and socket directories in a new temp directory, trust auth, fsync off.
# Prints the directory; "$dir/env" exports PGNOTIFY_TEST_URI and the PG* variables.
# Stop it with scripts/pg-stop.sh "$dir".
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/pg_ctl" ] || { echo "pg-start: PostgreSQL 15 is not installed (run scripts/install-deps.sh)" >&2; exit 1; }
dir=$(mktemp -d /tmp/pgnotify-pg.XXXXXX)
mkdir -p "$dir/data" "$dir/sock"
chown -R postgres:postgres "$dir"
chmod 755 "$dir"
as_postgres() { runuser -u postgres -- "$@"; }
as_postgres "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for attempt in $(seq 1 50); do
  port=$((20000 + (RANDOM % 30000)))
  port_in_use "$port" && continue
  if as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
       -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null; then
    cat >"$dir/env" <<ENV
export PGNOTIFY_PG_DIR='$dir'
export PGNOTIFY_PG_BIN='$bin'
export PGNOTIFY_PG_PORT='$port'
export PGNOTIFY_TEST_URI='postgresql://postgres@127.0.0.1:$port/postgres'
export PGHOST=127.0.0.1 PGPORT='$port' PGUSER=postgres PGDATABASE=postgres
ENV
    echo "$dir"
    exit 0
  fi
done
echo "pg-start: could not start PostgreSQL; see $dir/server.log" >&2
exit 1
