//! Bursts a team can trust, against the daemon's real peers (moto's
//! CloudWatch Logs on loopback, the file system): the same event counted
//! once across sources and restarts, a future-dated event silencing
//! nothing, and a backlog read in key order raising what `scan` raises.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::path::Path;

use common::*;
use serde_json::{Value, json};
use trailwatch::time::iso_time as iso;

const BURST: &str = "Burst of Denied API Calls From One Principal";

fn denied(id: &str, arn: &str, time: &str, account: &str) -> Value {
    json!({"eventVersion":"1.09","eventID":id,"eventTime":time,"eventName":"GetObject",
           "eventSource":"s3.amazonaws.com","errorCode":"AccessDenied",
           "recipientAccountId":account,
           "userIdentity":{"type":"AssumedRole","arn":arn,"accountId":account}})
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn bursts(dir: &Path) -> Vec<Value> {
    let path = dir.join("alerts.jsonl");
    let text = std::fs::read(&path).unwrap_or_default();
    alerts(&text)
        .into_iter()
        .filter(|a| a["rule_title"] == BURST)
        .collect()
}

/// Six real denied calls, delivered twice (in a file and through CloudWatch
/// Logs), then read again by the look-back of a restart: no burst of ten
/// is invented. Four more make ten: one burst, each event id once.
#[test]
fn the_same_event_counts_once_across_sources_and_restarts() {
    let moto = moto::Moto::start();
    let logs = moto.logs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    moto.create_log_stream(&rt, "trail", "s");
    let put = |records: &[Value], base: i64| {
        moto::put_log_events(&rt, &logs, ("trail", "s"), records, base)
    };
    let arn = "arn:aws:sts::123456789012:assumed-role/app/i-1";
    let now = now_ms();
    let six: Vec<Value> = (0..6)
        .map(|i| {
            denied(
                &format!("d{i}"),
                arn,
                &iso(now - 120_000 + i * 1000),
                "123456789012",
            )
        })
        .collect();
    put(&six, now - 60_000);
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("in");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        files.join("six.json"),
        json!({ "Records": six }).to_string(),
    )
    .unwrap();
    let cfg = moto.config(
        dir.path(),
        "[[sources.cloudwatch]]\nlog_group = \"trail\"\nmax_requests_per_sec = 5",
        &format!("[[sources.files]]\npath = {files:?}\nsettle_secs = 0\n"),
    );
    let run = || moto.run_config(&cfg);
    let first = run();
    assert!(
        bursts(dir.path()).is_empty(),
        "six events twice made a burst: {first}"
    );
    assert!(first.contains("duplicate"), "{first}");
    // A restart re-reads CloudWatch's look-back into the restored windows.
    let second = run();
    assert!(bursts(dir.path()).is_empty(), "{second}");
    // Four new events: ten distinct, one burst.
    let four: Vec<Value> = (6..10)
        .map(|i| {
            denied(
                &format!("d{i}"),
                arn,
                &iso(now - 120_000 + i * 1000),
                "123456789012",
            )
        })
        .collect();
    put(&four, now - 30_000);
    run();
    let got = bursts(dir.path());
    assert_eq!(got.len(), 1, "{got:?}");
    let mut ids: Vec<&str> = got[0]["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10, "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "an id twice");
}

/// A config for the files source rooted in `dir`.
fn files_config(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\nsettle_secs = 0\n[output]\njsonl_path = {:?}\n",
            dir.join("state"),
            dir.join("in"),
            dir.join("alerts.jsonl")
        ),
    )
    .unwrap();
    cfg
}

fn write_native(path: &Path, records: &[Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, json!({ "Records": records }).to_string()).unwrap();
}

/// One denied call dated 2099 (read first), then a real burst of ten from
/// another principal, then after a restart another burst: both fire, and
/// the future-dated event is counted and logged, not taken as "now".
#[test]
fn a_future_dated_event_silences_no_burst() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = files_config(dir.path());
    let input = dir.path().join("in");
    let now = now_ms();
    write_native(
        &input.join("a-future.json"),
        &[denied(
            "f1",
            "arn:aws:iam::1:user/clock",
            "2099-01-01T00:00:00Z",
            "1",
        )],
    );
    let burst = |who: &str, from: i64| -> Vec<Value> {
        (0..10)
            .map(|i| {
                denied(
                    &format!("{who}{i}"),
                    &format!("arn:aws:iam::1:user/{who}"),
                    &iso(from + i * 1000),
                    "1",
                )
            })
            .collect()
    };
    write_native(&input.join("b-burst.json"), &burst("one", now - 300_000));
    let stderr = run_once(&cfg, &[], &[]);
    assert_eq!(bursts(dir.path()).len(), 1, "{stderr}");
    assert!(stderr.contains("1 future"), "{stderr}");
    // After a restart (the windows are restored), still not silenced.
    write_native(&input.join("c-burst.json"), &burst("two", now - 200_000));
    let stderr = run_once(&cfg, &[], &[]);
    assert_eq!(bursts(dir.path()).len(), 2, "{stderr}");
}

/// A backlog listed in CloudTrail's key order (account, region, day): one
/// account's newer files are read before another's older ones. Every
/// burst `scan` finds over the same files is raised, none late.
#[test]
fn a_backlog_in_key_order_raises_the_bursts_scan_raises() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = files_config(dir.path());
    let input = dir.path().join("in");
    let now = now_ms();
    let day = 86_400_000;
    let burst = |account: &str, who: &str, from: i64| -> Vec<Value> {
        (0..10)
            .map(|i| {
                denied(
                    &format!("{account}-{who}{i}"),
                    &format!("arn:aws:iam::{account}:user/{who}"),
                    &iso(from + i * 1000),
                    account,
                )
            })
            .collect()
    };
    // Account 111... (listed first) is a day ahead of account 222...
    let a = "111111111111";
    let b = "222222222222";
    for (account, when, who) in [
        (a, now - day, "x"),
        (a, now - day / 2, "y"),
        (b, now - 2 * day, "z"),
        (b, now - 2 * day + 60_000, "w"),
    ] {
        let path = input.join(format!(
            "AWSLogs/{account}/CloudTrail/us-east-1/{who}/{account}_CloudTrail_us-east-1_{who}.json"
        ));
        write_native(&path, &burst(account, who, when));
    }
    let stderr = run_once(&cfg, &[], &[]);
    let got = bursts(dir.path());
    let out = trailwatch().arg("scan").arg(&input).output().unwrap();
    let want: Vec<Value> = alerts(&out.stdout)
        .into_iter()
        .filter(|a| a["rule_title"] == BURST)
        .collect();
    assert_eq!(want.len(), 4, "scan finds every burst");
    assert_eq!(got.len(), 4, "{stderr}");
    assert!(!stderr.contains(" late"), "{stderr}");
}
