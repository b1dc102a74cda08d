#!/usr/bin/env bash
# Crash storm (issue 11, point 5): 600 tasks of 10-300 ms on 6 workers, once without
# faults and once while a random worker is SIGKILLed every 100 ms, with the defaults.
# Each command appends "$STURDY_TASK $STURDY_ATTEMPT" to an effects file; the script
# reports wall times, their ratio, tasks failed for good, and tasks with more than one
# effect. Usage: cli/bench/crash_storm.sh [RUNS] (default 3). Needs a release build:
#   cargo build --release -p sturdy-cli
set -euo pipefail
cd "$(dirname "$0")/../.."
STURDY=${STURDY:-target/release/sturdy}
RUNS=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
one() { # $1 = storm|calm, $2 = run number
  local dir="$work/$1-$2"; mkdir -p "$dir"
  awk -v fx="$dir/effects" 'BEGIN { srand(42); for (i = 1; i <= 600; i++)
    printf "sleep %.3f; echo $STURDY_TASK $STURDY_ATTEMPT >> %s\n", 0.01 + rand() * 0.29, fx }' \
    > "$dir/tasks.txt"
  local t0; t0=$(date +%s.%N)
  "$STURDY" run "$dir/tasks.txt" --workers 6 --state-dir "$dir/state" --json \
    > "$dir/summary.json" 2> "$dir/stderr" &
  local master=$!
  if [ "$1" = storm ]; then
    while kill -0 "$master" 2>/dev/null; do
      sleep 0.1
      mapfile -t ws < <(pgrep -P "$master" -x sturdy || true)
      [ "${#ws[@]}" -gt 0 ] && kill -9 "${ws[RANDOM % ${#ws[@]}]}" 2>/dev/null || true
    done
  fi
  wait "$master" || true
  local t1; t1=$(date +%s.%N)
  local failed; failed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed"])' "$dir/summary.json")
  local crashes; crashes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["worker_crashes"])' "$dir/summary.json")
  local dup; dup=$(awk '{ n[$1]++ } END { d = 0; for (t in n) if (n[t] > 1) d++; print d }' "$dir/effects")
  local tasks; tasks=$(awk '{ n[$1]++ } END { print length(n) }' "$dir/effects")
  printf '%s run %s: wall %.2fs, failed for good %s, worker crashes %s, tasks with an effect %s, with >1 effect %s\n' \
    "$1" "$2" "$(echo "$t1 - $t0" | bc)" "$failed" "$crashes" "$tasks" "$dup"
}
for r in $(seq 1 "$RUNS"); do one calm "$r"; one storm "$r"; done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
