#!/usr/bin/env bash
# The benchmark driver (DESIGN.md §5, issue 4). Builds pgnotify-bench and its
# sender if needed, starts a throwaway PostgreSQL (scripts/pg-start.sh), runs
# every workload for both clients (pgnotify and raw libpq), each the median of
# several repetitions after one unrecorded warm-up round of every client of
# w1-w4, and prints markdown tables: CPU per notification, rate,
# lag behind the sender's last commit, latency percentiles, memory, subscription
# costs, idle CPU, and which of issue 4's targets are met.
#
#   bash bench/run.sh                 full sizes, 3 repetitions
#   bash bench/run.sh --reps 5        more repetitions
#   bash bench/run.sh --smoke         every workload once at a tiny size; exits
#                                     non-zero if any client output is wrong (CI)
#   bash bench/run.sh --caf-args '--scheduler.policy=sharing'
#                                     CAF options for the pgnotify client
#   bash bench/run.sh --keep DIR      keep every run's output and metrics in DIR
#   bash bench/run.sh --only w1,w3    run only these workloads (w1 w2 w3 w4 w5 idle)
#   bash bench/run.sh --before DIR    also run the pgnotify client built in DIR (an
#                                     earlier version, built there beforehand) in
#                                     w1-w3, interleaved with the others
#
# MAX_BATCH=N (default: the library's) is the pgnotify client's bus_settings::max_batch.
# PGNOTIFY_BENCH_BUILD_DIR (default build-bench) is the build directory; an
# existing build (such as scripts/test.sh's build/) is only brought up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

smoke=0
reps=3
caf_args=""
keep=""
only="w1,w2,w3,w4,w5,idle"
before_dir=""
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1 ;;
    --reps) reps=${2:?--reps needs a number}; shift ;;
    --reps=*) reps=${1#--reps=} ;;
    --caf-args) caf_args=${2?--caf-args needs a value}; shift ;;
    --caf-args=*) caf_args=${1#--caf-args=} ;;
    --keep) keep=${2:?--keep needs a directory}; shift ;;
    --only) only=${2:?--only needs workloads}; shift ;;
    --only=*) only=${1#--only=} ;;
    --before) before_dir=${2:?--before needs a build directory}; shift ;;
    --before=*) before_dir=${1#--before=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --reps must be a positive number" >&2; exit 2; }

# -- sizes --------------------------------------------------------------------
# Issue 4's sizes; --smoke shrinks each workload to something that takes a second.
if [ "$smoke" = 1 ]; then
  reps=1
  n_w1=200 n_w2=200 k_w2=5 n_w3=20 n_w4=1000 n_w5=200 k_w5=100 channels_w5=10 idle_seconds=1
  patience=30
else
  n_w1=200000 n_w2=200000 k_w2=100 n_w3=2000 n_w4=1000000 n_w5=200000 k_w5=10000
  channels_w5=1000 idle_seconds=10 patience=60
fi
stalled_bound=256

# -- build ----------------------------------------------------------------------
build_dir=${PGNOTIFY_BENCH_BUILD_DIR:-build-bench}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  echo "run.sh: configuring $build_dir (Release)" >&2
  mkdir -p "$build_dir"
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DPGNOTIFY_BUILD_TESTS=OFF \
    >"$build_dir/bench-configure.log" 2>&1 || { cat "$build_dir/bench-configure.log" >&2; exit 1; }
fi
cmake --build "$build_dir" -j2 --target pgnotify-bench pgnotify-bench-sender \
  >"$build_dir/bench-build.log" 2>&1 || { cat "$build_dir/bench-build.log" >&2; exit 1; }
client_bin=$build_dir/bench/pgnotify-bench
sender_bin=$build_dir/bench/pgnotify-bench-sender
before_bin=""
if [ -n "$before_dir" ]; then
  before_bin=$before_dir/bench/pgnotify-bench
  [ -x "$before_bin" ] || { echo "run.sh: no $before_bin (build it there first)" >&2; exit 2; }
fi
# wanted WORKLOAD: whether --only selects it.
wanted() { [[ ",$only," == *",$1,"* ]]; }

# -- PostgreSQL and a scratch directory ---------------------------------------------
work=$(mktemp -d /tmp/pgnotify-bench.XXXXXX)
pg_dir=""
cleanup() {
  [ -n "$pg_dir" ] && bash scripts/pg-stop.sh "$pg_dir"
  if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
  rm -rf "$work"
}
trap cleanup EXIT
pg_dir=$(bash scripts/pg-start.sh)
# shellcheck disable=SC1091
source "$pg_dir/env"
export PGURI=$PGNOTIFY_TEST_URI
echo "run.sh: PostgreSQL at $PGURI; $reps repetition(s); results in $work" >&2

# fail RUN MESSAGE: reports a failed run; $work/failures lists them (one "RUN" a line).
failures=0
fail() {
  echo "run.sh: FAIL: $1: $2" >&2
  echo "$1" >>"$work/failures"
  failures=$((failures + 1))
}
# passed WORKLOAD CLIENT: "yes" if every run of it passed its checks, else "**no**".
passed() { grep -q "^$1\.$2\." "$work/failures" 2>/dev/null && echo "**no**" || echo yes; }

# The value of "key" in a one-line JSON object (numbers and booleans only).
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }

