#!/usr/bin/env bash
# Configures and builds pgnotify into a build directory.
#   scripts/build.sh [--target TARGET] [BUILD_DIR] [extra cmake arguments...]
# BUILD_DIR defaults to build/; e.g. scripts/build.sh build-asan -DPGNOTIFY_SANITIZE=ON
# --target builds only that target (and what it needs), e.g. --target pgnotify_cli.
set -euo pipefail
cd "$(dirname "$0")/.."
target=()
if [ "${1:-}" = --target ]; then
  target=(--target "${2:?usage: build.sh --target TARGET [BUILD_DIR] [cmake arguments...]}")
  shift 2
fi
dir=${1:-build}
shift || true
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir/cmake-configure.log" 2>&1 \
  || { cat "$dir/cmake-configure.log" >&2; exit 1; }
cmake --build "$dir" -j2 "${target[@]+"${target[@]}"}"
