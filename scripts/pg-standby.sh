#!/usr/bin/env bash
# Makes a hot standby (read-only, in recovery) of a cluster from scripts/pg-start.sh
# on another free port, with its own TLS certificate: pg-standby.sh PRIMARY_DIR.
# Prints the standby's directory; stop it with scripts/pg-stop.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
primary=${1:?usage: pg-standby.sh PRIMARY_DIR}
# shellcheck disable=SC1091
source "$primary/env"
# shellcheck source-path=SCRIPTDIR source=pg-common.sh
source "$here/pg-common.sh"
dir=$(mktemp -d /tmp/pgnotify-standby.XXXXXX)
prepare_dir "$dir"
as_owner /usr/lib/postgresql/15/bin/pg_basebackup -h 127.0.0.1 -p "$PGNOTIFY_PG_PORT" \
  -U postgres -D "$dir/data" -R -X stream >"$dir/basebackup.log" 2>&1 \
  || { cat "$dir/basebackup.log" >&2; exit 1; }
# shellcheck disable=SC2317 # called by start_on_free_port
write_env() {
  cat >"$dir/env" <<ENV
export PGNOTIFY_STANDBY_PORT='$1'
export PGNOTIFY_STANDBY_URI='postgresql://postgres@127.0.0.1:$1/postgres?sslmode=disable'
ENV
}
if start_on_free_port "$dir" write_env; then
  echo "$dir"
  exit 0
fi
echo "pg-standby: could not start the standby; see $dir/server.log" >&2
exit 1