# -- one run ----------------------------------------------------------------------
# run_one CLIENT WORKLOAD N K REP [LABEL]: runs the client, waits for READY, runs
# the sender, checks the output and writes "metric value" lines to
# $work/LABEL.CLIENT.REP.metrics (LABEL defaults to WORKLOAD). CLIENT is raw,
# pgnotify (counting subscribers: the bench's own protocol actors, the cheaper
# kind) or helper (pgnotify with pgnotify::spawn_subscriber and a callback).
run_one() {
  local client=$1 workload=$2 n=$3 k=$4 rep=$5 label=${6:-$2}
  local name="$label.$client.$rep"
  local program_client=$client subscriber=actor binary=$client_bin
  [ "$client" = helper ] && program_client=pgnotify subscriber=helper
  [ "$client" = before ] && program_client=pgnotify binary=$before_bin
  local out="$work/$name.out" err="$work/$name.err" metrics="$work/$name.metrics"
  local channel="bench_${label}_${client}_$rep"
  local extra_args=()
  [ "$program_client" = pgnotify ] && [ -n "$caf_args" ] && read -r -a extra_args <<<"$caf_args"
  : >"$out"
  WORKLOAD=$workload N=$n K=$k CHANNEL=$channel CHANNELS=${channels_w5} SUBSCRIBER=$subscriber \
    STALLED_BOUND=$stalled_bound IDLE_SECONDS=$idle_seconds TIMEOUT_S=$patience \
    timeout $((patience * 3)) "$binary" --client "$program_client" "${extra_args[@]}" >"$out" 2>"$err" &
  local pid=$!
  local waited=0
  until [ "$(head -n 1 "$out")" = READY ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $waited -ge $((patience * 10)) ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      fail "$name" "no READY"; sed 's/^/    /' "$err" >&2
      return
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  local commit_ns=0
  if [ "$workload" != idle ]; then
    if ! commit_ns=$(WORKLOAD=$workload N=$n CHANNEL=$channel "$sender_bin" 2>"$work/$name.sender.err"); then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      fail "$name" "the sender failed"; sed 's/^/    /' "$work/$name.sender.err" >&2
      return
    fi
  fi
  local rc=0
  wait "$pid" || rc=$?
  local json="$work/$name.json"
  sed -n 2p "$out" >"$json"
  if [ $rc -ne 0 ] || [ "$(wc -l <"$out")" -ne 2 ] || ! grep -q '^{.*}$' "$json"; then
    fail "$name" "exit code $rc, output:"; sed 's/^/    /' "$out" "$err" >&2
    return
  fi
  check_and_measure "$client" "$workload" "$n" "$k" "$json" "$commit_ns" >"$metrics" ||
    fail "$name" "wrong output: $(cut -c1-400 "$json")"
}

# check_and_measure CLIENT WORKLOAD N K JSON COMMIT_NS: prints the run's metrics;
# fails (status 1) if the client's output is not what the workload must produce.
check_and_measure() {
  local client=$1 workload=$2 n=$3 k=$4 json=$5 commit_ns=$6
  local ok=0
  case $workload in
    w1 | w2 | w4 | w5)
      local expected=$n
      [ "$workload" = w2 ] && expected=$((n * k))
      [ "$(field "$json" received)" = "$expected" ] || ok=1
      [ "$(field "$json" payloads_ok)" = true ] || ok=1
      awk -v n="$n" -v cpu="$(field "$json" cpu_us)" -v first="$(field "$json" first_ns)" \
        -v last="$(field "$json" last_ns)" -v commit="$commit_ns" -v deliveries="$expected" \
        -v batches="$(field "$json" batches)" 'BEGIN {
          printf "cpu_per_notification %.4f\n", cpu / n
          if (batches > 0) printf "batch_size %.1f\n", deliveries / batches
          printf "rate %.0f\n", (last > first) ? n / ((last - first) / 1e9) : 0
          printf "lag_ms %.3f\n", (last - commit) / 1e6
        }'
      ;;
    w3)
      local sorted="$json.lat"
      sed -n 's/.*"lat_ns":\[\([^]]*\)\].*/\1/p' "$json" | tr ',' '\n' | sed '/^$/d' | sort -n >"$sorted"
      [ "$(field "$json" received)" = "$n" ] || ok=1
      [ "$(wc -l <"$sorted")" -eq "$n" ] || ok=1
      [ "$(head -n 1 "$sorted")" -gt 0 ] 2>/dev/null || ok=1
      awk -v cpu="$(field "$json" cpu_us)" -v n="$n" '
        { v[NR] = $1 }
        function rank(p,   i) { i = int(p * NR); if (i < p * NR) i++; if (i < 1) i = 1; return v[i] }
        END {
          printf "p50_us %.1f\np99_us %.1f\nmax_us %.1f\n", rank(0.5) / 1e3, rank(0.99) / 1e3, v[NR] / 1e3
          printf "cpu_per_notification %.4f\n", cpu / n
        }' "$sorted"
      ;;
    idle)
      [ -n "$(field "$json" cpu_pct)" ] || ok=1
      echo "cpu_pct $(field "$json" cpu_pct)"
      ;;
  esac
  if [ "$workload" = w4 ]; then
    awk -v before="$(field "$json" rss_before_kib)" -v after="$(field "$json" rss_after_kib)" \
      -v hwm="$(field "$json" hwm_kib)" 'BEGIN {
        printf "rss_growth_mib %.2f\nhwm_growth_mib %.2f\n", (after - before) / 1024, (hwm - before) / 1024
      }'
    if [ "$client" = pgnotify ]; then
      local expected_missed=$((n > stalled_bound ? n - stalled_bound : 0))
      local by_stats by_lagged
      by_stats=$(field "$json" stalled_missed_stats)
      by_lagged=$(field "$json" stalled_missed_lagged)
      echo "missed_stats $by_stats"
      echo "missed_lagged $by_lagged"
      echo "missed_expected $expected_missed"
      [ "$by_stats" = "$expected_missed" ] && [ "$by_lagged" = "$expected_missed" ] || ok=1
      [ "$(field "$json" stalled_delivered)" = "$((n - expected_missed))" ] || ok=1
    fi
  fi
  if [ "$workload" = w5 ]; then
    [ "$(field "$json" subscribers)" = "$k" ] || ok=1
    for metric in subscribe_us subscribe_cpu_us unsubscribe_us unsubscribe_cpu_us; do
      echo "$metric $(field "$json" $metric)"
    done
  fi
  return $ok
}

