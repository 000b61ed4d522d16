#!/usr/bin/env bash
# Commit-to-active latency: `supportopsd run` (release) on a small repository (one Slack
# integration whose API is a loopback port nobody answers on, and rules answering its messages),
# with polling out of the way (--poll-interval 1h) so that only the file watcher can notice new
# commits. COMMITS times (default 50): commit a change (add a rule, or edit the previous one),
# then poll `GET /api/status` every 2 ms until `applied_revision` is the new commit. The clock
# starts just before `git commit` runs, so the figure includes git's own work. Prints min,
# median, p90 and max in milliseconds. Target: under 1 s.
# Then, for contrast, POLL_COMMITS times (default 10; 0 skips it) the same with `--no-watch` and
# a POLL interval (default 2s): the latency is then bounded by the interval (30 s by default).
# Every request goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
commits=${COMMITS:-50}
poll_commits=${POLL_COMMITS:-10}
poll=${POLL:-2s}
port=${PORT:-18181}

# The same build as benches/reconcile.sh (the fakes compiled in are unused here), so one
# release build serves both.
cargo build --release --quiet --features test-support --bin supportopsd
bin=$PWD/target/release/supportopsd

dir=$(mktemp -d)
daemon=
cleanup() { if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT

repo=$dir/repo
mkdir -p "$repo/integrations" "$repo/rules"
cat >"$repo/integrations/slack.toml" <<'EOF'
id = "slack-main"
platform = "slack"
[credentials]
bot_token = { env = "SLACK_BOT_TOKEN" }
signing_secret = { env = "SLACK_SIGNING_SECRET" }
[endpoint]
base_url = "http://127.0.0.1:9/api"
EOF
rule() { # index text
  cat >"$repo/rules/bench-$1.toml" <<EOF
id = "bench-$1"
[trigger]
integration = "slack-main"
event = "message"
[trigger.conditions]
"message.text" = { contains = "$2" }
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "{{ message.channel }}"
message = "Rule $1 saw: {{ message.text }}"
EOF
}
rule 0 "help"
# The host policy: the integration's base_url is on loopback, which only the host may allow.
cat >"$dir/policy.toml" <<'EOF'
[endpoints]
allow = ["127.0.0.1:9"]
EOF
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm base

# Runs the daemon with the given extra arguments, commits $1 times and prints the figures.
measure() { # label commits args...
  local label=$1 n=$2; shift 2
  rm -rf "$dir/state"
  SLACK_BOT_TOKEN=xoxb-bench SLACK_SIGNING_SECRET=bench-signing SUPPORTOPSD_LOG=error \
    "$bin" --repo "$repo" --state "$dir/state" run --listen "127.0.0.1:$port" --policy "$dir/policy.toml" "$@" >/dev/null &
  daemon=$!
  python3 - "$label" "$n" "$repo" "$port" <<'PY'
import json, statistics, subprocess, sys, time, urllib.request

label, n, repo, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
status_url = f"http://127.0.0.1:{port}/api/status"
git = ["git", "-C", repo, "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]

def applied():
    try:
        with urllib.request.urlopen(status_url, timeout=5) as r:
            return json.load(r).get("applied_revision")
    except OSError:
        return None

def head():
    return subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()

deadline = time.monotonic() + 30
while applied() != head():
    if time.monotonic() > deadline:
        sys.exit("the daemon did not apply the first commit within 30 s")
    time.sleep(0.05)

rule_text = open(f"{repo}/rules/bench-0.toml").read()
latencies = []
for i in range(1, n + 1):
    # Even steps add a rule, odd ones edit the rule added last.
    k = (i + 1) // 2
    text = rule_text.replace("bench-0", f"bench-{k}").replace("Rule 0", f"Rule {k}")
    text = text.replace('contains = "help"', f'contains = "help {i}"')
    with open(f"{repo}/rules/bench-{k}.toml", "w") as f:
        f.write(text)
    subprocess.run(git + ["add", "-A"], check=True)
    start = time.monotonic()
    subprocess.run(git + ["commit", "-qm", f"change {i}"], check=True)
    rev = head()
    while applied() != rev:
        if time.monotonic() - start > 120:
            sys.exit(f"commit {i} not applied within 120 s")
        time.sleep(0.002)
    latencies.append((time.monotonic() - start) * 1000)
    time.sleep(0.2)  # let the watcher's burst settle before the next commit

latencies.sort()
p90 = latencies[min(len(latencies) - 1, int(round(0.9 * len(latencies))) - 1)]
print(f"{label}: {n} commits, min {latencies[0]:.0f} ms, median {statistics.median(latencies):.0f} ms, "
      f"p90 {p90:.0f} ms, max {latencies[-1]:.0f} ms")
PY
  kill "$daemon"
  wait "$daemon" 2>/dev/null || true
  daemon=
}

measure "watcher (--poll-interval 1h)" "$commits" --poll-interval 1h
if [ "$poll_commits" -gt 0 ]; then
  measure "no watcher (--no-watch --poll-interval $poll)" "$poll_commits" --no-watch --poll-interval "$poll"
fi
