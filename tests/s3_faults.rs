//! Fault injection between the daemon and a real S3 server (moto): a
//! loopback proxy answers 503 SlowDown and 500 InternalError, cuts object
//! bodies in the middle and delays responses, for a seeded share of the
//! requests. Whatever it does, every alert must arrive exactly once after
//! the daemon's retries and reruns, and the faults must really have
//! happened.

mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/moto.rs"]
mod moto;

use std::path::Path;

use common::*;

fn day() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    trailwatch::source::s3::day_path(now / 86_400)
}

/// A bucket holding a generated corpus (`files` × `per_file` records, one
/// alert in ten) under CloudTrail's layout for today; the keys.
fn bucket_with_corpus(
    moto: &moto::Moto,
    rt: &tokio::runtime::Runtime,
    bucket: &str,
    files: usize,
    per_file: usize,
) -> Vec<String> {
    let s3 = moto.s3();
    let local = tempfile::tempdir().unwrap();
    corpus(local.path(), files, per_file);
    rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        let mut keys = Vec::new();
        for e in std::fs::read_dir(local.path()).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let key = format!("AWSLogs/111111111111/CloudTrail/us-east-1/{}/{name}", day());
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(std::fs::read(&p).unwrap().into())
                .send()
                .await
                .unwrap();
            keys.push(key);
        }
        keys
    })
}

/// A daemon config in `dir` with one source block whose AWS calls go to
/// `endpoint` (the proxy); alerts to `dir/alerts.jsonl`.
fn config_via(dir: &Path, source: &str, endpoint: &str) -> std::path::PathBuf {
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[output]\njsonl_path = {:?}\n\
             {source}\nendpoint_url = {endpoint:?}\nregion = \"us-east-1\"\n",
            dir.join("state"),
            dir.join("alerts.jsonl"),
        ),
    )
    .unwrap();
    cfg
}

/// One `trailwatch run --once` on `cfg`: it may end in error (a fault hit
/// it), but then it must say so.
fn run_once_through_faults(moto: &moto::Moto, cfg: &Path, run: usize) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(["run", "--once", "--config"])
        .arg(cfg)
        .envs(moto.env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("error"),
        "run {run} failed without saying why:\n{stderr}"
    );
}

#[test]
fn s3_errors_cut_bodies_and_delays_lose_and_repeat_nothing() {
    let moto = moto::Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "faulty";
    let (files, per_file) = (40, 1000);
    bucket_with_corpus(&moto, &rt, bucket, files, per_file);
    let proxy = faults::FaultProxy::start(moto.endpoint.trim_start_matches("http://"), 0xfa17, 50);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_via(
        dir.path(),
        &format!("[[sources.s3]]\nbucket = {bucket:?}\nlookback_days = 1"),
        &proxy.endpoint,
    );
    let want = files * per_file / 10;
    let got = |d: &Path| counts(&written(d));
    // Each run processes what it can; objects that failed are retried by
    // the next (the daemon's poll loop does the same without --once).
    let mut runs = 0;
    while got(dir.path()).len() < want && runs < 12 {
        runs += 1;
        run_once_through_faults(&moto, &cfg, runs);
    }
    let c = got(dir.path());
    eprintln!(
        "{runs} runs, proxy: {:?}, {} alerts",
        proxy.counts,
        c.values().sum::<usize>()
    );
    assert_eq!(c.len(), want, "every alert present after {runs} runs");
    let twice: Vec<_> = c.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    use std::sync::atomic::Ordering::Relaxed;
    let k = &proxy.counts;
    assert!(k.slow_down.load(Relaxed) > 0 && k.internal.load(Relaxed) > 0);
    assert!(k.cut.load(Relaxed) > 0, "no body was cut: {k:?}");
    assert!(k.delayed.load(Relaxed) > 0, "{k:?}");
    assert!(runs >= 2, "cut bodies fail objects, left for the next run");
}

#[test]
fn sqs_and_s3_faults_redeliver_and_lose_and_repeat_nothing() {
    // Notifications on SQS, objects on S3, both behind the faulty proxy:
    // failed receives are retried, failed deletes and failed object reads
    // leave the message to come back after its visibility timeout (2 s),
    // and a redelivered message of a processed object alerts nothing new.
    let moto = moto::Moto::start();
    let sqs = moto.sqs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "queued";
    let (files, per_file) = (20, 1000);
    let keys = bucket_with_corpus(&moto, &rt, bucket, files, per_file);
    let queue_url = rt.block_on(async {
        let q = sqs.create_queue().queue_name("notes").send().await.unwrap();
        let url = q.queue_url().unwrap().to_string();
        for key in keys {
            let body = serde_json::json!({"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
                "s3":{"bucket":{"name":bucket},"object":{"key":key}}}]});
            sqs.send_message()
                .queue_url(&url)
                .message_body(body.to_string())
                .send()
                .await
                .unwrap();
        }
        url
    });
    let proxy = faults::FaultProxy::start(moto.endpoint.trim_start_matches("http://"), 0x5a5, 60);
    // The queue URL names moto's address; requests go to the proxy anyway
    // (the SDK sends them to endpoint_url).
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_via(
        dir.path(),
        &format!(
            "[[sources.sqs]]\nqueue_url = {queue_url:?}\nwait_time_secs = 1\nvisibility_timeout_secs = 2"
        ),
        &proxy.endpoint,
    );
    let want = files * per_file / 10;
    let left = || {
        rt.block_on(async {
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .unwrap();
            let n = |k| {
                attrs
                    .attributes()
                    .and_then(|a| a.get(&k))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        })
    };
    let mut runs = 0;
    while (counts(&written(dir.path())).len() < want || left() > 0) && runs < 20 {
        runs += 1;
        run_once_through_faults(&moto, &cfg, runs);
        std::thread::sleep(std::time::Duration::from_secs(2)); // undeleted messages come back
    }
    let c = counts(&written(dir.path()));
    eprintln!("{runs} runs, proxy: {:?}", proxy.counts);
    assert_eq!(c.len(), want, "every alert present after {runs} runs");
    assert!(c.values().all(|n| *n == 1), "nothing twice");
    assert_eq!(left(), 0, "every message deleted in the end");
    use std::sync::atomic::Ordering::Relaxed;
    assert!(proxy.counts.slow_down.load(Relaxed) + proxy.counts.internal.load(Relaxed) > 0);
    assert!(proxy.counts.cut.load(Relaxed) > 0, "{:?}", proxy.counts);
}
