//! The S3 polling source against a real S3-compatible server (moto on
//! loopback): CloudTrail's key layout for two accounts and two regions over
//! two days, in shuffled order, a digest file, a file delivered late into
//! an earlier day, and reruns that must not alert twice.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::path::{Path, PathBuf};

use common::*;

fn day(offset_days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    trailwatch::source::s3::day_path(now / 86_400 - offset_days)
}

fn shared_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(shared_data().join("cloudtrail/logs"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

fn s3_block(bucket: &str) -> String {
    format!("[[sources.s3]]\nbucket = {bucket:?}\nlookback_days = 3")
}

fn run_daemon(moto: &moto::Moto, dir: &Path, bucket: &str) -> String {
    moto.run_once(dir, &s3_block(bucket))
}

#[test]
fn polls_the_cloudtrail_layout_late_files_included_exactly_once() {
    let moto = moto::Moto::start();
    let s3 = moto.s3();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "trail-bucket";
    let files = shared_files();
    let (accounts, regions) = (["111111111111", "222222222222"], ["eu-west-1", "us-east-1"]);
    // Every shared file once, spread over 2 accounts x 2 regions x 2 days,
    // uploaded in a shuffled (reversed, interleaved) order.
    let mut uploads: Vec<(String, PathBuf)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let key = format!(
                "AWSLogs/{}/CloudTrail/{}/{}/{}_{}",
                accounts[i % 2],
                regions[(i / 2) % 2],
                day(((i / 4) % 2) as i64),
                accounts[i % 2],
                f.file_name().unwrap().to_string_lossy()
            );
            (key, f.clone())
        })
        .collect();
    uploads.reverse();
    uploads.sort_by_key(|(k, _)| k.len() % 3);
    rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for (key, path) in &uploads {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(std::fs::read(path).unwrap().into())
                .send()
                .await
                .unwrap();
        }
        // A digest file: CloudTrail puts them beside, not under, CloudTrail/.
        let digest = format!(
            "AWSLogs/111111111111/CloudTrail-Digest/us-east-1/{}/111111111111_CloudTrail-Digest_us-east-1_x.json.gz",
            day(0)
        );
        s3.put_object()
            .bucket(bucket)
            .key(digest)
            .body(gzip(br#"{"digestStartTime":"x"}"#).into())
            .send()
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let stderr = run_daemon(&moto, dir.path(), bucket);
    assert!(
        stderr.contains(&format!("objects={}", files.len())),
        "{stderr}"
    );
    let got = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    // The same files scanned locally give the same alerts, except that the
    // daemon reports an event once per rule: the AWS docs examples repeat
    // one event (same eventID) and `scan` reports both copies.
    let out = trailwatch().arg("scan").args(&files).output().unwrap();
    let mut want = counts(&alerts(&out.stdout));
    let repeated: Vec<_> = want
        .iter()
        .filter(|((_, what), n)| **n > 1 && !what.starts_with('{'))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(!repeated.is_empty(), "the shared data repeats an event");
    for k in repeated {
        want.insert(k, 1);
    }
    assert_eq!(counts(&got), want);
    assert!(got.iter().all(|a| {
        a["source"]
            .as_str()
            .unwrap()
            .starts_with("s3://trail-bucket/AWSLogs/")
    }));

    // Late delivery into an earlier day prefix, then a rerun.
    let late = files
        .iter()
        .find(|f| f.to_string_lossy().contains("iam-create-admin-user"))
        .unwrap();
    let key = format!(
        "AWSLogs/222222222222/CloudTrail/eu-west-1/{}/222222222222_late.json.gz",
        day(1)
    );
    rt.block_on(async {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(std::fs::read(late).unwrap().into())
            .send()
            .await
            .unwrap();
    });
    let stderr = run_daemon(&moto, dir.path(), bucket);
    assert!(
        stderr.contains("objects=1")
            && stderr.contains(&format!("already_processed={}", files.len())),
        "{stderr}"
    );
    let after = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    // The late copy holds the same events: its alerts are duplicates.
    assert_eq!(counts(&after), want, "no alert twice");
}

#[test]
fn kill_9_while_reading_s3_loses_and_repeats_nothing() {
    let moto = moto::Moto::start();
    let s3 = moto.s3();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "killed";
    let local = tempfile::tempdir().unwrap();
    let (files, per_file) = (30, 3000);
    corpus(local.path(), files, per_file);
    rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for e in std::fs::read_dir(local.path()).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            for account in ["111111111111", "333333333333"] {
                s3.put_object()
                    .bucket(bucket)
                    .key(format!(
                        "AWSLogs/{account}/CloudTrail/us-east-1/{}/{name}",
                        day(0)
                    ))
                    .body(std::fs::read(&p).unwrap().into())
                    .send()
                    .await
                    .unwrap();
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    // The second account is excluded: its copies must never be read.
    let cfg = moto.config(
        dir.path(),
        &s3_block(bucket),
        "exclude_accounts = [\"333333333333\"]\n",
    );
    let size = |d: &Path| std::fs::metadata(d.join("alerts.jsonl")).map_or(0, |m| m.len());
    let mut seed: u64 = 0xfeed_f00d;
    let mut kills = 0;
    for _ in 0..5 {
        let mut child = moto
            .daemon(&["run", "--once"], &cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let before = size(dir.path());
        let t = std::time::Instant::now();
        while size(dir.path()) == before
            && child.try_wait().unwrap().is_none()
            && t.elapsed() < std::time::Duration::from_secs(30)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_millis(seed % 200));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    run_daemon(&moto, dir.path(), bucket);
    let got = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let c = counts(&got);
    assert_eq!(
        c.len(),
        files * per_file / 10,
        "every alert present after {kills} kills"
    );
    assert!(
        c.values().all(|n| *n == 1),
        "nothing twice after {kills} kills"
    );
    assert!(kills >= 1);
    assert!(
        got.iter()
            .all(|a| !a["source"].as_str().unwrap().contains("333333333333"))
    );
}

/// A key with a control character (anyone who can write to the bucket can
/// make one) neither breaks the listing nor hides the other objects: keys
/// are listed URL-encoded, and that object is read under its real key.
#[test]
fn a_key_with_a_control_character_blinds_nothing() {
    let moto = moto::Moto::start();
    let s3 = moto.s3();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "odd-keys";
    let record = |id: &str| {
        serde_json::json!({"Records": [{
            "eventVersion": "1.09", "eventTime": "2026-11-20T10:00:00Z", "eventID": id,
            "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging",
            "awsRegion": "us-east-1", "recipientAccountId": "111111111111",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111111111111:user/x",
                             "accountId": "111111111111"},
            "requestParameters": {"name": "trail"}}]})
        .to_string()
    };
    let base = format!("AWSLogs/111111111111/CloudTrail/us-east-1/{}/", day(0));
    let odd = format!("{base}x\u{1b}y.json.gz");
    let plain = format!("{base}111111111111_CloudTrail_us-east-1_20261120T1000Z_a.json.gz");
    rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for (key, id) in [(&odd, "odd"), (&plain, "plain")] {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(gzip(record(id).as_bytes()).into())
                .send()
                .await
                .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let stderr = run_daemon(&moto, dir.path(), bucket);
    assert!(!stderr.contains("listing failed"), "{stderr}");
    let got = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let ids: std::collections::BTreeSet<&str> =
        got.iter().filter_map(|a| a["event_id"].as_str()).collect();
    assert!(
        ids.contains("odd") && ids.contains("plain"),
        "{ids:?}\n{stderr}"
    );
    assert!(
        got.iter()
            .any(|a| a["source"] == format!("s3://{bucket}/{odd}")),
        "read under its real key"
    );
}