# -- all runs ---------------------------------------------------------------------
# Repetitions are interleaved (pgnotify, raw, pgnotify, raw, ...) so that a
# slow phase of the machine does not land on one client only.
run_workload() {
  local workload=$1 n=$2 k=$3 clients=$4
  wanted "$workload" || return 0
  [ -n "$before_bin" ] && [[ $workload == w[123] ]] && clients="$clients before"
  # A fresh cluster sends its first notifications in smaller pieces than a
  # warm one, and each piece costs pgnotify more than the raw loop
  # (bench/RESULTS.md): a first round of every client warms the server and is
  # not recorded.
  if [ "$smoke" = 0 ]; then
    for client in $clients; do
      echo "run.sh: $workload $client warm-up (N=$n K=$k), not recorded" >&2
      run_one "$client" "$workload" "$n" "$k" 1 "warmup-$workload"
    done
  fi
  for rep in $(seq 1 "$reps"); do
    for client in $clients; do
      echo "run.sh: $workload $client #$rep (N=$n K=$k)" >&2
      run_one "$client" "$workload" "$n" "$k" "$rep"
    done
  done
}
run_workload w1 "$n_w1" 1 "pgnotify raw helper"
run_workload w2 "$n_w2" "$k_w2" "pgnotify raw helper"
run_workload w3 "$n_w3" 1 "pgnotify raw"
run_workload w4 "$n_w4" 1 "pgnotify raw"
# w5 against its baseline: the same stream to one subscriber without the other
# channels' subscribers (w1 at w5's size), run right after it each time.
wanted w5 && for rep in $(seq 1 "$reps"); do
  echo "run.sh: w5 pgnotify #$rep (N=$n_w5 K=$k_w5), then its baseline" >&2
  run_one pgnotify w5 "$n_w5" "$k_w5" "$rep"
  run_one pgnotify w1 "$n_w5" 1 "$rep" w5base
