#!/usr/bin/env bash
# Prints the median time per operation of every criterion bench of the last run
# (`cargo bench -p sturdy-benches`), one "group/function median" line each, from
# criterion's own estimates under target/criterion. Needs jq.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in target/criterion/*/*/new/estimates.json; do
  name=${f#target/criterion/}
  name=${name%/new/estimates.json}
  jq -r --arg n "$name" '.median.point_estimate as $ns
    | if $ns >= 1e6 then "\($n) \($ns / 1e6 * 100 | round / 100) ms"
      elif $ns >= 1e3 then "\($n) \($ns / 1e3 * 100 | round / 100) µs"
      else "\($n) \($ns * 100 | round / 100) ns" end' "$f"
done
