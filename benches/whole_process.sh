#!/usr/bin/env bash
# Whole processes side by side, pinned to one CPU: the per-core limit
# (`bench --limit-only`: libdeflate + a simd-json tape of each whole file, no
# rules) against `scan --threads 1` with the built-in pack and with the pack
# plus SigmaHQ's CloudTrail rules, on the same files. The three run in turns,
# round after round, so each round's ratios compare the same moments of a
# noisy shared machine; the medians of the rounds' ratios are reported (with
# their range), as in `trailwatch bench`.
#
# Usage: benches/whole_process.sh CORPUS [BINARY] [ROUNDS] [CPU] [SIGMA_DIR]
#   CORPUS    e.g. written by `trailwatch gen --out /tmp/corpus --size 300MB --seed 3`
#   BINARY    default target/release/trailwatch
#   ROUNDS    default 11
#   CPU       default 0
#   SIGMA_DIR default ../shared/data/sigma/rules
set -euo pipefail
corpus="$1"
bin="$(realpath "${2:-target/release/trailwatch}")"
rounds="${3:-11}"
cpu="${4:-0}"
sigma="${5:-$(dirname "$0")/../../shared/data/sigma/rules}"
rules="$(dirname "$0")/../rules"

ms() { # run a command pinned, print its wall time in ms
    local t0 t1
    t0=$(date +%s%N)
    taskset -c "$cpu" "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}

limit=() builtin=() sigmahq=()
ms "$bin" bench --limit-only "$corpus" >/dev/null # warm the page cache
for ((r = 0; r < rounds; r++)); do
    l=$(ms "$bin" bench --limit-only "$corpus")
    b=$(ms "$bin" scan --quiet --threads 1 -o /dev/null "$corpus")
    s=$(ms "$bin" scan --quiet --threads 1 -o /dev/null --rules "$rules" --rules "$sigma" "$corpus")
    limit+=("$l") builtin+=("$b") sigmahq+=("$s")
    echo "round $r: limit $l ms, scan built-in $b ms, scan + SigmaHQ $s ms"
done
python3 - "${limit[*]}" "${builtin[*]}" "${sigmahq[*]}" <<'EOF'
import statistics, sys
limit, builtin, sigmahq = ([int(x) for x in a.split()] for a in sys.argv[1:4])
for name, times, target in (("built-in pack", builtin, 0.95), ("built-in + SigmaHQ", sigmahq, 0.85)):
    ratios = [l / t for l, t in zip(limit, times)]
    print(f"{name:20} limit / scan = {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f}; target >= {target}); "
          f"median {statistics.median(times)} ms vs limit {statistics.median(limit)} ms")
EOF
