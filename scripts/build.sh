#!/usr/bin/env bash
# Configures and builds pgnotify into a build directory.
#   scripts/build.sh [BUILD_DIR] [extra cmake arguments...]
# BUILD_DIR defaults to build/; e.g. scripts/build.sh build-asan -DPGNOTIFY_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir/cmake-configure.log" 2>&1 \
  || { cat "$dir/cmake-configure.log" >&2; exit 1; }
cmake --build "$dir" -j2
