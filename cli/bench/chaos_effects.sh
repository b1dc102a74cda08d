#!/usr/bin/env bash
# Effects-counting chaos run (issue 11, "done when"): 600 tasks; while each master runs,
# a random worker is SIGKILLed every 100 ms and the master itself is SIGKILLed after
# 1-3 s; then `--resume` again, until a master exits 0. Each command writes
# "task attempt start_ns end_ns" as its last act. Reports: tasks lost (no `done` in the
# journal), tasks journaled `done` twice, tasks with more than one effect, and pairs of
# effects of one task whose runs overlapped in time (a command that ran on after its
# worker was declared dead would overlap its rerun). Usage: cli/bench/chaos_effects.sh
# Needs: cargo build --release -p sturdy-cli
set -euo pipefail
cd "$(dirname "$0")/../.."
STURDY=${STURDY:-target/release/sturdy}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v fx="$work/effects" 'BEGIN { srand(7); for (i = 1; i <= 600; i++)
  printf "s=$(date +%%s%%N); sleep %.3f; echo $STURDY_TASK $STURDY_ATTEMPT $s $(date +%%s%%N) >> %s\n", 0.01 + rand() * 0.2, fx }' \
  > "$work/tasks.txt"
masters=0; kills=0; resume=()
while :; do
  masters=$((masters + 1))
  "$STURDY" run "$work/tasks.txt" --workers 6 --state-dir "$work/state" "${resume[@]}" \
    --json > "$work/summary.json" 2> "$work/stderr.$masters" &
  m=$!; resume=(--resume)
  life=$((10 + RANDOM % 20))   # tenths of a second before the master is killed
  for _ in $(seq 1 "$life"); do
    sleep 0.1
    kill -0 "$m" 2>/dev/null || break
    mapfile -t ws < <(pgrep -P "$m" -x sturdy || true)
    if [ "${#ws[@]}" -gt 0 ]; then kill -9 "${ws[RANDOM % ${#ws[@]}]}" 2>/dev/null && kills=$((kills + 1)) || true; fi
  done
  if kill -0 "$m" 2>/dev/null; then kill -9 "$m" 2>/dev/null || true; fi
  if wait "$m"; then break; fi
  [ "$masters" -lt 200 ] || { echo "gave up after 200 masters"; exit 1; }
done
lost=$(awk -F'\t' '$11 == "done" { d[$1] = 1 } END { n = 0; for (t = 1; t <= 600; t++) if (!(t in d)) n++; print n }' "$work/state/journal.tsv")
twice=$(awk -F'\t' '$11 == "done" { d[$1]++ } END { n = 0; for (t in d) if (d[t] > 1) n++; print n }' "$work/state/journal.tsv")
multi=$(awk '{ n[$1]++ } END { d = 0; for (t in n) if (n[t] > 1) d++; print d }' "$work/effects")
overlap=$(sort -k1,1n -k3,3n "$work/effects" | awk '$1 == pt && $3 < pe { o++ } { if ($1 != pt || $4 > pe) pe = $4; pt = $1 } END { print o + 0 }')
echo "masters $masters (SIGKILLed $((masters - 1))), workers SIGKILLed $kills"
echo "tasks lost $lost, journaled done twice $twice, tasks with >1 effect $multi, overlapping runs $overlap"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
