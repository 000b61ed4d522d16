#!/usr/bin/env bash
# Reconcile time for 1,000 integrations against fake Zendesk accounts on loopback (see
# benches/reconcile.rs): the first pass (all created), a second (all unchanged) and one after
# 10% of the webhooks were deleted at the fakes (repaired). Release build.
# usage: benches/reconcile.sh [INTEGRATIONS [FAKES]]   (default 1000 integrations on 10 fakes)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --features test-support --bin supportopsd --example reconcile
exec target/release/examples/reconcile "${1:-1000}" "${2:-10}"
