#!/usr/bin/env bash
# Peak memory of whole processes on the worst inputs we can build, against
# the targets in BENCHMARKS.md ("Memory under hostile input"):
#
#   flood    one 370 KB gzip of 100,000 identical root console logins (no
#            MFA), run by the daemon with events attached (the default):
#            every match once, before its event is built;
#   distinct the same, each login with its own event id: 300,000 distinct
#            alerts, whose events the per-object budget bounds;
#   denied   1,000,000 AccessDenied events from 1,000,000 distinct
#            principals in 10 objects (a per-event alert each, and the burst
#            correlations' groups);
#   string   one record whose user agent is a 300 MB string, with the
#            object cap at 512 MiB (target: under 2 x the cap);
#   errors   one 8 KB gzip of 4,000,000 lines that are not records: each
#            is a counted problem, and only the first 100 keep a message.
#
# Usage: benches/memory.sh [BINARY] [WORKDIR]   (needs python3, GNU time)
set -euo pipefail
bin="${1:-target/release/trailwatch}"
work="${2:-$(mktemp -d)}"
mkdir -p "$work"
bin="$(realpath "$bin")"

python3 - "$work" <<'EOF'
import gzip, json, os, sys
work = sys.argv[1]

def login(i, same):
    return {
        "eventVersion": "1.08",
        "userIdentity": {"type": "Root", "principalId": "111111111111",
                         "arn": "arn:aws:iam::111111111111:root", "accountId": "111111111111"},
        "eventTime": "2026-11-20T10:00:00Z", "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin", "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/130.0",
        "requestParameters": None, "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/", "MobileVersion": "No", "MFAUsed": "No"},
        "eventID": "e0000000-0000-4000-8000-000000000001" if same else "e%035d" % i,
        "readOnly": False, "eventType": "AwsConsoleSignIn", "managementEvent": True,
        "recipientAccountId": "111111111111", "eventCategory": "Management",
    }

def write(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wt", compresslevel=9) as f:
        f.write(json.dumps({"Records": records}, separators=(",", ":")))
    os.utime(path, (0, 0))

day = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/20"
write(f"{work}/flood/{day}/flood.json.gz", [login(0, True) for _ in range(100_000)])
write(f"{work}/distinct/{day}/distinct.json.gz", [login(i, False) for i in range(100_000)])
for k in range(10):
    recs = []
    for j in range(100_000):
        i = k * 100_000 + j
        recs.append({
            "eventVersion": "1.08",
            "userIdentity": {"type": "AssumedRole", "principalId": "AROA:%d" % i,
                             "arn": "arn:aws:sts::111111111111:assumed-role/r%d/s%d" % (i, i),
                             "accountId": "111111111111"},
            "eventTime": "2026-11-20T10:%02d:%02dZ" % (j // 6000 % 60, j // 100 % 60),
            "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.%d" % (i % 250), "userAgent": "aws-cli/2.15.0",
            "errorCode": "AccessDenied", "errorMessage": "Access Denied",
            "requestParameters": None, "responseElements": None,
            "eventID": "d%035d" % i, "eventType": "AwsApiCall", "recipientAccountId": "111111111111",
        })
    write(f"{work}/denied/{day}/denied-{k}.json.gz", recs)
big = login(0, False)
big["userAgent"] = "A" * (300 << 20)
write(f"{work}/string/{day}/string.json.gz", [big])
os.makedirs(f"{work}/errors/{day}", exist_ok=True)
with gzip.open(f"{work}/errors/{day}/errors.json.gz", "wb", compresslevel=9) as f:
    f.write(b"1\n" * 4_000_000)
EOF

run() { # name, then the command
    local name="$1"; shift
    local out="$work/$name.time"
    /usr/bin/time -v "$@" >"$work/$name.out" 2>"$out" || true
    local kb
    kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out")
    printf '%-10s peak RSS %6d MiB  %s\n' "$name" $((kb / 1024)) \
        "$(grep -c '' "$work/$name.jsonl" 2>/dev/null || true) alert lines"
}

daemon() { # name [extra config]
    local name="$1" extra="${2:-}"
    rm -rf "$work/$name.state" "$work/$name.jsonl"
    cat >"$work/$name.toml" <<EOF
[state]
dir = "$work/$name.state"
[[sources.files]]
path = "$work/$name"
[output]
jsonl_path = "$work/$name.jsonl"
include_event = true
[http]
listen = ""
$extra
EOF
    run "$name" "$bin" run --config "$work/$name.toml" --once
}

ls -l "$work"/flood/*/*/*/*/*/*/*/*.gz | awk '{print "flood object:", $5, "bytes"}'
daemon flood
daemon distinct
daemon denied
daemon string "[limits]
max_object_bytes = 536870912"
run string-scan "$bin" scan --max-object-bytes 536870912 "$work/string"
daemon errors
run errors-scan "$bin" scan "$work/errors"
echo "inputs and outputs in $work"
