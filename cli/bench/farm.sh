#!/usr/bin/env bash
# Speed of the task farm: N `true` commands on J workers, side by side in one run with
# GNU parallel (`parallel -j J`) and xargs (`xargs -P J -L1 sh -c`) on the same list.
# sturdy journals every attempt (the default; there is no way to turn it off).
#
#   cli/bench/farm.sh            # prints a markdown table
#   cli/bench/farm.sh --record   # also writes it to cli/bench/RESULTS.md
#
# Environment: N (default 1000), J (default 4), RUNS (default 5; the median is shown).
# Needs GNU parallel (Debian: apt-get install parallel) and GNU time (/usr/bin/time).
# Wall and CPU are per whole command (CPU = user + system of it and all its children);
# "master CPU" is the `sturdy` master process alone (its own rusage, all threads),
# reported by `sturdy run --json` as master_cpu_seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000}
J=${J:-4}
RUNS=${RUNS:-5}
record=false
[[ ${1:-} == --record ]] && record=true

command -v parallel >/dev/null || { echo "GNU parallel is missing (apt-get install parallel)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "GNU time is missing (apt-get install time)" >&2; exit 2; }
cargo build --release -p sturdy-cli --quiet
bin=$PWD/target/release/sturdy
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for _ in $(seq "$N"); do echo true; done > "$work/tasks.txt"

# run NAME CMD... : appends "wall cpu master_cpu" to $work/NAME
run() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" > "$work/stdout" 2> "$work/stderr" || {
    echo "$name failed:"; cat "$work/stderr"; exit 1; } >&2
  local master=-
  if [[ $name == sturdy ]]; then
    master=$(grep -o '"master_cpu_seconds": *[0-9.e-]*' "$work/stdout" | grep -o '[0-9.e-]*$')
  fi
  awk -v m="$master" '{ printf "%.3f %.3f %s\n", $1, $2 + $3, (m == "-" ? m : sprintf("%.3f", m)) }' \
    "$work/time" >> "$work/$name"
}

for i in $(seq "$RUNS"); do
  rm -rf "$work/state"
  run sturdy "$bin" run "$work/tasks.txt" --workers "$J" --state-dir "$work/state" --json
  run parallel parallel --will-cite -j "$J" :::: "$work/tasks.txt"
  run xargs xargs -P "$J" -L1 sh -c < "$work/tasks.txt"
  lines=$(($(wc -l < "$work/state/journal.tsv") - 2))
  [[ $lines == "$N" ]] || { echo "journal has $lines attempt lines, expected $N" >&2; exit 1; }
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
col() { awk -v c="$2" '{ print $c }' "$work/$1" | median; }

sw=$(col sturdy 1); sc=$(col sturdy 2); sm=$(col sturdy 3)
pw=$(col parallel 1); pc=$(col parallel 2)
xw=$(col xargs 1); xc=$(col xargs 2)
per_task_ms=$(awk -v m="$sm" -v n="$N" 'BEGIN { printf "%.3f", m * 1000 / n }')
vs_xargs=$(awk -v a="$sw" -v b="$xw" 'BEGIN { printf "%.2f", a / b }')
vs_parallel=$(awk -v a="$pw" -v b="$sw" 'BEGIN { printf "%.1f", a / b }')

table=$(cat <<TABLE
$N \`true\` commands on $J workers, median of $RUNS runs ($(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -sr), load average $(cut -d" " -f1-3 /proc/loadavg) at the end):

| tool | wall (s) | CPU, all processes (s) | master CPU (s) |
|---|---|---|---|
| \`sturdy run --workers $J\` (journaling every attempt) | $sw | $sc | $sm ($per_task_ms ms per task) |
| \`parallel -j $J\` (GNU parallel $(parallel --version 2>/dev/null | head -1 | awk '{print $3}')) | $pw | $pc | - |
| \`xargs -P $J -L1 sh -c\` | $xw | $xc | - |

sturdy's wall time is ${vs_xargs}x xargs's (target: at most 1.5x) and GNU parallel's is ${vs_parallel}x sturdy's
(target: at least 3x); sturdy's master used $per_task_ms ms of CPU per task (target: under 0.3 ms).
TABLE
)
echo "$table"
if $record; then
  {
    echo "# Task farm speed"
    echo
    echo "Produced by \`cli/bench/farm.sh --record\` (the script says what is measured and how)."
    echo
    echo "$table"
  } > cli/bench/RESULTS.md
  echo "written to cli/bench/RESULTS.md"
fi
