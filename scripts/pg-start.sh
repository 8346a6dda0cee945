#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster on 127.0.0.1 and a free port, with its
# data and socket directories in a new temp directory, trust auth (plus one role,
# pgnotify_pw, that must give a password: for the wrong-password tests), fsync off.
# Prints the directory; "$dir/env" exports PGNOTIFY_TEST_URI and the PG* variables.
# scripts/pg-ctl.sh "$dir" stop|start|restart controls it; scripts/pg-stop.sh "$dir"
# stops it and removes the directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/pg_ctl" ] || { echo "pg-start: PostgreSQL 15 is not installed (run scripts/install-deps.sh)" >&2; exit 1; }
dir=$(mktemp -d /tmp/pgnotify-pg.XXXXXX)
mkdir -p "$dir/data" "$dir/sock"
chown -R postgres:postgres "$dir"
chmod 755 "$dir"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
  >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
# The password role first: pg_hba.conf is read top to bottom.
sed -i '1i host all pgnotify_pw 127.0.0.1/32 scram-sha-256' "$dir/data/pg_hba.conf"
write_env() {
  cat >"$dir/env" <<ENV
export PGNOTIFY_PG_DIR='$dir'
export PGNOTIFY_PG_PORT='$1'
export PGNOTIFY_TEST_URI='postgresql://postgres@127.0.0.1:$1/postgres'
export PGHOST=127.0.0.1 PGPORT='$1' PGUSER=postgres PGDATABASE=postgres
ENV
}
# shellcheck disable=SC1091
source "$here/pg-common.sh"
if start_on_free_port "$dir" write_env; then
  # shellcheck disable=SC1091
  source "$dir/env"
  psql -q -c "CREATE ROLE pgnotify_pw LOGIN PASSWORD 'the-right-password'" >/dev/null
  echo "$dir"
  exit 0
fi
echo "pg-start: could not start PostgreSQL; see $dir/server.log" >&2
exit 1
