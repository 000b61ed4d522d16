#!/usr/bin/env bash
# Unauthenticated floods (issue 15, boundary 5), loopback only, bounded in count and time.
# For each binary (BIN, default this tree's debug build; BASE_BIN too when set, e.g. a build of
# the previous commit, so that one run gives before and after):
#  1. SEC-08: FORGED (default 10000) Zendesk deliveries with a bad signature on keep-alive
#     connections; then counts the `event_rejected` audit records, the refusals they count, the
#     refusals the metrics count, and how much the state directory grew.
#  2. SEC-07: CONNS (default 1024, the default --max-connections) connections, each pipelining
#     `GET /metrics` requests and never reading an answer; then probes `GET /healthz` on a fresh
#     connection every second for WATCH seconds (default 40, 3 s per probe) and reports when it
#     was first answered (the daemon's --read-timeout is the default 10 s).
# Needs python3. Prints one block per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
forged=${FORGED:-10000}
conns=${CONNS:-1024}
watch=${WATCH:-40}
port=${PORT:-18191}

if [ -z "${BIN:-}" ]; then
  cargo build --quiet --bin supportopsd
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/supportopsd
fi
ulimit -n 8192 2>/dev/null || true

dir=$(mktemp -d)
daemon=
cleanup() { if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT

repo=$dir/repo
mkdir -p "$repo/integrations"
cat >"$repo/integrations/zendesk.toml" <<'EOF'
id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
[webhook]
events = ["ticket.created"]
secret = { env = "ZD_WEBHOOK_SECRET" }
[endpoint]
base_url = "http://127.0.0.1:9"
EOF
cat >"$dir/policy.toml" <<'EOF'
[endpoints]
allow = ["127.0.0.1:9"]
EOF
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm bench

start_daemon() { # binary state
  ZD_TOKEN=t ZD_WEBHOOK_SECRET=the-real-secret SUPPORTOPSD_LOG=error \
    "$1" --repo "$repo" --state "$2" run --listen "127.0.0.1:$port" --policy "$dir/policy.toml" \
    --no-watch >/dev/null &
  daemon=$!
  for _ in $(seq 200); do
    if python3 - "$port" <<'EOF' 2>/dev/null; then return; fi
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=1)
c.request("GET", "/readyz")
sys.exit(0 if c.getresponse().status == 200 else 1)
EOF
    sleep 0.1
  done
  echo "the daemon did not become ready" >&2
  exit 1
}

stop_daemon() {
  kill "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  daemon=
}

measure() { # label binary
  echo "== $1: $2"
  local state=$dir/state-$1
  start_daemon "$2" "$state"
  local before
  before=$(du -sb "$state" | cut -f1)
  python3 - "$port" "$forged" <<'EOF'
import http.client, json, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
t0 = time.time()
for i in range(n):
    c.request("POST", "/api/webhooks/zendesk/zendesk-main", body=b'{"forged": %d}' % i,
              headers={"content-type": "application/json",
                       "x-zendesk-webhook-signature-timestamp": ts,
                       "x-zendesk-webhook-signature": "Zm9yZ2Vk"})
    r = c.getresponse(); r.read()
    assert r.status == 401, r.status
took = time.time() - t0
c.request("GET", "/api/audit/logs?resource_type=integration&resource_id=zendesk-main&limit=10000")
recs = [r for r in json.loads(c.getresponse().read())["records"] if r["kind"]["type"] == "event_rejected"]
counted = sum(r["detail"].get("count", 1) for r in recs)
c.request("GET", "/metrics")
metric = sum(float(l.rsplit(" ", 1)[1]) for l in c.getresponse().read().decode().splitlines()
             if l.startswith("supportopsd_events_rejected_total{") and 'reason="bad_signature"' in l)
print(f"SEC-08: {n} forged deliveries in {took:.1f} s -> {len(recs)} audit records "
      f"counting {counted}; metrics count {metric:.0f}")
EOF
  sleep 1
  local after
  after=$(du -sb "$state" | cut -f1)
  echo "SEC-08: state directory grew by $(( (after - before) / 1024 )) KiB"
  python3 - "$port" "$conns" "$watch" <<'EOF'
import errno, socket, sys, time, http.client
port, n, watch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
batch = b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n" * 100
socks = []
t0 = time.time()
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close(); continue
    s.setblocking(False)
    socks.append(s)
# Pipeline until each socket stops taking requests (bounded: 2 MiB and 5 rounds each).
sent = {id(s): 0 for s in socks}
for _ in range(5):
    for s in socks:
        while sent[id(s)] < 2 * 1024 * 1024:
            try:
                sent[id(s)] += s.send(batch)
            except BlockingIOError:
                break
            except OSError:
                break
    time.sleep(0.5)
print(f"SEC-07: {len(socks)} pipelining connections that never read, "
      f"{sum(sent.values()) // 1024} KiB of requests sent in {time.time() - t0:.1f} s")
start = time.time()
first = None
answered = 0
probes = 0
while time.time() - start < watch:
    probes += 1
    p0 = time.time()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        c.request("GET", "/healthz")
        ok = c.getresponse().status == 200
        c.close()
    except OSError:
        ok = False
    if ok:
        answered += 1
        if first is None:
            first = time.time() - start
    time.sleep(max(0.0, 1.0 - (time.time() - p0)))
print(f"SEC-07: /healthz answered {answered} of {probes} probes in {watch} s; "
      + (f"first answer after {first:.1f} s" if first is not None else "never answered"))
for s in socks:
    s.close()
EOF
  stop_daemon
}

if [ -n "${BASE_BIN:-}" ]; then measure before "$BASE_BIN"; fi
measure after "$BIN"
