#!/usr/bin/env bash
# Soak: the release daemon under a sustained load of Freshdesk deliveries (half of them posted to
# a fake Slack by a rule) with short retention settings, so that many retention windows pass
# within minutes; prints deliveries, p50/p99 acknowledgement latency, state size on disk, RSS and
# messages per minute, then checks that every acknowledged urgent delivery became exactly one
# message and that disk and RSS were flat after the warm-up (see benches/soak.rs).
# usage: benches/soak.sh [MINUTES [RATE]]   (default 10 minutes at 100 deliveries/s)
# env: SOAK_RETENTION (1m), SOAK_WARMUP (3 minutes), SOAK_TOLERANCE (0.25), SOAK_KEEP=1,
#      SOAK_RESTART_EVERY (minutes between clean restarts of the daemon; 0, never),
#      BIN=path/to/supportopsd to soak another build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin supportopsd
fi
cargo build --release --quiet --features test-support --example soak
exec target/release/examples/soak "${BIN:-$PWD/target/release/supportopsd}" "${1:-10}" "${2:-100}"
