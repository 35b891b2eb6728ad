#!/usr/bin/env bash
# HTTP benchmark: bare axum, ours and tower-sessions under wrk on 127.0.0.1,
# the server pinned to core 0 (one tokio thread), wrk to core 1. Each round
# runs every app once per scenario, in an order rotated by the round, and
# each ratio to bare is taken within one round; the summary is the median
# over rounds. Then memory per session and latency while the store grows.
#
#   benches/http.sh                  # the full run (about 15 minutes)
#   QUICK=1 benches/http.sh          # a smoke run (about 2 minutes)
#
# Settings (environment): DURATION (s per run, 10), ROUNDS (5), CONNECTIONS
# (32), SCENARIOS ("read write create"), MEMORY_SESSIONS (100000), GROW
# (requests of the growth test, 1000000; 0 skips it), PORT (3100), OUT (a
# file for the markdown tables, besides stdout), GROW_RUNS (runs of the
# in-process growth test, 3), BUDGET (busy-wait times in ns for the
# calibration of bare axum, "250 500 1000 1500"; empty skips it),
# BUDGET_ROUNDS (3).
#
# Only 127.0.0.1; every loop is bounded; the script kills only the servers
# it started, by pid.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${QUICK:-}" ]]; then
  : "${DURATION:=3}" "${ROUNDS:=2}" "${GROW:=200000}" "${MEMORY_SESSIONS:=20000}" "${BUDGET_ROUNDS:=1}"
fi
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-32}
SCENARIOS=${SCENARIOS:-"read write create"}
MEMORY_SESSIONS=${MEMORY_SESSIONS:-100000}
GROW=${GROW:-1000000}
GROW_RUNS=${GROW_RUNS:-3}
BUDGET=${BUDGET-250 500 1000 1500}
BUDGET_ROUNDS=${BUDGET_ROUNDS:-3}
PORT=${PORT:-3100}
OUT=${OUT:-/dev/null}
MODES=(bare ours tower-sessions)
SERVER_CORE=0
CLIENT_CORE=1

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
command -v taskset >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux; }
command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl; }
cargo build --release --quiet --example bench_server --example bench_load --example bench_memory --example bench_growth
BIN="$CARGO_TARGET_DIR/release/examples"

server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

start_server() { # mode [more bench_server arguments]
  taskset -c "$SERVER_CORE" "$BIN/bench_server" --mode "$1" --port "$PORT" "${@:2}" 2>/dev/null &
  server_pid=$!
  for _ in $(seq 1 100); do
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT/plain"; then return 0; fi
    sleep 0.1
  done
  echo "bench_server --mode $1 did not come up" >&2
  exit 1
}

# The session cookie `name=value` from /signin; bare gets a value of the
# same length, so every app parses the same request.
session_cookie() { # mode
  if [[ "$1" == bare || "$1" == handle-only ]]; then
    printf 'id=%s' "$(printf 'A%.0s' $(seq 1 64))"
  else
    curl -sf -D - -o /dev/null "http://127.0.0.1:$PORT/signin" \
      | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: *\([^;]*\).*/\1/p' | head -1
  fi
}

to_us() { # wrk's "1.23ms" → microseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); print v + 0 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000000 }
    else print v + 0 }'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
TICKS_PER_S=$(getconf CLK_TCK)

