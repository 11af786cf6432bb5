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
    moto.create_log_stream(&rt, "trail", "123456789012_CloudTrail_us-east-1");
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

/// A queue that stays quiet (its long poll waits 20 s) no longer holds the
/// other sources: a root login put into CloudWatch Logs while the daemon
/// runs beside an idle queue alerts at CloudWatch's own pace (a 1 s poll),
/// not once the queue's long poll returns. Before, the loop waited for the
/// long poll, and the alert came after 20 s or more: the bound asserted
/// (12 s) is a behaviour, not a speed target, with ten times the expected
/// latency as margin.
#[test]
fn cloudwatch_keeps_its_pace_beside_an_idle_queue() {
    let moto = moto::Moto::start();
    let logs = moto.logs();
    let sqs = moto.sqs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    moto.create_log_stream(&rt, "trail", "123456789012_CloudTrail_us-east-1");
    let queue = rt.block_on(async {
        let q = sqs.create_queue().queue_name("quiet").send().await.unwrap();
        q.queue_url().unwrap().to_owned()
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = moto.config(
        dir.path(),
        &format!("[[sources.sqs]]\nqueue_url = {queue:?}\nwait_time_secs = 20"),
        &format!(
            "[[sources.cloudwatch]]\nlog_group = \"trail\"\npoll_interval_secs = 1\n\
             max_requests_per_sec = 5\nendpoint_url = {:?}\nregion = \"us-east-1\"",
            moto.endpoint
        ),
    );
    moto::listen_on(&cfg, port);
    let mut daemon = moto
        .daemon(&["run"], &cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    wait_for("the daemon's health endpoint", 30, || {
        http_get(&addr, "/healthz").filter(|(code, _)| *code == 200)
    });
    // The queue's first long poll is now waiting.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let fixture =
        fixtures().join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json");
    let root_login: Vec<Value> = records_of(&fixture)
        .into_iter()
        .filter(|r| r["eventName"] == "ConsoleLogin")
        .collect();
    assert_eq!(root_login.len(), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let put_at = std::time::Instant::now();
    put(&rt, &logs, &root_login, now);
    let alerted = std::panic::catch_unwind(|| {
        wait_for("the root login's alert", 12, || {
            let text = std::fs::read(dir.path().join("alerts.jsonl")).ok()?;
            alerts(&text)
                .iter()
                .any(|a| a["event_name"] == "ConsoleLogin")
                .then_some(())
        })
    });
    let took = put_at.elapsed();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        alerted.is_ok(),
        "no alert {took:?} after the event: CloudWatch waited for the queue"
    );
    eprintln!("CloudWatch event to alert beside an idle queue: {took:?}");
}
