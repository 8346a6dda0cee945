#!/usr/bin/env bash
# The main job: builds the pgnotify program if needed and runs `pgnotify listen`,
# printing each notification as one JSON line. Without connection settings it starts
# a throwaway local PostgreSQL 15 (removed again on Ctrl-C); with --uri=URI or the
# PG* environment (PGHOST, PGSERVICE, ...) it uses that server instead.
#   scripts/demo.sh [pgnotify listen options] [CHANNEL...]     (default channel: demo)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >&2
# Only the program, in its own build directory: the tests and benchmarks take
# minutes to compile, and build/ stays as scripts/test.sh left it.
build="build-demo"
bash scripts/build.sh --target pgnotify_cli "$build" \
  -DPGNOTIFY_BUILD_TESTS=OFF -DPGNOTIFY_BUILD_BENCH=OFF >&2
options=() channels=()
for arg in "$@"; do
  case "$arg" in -*) options+=("$arg") ;; *) channels+=("$arg") ;; esac
done
[ ${#channels[@]} -gt 0 ] || channels=(demo)

uri=""
for opt in "${options[@]+"${options[@]}"}"; do
  case "$opt" in --uri=*) uri=${opt#--uri=} ;; esac
done
if [ -z "$uri" ] && [ -z "${PGHOST:-}${PGSERVICE:-}${PGPORT:-}${PGDATABASE:-}" ]; then
  pg_dir=$(bash scripts/pg-start.sh)
  trap 'bash scripts/pg-stop.sh "$pg_dir"' EXIT
  trap 'exit 130' INT TERM
  # shellcheck disable=SC1091
  source "$pg_dir/env"
  uri=$PGNOTIFY_TEST_URI
  options+=("--uri=$uri")
  echo "Started a throwaway PostgreSQL 15 at $uri" >&2
fi
try_uri=""
[ -z "$uri" ] || try_uri=" --uri='$uri'"
cat >&2 <<MSG

pgnotify is listening on: ${channels[*]}
From a second terminal, send a notification:

  $(pwd)/$build/app/pgnotify notify$try_uri ${channels[0]} 'hello'
  psql ${uri:+"'$uri'"} -c "NOTIFY ${channels[0]}, 'hello'"

Ctrl-C stops it.

MSG
"$build/app/pgnotify" listen --config=config/pgnotify.ini "${options[@]+"${options[@]}"}" -- "${channels[@]}"
