//! The CloudWatch Logs source against moto on loopback: CloudTrail records
//! put as log events are read once; reruns (which re-read the lookback
//! window) alert nothing again; events added later are picked up.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

fn identities(alerts: &[Value]) -> BTreeSet<String> {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{}|{}|{}|{}",
                a["rule_id"], a["event_id"], a["group"], a["event_ids"][0]
            )
        })
        .collect()
}

fn run(moto: &moto::Moto, dir: &Path) -> String {
    moto.run_once(
        dir,
        "[[sources.cloudwatch]]\nlog_group = \"trail\"\nmax_requests_per_sec = 5",
    )
}

fn put(
    rt: &tokio::runtime::Runtime,
    logs: &aws_sdk_cloudwatchlogs::Client,
    records: &[Value],
    base_ms: i64,
) {
    moto::put_log_events(
        rt,
        logs,
        ("trail", "123456789012_CloudTrail_us-east-1"),
        records,
        base_ms,
    );
}

#[test]
fn log_events_are_read_once_and_new_ones_picked_up() {
    let moto = moto::Moto::start();
    let logs = moto.logs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        logs.create_log_group()
            .log_group_name("trail")
            .send()
            .await
            .unwrap();
        logs.create_log_stream()
            .log_group_name("trail")
            .log_stream_name("123456789012_CloudTrail_us-east-1")
            .send()
            .await
            .unwrap();
    });
    let dir_logs = shared_data().join("cloudtrail/logs/stratus-red-team");
    let first = dir_logs.join("aws.credential-access.ec2-get-password-data.json.gz");
    let second = dir_logs.join("aws.persistence.iam-create-admin-user.json.gz");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    put(&rt, &logs, &records_of(&first), now - 600_000);

    let dir = tempfile::tempdir().unwrap();
    run(&moto, dir.path());
    let got = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let out = trailwatch().arg("scan").arg(&first).output().unwrap();
    let want = alerts(&out.stdout);
    assert!(!want.is_empty());
    assert_eq!(identities(&got), identities(&want));
    assert_eq!(got.len(), identities(&got).len());
    assert!(
        got[0]["source"]
            .as_str()
            .unwrap()
            .starts_with("cloudwatch:trail@")
    );

    // A rerun re-reads the lookback window: nothing alerts twice.
    let stderr = run(&moto, dir.path());
    assert!(stderr.contains("alerts=0"), "{stderr}");

    // New events after the cursor are read.
    put(&rt, &logs, &records_of(&second), now - 1_000);
    run(&moto, dir.path());
    let after = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let out = trailwatch()
        .arg("scan")
        .arg(&first)
        .arg(&second)
        .output()
        .unwrap();
    assert_eq!(identities(&after), identities(&alerts(&out.stdout)));
    assert_eq!(after.len(), identities(&after).len(), "nothing twice");
}
