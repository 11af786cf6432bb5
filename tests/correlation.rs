//! Correlation rules end to end through `trailwatch scan`: windows on
//! eventTime, out-of-order delivery, lateness, group bounds, and the
//! `generate` default (referenced rules do not alert on their own).

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const RULES: &str = r#"
title: Denied call
name: denied
id: 7d4a1d1e-0000-4000-8000-000000000001
logsource: {product: aws, service: cloudtrail}
detection:
  sel:
    errorCode: AccessDenied
  condition: sel
level: low
---
title: Denied burst
id: 7d4a1d1e-0000-4000-8000-000000000002
correlation:
  type: event_count
  rules: [denied]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {gte: 10}
level: high
---
title: Failed console login
name: failed_login
id: 7d4a1d1e-0000-4000-8000-000000000003
logsource: {product: aws, service: cloudtrail}
detection:
  sel:
    eventName: ConsoleLogin
    responseElements.ConsoleLogin: Failure
  condition: sel
---
title: Password spraying
id: 7d4a1d1e-0000-4000-8000-000000000004
correlation:
  type: value_count
  rules: [failed_login]
  group-by: [sourceIPAddress]
  timespan: 15m
  condition: {field: userIdentity.userName, gte: 3}
level: high
---
title: Successful console login
name: good_login
id: 7d4a1d1e-0000-4000-8000-000000000005
logsource: {product: aws, service: cloudtrail}
detection:
  sel:
    eventName: ConsoleLogin
    responseElements.ConsoleLogin: Success
  condition: sel
---
title: Failed then successful login
id: 7d4a1d1e-0000-4000-8000-000000000006
correlation:
  type: temporal_ordered
  rules: [failed_login, good_login]
  group-by: [userIdentity.userName]
  timespan: 10m
level: critical
generate: true
"#;

/// 2026-11-20 10:MM:SS, seconds past 59 carried into minutes.
fn at(min: u32, sec: u32) -> String {
    let t = min * 60 + sec;
    format!("2026-11-20T10:{:02}:{:02}Z", t / 60, t % 60)
}

fn denied(id: &str, arn: &str, time: &str) -> Value {
    json!({"eventVersion":"1.09","eventID":id,"eventTime":time,"eventName":"GetObject",
           "errorCode":"AccessDenied","userIdentity":{"type":"AssumedRole","arn":arn}})
}

fn login(id: &str, user: &str, ip: &str, ok: bool, time: &str) -> Value {
    json!({"eventVersion":"1.09","eventID":id,"eventTime":time,"eventName":"ConsoleLogin",
           "sourceIPAddress":ip,"userIdentity":{"type":"IAMUser","userName":user},
           "responseElements":{"ConsoleLogin": if ok {"Success"} else {"Failure"}}})
}

fn write(dir: &Path, name: &str, records: &[Value]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, json!({ "Records": records }).to_string()).unwrap();
    p
}

fn run(dir: &Path, extra: &[&str], files: &[&Path]) -> (Vec<Value>, String) {
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let out = trailwatch()
        .arg("scan")
        .arg("--rules")
        .arg(&rules)
        .args(extra)
        .args(files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (alerts(&out.stdout), stderr)
}

fn titled<'a>(alerts: &'a [Value], title: &str) -> Vec<&'a Value> {
    alerts.iter().filter(|a| a["rule_title"] == title).collect()
}

#[test]
fn event_count_fires_per_group_and_hides_the_base_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = Vec::new();
    for i in 0..10 {
        recs.push(denied(&format!("a{i}"), "arn:A", &at(0, i * 20)));
        if i < 9 {
            recs.push(denied(&format!("b{i}"), "arn:B", &at(0, i * 20)));
        }
    }
    let f = write(dir.path(), "f.json", &recs);
    let (alerts, stderr) = run(dir.path(), &[], &[&f]);
    assert!(
        titled(&alerts, "Denied call").is_empty(),
        "base rule is hidden"
    );
    let bursts = titled(&alerts, "Denied burst");
    assert_eq!(bursts.len(), 1, "{alerts:?}\n{stderr}");
    let b = bursts[0];
    assert_eq!(b["correlation"], "event_count");
    assert_eq!(b["count"], 10);
    assert_eq!(b["group"], json!({"userIdentity.arn": "arn:A"}));
    let ids: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    assert_eq!(b["event_ids"], json!(ids));
    assert_eq!(b["first_event_time"], at(0, 0));
    assert_eq!(b["event_time"], at(3, 0));
    assert_eq!(b["level"], "high");
}

#[test]
fn spread_beyond_the_timespan_does_not_fire() {
    let dir = tempfile::tempdir().unwrap();
    // 10 events, one a minute: never 10 within 5 minutes.
    let recs: Vec<Value> = (0..10)
        .map(|i| denied(&format!("a{i}"), "arn:A", &at(i, 0)))
        .collect();
    let f = write(dir.path(), "f.json", &recs);
    let (alerts, _) = run(dir.path(), &[], &[&f]);
    assert!(titled(&alerts, "Denied burst").is_empty(), "{alerts:?}");
}

