#!/usr/bin/env bash
# A hostile template (SEC-09): how much CPU a rule whose template never ends gets, and whether
# `/healthz` stays answered meanwhile. `supportopsd run` on a repository with one Zendesk
# integration (deliveries signed by hand) and one Slack integration whose API is a loopback port
# nobody answers on; one rule renders TEMPLATE (default: the review's nested `range` loops, with
# the inner bound in a variable so that `validate` cannot see it) into a Slack message. DELIVERIES
# (default 4) signed deliveries are posted, one job each (more than the runtime's worker
# threads on a small machine), then for SECONDS (default 20) `/healthz` is asked every 250 ms with a 2 s
# timeout, and the job's fate and the daemon's CPU time (utime + stime from /proc) are printed.
#
# BIN picks the binary (default: the release build, built here). Every request goes to
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_TO_WATCH:-20}
deliveries=${DELIVERIES:-4}
port=${PORT:-18191}
template=${TEMPLATE:-'{% set n = 20000 %}{% for i in range(100000) %}{% for j in range(n) %}x{% endfor %}{% endfor %}'}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin supportopsd
  BIN=$PWD/target/release/supportopsd
fi

dir=$(mktemp -d)
daemon=
cleanup() { if [ -n "$daemon" ]; then kill -9 "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT

repo=$dir/repo
mkdir -p "$repo/integrations" "$repo/rules"
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
cat >"$repo/integrations/slack.toml" <<'EOF'
id = "slack-main"
platform = "slack"
[credentials]
bot_token = { env = "SLACK_BOT_TOKEN" }
signing_secret = { env = "SLACK_SIGNING_SECRET" }
[endpoint]
base_url = "http://127.0.0.1:9/api"
EOF
python3 - "$repo/rules/heavy.toml" "$template" <<'PY'
import json, sys
path, template = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    f.write('id = "heavy-template"\n[trigger]\nintegration = "zendesk-main"\nevent = "ticket.created"\n'
            '[[actions]]\nintegration = "slack-main"\naction = "send_message"\n'
            '[actions.parameters]\nchannel = "#support"\n'
            f'message = {json.dumps(template)}\n')
PY
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm base

ZD_TOKEN=t ZD_WEBHOOK_SECRET=zd-secret SLACK_BOT_TOKEN=xoxb-bench SLACK_SIGNING_SECRET=s \
  SUPPORTOPSD_LOG=warn "$BIN" --repo "$repo" --state "$dir/state" run --listen "127.0.0.1:$port" \
  --poll-interval 1h >"$dir/stdout" 2>"$dir/log" &
daemon=$!

python3 - "$port" "$daemon" "$seconds" "$dir/log" "$deliveries" <<'PY'
import base64, hashlib, hmac, json, os, sys, time, urllib.request
from datetime import datetime, timezone

port, pid, seconds, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
deliveries = int(sys.argv[5])
base = f"http://127.0.0.1:{port}"
tick = os.sysconf("SC_CLK_TCK")

def cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def get(path, timeout=2):
    with urllib.request.urlopen(base + path, timeout=timeout) as r:
        return r.status, r.read()

deadline = time.monotonic() + 30
while True:
    try:
        if get("/readyz")[0] == 200:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("not ready in 30 s: " + open(log).read()[-2000:])
    time.sleep(0.1)

def deliver(n):
    body = json.dumps({"supportopsd_event": "ticket.created",
                       "ticket": {"id": str(n), "subject": "hostile", "tags": ""},
                       "requester": {"id": "1", "name": "A", "email": "a@example.com"}}).encode()
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sig = base64.b64encode(hmac.new(b"zd-secret", ts.encode() + body, hashlib.sha256).digest()).decode()
    req = urllib.request.Request(base + "/api/webhooks/zendesk/zendesk-main", data=body,
                                 method="POST",
                                 headers={"content-type": "application/json",
                                          "x-zendesk-webhook-signature-timestamp": ts,
                                          "x-zendesk-webhook-signature": sig,
                                          "x-zendesk-webhook-invocation-id": f"bench-{n}"})
    try:
        return urllib.request.urlopen(req, timeout=5).status
    except OSError as e:
        return f"no answer ({e})"

cpu0 = cpu()
start = time.monotonic()
print("deliveries:", [deliver(n) for n in range(1, deliveries + 1)])

answered = missed = 0
worst = 0.0
dead_at = None
dead_count = 0
while time.monotonic() - start < seconds:
    t = time.monotonic()
    try:
        get("/healthz")
        answered += 1
        worst = max(worst, time.monotonic() - t)
    except OSError:
        missed += 1
        worst = max(worst, time.monotonic() - t)
    if dead_at is None:
        try:
            _, out = get("/api/events/dead", timeout=2)
            items = json.loads(out)
            items = items.get("dead", [])
            if len(items) > dead_count:
                dead_count = len(items)
                if dead_count == deliveries:
                    dead_at = time.monotonic() - start
                print(f"{dead_count} dead-lettered after {time.monotonic() - start:.2f} s:",
                      items[-1].get("job", {}).get("last_error"))
        except (OSError, ValueError):
            pass
    # Probe often until every job is settled, then every 250 ms.
    time.sleep(0.25 if dead_at is not None else 0.02)

print(f"after {seconds:.0f} s: daemon CPU {cpu() - cpu0:.2f} s; /healthz answered {answered}, "
      f"missed {missed} (2 s timeout), slowest {worst * 1000:.0f} ms; "
      f"jobs dead-lettered: {dead_count} of {deliveries}"
      + (f", all after {dead_at:.2f} s" if dead_at is not None else ""))
PY