# One wrk run; prints "req_per_s p50_us p99_us req_per_server_cpu_s". The
# last one divides the requests by the CPU time the server used: unlike
# req/s it does not drop when another process takes the server's core.
run_wrk() { # mode scenario
  local cookie="" header=()
  if [[ "$2" != create ]]; then
    cookie=$(session_cookie "$1")
    [[ -n "$cookie" ]] || { echo "no session cookie from $1" >&2; exit 1; }
    header=(-H "Cookie: $cookie")
  fi
  local out t0 t1
  t0=$(cpu_ticks)
  out=$(taskset -c "$CLIENT_CORE" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${header[@]}" \
    "http://127.0.0.1:$PORT/$2")
  t1=$(cpu_ticks)
  local rps p50 p99 total cpu
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  if grep -q 'Non-2xx' <<<"$out"; then echo "wrk saw errors for $1 $2:" >&2; echo "$out" >&2; exit 1; fi
  total=$(awk '/ requests in / {print $1}' <<<"$out")
  cpu=$(awk -v n="$total" -v t="$((t1 - t0))" -v hz="$TICKS_PER_S" 'BEGIN { printf "%.0f", (t > 0 ? n * hz / t : 0) }')
  echo "$rps $p50 $p99 $cpu"
}

median() { sort -g | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

emit() { echo "$*"; echo "$*" >>"$OUT"; }

emit "# HTTP benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
emit ""
emit "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
emit "wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds, server on core $SERVER_CORE (1 tokio thread), wrk on core $CLIENT_CORE"
emit ""

declare -A RATIOS CPURATIOS
for scenario in $SCENARIOS; do
  emit "## $scenario"
  emit ""
  emit "| round | app | req/s | p50 µs | p99 µs | ratio to bare | req per server CPU-s | CPU ratio to bare |"
  emit "|---|---|---|---|---|---|---|---|"
  for round in $(seq 1 "$ROUNDS"); do
    declare -A RPS=()
    declare -A CPU=()
    declare -A LINE=()
    # Rotate the order: round 1 bare, ours, ts; round 2 ours, ts, bare; …
    for i in 0 1 2; do
      mode=${MODES[$(((i + round - 1) % 3))]}
      start_server "$mode"
      read -r rps p50 p99 cpu < <(run_wrk "$mode" "$scenario")
      stop_server
      RPS[$mode]=$rps
      CPU[$mode]=$cpu
      LINE[$mode]="$p50 $p99"
    done
    for mode in "${MODES[@]}"; do
      ratio=$(awk -v a="${RPS[$mode]}" -v b="${RPS[bare]}" 'BEGIN { printf "%.3f", a / b }')
      cratio=$(awk -v a="${CPU[$mode]}" -v b="${CPU[bare]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
      read -r p50 p99 <<<"${LINE[$mode]}"
      emit "| $round | $mode | ${RPS[$mode]} | $p50 | $p99 | $ratio | ${CPU[$mode]} | $cratio |"
      RATIOS[$scenario,$mode]+="$ratio "
      CPURATIOS[$scenario,$mode]+="$cratio "
    done
  done
  emit ""
done

emit "## summary: median ratio to bare over $ROUNDS rounds"
emit ""
emit "| scenario | ours / bare | tower-sessions / bare | ours / tower-sessions | CPU-normalized: ours / bare | tower-sessions / bare |"
emit "|---|---|---|---|---|---|"
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
for scenario in $SCENARIOS; do
  o=$(med "${RATIOS[$scenario,ours]}")
  t=$(med "${RATIOS[$scenario,tower-sessions]}")
  co=$(med "${CPURATIOS[$scenario,ours]}")
  ct=$(med "${CPURATIOS[$scenario,tower-sessions]}")
  emit "| $scenario | $(printf %.3f "$o") | $(printf %.3f "$t") | $(awk -v o="$o" -v t="$t" 'BEGIN { printf "%.2f", o / t }') | $(printf %.3f "$co") | $(printf %.3f "$ct") |"
done
emit ""

if [[ -n "$BUDGET" ]]; then
  emit "## budget: bare axum whose handlers busy-wait N ns (/read with a cookie, $BUDGET_ROUNDS rounds)"
  emit ""
  emit "What a layer that adds N ns of CPU time per request costs over HTTP on"
  emit "this machine, kernel effects included: the time a layer may take for a"
  emit "given ratio to bare. \`handle-only\` is a layer that only hands each"
  emit "request a lockable handle through the extensions, which its handler"
  emit "extracts: the least any session middleware costs in axum."
  emit ""
  emit "| round | spin ns | req/s | ratio to spin 0 |"
  emit "|---|---|---|---|"
  spins=(0 $BUDGET handle-only)
  declare -A BRATIOS=() BRPS=()
  for round in $(seq 1 "$BUDGET_ROUNDS"); do
    declare -A R=()
    for i in $(seq 0 $((${#spins[@]} - 1))); do
      spin=${spins[$(((i + round - 1) % ${#spins[@]}))]}
      if [[ $spin == handle-only ]]; then start_server handle-only; else start_server bare --spin-ns "$spin"; fi
      read -r rps _ < <(run_wrk bare read)
      stop_server
      R[$spin]=$rps
    done
    for spin in "${spins[@]}"; do
      ratio=$(awk -v a="${R[$spin]}" -v b="${R[0]}" 'BEGIN { printf "%.3f", a / b }')
      emit "| $round | $spin | ${R[$spin]} | $ratio |"
      BRATIOS[$spin]+="$ratio "
      BRPS[$spin]+="${R[$spin]} "
    done
  done
  emit ""
  emit "| spin ns | median ratio | median µs per request | µs over spin 0 |"
  emit "|---|---|---|---|"
  base_us=$(awk -v r="$(med "${BRPS[0]}")" 'BEGIN { printf "%.3f", 1e6 / r }')
  for spin in "${spins[@]}"; do
    us=$(awk -v r="$(med "${BRPS[$spin]}")" 'BEGIN { printf "%.3f", 1e6 / r }')
    emit "| $spin | $(printf %.3f "$(med "${BRATIOS[$spin]}")") | $us | $(awk -v a="$us" -v b="$base_us" 'BEGIN { printf "%.3f", a - b }') |"
  done
  emit ""
fi

if [[ "$MEMORY_SESSIONS" -gt 0 ]]; then
  emit "## memory per session ($MEMORY_SESSIONS small sessions: \`user\` and a counter)"
  emit ""
  emit "| app | peak RSS delta | per session (peak) | RSS delta | per session (RSS) |"
  emit "|---|---|---|---|---|"
  for mode in ours tower-sessions; do
    line=$(taskset -c "$SERVER_CORE" "$BIN/bench_memory" --mode "$mode" --sessions "$MEMORY_SESSIONS")
    field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
    emit "| $mode | $(field peak_rss_delta_bytes) B | $(field per_session_peak) B | $(field rss_delta_bytes) B | $(field per_session_rss) B |"
  done
  emit ""
fi

if [[ "$GROW" -gt 0 ]]; then
  emit "## latency while the store grows to $GROW sessions (/create, $CONNECTIONS connections, blocks of 10000 requests)"
  emit ""
  emit "| app | req/s | worst block p99 µs | max µs | requests over 5 ms |"
  emit "|---|---|---|---|---|"
  for mode in "${MODES[@]}"; do
    start_server "$mode"
    log="$CARGO_TARGET_DIR/bench-grow-$mode.log"
    taskset -c "$CLIENT_CORE" "$BIN/bench_load" --port "$PORT" --path /create --requests "$GROW" \
      --connections "$CONNECTIONS" --block 10000 --max-seconds 600 >"$log"
    stop_server
    s=$(grep '^summary' "$log")
    field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$s"; }
    emit "| $mode | $(field req_per_s) | $(field worst_block_p99_us) | $(field max_us) | $(field over_5ms) |"
  done
  emit ""
  emit "Per-block latencies: \`$CARGO_TARGET_DIR/bench-grow-<app>.log\`."
  emit ""
  emit "## the same growth in process, $GROW_RUNS runs, per block the smallest p99/max over the runs"
  emit ""
  emit "One thread, \`/create\` through the layer with \`oneshot\`, every request timed; a stall of the table recurs at the same block every run, a preemption by another process does not."
  emit ""
  emit "| app | req/s (best run) | worst block p99 µs | worst block max µs | blocks with max over 5 ms |"
  emit "|---|---|---|---|---|"
  for mode in ours tower-sessions; do
    log="$CARGO_TARGET_DIR/bench-growth-inprocess-$mode.log"
    taskset -c "$SERVER_CORE" "$BIN/bench_growth" --mode "$mode" --sessions "$GROW" --runs "$GROW_RUNS" >"$log"
    s=$(grep '^summary' "$log")
    field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$s"; }
    emit "| $mode | $(field req_per_s) | $(field worst_block_p99_us) | $(field worst_block_max_us) | $(field blocks_over_5ms) |"
  done
  emit ""
  emit "Per-block latencies: \`$CARGO_TARGET_DIR/bench-growth-inprocess-<app>.log\`."
fi
emit ""
emit "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
