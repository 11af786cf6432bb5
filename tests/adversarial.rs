//! Adversarial input, one test per case: nesting deeper than any parser
//! stack, invalid UTF-8, duplicate keys, a million tiny records, and a
//! flood of distinct principals against the correlation state. Each must
//! cost only the damaged record (counted and logged by name), and state
//! must stay within its bounds. (Gzip bombs, truncated and concatenated
//! members, wrong-typed fields and a 50 MB record are in scan_inputs.rs;
//! metric label bounds in metrics.rs.)

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

fn record(id: &str, name: &str, arn: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "eventTime": "2026-11-20T10:00:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "aws-cli/2",
        "eventID": id,
        "recipientAccountId": "123456789012",
        "userIdentity": {"type": "IAMUser", "arn": arn, "accountId": "123456789012"},
        "requestParameters": {"userName": "victim"},
    })
}

/// Write `text` as `name` in `dir`, scan it; (exit code, alerts, stderr).
fn scan_text(dir: &Path, name: &str, text: &[u8], args: &[&str]) -> (i32, Vec<Value>, String) {
    let f: PathBuf = dir.join(name);
    std::fs::write(&f, text).unwrap();
    let out = trailwatch()
        .arg("scan")
        .args(args)
        .arg(&f)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        alerts(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ids(alerts: &[Value], title: &str) -> Vec<String> {
    alerts
        .iter()
        .filter(|a| a["rule_title"] == title)
        .map(|a| a["event_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Records of a native file around a raw record text.
fn around(raw: &str) -> String {
    format!(
        "{{\"Records\":[{},{raw},{}]}}",
        record(
            "before",
            "CreateAccessKey",
            "arn:aws:iam::123456789012:user/a"
        ),
        record(
            "after",
            "CreateAccessKey",
            "arn:aws:iam::123456789012:user/a"
        )
    )
}

const KEY_CREATED: &str = "IAM Access Key Created for Another User";

#[test]
fn nesting_beyond_any_stack_costs_only_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let arrays = format!(
        "{{\"eventName\":\"CreateAccessKey\",\"eventID\":\"deep\",\"requestParameters\":{}{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let (code, alerts, stderr) =
        scan_text(dir.path(), "arrays.json", around(&arrays).as_bytes(), &[]);
    assert_eq!(code, 0, "{stderr}"); // bad input is reported, not fatal
    assert_eq!(ids(&alerts, KEY_CREATED), ["before", "after"]);
    assert!(
        stderr.contains("arrays.json") && stderr.contains("record 1"),
        "{stderr}"
    );
    assert!(stderr.contains("1  invalid_json"), "{stderr}");

    // Unclosed objects to the end of the file: the rest is lost, the first
    // record is not.
    let objects = format!(
        "{{\"Records\":[{},{}",
        record(
            "first",
            "CreateAccessKey",
            "arn:aws:iam::123456789012:user/a"
        ),
        "{\"a\":".repeat(300_000)
    );
    let (_, alerts, stderr) = scan_text(dir.path(), "objects.json", objects.as_bytes(), &[]);
    assert_eq!(ids(&alerts, KEY_CREATED), ["first"], "{stderr}");
    assert!(stderr.contains("objects.json"), "{stderr}");

    // Deep but within the parser's limit: matched, and the event attached
    // to the alert is cut at 32 levels, so the alert stays readable by
    // serde_json (the outbox's reader, which stops at 128).
    let mut ok = record(
        "nested",
        "CreateAccessKey",
        "arn:aws:iam::123456789012:user/a",
    );
    let mut v = json!(1);
    for _ in 0..500 {
        v = json!([v]);
    }
    ok["requestParameters"]["policy"] = v;
    let (code, alerts, stderr) = scan_text(
        dir.path(),
        "nested.json",
        around(&ok.to_string()).as_bytes(),
        &["--with-event"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids(&alerts, KEY_CREATED), ["before", "nested", "after"]);
    let event = &alerts.iter().find(|a| a["event_id"] == "nested").unwrap()["event"];
    assert_eq!(event["eventID"], "nested");
    assert!(event.to_string().contains("levels omitted"), "{event}");
}

#[test]
fn invalid_utf8_costs_only_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let bad = record(
        "bad",
        "CreateAccessKey",
        "arn:aws:iam::123456789012:user/PLACEHOLDER",
    )
    .to_string()
    .into_bytes();
    let at = bad.windows(11).position(|w| w == b"PLACEHOLDER").unwrap();
    let mut text = around("RAW").into_bytes();
    let raw = text.windows(3).position(|w| w == b"RAW").unwrap();
    let mut rec = bad.clone();
    rec.splice(at..at + 11, b"\xc3\x28\xff\xfe".iter().copied());
    text.splice(raw..raw + 3, rec);
    let (code, alerts, stderr) = scan_text(dir.path(), "utf8.json", &text, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids(&alerts, KEY_CREATED), ["before", "after"], "{stderr}");
    assert!(
        stderr.contains("utf8.json") && stderr.contains("invalid_json"),
        "{stderr}"
    );
    // Every alert is valid UTF-8 JSON (serde_json parsed them).
}

#[test]
fn duplicate_keys_are_read_the_same_way_every_time() {
    // CloudTrail never writes duplicate keys; a forged file, or request
    // parameters echoed from a caller, might. The last occurrence wins (as
    // in JSON.parse, jq, Python and serde_json), in the rules, in the
    // alert's fields and in the event attached to it, on every path
    // (whole document, per line), and such records are counted.
    let dir = tempfile::tempdir().unwrap();
    let mut raw = record("dup", "CreateAccessKey", "arn:aws:iam::123456789012:user/a").to_string();
    raw.insert_str(1, "\"eventName\":\"ListUsers\",");
    let hidden = record("hid", "ListUsers", "arn:aws:iam::123456789012:user/a").to_string();
    let mut hidden = hidden.clone();
    hidden.insert_str(1, "\"eventName\":\"CreateAccessKey\",");
    let text = around(&format!("{raw},{hidden}"));
    let (code, alerts, stderr) =
        scan_text(dir.path(), "dup.json", text.as_bytes(), &["--with-event"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids(&alerts, KEY_CREATED), ["before", "dup", "after"]);
    let dup = alerts.iter().find(|a| a["event_id"] == "dup").unwrap();
    assert_eq!(dup["event_name"], "CreateAccessKey");
    assert_eq!(dup["event"]["eventName"], "CreateAccessKey");
    assert!(
        stderr.contains("records with duplicate keys: 2"),
        "{stderr}"
    );
    // The same bytes as JSON lines (the per-line path) agree.
    let lines = format!(
        "{}\n{raw}\n{hidden}\n",
        record("l1", "CreateAccessKey", "arn:aws:iam::123456789012:user/a")
    );
    let (_, alerts, _) = scan_text(dir.path(), "dup.jsonl", lines.as_bytes(), &[]);
    assert_eq!(ids(&alerts, KEY_CREATED), ["l1", "dup"]);
    // A duplicate inside a nested object a rule reads: the last one too.
    let policy = |first: &str, last: &str| {
        let mut r = record(
            "pol",
            "AttachUserPolicy",
            "arn:aws:iam::123456789012:user/a",
        );
        r["requestParameters"] = serde_json::json!({"userName": "b"});
        let text = r.to_string();
        text.replacen(
            "{\"userName\":\"b\"}",
            &format!("{{\"policyArn\":\"{first}\",\"userName\":\"b\",\"policyArn\":\"{last}\"}}"),
            1,
        )
    };
    let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    let benign = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    let (_, alerts, stderr) = scan_text(
        dir.path(),
        "nested.jsonl",
        format!("{}\n", policy(benign, admin)).as_bytes(),
        &[],
    );
    assert!(
        alerts
            .iter()
            .any(|a| a["event_id"] == "pol" && a["rule_name"] == "admin_policy_attached"),
        "{alerts:?}"
    );
    assert!(
        stderr.contains("records with duplicate keys: 1"),
        "{stderr}"
    );
    let (_, alerts, _) = scan_text(
        dir.path(),
        "nested2.jsonl",
        format!("{}\n", policy(admin, benign)).as_bytes(),
        &[],
    );
    assert!(
        !alerts
            .iter()
            .any(|a| a["rule_name"] == "admin_policy_attached"),
        "{alerts:?}"
    );
}

#[test]
fn a_million_tiny_records() {
    let dir = tempfile::tempdir().unwrap();
    let n = 1_000_000;
    let mut text = String::with_capacity(n * 20);
    text.push_str("{\"Records\":[");
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        text.push_str("{\"eventName\":\"x\"}");
    }
    text.push_str("]}");
    let (code, alerts, stderr) = scan_text(dir.path(), "tiny.json.gz", &gzip(text.as_bytes()), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(alerts.is_empty());
    assert!(stderr.contains(&format!("{n} records")), "{stderr}");
    assert!(stderr.contains("errors: 0"), "{stderr}");
}

#[test]
fn a_flood_of_distinct_principals_keeps_correlation_state_bounded() {
    // 200,000 denied calls, each from a new principal and address: every
    // one opens a burst window. With 1,000 groups allowed, the oldest are
    // evicted (and counted); a real burst at the end still fires, once.
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000;
    let mut recs = Vec::with_capacity(n + 10);
    for i in 0..n {
        let mut r = record(
            &format!("d{i}"),
            "GetUser",
            &format!("arn:aws:iam::123456789012:user/u{i}"),
        );
        r["errorCode"] = json!("AccessDenied");
        r["sourceIPAddress"] = json!(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255));
        recs.push(r);
    }
    for i in 0..10 {
        let mut r = record(
            &format!("burst{i}"),
            "GetUser",
            "arn:aws:iam::123456789012:user/attacker",
        );
        r["errorCode"] = json!("AccessDenied");
        recs.push(r);
    }
    let text = json!({ "Records": recs }).to_string();
    let (code, alerts, stderr) = scan_text(
        dir.path(),
        "flood.json.gz",
        &gzip(text.as_bytes()),
        &["--max-groups", "1000"],
    );
    assert_eq!(code, 0, "{stderr}");
    let bursts: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule_title"] == "Burst of Denied API Calls From One Principal")
        .collect();
    assert_eq!(bursts.len(), 1, "{stderr}");
    assert_eq!(
        bursts[0]["group"]["userIdentity.arn"],
        "arn:aws:iam::123456789012:user/attacker"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("correlation:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let evicted: u64 = line
        .split(", ")
        .find(|part| part.contains(" groups and "))
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(evicted >= (n - 1000) as u64, "{line}");
}

/// 100,000 copies of one root console login in one object (370 KB of
/// gzip): with events attached, as the daemon runs, each rule matches the
/// event once, before its event is built; the copies are counted. (Peak
/// memory on this input is measured in benches/memory.sh.)
#[test]
fn a_flood_of_one_record_is_matched_once_per_rule() {
    use trailwatch::pipeline::{Limits, process_object};
    let login = json!({
        "eventVersion": "1.08", "eventID": "same", "eventName": "ConsoleLogin",
        "eventSource": "signin.amazonaws.com", "eventTime": "2026-11-20T10:00:00Z",
        "userIdentity": {"type": "Root", "arn": "arn:aws:iam::123456789012:root"},
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {"MFAUsed": "No"}, "recipientAccountId": "123456789012",
    });
    let n = 100_000;
    let text = json!({ "Records": vec![login; n] }).to_string();
    let gz = gzip(text.as_bytes());
    let rules = trailwatch::rules::RuleSet::builtin();
    let limits = Limits {
        with_events: true,
        ..Limits::default()
    };
    let r = process_object("flood.json.gz", &gz, &rules, limits);
    assert_eq!(r.records, n as u64);
    let mut per_rule = std::collections::BTreeMap::new();
    for m in &r.alerts {
        *per_rule.entry(m.rule).or_insert(0) += 1;
        assert!(m.event.is_some());
    }
    assert!(per_rule.len() >= 2, "{per_rule:?}");
    assert!(per_rule.values().all(|c| *c == 1), "{per_rule:?}");
    assert!(
        r.matches_deduplicated >= (per_rule.len() * (n - 1)) as u64,
        "every other copy is counted as a repeat: {}",
        r.matches_deduplicated
    );
}

#[test]
fn millions_of_problems_keep_a_hundred_messages_and_count_the_rest() {
    use trailwatch::pipeline::{KEPT_ERRORS_PER_OBJECT, Limits, process_object};
    // 2,000,000 lines that are not records, with one good record first and
    // one last, in a 4 KB gzip: each line is a problem, and memory must not
    // grow with them.
    let n = 2_000_000;
    let good =
        |id: &str| record(id, "CreateAccessKey", "arn:aws:iam::123456789012:user/a").to_string();
    let mut text = good("first") + "\n";
    text.push_str(&"1\n".repeat(n));
    text.push_str(&good("last"));
    text.push('\n');
    let gz = gzip(text.as_bytes());
    let rules = trailwatch::rules::RuleSet::builtin();
    let report = process_object("lines.json.gz", &gz, &rules, Limits::default());
    assert_eq!(
        report.records, 2,
        "the records around the problems are read"
    );
    assert_eq!(report.error_count(), n as u64);
    assert_eq!(report.errors.len(), KEPT_ERRORS_PER_OBJECT);
    // The kept ones are the first by position, whatever order the parallel
    // chunks reported them in.
    let offsets: Vec<u64> = report
        .errors
        .iter()
        .map(|e| {
            let m = e.message.split("byte offset ").nth(1).unwrap_or("");
            m.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let first = good("first").len() as u64 + 1;
    let expected: Vec<u64> = (0..KEPT_ERRORS_PER_OBJECT as u64)
        .map(|i| first + 2 * i)
        .collect();
    assert_eq!(offsets, expected);

    // The scan logs twenty and one line for the rest, and counts them all.
    let dir = tempfile::tempdir().unwrap();
    let (code, alerts, stderr) = scan_text(dir.path(), "lines.json.gz", &gz, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids(&alerts, KEY_CREATED), ["first", "last"]);
    assert!(stderr.contains(&format!("errors: {n}")), "{stderr}");
    assert!(
        stderr.contains(&format!("{} more errors in this object", n - 20)),
        "{stderr}"
    );
    assert!(stderr.lines().count() < 40, "{}", stderr.lines().count());
}
