#!/usr/bin/env bash
# Instructions and heap allocations per request, in process, under valgrind:
# numbers that do not move with the machine's load (BENCHMARKS.md).
#
#   benches/count.sh                       # every scenario, all three apps
#   SCENARIOS="read write" benches/count.sh
#
# Each app runs N1 and then N2 requests of a scenario (examples/bench_count.rs);
# the difference divided by N2 - N1 leaves out start-up and sign-in.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
TARGET=${CARGO_TARGET_DIR:-target}
SCENARIOS=${SCENARIOS:-"plain cookie_untouched read write create"}
MODES=${MODES:-"bare ours tower-sessions"}
N1=${N1:-500}
N2=${N2:-1500}
cargo build --release --quiet --example bench_count
BIN="$TARGET/release/examples/bench_count"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ir() { # mode scenario n -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" "$BIN" "$1" "$2" "$3" 2>/dev/null
    awk '/^summary:/ {print $2}' "$tmp/cg"
}
blocks() { # mode scenario n -> heap blocks allocated
    valgrind --tool=dhat --dhat-out-file=/dev/null "$BIN" "$1" "$2" "$3" 2>&1 |
        awk '/Total:/ {gsub(",", "", $0); for (i = 1; i <= NF; i++) if ($i == "in") {print $(i + 1); exit}}'
}

echo "| scenario | app | instructions per request | heap allocations per request |"
echo "|---|---|---|---|"
for scenario in $SCENARIOS; do
    for mode in $MODES; do
        i1=$(ir "$mode" "$scenario" "$N1"); i2=$(ir "$mode" "$scenario" "$N2")
        b1=$(blocks "$mode" "$scenario" "$N1"); b2=$(blocks "$mode" "$scenario" "$N2")
        awk -v s="$scenario" -v m="$mode" -v i1="$i1" -v i2="$i2" -v b1="$b1" -v b2="$b2" -v n="$((N2 - N1))" \
            'BEGIN { printf "| %s | %s | %d | %.1f |\n", s, m, (i2 - i1) / n, (b2 - b1) / n }'
    done
done
