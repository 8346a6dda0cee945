#!/usr/bin/env bash
# Makes a hot standby (read-only, in recovery) of a cluster from scripts/pg-start.sh
# on another free port: pg-standby.sh PRIMARY_DIR. Prints the standby's directory;
# stop it with scripts/pg-stop.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
primary=${1:?usage: pg-standby.sh PRIMARY_DIR}
# shellcheck disable=SC1091
source "$primary/env"
dir=$(mktemp -d /tmp/pgnotify-standby.XXXXXX)
mkdir -p "$dir/sock"
chown -R postgres:postgres "$dir"
chmod 755 "$dir"
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_basebackup -h 127.0.0.1 -p "$PGNOTIFY_PG_PORT" \
  -U postgres -D "$dir/data" -R -X stream >"$dir/basebackup.log" 2>&1 \
  || { cat "$dir/basebackup.log" >&2; exit 1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for attempt in $(seq 1 5); do
  port=$((20000 + (RANDOM % 30000)))
  port_in_use "$port" && continue
  echo "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" >"$dir/options"
  cat >"$dir/env" <<ENV
export PGNOTIFY_STANDBY_PORT='$port'
export PGNOTIFY_STANDBY_URI='postgresql://postgres@127.0.0.1:$port/postgres'
ENV
  if bash "$here/pg-ctl.sh" "$dir" start; then
    echo "$dir"
    exit 0
  fi
done
echo "pg-standby: could not start the standby; see $dir/server.log" >&2
exit 1