done
run_workload idle 0 1 "pgnotify raw"

# -- report ---------------------------------------------------------------------
# median WORKLOAD CLIENT METRIC: the median over the repetitions, or "n/a".
median() {
  cat "$work/$1.$2".*.metrics 2>/dev/null | awk -v m="$3" '$1 == m { print $2 }' | sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# spread WORKLOAD CLIENT METRIC: "min–max" over the repetitions.
spread() {
  cat "$work/$1.$2".*.metrics 2>/dev/null | awk -v m="$3" '$1 == m { print $2 }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else print v[1] "–" v[NR] }'
}
# ratio A B [FORMAT]: A / B, or "n/a".
ratio() {
  awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {
    if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf f "\n", a / b }'
}
# verdict EXPRESSION: "yes" or "**no**" by awk's judgement, "n/a" if a value is missing.
verdict() {
  case "$1" in *n/a*) echo "n/a"; return ;; esac
  awk "BEGIN { print ($1) ? \"yes\" : \"**no**\" }"
}

cpu() { median "$1" "$2" cpu_per_notification; }
label="pgnotify"
[ -n "$caf_args" ] && label="pgnotify ($caf_args)"

echo
echo "### Throughput (median of $reps, and min–max; CPU = the client process's own user+sys CPU from READY to its last receipt)"
echo
echo "Counting subscribers: \"own actor\" = an actor of the bench's own that speaks the protocol"
echo "(loops over each batch, acks it); \"helper\" = pgnotify::spawn_subscriber with an"
echo "on_notification callback. The targets are judged on the own-actor rows."
echo
echo "| workload | N | subscribers | $label CPU µs/notification | raw CPU µs/notification | ratio | $label range | raw range | $label rate /s | raw rate /s | $label lag ms | raw lag ms | notifications per batch |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for spec in "w1 $n_w1 1 pgnotify" "w1 $n_w1 1 helper" "w1 $n_w1 1 before" "w2 $n_w2 $k_w2 pgnotify" \
  "w2 $n_w2 $k_w2 helper" "w2 $n_w2 $k_w2 before" "w4 $n_w4 1 pgnotify" "w5 $n_w5 $k_w5 pgnotify"; do
  read -r w n k client <<<"$spec"
  [ "$client" = before ] && [ -z "$before_bin" ] && continue
  wanted "$w" || continue
  case $w in w2) what="w2 (K=$k)" ;; w4) what="w4 (+1 stalled)" ;; w5) what="w5 ($k subs on $channels_w5 other channels)" ;; *) what=$w ;; esac
  kind="own actor"
  [ "$client" = helper ] && kind=helper
  [ "$client" = before ] && kind="own actor, before ($before_dir)"
  echo "| $what | $n | $kind | $(cpu $w $client) | $(cpu $w raw) | $(ratio "$(cpu $w $client)" "$(cpu $w raw)") |" \
    "$(spread $w $client cpu_per_notification) | $(spread $w raw cpu_per_notification) |" \
    "$(median $w $client rate) | $(median $w raw rate) | $(median $w $client lag_ms) | $(median $w raw lag_ms) |" \
    "$(median $w $client batch_size) |"
done
echo
echo "### Latency, w3 ($n_w3 single notifications, 1 ms apart; µs from the sender's clock before its statement to the receipt)"
echo
echo "| client | p50 µs | p99 µs | max µs | CPU µs/notification |"
echo "|---|---:|---:|---:|---:|"
w3_clients="pgnotify raw"
[ -n "$before_bin" ] && w3_clients="pgnotify before raw"
for client in $w3_clients; do
  name=$client
  [ $client = pgnotify ] && name=$label
  [ $client = before ] && name="before ($before_dir)"
  echo "| $name | $(median w3 $client p50_us) | $(median w3 $client p99_us) | $(median w3 $client max_us) | $(cpu w3 $client) |"