#[test]
fn out_of_order_files_count_within_lateness_only() {
    let dir = tempfile::tempdir().unwrap();
    // The first file holds the later half of the burst; the second, read
    // after it, holds events 4 minutes older.
    let late: Vec<Value> = (5..10)
        .map(|i| denied(&format!("a{i}"), "arn:A", &at(4, i)))
        .collect();
    let early: Vec<Value> = (0..5)
        .map(|i| denied(&format!("a{i}"), "arn:A", &at(0, i)))
        .collect();
    let f1 = write(dir.path(), "1.json", &late);
    let f2 = write(dir.path(), "2.json", &early);
    let (alerts, _) = run(dir.path(), &[], &[&f1, &f2]);
    assert_eq!(
        titled(&alerts, "Denied burst").len(),
        1,
        "default lateness is 15 min"
    );

    let (alerts, stderr) = run(dir.path(), &["--lateness-secs", "60"], &[&f1, &f2]);
    assert!(titled(&alerts, "Denied burst").is_empty());
    assert!(
        stderr.contains("correlation: 5 late events dropped"),
        "{stderr}"
    );
}

#[test]
fn value_count_counts_distinct_values() {
    let dir = tempfile::tempdir().unwrap();
    let recs = vec![
        login("1", "alice", "198.51.100.7", false, &at(0, 0)),
        login("2", "alice", "198.51.100.7", false, &at(0, 10)),
        login("3", "bob", "198.51.100.7", false, &at(0, 20)),
        login("4", "carol", "203.0.113.9", false, &at(0, 30)),
        login("5", "dave", "198.51.100.7", false, &at(1, 0)),
    ];
    let f = write(dir.path(), "f.json", &recs);
    let (alerts, _) = run(dir.path(), &[], &[&f]);
    let spray = titled(&alerts, "Password spraying");
    assert_eq!(spray.len(), 1, "{alerts:?}");
    assert_eq!(spray[0]["count"], 3, "alice, bob, dave");
    assert_eq!(spray[0]["group"]["sourceIPAddress"], "198.51.100.7");
    assert_eq!(spray[0]["event_ids"], json!(["1", "2", "3", "5"]));
}

#[test]
fn temporal_ordered_needs_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let ordered = vec![
        login("f", "eve", "192.0.2.1", false, &at(0, 0)),
        login("s", "eve", "192.0.2.1", true, &at(2, 0)),
    ];
    let f = write(dir.path(), "f.json", &ordered);
    let (alerts, _) = run(dir.path(), &[], &[&f]);
    let hits = titled(&alerts, "Failed then successful login");
    assert_eq!(hits.len(), 1, "{alerts:?}");
    assert_eq!(hits[0]["event_ids"], json!(["f", "s"]));
    // generate: true keeps the referenced rules' own alerts.
    assert_eq!(titled(&alerts, "Successful console login").len(), 1);

    let reversed = vec![
        login("s", "eve", "192.0.2.1", true, &at(0, 0)),
        login("f", "eve", "192.0.2.1", false, &at(2, 0)),
    ];
    let f = write(dir.path(), "r.json", &reversed);
    let (alerts, _) = run(dir.path(), &[], &[&f]);
    assert!(
        titled(&alerts, "Failed then successful login").is_empty(),
        "{alerts:?}"
    );
}

#[test]
fn groups_are_bounded_and_untimed_events_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs: Vec<Value> = (0..50)
        .map(|i| denied(&format!("x{i}"), &format!("arn:{i}"), &at(0, i)))
        .collect();
    let mut untimed = denied("u", "arn:u", "");
    untimed.as_object_mut().unwrap().remove("eventTime");
    recs.push(untimed);
    let f = write(dir.path(), "f.json", &recs);
    let (_, stderr) = run(dir.path(), &["--max-groups", "10"], &[&f]);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("correlation:"))
        .unwrap();
    assert!(line.contains("1 without eventTime"), "{line}");
    let evicted: u64 = line
        .split(", ")
        .find(|part| part.contains(" groups and "))
        .and_then(|part| part.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(evicted >= 40, "{line}");
}

#[test]
fn builtin_burst_thresholds_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Value> = (0..4)
        .map(|i| denied(&format!("a{i}"), "arn:A", &at(0, i * 5)))
        .collect();
    let f = write(dir.path(), "f.json", &recs);
    let scan = |extra: &[&str]| {
        let out = trailwatch()
            .arg("scan")
            .args(extra)
            .arg(&f)
            .output()
            .unwrap();
        (
            out.status.code(),
            alerts(&out.stdout),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let bursts = |a: &[Value]| {
        a.iter()
            .filter(|a| a["rule_name"] == "access_denied_burst")
            .count()
    };
    let (_, a, _) = scan(&[]);
    assert_eq!(bursts(&a), 0, "the pack's default is 10");
    let (code, a, stderr) = scan(&["--threshold", "access_denied_burst=4"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(bursts(&a), 1);
    let (code, _, stderr) = scan(&["--threshold", "no_such_rule=4"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("no correlation rule named `no_such_rule`"),
        "{stderr}"
    );
    let (code, _, _) = scan(&["--threshold", "access_denied_burst"]);
    assert_eq!(code, Some(2));
}
