#!/usr/bin/env bash
# A state of N stored deliveries (benches/gen_state.rs: a realistic mix of platforms, rules,
# done, queued, retrying and dead-lettered jobs, audit records), written through the state
# module's public API; prints how long it took and the state's size. Release build.
# usage: benches/gen_state.sh N DIR [RATE]      write N deliveries (RATE a second, default 10,
#                                               ending now) into DIR
#        benches/gen_state.sh --journal M DIR   leave M journaled deliveries not yet in sled in
#                                               DIR, as a crash would
#        benches/gen_state.sh --open DIR        time opening DIR and replaying its journal
# AUDIT_MAX_RECORDS=N bounds the audit records as the daemon's --audit-max-records does
# (default 1,000,000; 0 keeps all, about 3 a delivery). CRASH=1 leaves out the snapshot a clean
# stop writes at the end (the state a killed daemon leaves: sled writes one every 25,000 deliveries).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example gen-state
bin=target/release/examples/gen-state
case "${1:-}" in
  --journal) exec "$bin" journal "${2:?M}" "${3:?DIR}" ;;
  --open) exec "$bin" open "${2:?DIR}" ;;
  *) exec "$bin" generate "${1:?N}" "${2:?DIR}" ${3:+"$3"} ;;
esac
