#!/usr/bin/env python3
"""Time to alert on every ingest path, against moto on loopback.

For each path a daemon (`trailwatch run`, not `--once`) watches one source;
the bench then sends one CloudTrail event at a time (a root console sign-in
without MFA, with its own eventID) the way that path delivers it, and times
from the send to the alert line appearing in the daemon's JSON lines file:

  eventbridge      the event as an EventBridge envelope on the SQS queue
  s3_notification  a log file put in the bucket, then its S3 event on the queue
  s3_poll          a log file put in the bucket (poll_interval_secs = --poll)
  cloudwatch       a log event put in the trail's log group (same interval)

Prints p50, p99 and max per path, and each against its target: under 1 s
for the queue paths, within the poll interval plus 1 s for the polled ones.

Usage: benches/latency.py [--bin target/release/trailwatch] [--samples 50]
                          [--poll 5] [--moto-server moto_server]
Needs moto[server] and boto3 (the test venv has both: .ci/test).
"""

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ACCOUNT = "111111111111"
REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def record(event_id):
    return {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "Root",
            "principalId": ACCOUNT,
            "arn": f"arn:aws:iam::{ACCOUNT}:root",
            "accountId": ACCOUNT,
        },
        "eventTime": iso(time.time()),
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": REGION,
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "Mozilla/5.0",
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {"MFAUsed": "No"},
        "eventID": event_id,
        "eventType": "AwsConsoleSignIn",
        "recipientAccountId": ACCOUNT,
    }


def log_key(event_id):
    now = time.gmtime()
    day = time.strftime("%Y/%m/%d", now)
    stamp = time.strftime("%Y%m%dT%H%MZ", now)
    return (
        f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/{day}/"
        f"{ACCOUNT}_CloudTrail_{REGION}_{stamp}_{event_id[:8]}.json.gz"
    )


class Alerts:
    """Follows the daemon's JSON lines file."""

    def __init__(self, path):
        self.path, self.offset, self.seen = path, 0, set()

    def wait(self, event_id, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.path):
                with open(self.path, "rb") as f:
                    f.seek(self.offset)
                    data = f.read()
                cut = data.rfind(b"\n") + 1
                self.offset += cut
                for line in data[:cut].splitlines():
                    self.seen.add(json.loads(line).get("event_id"))
            if event_id in self.seen:
                return time.monotonic()
            time.sleep(0.002)
        raise SystemExit(f"no alert for {event_id} within {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/trailwatch")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--poll", type=int, default=5, help="poll interval of the polled paths (s)")
    ap.add_argument("--moto-server", default=os.environ.get("TRAILWATCH_MOTO_SERVER", "moto_server"))
    ap.add_argument("--paths", default="eventbridge,s3_notification,s3_poll,cloudwatch")
    args = ap.parse_args()

    import boto3  # from the test venv

    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    port = free_port()
    moto = subprocess.Popen(
        [args.moto_server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    logs = boto3.client("logs", endpoint_url=endpoint, region_name=REGION)
    results = {}
    try:
        for path in args.paths.split(","):
            results[path] = run_path(path, args, env, endpoint, s3, sqs, logs)
    finally:
        moto.terminate()
        moto.wait()

    print(f"\ntime to alert line, {args.samples} events per path (send -> alert in the JSON lines file)")
    print(f"{'path':<16} {'p50':>8} {'p99':>8} {'max':>8}  target")
    for path, xs in results.items():
        xs = sorted(xs)
        p50 = statistics.median(xs)
        p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
        target = 1.0 if path in ("eventbridge", "s3_notification") else args.poll + 1.0
        verdict = "met" if p99 < target else "NOT met"
        print(f"{path:<16} {p50:>7.3f}s {p99:>7.3f}s {xs[-1]:>7.3f}s  p99 < {target:g} s: {verdict}")


def run_path(path, args, env, endpoint, s3, sqs, logs):
    work = tempfile.mkdtemp(prefix=f"latency-{path}-")
    bucket, group, stream = f"trail-{path.replace('_', '-')}", f"trail-{path}", "stream"
    queue_url = None
    if path in ("eventbridge", "s3_notification"):
        queue_url = sqs.create_queue(QueueName=f"q-{path}")["QueueUrl"]
    if path in ("s3_notification", "s3_poll"):
        s3.create_bucket(Bucket=bucket)
    if path == "cloudwatch":
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    if queue_url:
        source = f'[[sources.sqs]]\nqueue_url = "{queue_url}"\nwait_time_secs = 20'
    elif path == "s3_poll":
        source = f'[[sources.s3]]\nbucket = "{bucket}"\npoll_interval_secs = {args.poll}\nlookback_days = 1'
    else:
        source = (
            f'[[sources.cloudwatch]]\nlog_group = "{group}"\npoll_interval_secs = {args.poll}\n'
            "initial_lookback_secs = 60"
        )
    cfg = os.path.join(work, "trailwatch.toml")
    alerts_path = os.path.join(work, "alerts.jsonl")
    with open(cfg, "w") as f:
        f.write(
            f'[http]\nlisten = ""\n[state]\ndir = "{work}/state"\n[output]\n'
            f'jsonl_path = "{alerts_path}"\n{source}\nendpoint_url = "{endpoint}"\nregion = "{REGION}"\n'
        )
    daemon = subprocess.Popen(
        [args.bin, "run", "--config", cfg, "--log", "warn"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "daemon.log"), "w"),
    )
    alerts = Alerts(alerts_path)
    out = []
    try:
        time.sleep(1.0)  # started, first poll done
        for i in range(args.samples + 2):  # the first two warm up
            event_id = str(uuid.uuid4())
            rec = record(event_id)
            sent = time.monotonic()
            if path == "eventbridge":
                body = {
                    "version": "0",
                    "id": str(uuid.uuid4()),
                    "detail-type": "AWS Console Sign In via CloudTrail",
                    "source": "aws.signin",
                    "account": ACCOUNT,
                    "time": rec["eventTime"],
                    "region": REGION,
                    "resources": [],
                    "detail": rec,
                }
                sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
            elif path in ("s3_notification", "s3_poll"):
                key = log_key(event_id)
                data = gzip.compress(json.dumps({"Records": [rec]}).encode())
                s3.put_object(Bucket=bucket, Key=key, Body=data)
                if path == "s3_notification":
                    note = {
                        "Records": [
                            {
                                "eventVersion": "2.1",
                                "eventSource": "aws:s3",
                                "eventName": "ObjectCreated:Put",
                                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": len(data)}},
                            }
                        ]
                    }
                    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(note))
            else:
                logs.put_log_events(
                    logGroupName=group,
                    logStreamName=stream,
                    logEvents=[{"timestamp": int(time.time() * 1000), "message": json.dumps(rec)}],
                )
            seen = alerts.wait(event_id, timeout=args.poll * 4 + 30)
            if i >= 2:
                out.append(seen - sent)
        return out
    finally:
        daemon.terminate()
        daemon.wait()
        print(f"{path}: done ({work})", file=sys.stderr)


if __name__ == "__main__":
    main()
