#!/usr/bin/env bash
# The event history on a big state: `events list` with each indexed filter (newest page, a page
# at a random cursor, a one-hour window) and `events show` of random deliveries, timed in
# process as the API answers them (benches/history.rs: p50, p99, max). The state is written by
# benches/gen_state.sh (1,000,000 deliveries by default) unless DIR already holds one.
# Release build.
# usage: benches/history.sh [DIR] [N] [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$(mktemp -d)/state}
n=${2:-1000000}
iterations=${3:-300}
cargo build --release --quiet --example history-bench
if [ ! -e "$dir/db" ]; then
  benches/gen_state.sh "$n" "$dir"
fi
exec target/release/examples/history-bench "$dir" "$iterations"
