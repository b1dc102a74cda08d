#!/usr/bin/env bash
# Speed of the multi-host farm on one machine: N `true` commands through the local farm
# (`sturdy run --workers 4`) and through the engine (one `nats-server -js`, the
# coordinator `sturdy run --engine`, 2 agents x 2 slots), side by side in each round.
#
#   cli/bench/engine.sh          # prints a markdown table per size
#
# Environment: SIZES (default "1000 10000"), RUNS (default 3; min and median shown),
# CARGO_TARGET_DIR (where the release binary is built), TMPDIR (state directories and
# the server's store). Needs nats-server and python3 (cli/bench/rtime.py counts CPU of a
# process and all its descendants).
#
# Columns: wall = the local run / the coordinator, from start to exit (the engine's
# includes creating the run and enqueueing; the agents were started before it and wait
# for the run, --wait-for-run, as on a cluster: their start-up is not in it); CPU of the coordinator alone and of both
# agents together (with the commands they ran), in ms per task; engine messages per task
# = the server's in_msgs + out_msgs (from its monitoring endpoint /varz, `-m PORT`)
# during the run, divided by N: publishes, pulls, deliveries, acks, renewals, direct
# gets and JetStream API replies all count. Records per task = the state stream's
# messages / N (claims, ends, stale notes). Do not run it long on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-1000 10000}
RUNS=${RUNS:-3}
command -v nats-server >/dev/null || { echo "nats-server is missing (apt-get install nats-server)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 2; }
rtime=$PWD/cli/bench/rtime.py
cargo build --release -p sturdy-cli --quiet
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$PWD/$target
bin=$target/release/sturdy
work=$(mktemp -d)
server_pid=
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); mport=$(free_port)
nats-server -js -a 127.0.0.1 -p "$port" -m "$mport" -sd "$work/store" > "$work/server.log" 2>&1 &
server_pid=$!
url=nats://127.0.0.1:$port
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$mport/varz')" 2>/dev/null && break
  sleep 0.1
done
msgs() { python3 -c "import json, urllib.request; v = json.load(urllib.request.urlopen('http://127.0.0.1:$mport/varz')); print(v['in_msgs'] + v['out_msgs'])"; }
records() { python3 -c "
import json, urllib.request
j = json.load(urllib.request.urlopen('http://127.0.0.1:$mport/jsz?streams=1'))
print(sum(s['state']['messages'] for a in j.get('account_details', []) for s in a.get('stream_detail', []) if s['name'] == 'STURDY_$1_STATE'))"; }

# stat FILE COLUMN: "min median".
stat() {
  awk -v c="$2" '{ print $c }' "$1" | sort -n |
    awk '{ a[NR] = $1 } END { printf "%s %s", a[1], a[int((NR + 1) / 2)] }'
}

round=0
for N in $SIZES; do
  for _ in $(seq "$N"); do echo true; done > "$work/tasks.txt"
  rm -f "$work/local" "$work/engine"
  load_before=$(cut -d" " -f1-3 /proc/loadavg)
  for _ in $(seq "$RUNS"); do
    round=$((round + 1))
    # The local farm.
    rm -rf "$work/state"
    python3 "$rtime" "$work/t-local" "$bin" run "$work/tasks.txt" --workers 4 \
      --state-dir "$work/state" --json > /dev/null 2> "$work/local.err" ||
      { cat "$work/local.err" >&2; exit 1; }
    awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' "$work/t-local" >> "$work/local"
    # The engine: two agents already up and waiting for the run (as on a cluster, where
    # agents are started apart from the run: --wait-for-run), then the coordinator,
    # whose wall time is the run's (it creates the run, enqueues, and exits when every
    # task has finished).
    name=bench$round
    before=$(msgs)
    python3 "$rtime" "$work/t-a" "$bin" agent --engine "$url" --run "$name" --workers 2 \
      --wait-for-run --host a --state-dir "$work/a$round" 2> "$work/a.err" &
    a=$!
    python3 "$rtime" "$work/t-b" "$bin" agent --engine "$url" --run "$name" --workers 2 \
      --wait-for-run --host b --state-dir "$work/b$round" 2> "$work/b.err" &
    b=$!
    until grep -q "waiting for run" "$work/a.err" 2>/dev/null && grep -q "waiting for run" "$work/b.err" 2>/dev/null; do
      kill -0 "$a" 2>/dev/null || { cat "$work/a.err" >&2; exit 1; }
      kill -0 "$b" 2>/dev/null || { cat "$work/b.err" >&2; exit 1; }
      sleep 0.01
    done
    python3 "$rtime" "$work/t-coord" "$bin" run "$work/tasks.txt" --engine "$url" --run "$name" \
      --state-dir "$work/coord$round" --json > /dev/null 2> "$work/coord.err" &
    coord=$!
    wait "$coord" || { echo "the coordinator failed:" >&2; cat "$work/coord.err" >&2; exit 1; }
    wait "$a" "$b"
    after=$(msgs)
    recs=$(records "$name")
    done_lines=$(awk -F'\t' '$3 == "ended" && $8 == "done"' "$work/coord$round/journal.tsv" | wc -l)
    [[ $done_lines == "$N" ]] || { echo "journal has $done_lines done records, expected $N" >&2; exit 1; }
    paste "$work/t-coord" "$work/t-a" "$work/t-b" | awk -v n="$N" -v m=$((after - before)) -v r="$recs" \
      '{ printf "%.3f %.4f %.4f %.2f %.2f\n", $1, ($2 + $3) * 1000 / n, ($5 + $6 + $8 + $9) * 1000 / n, m / n, r / n }' \
      >> "$work/engine"
  done
  load_after=$(cut -d" " -f1-3 /proc/loadavg)
  read -r lwmin lw <<< "$(stat "$work/local" 1)"; read -r lcmin lc <<< "$(stat "$work/local" 2)"
  read -r ewmin ew <<< "$(stat "$work/engine" 1)"; read -r ccmin cc <<< "$(stat "$work/engine" 2)"
  read -r acmin ac <<< "$(stat "$work/engine" 3)"; read -r mmin m <<< "$(stat "$work/engine" 4)"
  read -r rmin r <<< "$(stat "$work/engine" 5)"
  cat <<TABLE
$N \`true\` commands, min / median of $RUNS runs ($(date -u +%Y-%m-%d), $(nproc) CPUs, load average $load_before before, $load_after after):

| | wall (s) | tasks/s (median) | CPU |
|---|---|---|---|
| local: \`sturdy run --workers 4\` | $lwmin / $lw | $(awk -v n="$N" -v w="$lw" 'BEGIN { printf "%.0f", n / w }') | $lcmin / $lc s, all processes |
| engine: coordinator + 2 agents x 2 slots | $ewmin / $ew | $(awk -v n="$N" -v w="$ew" 'BEGIN { printf "%.0f", n / w }') | coordinator $ccmin / $cc ms per task; agents (with their commands) $acmin / $ac ms per task |

Engine messages per task (server in + out): $mmin / $m; records per task: $rmin / $r.
Engine wall / local wall, median: $(awk -v a="$ew" -v b="$lw" 'BEGIN { printf "%.2f", a / b }')x (target: at most 2x).

TABLE
done
