#!/usr/bin/env bash
# Ingest cost of two or more builds, measured alternately in the same run (A B A B …, or A B C
# A B C …), so that a busy machine slows them alike: benches/ingest.sh with DAEMON_ONLY=1 for
# each, ROUNDS times. Prints every run's line and, per build and connection count, the median
# events/s and CPU µs per event.
# usage: benches/ingest_compare.sh OLD_BIN NEW_BIN [ROUNDS]
#        benches/ingest_compare.sh LABEL=BIN LABEL=BIN [LABEL=BIN …] [ROUNDS]
# (default 3 rounds; DURATION=10s). Unlabelled builds are "old" and "new" (two builds) or
# build1, build2, … (more).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: ingest_compare.sh OLD_BIN NEW_BIN [ROUNDS] | LABEL=BIN LABEL=BIN [LABEL=BIN ...] [ROUNDS]"
rounds=3
args=("$@")
if [ ${#args[@]} -gt 0 ] && [[ ${args[-1]} =~ ^[0-9]+$ ]]; then
  rounds=${args[-1]}
  unset 'args[-1]'
fi
[ ${#args[@]} -ge 2 ] || { echo "$usage" >&2; exit 2; }
labels=()
bins=()
for i in "${!args[@]}"; do
  a=${args[$i]}
  if [[ $a == *=* ]]; then
    labels+=("${a%%=*}")
    bins+=("${a#*=}")
  else
    if [ ${#args[@]} -eq 2 ]; then
      labels+=("$([ "$i" -eq 0 ] && echo old || echo new)")
    else
      labels+=("build$((i + 1))")
    fi
    bins+=("$a")
  fi
done
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
done
cargo build --release --quiet --example trivial-server
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for i in "${!bins[@]}"; do
    BIN=${bins[$i]} DAEMON_ONLY=1 benches/ingest.sh | grep '^supportopsd c=' \
      | sed "s/^/${labels[$i]} pair=$r /" | tee -a "$out"
  done
done
echo
echo "build connections median_events_per_s median_cpu_us_per_event runs"
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
for label in "${labels[@]}"; do
  for c in 16 64; do
    lines=$(grep "^$label pair=[0-9]* supportopsd c=$c " "$out" || true)
    rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$lines" | median)
    cpu=$(sed -E 's/.*cpu_us_per_request=([0-9]+).*/\1/' <<<"$lines" | median)
    echo "$label $c $rps $cpu $(grep -c . <<<"$lines")"
  done
done
