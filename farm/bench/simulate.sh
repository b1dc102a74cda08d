#!/usr/bin/env bash
# Scale figures of `sturdy simulate` (release build, one core). Not a test: run by hand,
# on a quiet machine; writes a Markdown table to stdout. Each run prints its wall time
# user CPU time (not wall: the machine is shared) and peak memory (GNU time). Usage: farm/bench/simulate.sh [scale|crash|all]
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=target}"
cargo build --release --locked -p sturdy-cli >&2
S="$CARGO_TARGET_DIR/release/sturdy"
what="${1:-all}"

run() { # run ARGS... -> "wall_s peak_MiB json"
    local t
    t=$(mktemp)
    /usr/bin/time -f '%U %M' -o "$t" "$S" simulate "$@" --json >"$t.json"
    read -r wall kb <"$t"
    echo "$wall $((kb / 1024)) $(cat "$t.json")"
    rm -f "$t" "$t.json"
}
field() { sed -E "s/.*\"$1\":([^,}]*).*/\1/" <<<"$2"; }

if [[ $what == scale || $what == all ]]; then
    echo "| agent | workers | tasks | CPU s (user) | peak MiB | engine messages | messages per CPU s | makespan s (virtual) |"
    echo "|---|---|---|---|---|---|---|---|"
    for agent in reference real; do
        for tasks in 1000 10000 100000 1000000; do
            [[ $agent == real && $tasks == 1000000 ]] && continue
            read -r wall mib json < <(run --workers 10000 --tasks "$tasks" --agent "$agent")
            msgs=$(field engine_messages "$json")
            echo "| $agent | 10000 | $tasks | $wall | $mib | $msgs | $(awk "BEGIN{printf \"%.0f\", $msgs/$wall}") | $(field makespan_s "$json") |"
        done
    done
fi

if [[ $what == crash || $what == all ]]; then
    echo
    echo "| heartbeat timeout | makespan s | ideal s | over ideal | wasted worker h | duplicate executions | detection p50 s | p99 s | host crashes | done_records_twice |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for hb in 5s 30s 120s; do
        read -r _ _ json < <(run --workers 10000 --tasks 200000 --host-crash-rate 1%/h \
            --heartbeat-timeout "$hb" --agent reference --seed 1)
        ms=$(field makespan_s "$json"); id=$(field ideal_makespan_s "$json")
        echo "| $hb | $ms | $id | $(awk "BEGIN{printf \"%.2f %%\", ($ms/$id-1)*100}") | $(awk "BEGIN{printf \"%.2f\", $(field wasted_worker_s "$json")/3600}") | $(field duplicate_executions "$json") | $(field detection_latency_p50_s "$json") | $(field detection_latency_p99_s "$json") | $(field host_crashes "$json") | $(field done_records_twice "$json") |"
    done
fi
