#!/usr/bin/env bash
# Ingest benchmark: `supportopsd run` (release) with a generated repository of 1,000 rules, driven
# with unique ~1.5 KB Freshdesk deliveries (shared-secret header) by wrk at 16 and 64
# connections; then the same load against a trivial hyper server that only answers 200 (the
# ceiling). Prints events/s, p50/p99 latency, errors and peak RSS for both, and the ratio.
# Every request goes to 127.0.0.1 only. Needs wrk and curl (installed from Debian when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10s}
port=${PORT:-18081}
ceiling_port=$((port + 1))

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
# BIN=path/to/supportopsd measures another build (e.g. the one before a change, in the same run).
if [ -z "${BIN:-}" ] || [ ! -x "$PWD/target/release/examples/trivial-server" ]; then
  cargo build --release --quiet --bin supportopsd --example trivial-server
fi
bin=${BIN:-$PWD/target/release/supportopsd}
ceiling=$PWD/target/release/examples/trivial-server

dir=$(mktemp -d)
pids=()
# Each process is waited for before its directory goes: a daemon still stopping (it flushes
# and reopens its state) must not have the state removed under it, nor overlap the next run.
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

python3 benches/gen_repo.py "$dir/repo" 1000 1000
git -C "$dir/repo" init -q && git -C "$dir/repo" add -A && git -C "$dir/repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm bench

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
# utime + stime of a process and its threads, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

drive() { # name url connections pid
  local cpu0 cpu1 out
  cpu0=$(cpu_ticks "$4")
  out=$(wrk -t2 -c"$3" -d"$duration" --latency -s benches/freshdesk.lua "$2" | grep '^RESULT')
  cpu1=$(cpu_ticks "$4")
  # CPU time of the server per request: steadier than requests/s on a busy machine.
  local per
  per=$(awk -v t=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" -v o="$out" -v d="${duration%s}" \
    'BEGIN { match(o, /rps=[0-9]+/); r = substr(o, RSTART + 4, RLENGTH - 4) * d;
             printf "%.0f", (r > 0 ? t / hz / r * 1e6 : 0) }')
  echo "$1 c=$3 ${out#RESULT } cpu_us_per_request=$per"
}

FD_HOOK=bench-secret SUPPORTOPSD_LOG=error "$bin" --repo "$dir/repo" --state "$dir/state" \
  run --listen "127.0.0.1:$port" --max-queue 100000000 >/dev/null &
pids+=($!); daemon=$!
wait_port "$port"
# Idle means after the first revision is in use and the start-up work has settled.
for _ in $(seq 1 600); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; then break; fi
  sleep 0.05
done
sleep 2
echo "supportopsd idle RSS: $(( $(rss_kb "$daemon") / 1024 )) MB"
d16=$(drive supportopsd "http://127.0.0.1:$port" 16 "$daemon"); echo "$d16"
d64=$(drive supportopsd "http://127.0.0.1:$port" 64 "$daemon"); echo "$d64"
echo "supportopsd peak RSS: $(( $(hwm_kb "$daemon") / 1024 )) MB"
kill "$daemon"
wait "$daemon" || echo "supportopsd exited with status $? when stopped" >&2
# DAEMON_ONLY=1: no ceiling run (benches/ingest_compare.sh alternates builds with it).
if [ -n "${DAEMON_ONLY:-}" ]; then exit 0; fi

"$ceiling" "127.0.0.1:$ceiling_port" >/dev/null &
pids+=($!); trivial=$!
wait_port "$ceiling_port"
t16=$(drive trivial "http://127.0.0.1:$ceiling_port" 16 "$trivial"); echo "$t16"
t64=$(drive trivial "http://127.0.0.1:$ceiling_port" 64 "$trivial"); echo "$t64"
echo "trivial peak RSS: $(( $(hwm_kb "$trivial") / 1024 )) MB"

ratio() { # daemon-line trivial-line
  local a b
  a=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$1"); b=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$2")
  awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f%%", (b > 0 ? 100 * a / b : 0) }'
}
echo "ratio at 16 connections: $(ratio "$d16" "$t16") of the trivial server"
echo "ratio at 64 connections: $(ratio "$d64" "$t64") of the trivial server"
