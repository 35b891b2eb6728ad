#!/usr/bin/env bash
# Where a request's time goes over HTTP, per category (kernel, hyper, our
# crate, SHA-256, JSON, malloc...), for bare axum, ours and tower-sessions:
# the profile behind the floors in BENCHMARKS.md.
#
#   benches/profile.sh                   # read, write and create (about 2 minutes)
#   SCENARIOS=read benches/profile.sh
#
# Each app runs as examples/bench_server on core 0 (one tokio thread, line
# tables for symbols), wrk loads it from core 1, and `perf record` samples
# the server for 5 s. benches/support/categories.py turns the samples and
# wrk's rate into microseconds per request.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk curl perf python3; do
    command -v "$tool" >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk curl linux-perf python3
        break
    }
done
SCENARIOS=${SCENARIOS:-"read write create"}
PORT=${PORT:-3190}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --quiet --example bench_server
BIN="$CARGO_TARGET_DIR/release/examples/bench_server"
tmp=$(mktemp -d)
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

echo "# Profile over HTTP, $(date -u +%FT%RZ), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for scenario in $SCENARIOS; do
    args=()
    for mode in bare ours tower-sessions; do
        taskset -c 0 "$BIN" --mode "$mode" --port "$PORT" 2>/dev/null &
        pid=$!
        for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/plain" && break; sleep 0.05; done
        if [[ $mode == bare ]]; then
            cookie="id=$(printf 'x%.0s' $(seq 1 64))"
        else
            cookie=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$PORT/signin" |
                awk 'tolower($1) == "set-cookie:" {sub(/;.*/, "", $2); print $2; exit}' | tr -d '\r')
        fi
        header=(); [[ $scenario != create ]] && header=(-H "Cookie: $cookie")
        taskset -c 1 wrk -t1 -c32 -d9s "${header[@]}" "http://127.0.0.1:$PORT/$scenario" >"$tmp/wrk" &
        wrk_pid=$!
        sleep 2
        perf record -q -F 1999 -e cpu-clock -p "$pid" -o "$tmp/$mode-$scenario.data" -- sleep 5 >/dev/null 2>&1
        wait "$wrk_pid"
        kill "$pid"; wait "$pid" 2>/dev/null || true
        pid=
        args+=("$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk"):$tmp/$mode-$scenario.data")
    done
    echo
    echo "## $scenario (µs per request)"
    echo
    python3 benches/support/categories.py "${args[@]}"
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
