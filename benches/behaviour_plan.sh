#!/usr/bin/env bash
# The behavioural plan at scale (issue 21): `plan --base HEAD --replay CORPUS` over EVENTS
# (100,000) recorded deliveries and a repository of RULES (10,000) rules on INTEGRATIONS (1,000)
# integrations, with the release build, under /usr/bin/time -v. Prints wall time, peak RSS and
# what the plan found.
#
# The repository is benches/gen_repo.py --mixed (every platform, a condition on about a third of
# the deliveries, templated actions), committed; the corpus is `gen-state corpus`
# (benches/gen_state.rs): the fixtures of the events those rules trigger on, on the repository's
# integrations (skewed), pseudonymised as `events export` writes them, each with the revision
# and the rules the daemon's selection matched. The desired revision (the working tree) then
# changes the repository the way a big pull request would: every 10th rule's condition
# tightened, every 7th rule's message template changed, every 13th rule's second action
# removed, every 97th rule disabled, 100 new rules.
#
# Targets (2-core machine): under 10 s wall and 500 MB peak RSS.
# The measuring run holds `flock $BENCH_LOCK` (default /tmp/s8/bench.lock) so that benchmarks
# on a shared machine do not measure each other.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
integrations=${INTEGRATIONS:-1000}
rules=${RULES:-10000}
events=${EVENTS:-100000}
lock=${BENCH_LOCK:-/tmp/s8/bench.lock}
target=${CARGO_TARGET_DIR:-$root/target}
# BIN=path/to/supportopsd measures another build; GEN=path/to/gen-state uses a built generator.
[ -n "${GEN:-}" ] || cargo build --release --quiet --example gen-state
[ -n "${BIN:-}" ] || cargo build --release --quiet --bin supportopsd
bin=${BIN:-$target/release/supportopsd}
gen=${GEN:-$target/release/examples/gen-state}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
repo=$dir/repo
python3 benches/gen_repo.py --mixed "$repo" "$integrations" "$rules"
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm "base: $integrations integrations, $rules rules"
"$gen" corpus "$events" "$dir/corpus.jsonl" "$repo"
echo "corpus: $events events, $(du -h "$dir/corpus.jsonl" | cut -f1)"
python3 - "$repo" "$rules" <<'PY'
import os, re, sys
repo, n = sys.argv[1], int(sys.argv[2])
rules = os.path.join(repo, "rules")
names = sorted(os.listdir(rules))
for name in names:
    r = int(re.search(r"-rule-(\d+)\.toml$", name).group(1))
    path = os.path.join(rules, name)
    text = open(path).read()
    if r % 10 == 0:  # tightened: the bucket bound lowered by 10
        text = re.sub(r"lt = (\d+)", lambda m: f"lt = {int(m.group(1)) - 10}", text)
    if r % 7 == 0:  # a changed template
        text = text.replace("(rule ", "(changed by the pull request, rule ")
        text = text.replace('subject = "Follow-up: ', 'subject = "Follow-up (PR): ')
    if r % 13 == 0:  # the second action removed
        parts = text.split("\n[[actions]]\n")
        if len(parts) > 2:
            text = "\n[[actions]]\n".join(parts[:2]) + "\n"
    if r % 97 == 0 and "enabled = false" not in text:
        text = text.replace("\n[trigger]\n", "enabled = false\n\n[trigger]\n", 1)
    open(path, "w").write(text)
for k in range(100):  # new rules: copies of the first ones, under new ids
    src = open(os.path.join(rules, names[k])).read()
    rid = re.search(r'^id = "([^"]+)"', src, re.M).group(1)
    open(os.path.join(rules, f"new-{rid}.toml"), "w").write(src.replace(f'id = "{rid}"', f'id = "new-{rid}"', 1))
PY
"$bin" --repo "$repo" validate >/dev/null 2>&1
# Warm the page cache first, then measure.
"$bin" --repo "$repo" plan --base HEAD --replay "$dir/corpus.jsonl" --format json >/dev/null 2>&1 || true
mkdir -p "$(dirname "$lock")"
code=0
flock "$lock" /usr/bin/time -v "$bin" --repo "$repo" plan --base HEAD --replay "$dir/corpus.jsonl" \
  --format json >"$dir/plan.json" 2>"$dir/time.txt" || code=$?
wall=$(grep "Elapsed (wall clock)" "$dir/time.txt" | awk '{print $NF}')
rss=$(grep "Maximum resident set size" "$dir/time.txt" | awk '{print $NF}')
cpu=$(grep "Percent of CPU" "$dir/time.txt" | awk '{print $NF}')
echo "plan --replay: $wall wall, $((rss / 1024)) MB peak RSS, $cpu CPU (exit $code)"
python3 - "$dir/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
b = p["behaviour"]
s = b["summary"]
print(f"events {b['events']}, rules matched {len(b['rules'])}, rules changed {s['rules_changed']}, "
      f"actions +{s['actions_added']} -{s['actions_removed']} ~{s['actions_changed']}, "
      f"render errors {s['render_errors']}, silenced {b['silenced']['count']}, "
      f"approximate {len(b['approximate'])}, not normalised {b['not_normalised']['count']}")
f = b.get("fidelity")
if f:
    print(f"fidelity: {f['compared']} events recorded with the base, replay differs on {f['differ']['count']}")
print(f"plan JSON: {len(json.dumps(p)) // 1024} KiB")
PY
