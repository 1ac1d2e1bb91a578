#!/usr/bin/env bash
# Time from starting `sluice run` to its "sluice: ready" line, with the
# compiled plugins cached: one run to fill the cache, then RUNS measured
# runs. Prints each time and the median and p90, in milliseconds.
#
#   bash host/benches/startup.sh [RUNS]     (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-20}"
bin=target/release/sluice
cache="$(mktemp -d)"
trap 'rm -rf "$cache"' EXIT

# Starts sluice, waits for its ready line, stops it; prints milliseconds.
once() {
    local start end pid line
    start=$(date +%s%N)
    coproc SLUICE { exec "$bin" run --admin 127.0.0.1:0 --cache-dir "$cache" 2>/dev/null; }
    pid=$SLUICE_PID
    while IFS= read -r line <&"${SLUICE[0]}"; do
        if [[ $line == "sluice: ready" ]]; then
            end=$(date +%s%N)
            break
        fi
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [[ -n ${end:-} ]] || { echo "sluice exited before it was ready" >&2; exit 1; }
    echo $(( (end - start) / 1000000 ))
}

once >/dev/null # fills the cache
times=()
for _ in $(seq "$runs"); do
    times+=("$(once)")
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
n=${#sorted[@]}
echo "startup to ready (ms), $n runs with a warm plugin cache: ${times[*]}"
echo "median ${sorted[$(( (n - 1) / 2 ))]} ms, p90 ${sorted[$(( (n * 9 + 9) / 10 - 1 ))]} ms, max ${sorted[$(( n - 1 ))]} ms"
