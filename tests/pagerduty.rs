//! The PagerDuty sink end to end: a loopback receiver standing in for the
//! Events API v2 (answering 500 to the first requests) gets one `trigger`
//! per message, in PagerDuty's shape, for every alert at or above the
//! sink's level, through the failures; one principal's story is one
//! PagerDuty incident (one `dedup_key`); the routing key is never logged.

mod common;
#[path = "common/receiver.rs"]
mod receiver;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use receiver::receiver;

#[test]
fn every_alert_pages_once_in_the_events_v2_shape() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("in");
    std::fs::create_dir_all(&into).unwrap();
    for name in [
        "123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json",
        "123456789012_CloudTrail_eu-west-1_20261120T1020Z_burst.json",
    ] {
        std::fs::copy(fixtures().join("cloudtrail").join(name), into.join(name)).unwrap();
    }
    let (port, accepted, requests) = receiver(2);
    let cfg = dir.path().join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n\
             [output]\njsonl_path = {:?}\n[shutdown]\ngrace_secs = 20\n\
             [pagerduty]\nrouting_key_env = \"TW_PD_KEY\"\nurl = \"http://127.0.0.1:{port}/v2/enqueue\"\n\
             min_level = \"medium\"\n[pagerduty.storm]\nsuppress_secs = 0\nretry_initial_secs = 1\nretry_max_secs = 1\n",
            dir.path().join("state"),
            into,
            dir.path().join("alerts.jsonl"),
        ),
    )
    .unwrap();
    let out = trailwatch()
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .env("TW_PD_KEY", "R0UT1NGKEYSECRET")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("delivery failed"), "{log}");
    assert!(
        !log.contains("R0UT1NGKEYSECRET"),
        "the routing key is a secret: {log}"
    );

    let written = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let paged_levels = ["medium", "high", "critical"];
    let want: BTreeSet<(String, String)> = written
        .iter()
        .filter(|a| paged_levels.contains(&a["level"].as_str().unwrap()))
        .map(|a| (a["rule_id"].to_string(), a["event_id"].to_string()))
        .collect();
    assert!(want.len() >= 3, "{want:?}");
    let accepted = accepted.lock().unwrap();
    assert_eq!(
        *requests.lock().unwrap(),
        accepted.len() + 2,
        "two failures, retried"
    );
    let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut keys_by_principal: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for body in accepted.iter() {
        assert_eq!(body["routing_key"], "R0UT1NGKEYSECRET");
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["client"], "trailwatch");
        let key = body["dedup_key"].as_str().unwrap();
        assert!(key.starts_with("trailwatch-") && key.len() <= 255, "{key}");
        let p = &body["payload"];
        assert!(
            ["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap()),
            "{p}"
        );
        let summary = p["summary"].as_str().unwrap();
        assert!(!summary.is_empty() && summary.chars().count() <= 1024);
        assert!(!summary.contains(['\n', '\r']), "{summary}");
        assert!(p["source"].is_string() && p["component"].is_string());
        let details = &p["custom_details"];
        let mut carried = vec![details["alert"].clone()];
        carried.extend(details["folded"].as_array().cloned().unwrap_or_default());
        for a in carried {
            *got.entry((a["rule_id"].to_string(), a["event_id"].to_string()))
                .or_default() += 1;
            keys_by_principal
                .entry(a["principal"].to_string())
                .or_default()
                .insert(key.to_owned());
        }
    }
    let got_set: BTreeSet<_> = got.keys().cloned().collect();
    assert_eq!(got_set, want, "every paged alert, none below medium");
    assert!(
        got.values().all(|n| *n == 1),
        "an alert paged twice: {got:?}"
    );
    // One principal, one PagerDuty incident: root's alerts share a key.
    let root = keys_by_principal
        .iter()
        .find(|(p, _)| p.contains(":root"))
        .expect("root's alerts paged");
    assert_eq!(root.1.len(), 1, "{keys_by_principal:?}");
}
