#!/usr/bin/env bash
# Server-side render time of every console page (/ui/) on a big state, and the console's share of
# the stripped binary (issue 20). Release build.
#
# 1. The fixture (in $DATA, default target/console-bench; several GB): a manifest
#    repository of INTEGRATIONS integrations of every platform and RULES rules
#    (benches/gen_repo.py --mixed, committed), and a state of EVENTS deliveries of those
#    integrations, matched against those rules by the daemon's own selection, with the rollups,
#    dead letters, audit records, registrations and health a daemon would have left
#    (benches/gen_state.rs `world`). Every integration's endpoint is http://127.0.0.1:9, where
#    nothing listens; the host policy written here allows it, so the daemon never reaches a real
#    platform (its connection checks and the fixture's queued jobs fail there, and are retried,
#    in the background: an outage, a pessimistic load for the pages).
# 2. `supportopsd run` on it (admin token from the environment, on 127.0.0.1:$PORT), a login at
#    POST /ui/login, then every page (several URLs each) requested RUNS times after one warm-up,
#    over one keep-alive connection: the server-side render time from the `Server-Timing: render`
#    header and the total response time seen by the client (median, p95, max), each page over
#    100 ms flagged; the JSON API's equivalents for comparison (total time). Measured under
#    `flock /tmp/s7/bench.lock`. Results also in $DATA/results.json.
# 3. The stripped binary (`strip -o`) against the same without the console: BASE_REV (default
#    fa11203, the commit before the console), built from `git archive` in $DATA/base-src with the
#    same target directory (dependencies shared), cached in $DATA/bin.
#
# usage: benches/console.sh [--reuse] [--size-only] [--no-size]
#   --reuse      reuse the fixture in $DATA if complete (as the last run left it: the daemon's
#                own writes included); without it the fixture is generated anew
#   --size-only  only the binary sizes
#   --no-size    no binary sizes
# env: EVENTS (1000000), INTEGRATIONS (1000), RULES (10000), RUNS (20), PORT (18480),
#      SETTLE (seconds to let the daemon's start-up work go before measuring, 60), DATA, BASE_REV
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
reuse=0 size=1 pages=1
for a in "$@"; do
  case "$a" in
    --reuse) reuse=1 ;;
    --size-only) pages=0 ;;
    --no-size) size=0 ;;
    *) echo "usage: $0 [--reuse] [--size-only] [--no-size]" >&2; exit 2 ;;
  esac
done
events=${EVENTS:-1000000}
integrations=${INTEGRATIONS:-1000}
rules=${RULES:-10000}
runs=${RUNS:-20}
port=${PORT:-18480}
settle=${SETTLE:-60}
data=${DATA:-$root/target/console-bench}
base_rev=${BASE_REV:-fa11203}
mkdir -p "$data/bin"

cargo build --release --quiet --bin supportopsd --example gen-state
bin=${CARGO_TARGET_DIR:-$root/target}/release/supportopsd
cp "$bin" "$data/bin/supportopsd"

if [ "$size" = 1 ]; then
  base="$data/bin/supportopsd-$base_rev.stripped"
  if [ ! -s "$base" ]; then
    echo "building $base_rev (the binary without the console) from git archive..."
    rm -rf "$data/base-src"
    mkdir -p "$data/base-src"
    git archive "$base_rev" | tar -x -C "$data/base-src"
    # The same target directory: the dependencies are built once for both.
    target=${CARGO_TARGET_DIR:-$root/target}
    (cd "$data/base-src" && CARGO_TARGET_DIR=$target cargo build --release --quiet --bin supportopsd)
    strip -o "$base" "$target/release/supportopsd"
    rm -rf "$data/base-src"
    # The build above left the base binary in the shared target directory: put ours back.
    cargo build --release --quiet --bin supportopsd
  fi
  strip -o "$data/bin/supportopsd.stripped" "$bin"
  head_size=$(stat -c %s "$data/bin/supportopsd.stripped")
  base_size=$(stat -c %s "$base")
  diff=$((head_size - base_size))
  budget=$((3 * 1000 * 1000))
  verdict="within"
  [ "$diff" -lt "$budget" ] || verdict="OVER"
  printf 'stripped binary: %s %d bytes; %s (without the console) %d bytes; the console adds %d bytes (%.2f MB): %s the 3 MB budget\n' \
    "$(git rev-parse --short HEAD)" "$head_size" "$base_rev" "$base_size" "$diff" \
    "$(echo "$diff / 1000000" | bc -l)" "$verdict"
