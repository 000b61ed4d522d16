#!/usr/bin/env bash
# Ingest cost of two builds, measured alternately in the same run (A B A B …), so that a busy
# machine slows both alike: benches/ingest.sh with DAEMON_ONLY=1 for each, PAIRS times.
# Prints every run's line and, per build and connection count, the median events/s and CPU µs
# per event.
# usage: benches/ingest_compare.sh OLD_BIN NEW_BIN [PAIRS]   (default 3 pairs; DURATION=10s)
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: ingest_compare.sh OLD_BIN NEW_BIN [PAIRS]}
new=${2:?usage: ingest_compare.sh OLD_BIN NEW_BIN [PAIRS]}
pairs=${3:-3}
cargo build --release --quiet --example trivial-server
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$pairs"); do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    BIN=$bin DAEMON_ONLY=1 benches/ingest.sh | grep '^supportopsd c=' | sed "s/^/$which pair=$i /" | tee -a "$out"
  done
done
echo
echo "build connections median_events_per_s median_cpu_us_per_event runs"
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
for which in old new; do
  for c in 16 64; do
    lines=$(grep "^$which pair=[0-9]* supportopsd c=$c " "$out" || true)
    rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$lines" | median)
    cpu=$(sed -E 's/.*cpu_us_per_request=([0-9]+).*/\1/' <<<"$lines" | median)
    echo "$which $c $rps $cpu $(grep -c . <<<"$lines")"
  done
done
