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
for which in old new; do
  for c in 16 64; do
    grep "^$which pair=[0-9]* supportopsd c=$c " "$out" | awk -v w="$which" -v c="$c" '
      { match($0, /rps=[0-9]+/); r[NR] = substr($0, RSTART + 4, RLENGTH - 4) + 0;
        match($0, /cpu_us_per_request=[0-9]+/); u[NR] = substr($0, RSTART + 19, RLENGTH - 19) + 0 }
      END { n = asort(r); asort(u); m = int((n + 1) / 2);
            printf "%s %d %d %d %d\n", w, c, r[m], u[m], n }'
  done
done
