#!/usr/bin/env bash
# Stops a cluster started by scripts/pg-start.sh and removes its directory.
set -uo pipefail
dir=${1:?usage: pg-stop.sh DIR}
[ -f "$dir/env" ] || exit 0
# shellcheck source-path=SCRIPTDIR source=pg-common.sh
source "$(dirname "$0")/pg-common.sh"
# A test may have frozen a backend with SIGSTOP; let everything run so it can stop
# (only the owner's postgres processes: not, say, an ordinary user's stopped jobs).
pkill -CONT -u "$pg_owner" -x postgres 2>/dev/null || true
as_owner /usr/lib/postgresql/15/bin/pg_ctl -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
rm -rf "$dir"
