#!/usr/bin/env bash
# Scale figures of `sturdy simulate` (release build, one core). Not a test: run by hand,
# on a quiet machine; writes Markdown tables to stdout. Each configuration runs RUNS times
# (default 3; REF_RUNS, default 1, for the reference agent) and shows the min / median
# user CPU seconds (GNU time %U: the machine may be shared, so not wall time) and the
# largest peak resident memory (%M). The load average before and after is printed.
# Usage: farm/bench/simulate.sh [scale|crash|all]
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=target}"
RUNS=${RUNS:-3}
REF_RUNS=${REF_RUNS:-1}
SIZES=${SIZES:-1000 10000 100000 1000000}
cargo build --release --locked -p sturdy-cli >&2
S="$CARGO_TARGET_DIR/release/sturdy"
what="${1:-all}"

run() { # run ARGS... -> "cpu_s peak_MiB json"
    local t
    t=$(mktemp)
    /usr/bin/time -f '%U %M' -o "$t" "$S" simulate "$@" --json >"$t.json"
    read -r cpu kb <"$t"
    echo "$cpu $((kb / 1024)) $(cat "$t.json")"
    rm -f "$t" "$t.json"
}
field() { sed -E "s/.*\"$1\":([^,}]*).*/\1/" <<<"$2"; }
# runs N ARGS... -> "cpu_min cpu_median peak_MiB_max json_of_the_last"
runs() {
    local n=$1 cpus="" peak=0 cpu mib json
    shift
    for _ in $(seq "$n"); do
        read -r cpu mib json < <(run "$@")
        cpus="$cpus $cpu"
        ((mib > peak)) && peak=$mib
    done
    read -r min med < <(tr ' ' '\n' <<<"$cpus" | grep . | sort -n |
        awk '{ a[NR] = $1 } END { print a[1], a[int((NR + 1) / 2)] }')
    echo "$min $med $peak $json"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
if [[ $what == scale || $what == all ]]; then
    echo
    echo "| agent | workers | tasks | runs | CPU s min / median | peak MiB | engine messages | messages per CPU s (median) | makespan s (virtual) | done_records_twice |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for agent in real reference; do
        n=$RUNS
        [[ $agent == reference ]] && n=$REF_RUNS
        for tasks in $SIZES; do
            read -r min med mib json < <(runs "$n" --workers 10000 --tasks "$tasks" --agent "$agent")
            msgs=$(field engine_messages "$json")
            echo "| $agent | 10000 | $tasks | $n | $min / $med | $mib | $msgs | $(awk "BEGIN{printf \"%.2f M\", $msgs/$med/1e6}") | $(field makespan_s "$json") | $(field done_records_twice "$json") |"
        done
    done
fi

if [[ $what == crash || $what == all ]]; then
    echo
    echo "| heartbeat timeout | makespan s | ideal s | over ideal | wasted worker h | duplicate executions | detection p50 s | p99 s | host crashes | engine messages/s | done_records_twice | CPU s |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for hb in 5s 30s 120s; do
        read -r cpu _ json < <(run --workers 10000 --tasks 100000 --host-crash-rate 1%/h \
            --heartbeat-timeout "$hb" --seed 1)
        ms=$(field makespan_s "$json"); id=$(field ideal_makespan_s "$json")
        echo "| $hb | $ms | $id | $(awk "BEGIN{printf \"%.2f %%\", ($ms/$id-1)*100}") | $(awk "BEGIN{printf \"%.2f\", $(field wasted_worker_s "$json")/3600}") | $(field duplicate_executions "$json") | $(field detection_latency_p50_s "$json") | $(field detection_latency_p99_s "$json") | $(field host_crashes "$json") | $(awk "BEGIN{printf \"%.0f\", $(field engine_messages_per_s "$json")}") | $(field done_records_twice "$json") | $cpu |"
    done
fi
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
