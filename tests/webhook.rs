//! The webhook sink end to end: a receiver on 127.0.0.1 (a small HTTP/1.1
//! server in this test, answering 500 to the first requests) gets every
//! alert exactly once despite the failures, as Slack-compatible JSON with
//! event text defused.

mod common;
#[path = "common/receiver.rs"]
mod receiver;

use std::path::Path;

use common::*;
use receiver::receiver;
use serde_json::{Value, json};

fn config(dir: &Path, storm: &str) -> std::path::PathBuf {
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n\
             [output]\njsonl_path = {:?}\n[shutdown]\ngrace_secs = 20\n\
             [accounts]\n\"123456789012\" = \"production\"\n\
             [webhook]\nurl_env = \"TW_WEBHOOK_URL\"\nmin_level = \"informational\"\n[webhook.storm]\nincident_secs = 0\n{storm}",
            dir.join("state"),
            dir.join("in"),
            dir.join("alerts.jsonl"),
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn every_alert_arrives_once_through_failures_with_mentions_defused() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("in");
    std::fs::create_dir_all(&into).unwrap();
    let mut records = records_of(
        &fixtures()
            .join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json"),
    );
    for r in &mut records {
        r["userIdentity"]["arn"] = json!("<!channel> <https://evil.example|login here>");
    }
    std::fs::write(
        into.join("f.json"),
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
    )
    .unwrap();
    let (port, accepted, requests) = receiver(3);
    let url = format!("http://127.0.0.1:{port}/hooks/T000/B000/XXXXSECRETXXXX");
    let cfg = config(
        dir.path(),
        "suppress_secs = 0\nretry_initial_secs = 1\nretry_max_secs = 1\n",
    );
    let log = run_once(&cfg, &[], &[("TW_WEBHOOK_URL", url.as_str())]);
    assert!(log.contains("delivery failed"), "{log}");
    assert!(
        !log.contains("XXXXSECRETXXXX"),
        "the URL is a secret: {log}"
    );

    let alerts = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let accepted = accepted.lock().unwrap();
    assert_eq!(*requests.lock().unwrap(), accepted.len() + 3);
    let mut seqs = Vec::new();
    let mut got = Vec::new();
    for body in accepted.iter() {
        let text = body["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(text.contains("&lt;!channel&gt;"));
        // `[accounts]` names the account beside its id.
        assert!(
            text.contains("account `production (123456789012)`"),
            "{text}"
        );
        for a in body["trailwatch"]["alerts"].as_array().unwrap() {
            seqs.push(a["seq"].as_u64().unwrap());
            got.push(a["alert"].clone());
        }
    }
    let mut unique = seqs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seqs.len(), "an alert posted twice");
    let key = |a: &Value| (a["rule_id"].to_string(), a["event_id"].to_string());
    let mut want: Vec<_> = alerts.iter().map(key).collect();
    let mut have: Vec<_> = got.iter().map(key).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
}