fi
[ "$pages" = 1 ] || exit 0

# --- the fixture ---
repo=$data/repo state=$data/state
if [ "$reuse" = 1 ] && [ -f "$data/complete" ]; then
  echo "reusing the fixture in $data ($(cat "$data/complete"))"
else
  rm -rf "$repo" "$state" "$data/complete"
  start=$(date +%s.%N)
  python3 benches/gen_repo.py --mixed "$repo" "$integrations" "$rules"
  git -C "$repo" init -q
  git -C "$repo" add -A
  git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm "console bench: $integrations integrations, $rules rules"
  repo_done=$(date +%s.%N)
  PUBLIC_URL="http://127.0.0.1:$port" "$(dirname "$bin")/examples/gen-state" world "$events" "$state" "$repo"
  end=$(date +%s.%N)
  printf 'fixture: repository in %.1f s, state in %.1f s; %s\n' \
    "$(echo "$repo_done - $start" | bc -l)" "$(echo "$end - $repo_done" | bc -l)" "$(du -sh "$state" | cut -f1)"
  echo "$events deliveries, $integrations integrations, $rules rules, generated $(date -u +%FT%TZ)" >"$data/complete"
fi

# --- the daemon ---
cat >"$data/policy.toml" <<'EOF'
# console.sh: every integration's endpoint is this unreachable loopback port.
[endpoints]
allow = ["127.0.0.1:9"]
EOF
if [ ! -s "$data/gs_key.json" ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$data/gs_key.pem" 2>/dev/null
  python3 - "$data/gs_key.pem" >"$data/gs_key.json" <<'EOF'
import json, sys
print(json.dumps({
    "type": "service_account", "project_id": "bench", "private_key_id": "bench",
    "private_key": open(sys.argv[1]).read(), "client_email": "bench@bench.iam.gserviceaccount.com",
    "client_id": "1", "token_uri": "http://127.0.0.1:9/token",
}))
EOF
fi
admin=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
read_token=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
export SUPPORTOPSD_ADMIN_TOKEN=$admin SUPPORTOPSD_READ_TOKEN=$read_token
export FD_KEY=bench-fd-key FD_HOOK=bench-fd-hook ZD_TOKEN=bench-zd-token SLACK_BOT=xoxb-bench
export SLACK_SIGNING=bench-slack-signing TRELLO_TOKEN=bench-trello TRELLO_SECRET=bench-trello-secret
export NOTION_TOKEN=ntn_bench
GS_KEY=$(cat "$data/gs_key.json")
export GS_KEY
"$bin" --repo "$repo" --state "$state" run --listen "127.0.0.1:$port" \
  --public-url "http://127.0.0.1:$port" --policy "$data/policy.toml" \
  --resync-interval 1h --poll-interval 1h --no-watch >"$data/daemon.log" 2>&1 &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true' EXIT
started=$(date +%s.%N)
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  if ! kill -0 "$daemon" 2>/dev/null; then
    echo "the daemon stopped; its log:" >&2
    tail -30 "$data/daemon.log" >&2
    exit 1
  fi
  sleep 0.2
done
printf 'daemon ready in %.1f s; letting its start-up work (reconcile, the queued jobs) go for %s s\n' \
  "$(echo "$(date +%s.%N) - $started" | bc -l)" "$settle"
sleep "$settle"

# --- the measurements ---
flock /tmp/s7/bench.lock python3 - "$port" "$runs" "$data/results.json" <<'EOF'
"""Logs in, finds representative ids through the JSON API, requests every page RUNS times."""
import html
import http.client
import json
import re
import statistics
import sys
import time
import os
import urllib.parse

port, runs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
admin = os.environ["SUPPORTOPSD_ADMIN_TOKEN"]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)


