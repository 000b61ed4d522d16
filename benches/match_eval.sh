#!/usr/bin/env bash
# Condition evaluation through the explaining walk vs the direct recursion it replaced
# (issue 18 item 4): median ns per (condition, context) evaluation in alternating rounds, and
# the cost of an explanation. A ratio near 1.00 means matching did not get slower.
# usage: benches/match_eval.sh   (ROUNDS=15 ITERATIONS=20000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example match-eval
"${CARGO_TARGET_DIR:-target}/release/examples/match-eval"