done
echo
echo "### Memory, w4 ($n_w4 notifications; a subscriber with bound $stalled_bound that processes nothing until the end)"
echo
echo "| client | RSS growth MiB | peak RSS (VmHWM) above start MiB | missed via stats | missed via lagged | expected |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| $label | $(median w4 pgnotify rss_growth_mib) | $(median w4 pgnotify hwm_growth_mib) | $(median w4 pgnotify missed_stats) | $(median w4 pgnotify missed_lagged) | $(median w4 pgnotify missed_expected) |"
echo "| raw | $(median w4 raw rss_growth_mib) | $(median w4 raw hwm_growth_mib) | - | - | - |"
echo
echo "### Subscriptions, w5 ($k_w5 subscriber actors over $channels_w5 channels; requests pipelined from one actor)"
echo
echo "| subscribe µs (wall) | subscribe µs (CPU) | unsubscribe µs (wall) | unsubscribe µs (CPU) | delivery CPU µs/notification, w5 / without the others |"
echo "|---:|---:|---:|---:|---:|"
echo "| $(median w5 pgnotify subscribe_us) | $(median w5 pgnotify subscribe_cpu_us) | $(median w5 pgnotify unsubscribe_us) | $(median w5 pgnotify unsubscribe_cpu_us) | $(cpu w5 pgnotify) / $(cpu w5base pgnotify) = $(ratio "$(cpu w5 pgnotify)" "$(cpu w5base pgnotify)") |"
echo
echo "### Idle ($idle_seconds s connected, no traffic)"
echo
echo "| client | CPU % of one core |"
echo "|---|---:|"
echo "| $label | $(median idle pgnotify cpu_pct) |"
echo "| raw | $(median idle raw cpu_pct) |"

if [ "$smoke" = 0 ]; then
  w1_ratio=$(ratio "$(cpu w1 pgnotify)" "$(cpu w1 raw)")
  w2_ratio=$(ratio "$(cpu w2 pgnotify)" "$(cpu w2 raw)")
  w5_ratio=$(ratio "$(cpu w5 pgnotify)" "$(cpu w5base pgnotify)")
  p50_gap=$(awk -v a="$(median w3 pgnotify p50_us)" -v b="$(median w3 raw p50_us)" \
    'BEGIN { if (a == "n/a" || b == "n/a") print "n/a"; else printf "%.1f\n", a - b }')
  echo
  echo "### Issue 4 targets"
  echo
  echo "| target | measured | met |"
  echo "|---|---:|:---:|"
  echo "| w1 CPU/notification ≤ 1.5 × raw | $w1_ratio × | $(verdict "\"$w1_ratio\" + 0 <= 1.5") |"
  echo "| w1 last receipt ≤ 5 ms after the last commit | $(median w1 pgnotify lag_ms) ms | $(verdict "\"$(median w1 pgnotify lag_ms)\" + 0 <= 5") |"
  echo "| w2 CPU/notification ≤ 2 × raw w2 | $w2_ratio × | $(verdict "\"$w2_ratio\" + 0 <= 2") |"
  echo "| w2 all N×K deliveries | checked in every run | $(passed w2 pgnotify) |"
  echo "| w3 p50 ≤ raw p50 + 30 µs | +$p50_gap µs | $(verdict "\"$p50_gap\" + 0 <= 30") |"
  echo "| w4 RSS growth ≤ 16 MiB | $(median w4 pgnotify rss_growth_mib) MiB | $(verdict "\"$(median w4 pgnotify rss_growth_mib)\" + 0 <= 16") |"
  echo "| w4 missed exact | $(median w4 pgnotify missed_lagged) of $(median w4 pgnotify missed_expected), checked in every run | $(passed w4 pgnotify) |"
  echo "| w5 subscribe ≤ 10 µs | $(median w5 pgnotify subscribe_us) µs | $(verdict "\"$(median w5 pgnotify subscribe_us)\" + 0 <= 10") |"
  echo "| w5 unsubscribe ≤ 10 µs | $(median w5 pgnotify unsubscribe_us) µs | $(verdict "\"$(median w5 pgnotify unsubscribe_us)\" + 0 <= 10") |"
  echo "| w5 delivery not slowed (CPU/notification ≤ 1.25 × the same stream without the others) | $w5_ratio × | $(verdict "\"$w5_ratio\" + 0 <= 1.25") |"
  echo "| idle < 1% of a core | $(median idle pgnotify cpu_pct) % | $(verdict "\"$(median idle pgnotify cpu_pct)\" + 0 < 1") |"
fi

echo
if [ $failures -ne 0 ]; then
  echo "run.sh: $failures run(s) failed" >&2
  exit 1
fi
echo "run.sh: every run's output checked: OK" >&2
