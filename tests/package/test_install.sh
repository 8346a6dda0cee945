#!/usr/bin/env bash
# Installs pgnotify from BUILD_DIR into a temporary prefix, builds examples/ from
# there as a separate CMake project, runs its test (scripted server) and runs it
# against the test server.
#   test_install.sh SOURCE_DIR BUILD_DIR      (needs PGNOTIFY_TEST_URI)
set -euo pipefail
src=${1:?usage: test_install.sh SOURCE_DIR BUILD_DIR}
build=${2:?usage: test_install.sh SOURCE_DIR BUILD_DIR}
: "${PGNOTIFY_TEST_URI:?run the tests with scripts/test.sh}"
work=$(mktemp -d /tmp/pgnotify-install.XXXXXX)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
test -f "$work/prefix/include/pgnotify/actors/bus.hpp"
test -f "$work/prefix/lib/cmake/pgnotify/pgnotify-config.cmake"
cmake -S "$src/examples" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log" \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/example" -j2 >"$work/build.log" || { cat "$work/build.log"; exit 1; }

"$work/example/example_test"  # the scripted-server test of an application's subscriber

out="$work/example.out"
"$work/example/resync_example" "$PGNOTIFY_TEST_URI" 2 pkg_a pkg_b >"$out" 2>"$work/example.err" &
example=$!
for _ in $(seq 1 150); do  # bounded wait for both subscriptions (15 s)
  [ "$(grep -c '^subscribed' "$out" || true)" -eq 2 ] && break
  sleep 0.1
done
psql "$PGNOTIFY_TEST_URI" -qc "SELECT pg_notify('pkg_a', 'one')" -c "SELECT pg_notify('pkg_b', 'two')" >/dev/null
wait "$example"
cat "$out"
grep -qx '\[pkg_a\] one' "$out"
grep -qx '\[pkg_b\] two' "$out"
echo "package test: installed, built examples/ against the installed package, ran it"
