#!/usr/bin/env bash
# Controls a cluster made by scripts/pg-start.sh: pg-ctl.sh DIR start|stop|restart
# (stop and restart use the "fast" mode: sessions are terminated, as in a real restart).
set -euo pipefail
dir=${1:?usage: pg-ctl.sh DIR start|stop|restart}
action=${2:?usage: pg-ctl.sh DIR start|stop|restart}
# shellcheck source-path=SCRIPTDIR source=pg-common.sh
source "$(dirname "$0")/pg-common.sh"
pg_ctl() { as_owner /usr/lib/postgresql/15/bin/pg_ctl -D "$dir/data" -l "$dir/server.log" "$@"; }
case "$action" in
  start) pg_ctl -w -t 30 -o "$(cat "$dir/options")" start >/dev/null ;;
  stop) pg_ctl -w -t 30 -m fast stop >/dev/null ;;
  restart) pg_ctl -w -t 30 -m fast -o "$(cat "$dir/options")" restart >/dev/null ;;
  *) echo "pg-ctl: unknown action $action" >&2; exit 2 ;;
esac
