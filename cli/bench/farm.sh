#!/usr/bin/env bash
# Speed of the task farm: N `true` commands on J workers, side by side in one run with
# GNU parallel (`parallel -j J`) and xargs (`xargs -P J -L1 sh -c`) on the same list,
# at each size of SIZES. sturdy journals every attempt (the default; there is no way to
# turn it off).
#
#   cli/bench/farm.sh            # prints a markdown table per size
#   cli/bench/farm.sh --record   # also writes them to cli/bench/RESULTS.md (top section)
#
# Environment: SIZES (default "1000 10000 100000"), J (default 4), RUNS (default 5; min
# and median are shown), PARALLEL_MAX (default 10000: GNU parallel, ~8 ms per task, is
# left out of larger sizes), BASE (optional: another `sturdy` binary, measured in the same
# rounds as "sturdy (BASE)", for before/after), CARGO_TARGET_DIR (where the binary is built),
# TMPDIR (where the state directory goes: its file system matters; a quiet attempt makes
# a hard link and a rename there, one that prints a file per stream, and on ext4 without
# a journal allocating an inode costs up to ~1 ms of CPU while many were freed recently).
# Needs GNU parallel (Debian: apt-get install parallel) and python3 (for rtime.py).
# Wall and CPU are per whole command (CPU = user + system of it and all its descendants,
# counted by cli/bench/rtime.py, a child subreaper: GNU time misses the workers that the
# sturdy master does not wait for, and with them the CPU of every command they ran);
# "master CPU" is the `sturdy` master process alone (its own rusage, all threads),
# reported by `sturdy run --json` as master_cpu_seconds. Within a round the tools run one
# after the other, in the same order every round; the load average is printed per size.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-1000 10000 100000}
J=${J:-4}
RUNS=${RUNS:-5}
PARALLEL_MAX=${PARALLEL_MAX:-10000}
BASE=${BASE:-}
record=false
[[ ${1:-} == --record ]] && record=true

command -v parallel >/dev/null || { echo "GNU parallel is missing (apt-get install parallel)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 2; }
rtime=$PWD/cli/bench/rtime.py
cargo build --release -p sturdy-cli --quiet
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$PWD/$target
bin=$target/release/sturdy
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run NAME BIN_OR_- CMD... : appends "wall cpu master_cpu" to $work/NAME
run() {
  local name=$1 sturdy=$2; shift 2
  python3 "$rtime" "$work/time" "$@" > "$work/stdout" 2> "$work/stderr" || {
    echo "$name failed:"; cat "$work/stderr"; exit 1; } >&2
  local master=-
  if [[ $sturdy == yes ]]; then
    master=$(grep -o '"master_cpu_seconds": *[0-9.e-]*' "$work/stdout" | grep -o '[0-9.e-]*$')
  fi
  awk -v m="$master" '{ printf "%.3f %.3f %s\n", $1, $2 + $3, (m == "-" ? m : sprintf("%.3f", m)) }' \
    "$work/time" >> "$work/$name"
}

# run_sturdy NAME BIN: one sturdy run, its journal checked.
run_sturdy() {
  rm -rf "$work/state"
  run "$1" yes "$2" run "$work/tasks.txt" --workers "$J" --state-dir "$work/state" --json
  local lines=$(($(wc -l < "$work/state/journal.tsv") - 2))
  [[ $lines == "$N" ]] || { echo "journal has $lines attempt lines, expected $N" >&2; exit 1; }
}

# stat NAME COLUMN: "min median" of a column.
stat() {
  awk -v c="$2" '{ print $c }' "$work/$1" | sort -n |
    awk '{ a[NR] = $1 } END { printf "%s %s", a[1], a[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

all=""
for N in $SIZES; do
  rm -f "$work"/sturdy "$work"/base "$work"/parallel "$work"/xargs
  for _ in $(seq "$N"); do echo true; done > "$work/tasks.txt"
  with_parallel=false
  (( N <= PARALLEL_MAX )) && with_parallel=true
  load_before=$(cut -d" " -f1-3 /proc/loadavg)
  for _ in $(seq "$RUNS"); do
    run_sturdy sturdy "$bin"
    [[ -n $BASE ]] && run_sturdy base "$BASE"
    $with_parallel && run parallel no parallel --will-cite -j "$J" :::: "$work/tasks.txt"
    run xargs no xargs -P "$J" -L1 sh -c < "$work/tasks.txt"
  done
  load_after=$(cut -d" " -f1-3 /proc/loadavg)
  read -r swmin sw <<< "$(stat sturdy 1)"; read -r scmin sc <<< "$(stat sturdy 2)"
  read -r smmin sm <<< "$(stat sturdy 3)"
  read -r xwmin xw <<< "$(stat xargs 1)"; read -r xcmin xc <<< "$(stat xargs 2)"
  per_task_ms=$(awk -v m="$sm" -v n="$N" 'BEGIN { printf "%.4f", m * 1000 / n }')
  rows="| \`sturdy run --workers $J\` (journaling every attempt) | $swmin / $sw | $scmin / $sc | $smmin / $sm ($per_task_ms ms per task) |"
  if [[ -n $BASE ]]; then
    read -r bwmin bw <<< "$(stat base 1)"; read -r bcmin bc <<< "$(stat base 2)"
    read -r bmmin bm <<< "$(stat base 3)"
    rows+=$'\n'"| \`sturdy\` before (\`$(basename "$BASE")\`) | $bwmin / $bw | $bcmin / $bc | $bmmin / $bm |"
  fi
  vs_parallel="GNU parallel left out at this size (PARALLEL_MAX=$PARALLEL_MAX)"
  if $with_parallel; then
    read -r pwmin pw <<< "$(stat parallel 1)"; read -r pcmin pc <<< "$(stat parallel 2)"
    rows+=$'\n'"| \`parallel -j $J\` (GNU parallel $(parallel --version 2>/dev/null | head -1 | awk '{print $3}')) | $pwmin / $pw | $pcmin / $pc | - |"
    vs_parallel="GNU parallel's median wall time is $(ratio "$pw" "$sw")x sturdy's (target: at least 3x)"
  fi
  rows+=$'\n'"| \`xargs -P $J -L1 sh -c\` | $xwmin / $xw | $xcmin / $xc | - |"
  table=$(cat <<TABLE
$N \`true\` commands on $J workers, min / median of $RUNS runs ($(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -sr), load average $load_before before, $load_after after):

| tool | wall (s) | CPU, all processes (s) | master CPU (s) |
|---|---|---|---|
$rows

sturdy / xargs, median: wall $(ratio "$sw" "$xw")x (target: at most 1.15x), CPU $(ratio "$sc" "$xc")x (target: at most 1.3x);
min: wall $(ratio "$swmin" "$xwmin")x, CPU $(ratio "$scmin" "$xcmin")x. $vs_parallel.
TABLE
)
  echo "$table"
  echo
  all+="$table"$'\n\n'
done
if $record; then
  {
    echo "# Task farm speed"
    echo
    echo "Produced by \`cli/bench/farm.sh --record\` (the script says what is measured and how)."
    echo
    printf '%s' "$all"
    sed -n '/^## /,$p' cli/bench/RESULTS.md
  } > "$work/results.md"
  cp "$work/results.md" cli/bench/RESULTS.md
  echo "written to cli/bench/RESULTS.md"
fi