def request(method, path, body=None, headers=None):
    headers = dict(headers or {})
    for attempt in range(2):
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            return r, data
        except (http.client.HTTPException, ConnectionError):
            conn.close()
            if attempt:
                raise


def api(path):
    r, data = request("GET", path, headers={"Authorization": f"Bearer {admin}"})
    if r.status != 200:
        raise SystemExit(f"GET {path}: {r.status} {data[:200]!r}")
    return json.loads(data)


# Log in: the form's hidden fields (a CSRF token, if any) plus the token.
r, page = request("GET", "/ui/login")
fields = dict(re.findall(rb'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
form = {k.decode(): html.unescape(v.decode()) for k, v in fields.items()}
form["token"] = admin
cookies = {}
for h, v in r.getheaders():
    if h.lower() == "set-cookie":
        k, _, rest = v.partition("=")
        cookies[k] = rest.split(";")[0]
r, body = request(
    "POST", "/ui/login", body=urllib.parse.urlencode(form),
    headers={"Content-Type": "application/x-www-form-urlencoded",
             "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())},
)
for h, v in r.getheaders():
    if h.lower() == "set-cookie":
        k, _, rest = v.partition("=")
        cookies[k] = rest.split(";")[0]
if "supportopsd_session" not in cookies:
    raise SystemExit(f"login: {r.status}, no session cookie: {body[:300]!r}")
cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())


def ui(path):
    return request("GET", path, headers={"Cookie": cookie})


# Representative ids, from the JSON API.
q = urllib.parse.quote
now_ms = int(time.time() * 1000)
ints = [i["id"] for i in api("/api/integrations")["integrations"]]
busy = "freshdesk-0000" if "freshdesk-0000" in ints else ints[0]
quiet = sorted(i for i in ints if i.startswith("slack-"))[-1] if any(i.startswith("slack-") for i in ints) else ints[-1]
done = api(f"/api/events?integration={busy}&outcome=done&limit=1")["events"][0]
dead = api(f"/api/events?integration={busy}&outcome=dead&limit=1")["events"][0]
no_rules = api(f"/api/events?integration={busy}&outcome=no_rules&limit=1")["events"][0]
rule = done["rules"][0]
rare_rule = sorted(r["id"] for r in api("/api/rules")["rules"] if r["id"].startswith(quiet))
rare_rule = rare_rule[0] if rare_rule else rule
hour = f"since={now_ms - 3_600_000}&until={now_ms}"
day_ago = f"since={now_ms - 86_400_000 - 600_000}&until={now_ms - 86_400_000}"

pages = [
    ("overview", "/ui/", "/api/status"),
    ("integration (busy)", f"/ui/integrations/{busy}", f"/api/integrations/{busy}"),
    ("integration (quiet)", f"/ui/integrations/{quiet}", f"/api/integrations/{quiet}"),
    ("rules", "/ui/rules", "/api/rules"),
    ("rules ?page=50", "/ui/rules?page=50", None),
    ("rules ?q= (search)", "/ui/rules?q=ticket_resolved", None),
    ("rules ?integration", f"/ui/rules?integration={busy}", None),
    ("rule (busy)", f"/ui/rules/{q(rule)}", f"/api/rules/{q(rule)}"),
    ("rule (quiet)", f"/ui/rules/{q(rare_rule)}", f"/api/rules/{q(rare_rule)}"),
    ("events", "/ui/events", "/api/events"),
    ("events ?integration", f"/ui/events?integration={busy}", f"/api/events?integration={busy}"),
    ("events ?event", "/ui/events?event=ticket_created", "/api/events?event=ticket_created"),
    ("events ?rule", f"/ui/events?rule={q(rule)}", f"/api/events?rule={q(rule)}"),
    ("events ?rule (quiet)", f"/ui/events?rule={q(rare_rule)}", f"/api/events?rule={q(rare_rule)}"),
    ("events ?outcome=dead", "/ui/events?outcome=dead", "/api/events?outcome=dead"),
    ("events ?integration&outcome=dead", f"/ui/events?integration={quiet}&outcome=dead",
     f"/api/events?integration={quiet}&outcome=dead"),
    ("events ?since&until (last hour)", f"/ui/events?{hour}", f"/api/events?{hour}"),
    ("events ?since&until (a day ago)", f"/ui/events?{day_ago}", f"/api/events?{day_ago}"),
    ("event (done, jobs)", f"/ui/events/{done['id']}", f"/api/events/{done['id']}"),
    ("event (dead letter)", f"/ui/events/{dead['id']}", f"/api/events/{dead['id']}"),
    ("event (no rule)", f"/ui/events/{no_rules['id']}", f"/api/events/{no_rules['id']}"),
    ("dead letters", "/ui/dead-letters", "/api/jobs/dead"),
    ("audit", "/ui/audit", "/api/audit/logs"),
    ("audit ?resource_type=job", "/ui/audit?resource_type=job", "/api/audit/logs?resource_type=job"),
    ("audit ?resource_type&resource_id", f"/ui/audit?resource_type=rule&resource_id={q(rule)}",
     f"/api/audit/logs?resource_type=rule&resource_id={q(rule)}"),
    ("audit ?since (an hour ago)", f"/ui/audit?since={now_ms - 3_600_000}",
     f"/api/audit/logs?since={now_ms - 3_600_000}"),
    ("API reference", "/ui/api", "/api/openapi.json"),
]

# Page 2 of two event lists: the console's own "next" link.
for name, first in [("events page 2", "/ui/events"), ("events ?integration page 2", f"/ui/events?integration={busy}")]:
    r, body = ui(first)
    links = re.findall(r'href="(/ui/events\?[^"]*cursor=[^"]*)"', body.decode("utf-8", "replace"))
    if links:
        pages.append((name, html.unescape(links[0]), None))
    else:
        pages.append((name, None, None))
        print(f"{name}: no link with a cursor on {first}", file=sys.stderr)


def stats(xs):
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return statistics.median(xs), p95, xs[-1]


def measure(path, with_cookie):
    times, renders, status, size = [], [], None, 0
    for i in range(runs + 1):
        t0 = time.perf_counter()
        if with_cookie:
            r, body = ui(path)
        else:
            r, body = request("GET", path, headers={"Authorization": f"Bearer {admin}"})
        took = (time.perf_counter() - t0) * 1000
        status, size = r.status, len(body)
        timing = r.getheader("Server-Timing") or ""
        m = re.search(r"render;dur=([0-9.]+)", timing)
        if i == 0:
            continue  # warm-up
        times.append(took)
        if m:
            renders.append(float(m.group(1)))
    return {
        "status": status, "bytes": size,
        "render_ms": stats(renders) if renders else None,
        "total_ms": stats(times),
    }


results = []
print(f"{runs} runs each after one warm-up; ms: median / p95 / max")
print(f"{'page':38} {'status':>6} {'KB':>6}  {'render (Server-Timing)':>24}  {'total':>22}  {'JSON API total':>22}")
over = []
for name, path, api_path in pages:
    if path is None:
        print(f"{name:38} (not found)")
        continue
    m = measure(path, True)
    a = measure(api_path, False) if api_path else None
    fmt = lambda s: "%6.1f / %6.1f / %6.1f" % s if s else f"{'-':>22}"
    flag = ""
    key = m["render_ms"] or m["total_ms"]
    if m["status"] != 200:
        flag = f"  <-- status {m['status']}"
    elif m["render_ms"] is None:
        flag = "  <-- no Server-Timing"
    if key[2] > 100 or key[1] > 100:
        flag += "  <-- OVER 100 ms"
        over.append(name)
    print(f"{name:38} {m['status']:>6} {m['bytes']/1024:6.0f}  {fmt(m['render_ms']):>24}  {fmt(m['total_ms']):>22}  {fmt(a['total_ms']) if a else '':>22}{flag}")
    results.append({"page": name, "url": path, "api": api_path, "ui": m, "json_api": a})
with open(out, "w") as f:
    json.dump({"runs": runs, "pages": results, "over_100ms": over}, f, indent=1)
print(f"pages over 100 ms (p95 or max, server-side): {', '.join(over) if over else 'none'}")
EOF
echo "daemon log: $data/daemon.log; results: $data/results.json"
