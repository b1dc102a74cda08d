#!/usr/bin/env bash
# Memory and resume latency of the master at large task counts (issue 12, "any batch
# size, bounded memory"):
#
# 1. `sturdy run` of N `true` commands on J workers: the master's peak resident set
#    (VmHWM of /proc/PID/status, read every 0.2 s until it exits; the workers are
#    separate processes and not counted), its wall time, and the journal's count.
# 2. The same list run with `--halt soon,done=DONE` (default 90 % of N), then
#    `--resume`: the time from starting the resuming master until the journal holds
#    its first attempt (an upper bound of "starts dispatching": the line is written
#    when the first attempt ends; the journal is polled every 10 ms), and the resuming
#    master's peak resident set.
#
#   cli/bench/memory.sh                 # N=1000000, RUNS=1
#   N=100000 RUNS=3 cli/bench/memory.sh
#
# Environment: N (tasks, default 1000000), J (workers, default 4), RUNS (default 1:
# min and median are shown; a million `true` commands take ~10 min on 2 busy CPUs),
# DONE (tasks done before the resume, default 90 % of N), TMPDIR (where the state
# directory goes), CARGO_TARGET_DIR. Prints the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000}
J=${J:-4}
RUNS=${RUNS:-1}
DONE=${DONE:-$((N * 9 / 10))}
cargo build --release -p sturdy-cli --quiet
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$PWD/$target
bin=$target/release/sturdy
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) print "true" }' > "$work/tasks.txt"

# peak PID: prints the process's VmHWM in KiB once it has exited.
peak() {
  local pid=$1 hwm=0 v
  while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    [[ -n $v ]] && hwm=$v
    sleep 0.2
  done
  echo "$hwm"
}

lines() { [[ -f $1 ]] && wc -l < "$1" || echo 0; }

load_before=$(cut -d" " -f1-3 /proc/loadavg)
for r in $(seq "$RUNS"); do
  # 1. the whole run
  rm -rf "$work/state"
  t0=$(date +%s.%N)
  "$bin" run "$work/tasks.txt" --workers "$J" --state-dir "$work/state" --json > "$work/out.json" 2> "$work/err" &
  pid=$!
  hwm=$(peak "$pid")
  wait "$pid" || { echo "run failed:"; cat "$work/err"; exit 1; } >&2
  t1=$(date +%s.%N)
  journaled=$(($(lines "$work/state/journal.tsv") - 2))
  [[ $journaled == "$N" ]] || { echo "journal has $journaled attempt lines, expected $N" >&2; exit 1; }
  echo "$hwm $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" >> "$work/full"
  echo "run $r: $N tasks, master peak RSS $((hwm / 1024)) MiB, $(tail -1 "$work/full" | cut -d' ' -f2) s" >&2

  # 2. 90 % done, then --resume
  rm -rf "$work/state"
  "$bin" run "$work/tasks.txt" --workers "$J" --state-dir "$work/state" --json \
    --halt "soon,done=$DONE" > /dev/null 2> "$work/err" || true
  before=$(lines "$work/state/journal.tsv")
  t0=$(date +%s.%N)
  "$bin" run "$work/tasks.txt" --resume --workers "$J" --state-dir "$work/state" --json > /dev/null 2> "$work/err" &
  pid=$!
  until (( $(lines "$work/state/journal.tsv") > before )); do
    kill -0 "$pid" 2>/dev/null || { echo "resume exited before its first attempt:"; cat "$work/err"; exit 1; } >&2
    sleep 0.01
  done
  t1=$(date +%s.%N)
  rhwm=$(peak "$pid")
  wait "$pid" || { echo "resume failed:"; cat "$work/err"; exit 1; } >&2
  first=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  echo "$first $rhwm" >> "$work/resume"
  echo "run $r: resume of $((N - DONE)) of $N: first attempt journaled after $first s, peak RSS $((rhwm / 1024)) MiB" >&2
done
load_after=$(cut -d" " -f1-3 /proc/loadavg)

stat() {
  awk -v c="$2" '{ print $c }' "$work/$1" | sort -n |
    awk '{ a[NR] = $1 } END { printf "%s %s", a[1], a[int((NR + 1) / 2)] }'
}
read -r hmin hmed <<< "$(stat full 1)"; read -r wmin wmed <<< "$(stat full 2)"
read -r fmin fmed <<< "$(stat resume 1)"; read -r rmin rmed <<< "$(stat resume 2)"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
cat <<TABLE
$N \`true\` commands on $J workers, min / median of $RUNS run(s) ($(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -sr), state directory in ${TMPDIR:-/tmp}, load average $load_before before, $load_after after):

| measure | min / median | target |
|---|---|---|
| master peak RSS, whole run | $(mib "$hmin") / $(mib "$hmed") MiB | at most 64 MiB at 1 000 000 |
| wall time, whole run | $wmin / $wmed s | - |
| \`--resume\` with $DONE done: first attempt journaled after | $fmin / $fmed s | within 2 s |
| \`--resume\`: master peak RSS | $(mib "$rmin") / $(mib "$rmed") MiB | - |
TABLE
