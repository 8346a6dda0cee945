#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster on 127.0.0.1 and a free port, with its
# data and socket directories in a new temp directory, trust auth (plus one role,
# pgnotify_pw, that must give a password: for the wrong-password tests), fsync off,
# and TLS on (a self-signed certificate) next to plain connections.
# Prints the directory; "$dir/env" exports PGNOTIFY_TEST_URI (plain),
# PGNOTIFY_TEST_TLS_URI (sslmode=require) and the PG* variables.
# scripts/pg-ctl.sh "$dir" stop|start|restart controls it; scripts/pg-stop.sh "$dir"
# stops it and removes the directory. Run as root, the server runs as postgres.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/pg_ctl" ] || { echo "pg-start: PostgreSQL 15 is not installed (run scripts/install-deps.sh)" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=pg-common.sh
source "$here/pg-common.sh"
dir=$(mktemp -d /tmp/pgnotify-pg.XXXXXX)
prepare_dir "$dir"
as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
  >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
# The password role first: pg_hba.conf is read top to bottom. The "host" lines
# match plain and TLS connections alike.
sed -i '1i host all pgnotify_pw 127.0.0.1/32 scram-sha-256' "$dir/data/pg_hba.conf"
# sslmode=disable (and PGSSLMODE): libpq's default, prefer, would silently make
# every connection a TLS one; only PGNOTIFY_TEST_TLS_URI asks for TLS.
# shellcheck disable=SC2317 # called by start_on_free_port
write_env() {
  cat >"$dir/env" <<ENV
export PGNOTIFY_PG_DIR='$dir'
export PGNOTIFY_PG_PORT='$1'
export PGNOTIFY_TEST_URI='postgresql://postgres@127.0.0.1:$1/postgres?sslmode=disable'
export PGNOTIFY_TEST_TLS_URI='postgresql://postgres@127.0.0.1:$1/postgres?sslmode=require'
export PGHOST=127.0.0.1 PGPORT='$1' PGUSER=postgres PGDATABASE=postgres PGSSLMODE=disable
ENV
}
if start_on_free_port "$dir" write_env; then
  # shellcheck disable=SC1091
  source "$dir/env"
  psql -q -c "CREATE ROLE pgnotify_pw LOGIN PASSWORD 'the-right-password'" >/dev/null
  echo "$dir"
  exit 0
fi
echo "pg-start: could not start PostgreSQL; see $dir/server.log" >&2
exit 1
