#!/usr/bin/env bash
# Throughput of trailwatch against what people run instead, on the same
# files, in one run: Python (gzip + json.loads + a predicate per record)
# and `zcat | jq` (a select over Records). Prints MB/s of JSON and the
# ratios. Usage: benches/compare.sh DIR [TRAILWATCH_BIN]
#   DIR: CloudTrail .json.gz files (e.g. from `trailwatch gen --out DIR`).
# Needs python3 and jq (apt-get install jq). Ratios, not absolute figures,
# are what carry over between machines.
set -euo pipefail
dir="$1"
bin="${2:-target/release/trailwatch}"
command -v jq >/dev/null || { echo "jq not found: apt-get install jq" >&2; exit 1; }
mapfile -t files < <(find "$dir" -name '*.json.gz' -not -path '*Digest*' | sort)
[ "${#files[@]}" -gt 0 ] || { echo "no .json.gz files under $dir" >&2; exit 1; }
bytes=$(for f in "${files[@]}"; do gzip -dc "$f"; done | wc -c)
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$bytes / 1e6 / ($2 - $1):.0f}')"; }

# Warm the page cache.
cat "${files[@]}" > /dev/null

t0=$(now)
"$bin" scan --threads 1 "${files[@]}" > /dev/null 2>&1
t1=$(now)
"$bin" scan "${files[@]}" > /dev/null 2>&1
t2=$(now)
python3 - "${files[@]}" <<'PY'
import gzip, json, sys
hits = 0
for path in sys.argv[1:]:
    with gzip.open(path, "rb") as f:
        for r in json.load(f)["Records"]:
            ident = r.get("userIdentity") or {}
            if ident.get("type") == "Root" or r.get("eventName") in ("CreateAccessKey", "StopLogging", "DeleteDetector") \
                    or "AccessDenied" in (r.get("errorCode") or ""):
                hits += 1
print(hits, file=sys.stderr)
PY
t3=$(now)
for f in "${files[@]}"; do zcat "$f"; done \
    | jq -c '.Records[] | select(.userIdentity.type == "Root" or .eventName == "CreateAccessKey" or .eventName == "StopLogging" or .eventName == "DeleteDetector" or ((.errorCode // "") | contains("AccessDenied")))' \
    > /dev/null
t4=$(now)

tw1=$(rate "$t0" "$t1"); twn=$(rate "$t1" "$t2"); py=$(rate "$t2" "$t3"); jqr=$(rate "$t3" "$t4")
echo "files: ${#files[@]}, JSON: $((bytes / 1000000)) MB"
echo "trailwatch scan, 1 thread:    $tw1 MB/s"
echo "trailwatch scan, all threads: $twn MB/s"
echo "python gzip + json.loads:     $py MB/s   (trailwatch 1 thread: $(python3 -c "print(f'{$tw1/$py:.1f}')")x, all: $(python3 -c "print(f'{$twn/$py:.1f}')")x)"
echo "zcat | jq select:             $jqr MB/s   (trailwatch 1 thread: $(python3 -c "print(f'{$tw1/$jqr:.1f}')")x, all: $(python3 -c "print(f'{$twn/$jqr:.1f}')")x)"
