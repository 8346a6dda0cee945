#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 (as root): installs the
# dependencies, builds, starts a throwaway PostgreSQL 15, runs every test
# (unit, actor, integration, fault and program tests, the integration and fault
# tests again over TLS, and a smoke run of the benchmark), then the same tests
# (plain TCP only) again in a build
# with AddressSanitizer + UndefinedBehaviorSanitizer, and stops the server.
#   PGNOTIFY_SANITIZE=0 scripts/test.sh   skips the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build

pg_dir=$(bash scripts/pg-start.sh)
trap 'bash scripts/pg-stop.sh "$pg_dir"' EXIT
# shellcheck disable=SC1091
source "$pg_dir/env"
echo "test: PostgreSQL at $PGNOTIFY_TEST_URI"

(cd build && ctest --output-on-failure --timeout 300)
# The benchmark, once at a tiny size: every workload, both clients, outputs checked.
PGNOTIFY_BENCH_BUILD_DIR=build bash bench/run.sh --smoke

if [ "${PGNOTIFY_SANITIZE:-1}" != 0 ]; then
  bash scripts/build.sh build-asan -DPGNOTIFY_SANITIZE=ON -DPGNOTIFY_BUILD_BENCH=OFF
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
  export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # The package test installs and links an uninstrumented example: not for this
  # build. The TLS runs repeat the plain ones over another transport; the
  # release build covers them (ASan would only slow them down).
  (cd build-asan && ctest --output-on-failure --timeout 300 --label-exclude 'package|tls')
fi
