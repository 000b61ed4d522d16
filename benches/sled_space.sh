#!/usr/bin/env bash
# Does sled give disk space back? Writes N payloads under time-ordered keys with sled opened as
# src/state opens it, deletes the oldest 90 % (key by key, or as whole trees), writes again, and
# prints the state directory's size after each step (see benches/sled_space.rs and
# docs/state-retention.md). Needs about 2 x N x PAYLOAD bytes free under DIR.
# The sizes do not depend on the build; the dev build is the default because it needs no release
# build of the whole crate (PROFILE=release for timings).
# usage: [PROFILE=release] benches/sled_space.sh [N [PAYLOAD_BYTES [DIR]]]   (default 100000 x 5000 bytes)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-dev}"
cargo build --quiet --profile "$profile" --example sled-space
dir="$profile"; [ "$profile" = dev ] && dir=debug
exec "${CARGO_TARGET_DIR:-target}/$dir/examples/sled-space" "$@"
