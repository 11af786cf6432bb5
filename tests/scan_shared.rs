//! `trailwatch scan` over the real CloudTrail logs in ../shared (see
//! `common::shared_data`). Expected matches are computed from the events with
//! serde_json, independently of the code under test, or are concrete events.

mod common;

use common::*;
use serde_json::Value;

fn scan_all() -> (Vec<Value>, String) {
    let logs = shared_data().join("cloudtrail/logs");
    let out = succeeded(trailwatch().arg("scan").arg(&logs).output().unwrap());
    (
        alerts(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn for_file<'a>(alerts: &'a [Value], file: &str, rule: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["source"].as_str().unwrap().ends_with(file) && a["rule_name"] == rule)
        .collect()
}

#[test]
fn every_shared_file_scans_without_errors() {
    let logs = shared_data().join("cloudtrail/logs");
    let mut files = 0;
    let mut records = 0;
    for e in walkdir::WalkDir::new(&logs) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            files += 1;
            records += records_of(e.path()).len();
        }
    }
    let (_, stderr) = scan_all();
    assert!(
        stderr.contains(&format!(
            "scanned {files} files (0 digests skipped), {records} records"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("errors: 0"), "{stderr}");
}

#[test]
fn stratus_admin_user_yields_the_access_key_creation() {
    let (alerts, _) = scan_all();
    let hits = for_file(
        &alerts,
        "aws.persistence.iam-create-admin-user.json.gz",
        "access_key_created",
    );
    assert_eq!(hits.len(), 1, "{hits:?}");
    let a = hits[0];
    assert_eq!(a["event_id"], "94faedcc-0fa4-46e6-9322-022e8e934f04");
    assert_eq!(a["event_name"], "CreateAccessKey");
    assert_eq!(a["principal"], "arn:aws:iam::229654561268:user/christophe");
    assert_eq!(a["account"], "229654561268");
    assert_eq!(a["level"], "informational");
}

#[test]
fn stratus_get_password_data_yields_every_denied_call() {
    let file = "aws.credential-access.ec2-get-password-data.json.gz";
    let path = shared_data()
        .join("cloudtrail/logs/stratus-red-team")
        .join(file);
    let expected: Vec<String> = records_of(&path)
        .iter()
        .filter(|r| {
            let code = r["errorCode"].as_str().unwrap_or("");
            code.contains("AccessDenied")
                || code.ends_with("UnauthorizedOperation")
                || code.starts_with("Unauthorized")
        })
        .map(|r| r["eventID"].as_str().unwrap().to_string())
        .collect();
    assert!(expected.len() >= 30, "the recording has 30+ denied calls");
    let (alerts, _) = scan_all();
    let got: Vec<String> = for_file(&alerts, file, "access_denied")
        .iter()
        .map(|a| a["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected, "same events, in file order");
    assert!(
        for_file(&alerts, file, "access_denied")
            .iter()
            .any(|a| a["event_name"] == "GetPasswordData")
    );
}

#[test]
fn opensearch_day_has_no_root_login() {
    let (alerts, _) = scan_all();
    let root: Vec<_> = alerts
        .iter()
        .filter(|a| {
            a["source"].as_str().unwrap().contains("opensearch-catalog")
                && a["rule_name"] == "root_console_login"
        })
        .collect();
    assert!(root.is_empty(), "{root:?}");
}

#[test]
fn root_logins_match_the_events_independently_found() {
    // Every successful root ConsoleLogin in the corpus, found with serde_json.
    let logs = shared_data().join("cloudtrail/logs");
    let mut expected = Vec::new();
    for e in walkdir::WalkDir::new(&logs).sort_by_file_name() {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        for r in records_of(e.path()) {
            if r["eventName"] == "ConsoleLogin"
                && r["userIdentity"]["type"] == "Root"
                && r["responseElements"]["ConsoleLogin"] == "Success"
            {
                expected.push(r["eventID"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(
        !expected.is_empty(),
        "the AWS docs examples include root logins"
    );
    let (alerts, _) = scan_all();
    let got: Vec<String> = alerts
        .iter()
        .filter(|a| a["rule_name"] == "root_console_login")
        .map(|a| a["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn alerts_point_at_real_records() {
    let (alerts, _) = scan_all();
    assert!(!alerts.is_empty());
    for a in &alerts {
        let recs = records_of(std::path::Path::new(a["source"].as_str().unwrap()));
        let r = &recs[a["record"].as_u64().unwrap() as usize];
        assert_eq!(r["eventID"], a["event_id"]);
        assert_eq!(r["eventName"], a["event_name"]);
        assert_eq!(r["sourceIPAddress"], a["source_ip"]);
        for key in [
            "rule_id",
            "rule_title",
            "level",
            "event_id",
            "event_name",
            "event_source",
            "event_time",
            "account",
            "region",
            "principal",
            "source_ip",
            "user_agent",
            "source",
        ] {
            assert!(a.get(key).is_some(), "alert lacks {key}: {a}");
        }
    }
}
