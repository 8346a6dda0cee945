#!/usr/bin/env bash
# The main job: builds pgnotify if needed, starts a throwaway local PostgreSQL
# 15, and runs `pgnotify listen` on the given channels (default: demo), printing
# each notification as a JSON line. Ctrl-C stops it and removes the server.
#   scripts/demo.sh [CHANNEL...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >&2
if [ ! -x build/app/pgnotify ]; then
  bash scripts/build.sh build >&2
else
  cmake --build build -j2 >&2
fi
channels=("$@")
[ ${#channels[@]} -gt 0 ] || channels=(demo)

pg_dir=$(bash scripts/pg-start.sh)
trap 'bash scripts/pg-stop.sh "$pg_dir"' EXIT
# shellcheck disable=SC1091
source "$pg_dir/env"
cat >&2 <<MSG

pgnotify is listening on: ${channels[*]}
From a second terminal, send a notification:

  psql "$PGNOTIFY_TEST_URI" -c "NOTIFY ${channels[0]}, 'hello'"

Ctrl-C stops pgnotify and this throwaway server.

MSG
build/app/pgnotify listen --uri="$PGNOTIFY_TEST_URI" -- "${channels[@]}"
