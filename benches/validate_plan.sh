#!/usr/bin/env bash
# Times `validate` and `plan` (empty state) on a generated repository of 1,000 integrations and
# 10,000 rules, with the release build. Prints wall time and peak RSS of each.
# Targets (2-core machine): validate + plan under 1 s in total, peak memory under 200 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
integrations=${INTEGRATIONS:-1000}
rules=${RULES:-10000}
# BIN=path/to/supportopsd measures another build (e.g. the one before a change, in the same run).
[ -n "${BIN:-}" ] || cargo build --release --quiet
bin=${BIN:-$PWD/target/release/supportopsd}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 benches/gen_repo.py "$dir/repo" "$integrations" "$rules"
echo "repository: $integrations integrations, $rules rules"
measure() {
  local name=$1; shift
  # Warm the page cache first, then measure.
  "$bin" "$@" >/dev/null 2>&1 || true
  /usr/bin/time -f "$name: %e s wall, %M KiB peak RSS" "$bin" "$@" >/dev/null
}
measure validate --repo "$dir/repo" validate
measure plan --repo "$dir/repo" --state "$dir/state" plan --format json
