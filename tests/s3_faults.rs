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

#[test]
fn s3_errors_cut_bodies_and_delays_lose_and_repeat_nothing() {
    let moto = moto::Moto::start();
    let s3 = moto.s3();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "faulty";
    let local = tempfile::tempdir().unwrap();
    let (files, per_file) = (40, 1000);
    corpus(local.path(), files, per_file);
    rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for e in std::fs::read_dir(local.path()).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            s3.put_object()
                .bucket(bucket)
                .key(format!(
                    "AWSLogs/111111111111/CloudTrail/us-east-1/{}/{name}",
                    day()
                ))
                .body(std::fs::read(&p).unwrap().into())
                .send()
                .await
                .unwrap();
        }
    });
    let proxy = faults::FaultProxy::start(moto.endpoint.trim_start_matches("http://"), 0xfa17, 50);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[output]\njsonl_path = {:?}\n\
             [[sources.s3]]\nbucket = {bucket:?}\nlookback_days = 1\nendpoint_url = {:?}\nregion = \"us-east-1\"\n",
            dir.path().join("state"),
            dir.path().join("alerts.jsonl"),
            proxy.endpoint
        ),
    )
    .unwrap();
    let want = files * per_file / 10;
    let got = |d: &Path| counts(&written(d));
    // Each run processes what it can; objects that failed are retried by
    // the next (the daemon's poll loop does the same without --once).
    let mut runs = 0;
    while got(dir.path()).len() < want && runs < 12 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwatch"))
            .args(["run", "--once", "--config"])
            .arg(&cfg)
            .envs(moto.env())
            .output()
            .unwrap();
        runs += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("error"),
            "run {runs} failed without saying why:\n{stderr}"
        );
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
