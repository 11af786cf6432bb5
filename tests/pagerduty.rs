//! The PagerDuty sink end to end: a loopback receiver standing in for the
//! Events API v2 (answering 500 to the first requests) gets one `trigger`
//! per message, in PagerDuty's shape, for every alert at or above the
//! sink's level, through the failures; one principal's story is one
//! PagerDuty incident (one `dedup_key`), resolved once over when asked;
//! the routing key is never logged.

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
             [accounts]\n\"123456789012\" = \"production\"\n\
             [pagerduty]\nrouting_key_env = \"TW_PD_KEY\"\nurl = \"http://127.0.0.1:{port}/v2/enqueue\"\n\
             min_level = \"medium\"\n[pagerduty.storm]\nsuppress_secs = 0\nretry_initial_secs = 1\nretry_max_secs = 1\n",
            dir.path().join("state"),
            into,
            dir.path().join("alerts.jsonl"),
        ),
    )
    .unwrap();
    let log = run_once(&cfg, &[], &[("TW_PD_KEY", "R0UT1NGKEYSECRET")]);
    assert!(log.contains("delivery failed"), "{log}");
    assert!(
        !log.contains("R0UT1NGKEYSECRET"),
        "the routing key is a secret: {log}"
    );

    let written = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    // `[accounts]` names the account in every sink: the JSON lines carry
    // the name, the pages show it beside the id.
    for a in &written {
        let named = a["account"] == "123456789012";
        assert_eq!(a["account_name"] == "production", named, "{a}");
    }
    assert!(written.iter().any(|a| a["account"] == "123456789012"));
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
        if body["payload"]["custom_details"]["alert"]["account"] == "123456789012" {
            assert_eq!(p["source"], "production (123456789012)", "{p}");
            assert!(summary.contains("(production (123456789012))"), "{summary}");
        }
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

/// With `resolve = true`, every incident is resolved once it has been
/// quiet for `incident_secs`: one `resolve` per incident key, after every
/// trigger of that key (the first trigger fails and is retried: the
/// resolve still comes after it); alerts outside incidents are never
/// resolved. A long-running daemon, stopped with SIGTERM.
#[test]
fn incidents_over_are_resolved_after_their_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("in");
    std::fs::create_dir_all(&into).unwrap();
    let name = "123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json";
    std::fs::copy(fixtures().join("cloudtrail").join(name), into.join(name)).unwrap();
    let (port, accepted, _) = receiver(1);
    let cfg = dir.path().join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n\
             [output]\njsonl_path = {:?}\n[shutdown]\ngrace_secs = 10\n\
             [pagerduty]\nrouting_key_env = \"TW_PD_KEY\"\nurl = \"http://127.0.0.1:{port}/v2/enqueue\"\n\
             min_level = \"low\"\nresolve = true\n\
             [pagerduty.storm]\nsuppress_secs = 0\nincident_secs = 2\nretry_initial_secs = 1\nretry_max_secs = 1\n",
            dir.path().join("state"),
            into,
            dir.path().join("alerts.jsonl"),
        ),
    )
    .unwrap();
    let daemon = std::process::Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("TW_PD_KEY", "R0UT1NGKEYSECRET")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let incident_keys = |bodies: &[serde_json::Value]| -> BTreeSet<String> {
        bodies
            .iter()
            .filter(|b| b["event_action"] == "trigger")
            .filter_map(|b| b["dedup_key"].as_str())
            .filter(|k| k.starts_with("trailwatch-incident-"))
            .map(str::to_owned)
            .collect()
    };
    wait_for("a resolve for every incident", 60, || {
        let bodies = accepted.lock().unwrap();
        let incidents = incident_keys(&bodies);
        let resolved: BTreeSet<String> = bodies
            .iter()
            .filter(|b| b["event_action"] == "resolve")
            .filter_map(|b| b["dedup_key"].as_str().map(str::to_owned))
            .collect();
        (!incidents.is_empty() && incidents == resolved).then_some(())
    });
    // A few more rounds: nothing is resolved twice.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = daemon.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resolves queued"), "{log}");
    assert!(!log.contains("R0UT1NGKEYSECRET"), "{log}");

    let bodies = accepted.lock().unwrap();
    for key in incident_keys(&bodies) {
        let at: Vec<(usize, &str)> = bodies
            .iter()
            .enumerate()
            .filter(|(_, b)| b["dedup_key"] == key.as_str())
            .map(|(i, b)| (i, b["event_action"].as_str().unwrap()))
            .collect();
        let resolves: Vec<usize> = at
            .iter()
            .filter(|(_, a)| *a == "resolve")
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(resolves.len(), 1, "{key}: {at:?}");
        let last_trigger = at
            .iter()
            .filter(|(_, a)| *a == "trigger")
            .map(|(i, _)| *i)
            .max();
        assert!(last_trigger < Some(resolves[0]), "{key}: {at:?}");
        let r = &bodies[resolves[0]];
        assert_eq!(r["routing_key"], "R0UT1NGKEYSECRET");
        assert!(r.get("payload").is_none(), "{r}");
    }
    for b in bodies.iter().filter(|b| b["event_action"] == "resolve") {
        let key = b["dedup_key"].as_str().unwrap();
        assert!(key.starts_with("trailwatch-incident-"), "{key}");
    }
}
