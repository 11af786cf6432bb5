//! `trailwatch run` end to end on the local-files source: the demo, exactly
//! once across reruns and kill -9, the sink cut back to what was committed,
//! SIGTERM, and configuration checking.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trailwatch"))
}

/// A config for a daemon rooted in `dir`, alerts to a file.
fn config(dir: &Path) -> PathBuf {
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\npoll_interval_secs = 1\nsettle_secs = 0\n\
             [output]\njsonl_path = {:?}\n[shutdown]\ngrace_secs = 5\n",
            dir.join("state"),
            dir.join("in"),
            dir.join("alerts.jsonl")
        ),
    )
    .unwrap();
    cfg
}

fn run_once(cfg: &Path, extra: &[&str]) -> String {
    let out = trailwatch()
        .args(["run", "--once", "--config"])
        .arg(cfg)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn written(dir: &Path) -> Vec<Value> {
    alerts(&std::fs::read(dir.join("alerts.jsonl")).unwrap_or_default())
}

/// (rule_id, event_id or group) → how many times it was written.
fn counts(alerts: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for a in alerts {
        let what = if a["correlation"].is_string() {
            a["group"].to_string()
        } else {
            a["event_id"].as_str().unwrap_or("").to_string()
        };
        *m.entry((a["rule_id"].as_str().unwrap().to_string(), what))
            .or_default() += 1;
    }
    m
}

#[test]
fn demo_alerts_once_and_reruns_add_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let stderr = run_once(&cfg, &["--demo"]);
    assert!(
        stderr.contains("demo: wrote 3 CloudTrail files"),
        "{stderr}"
    );
    let first = written(dir.path());
    // The daemon finds what `scan` finds in the same files.
    let out = trailwatch()
        .arg("scan")
        .arg(dir.path().join("in"))
        .output()
        .unwrap();
    let scanned = alerts(&out.stdout);
    assert_eq!(counts(&first), counts(&scanned));
    assert!(counts(&first).values().all(|n| *n == 1));
    assert!(
        first
            .iter()
            .any(|a| a["rule_name"] == "root_console_login_without_mfa")
    );
    assert!(
        first
            .iter()
            .any(|a| a["rule_name"] == "access_denied_burst")
    );

    // Same files again: known objects are skipped.
    let stderr = run_once(&cfg, &[]);
    assert!(
        stderr.contains("objects=0") && stderr.contains("already_processed=3"),
        "{stderr}"
    );
    // Rewritten files (new etags) are read again, and every alert is a duplicate.
    let stderr = run_once(&cfg, &["--demo"]);
    assert!(stderr.contains("alerts=0"), "{stderr}");
    assert_eq!(written(dir.path()), first);
}

#[test]
fn uncommitted_alerts_are_cut_from_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    run_once(&cfg, &["--demo"]);
    let before = std::fs::read(dir.path().join("alerts.jsonl")).unwrap();
    // What a crash after writing and before committing leaves behind.
    let mut torn = before.clone();
    torn.extend_from_slice(b"{\"rule_id\":\"half-written");
    std::fs::write(dir.path().join("alerts.jsonl"), &torn).unwrap();
    let stderr = run_once(&cfg, &[]);
    assert!(stderr.contains("written but not committed"), "{stderr}");
    assert_eq!(
        std::fs::read(dir.path().join("alerts.jsonl")).unwrap(),
        before
    );
}

/// A corpus of `files` native files, each with `per_file` records of which
/// every tenth creates an access key (one alert each, unique event ids).
fn corpus(dir: &Path, files: usize, per_file: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..files {
        let recs: Vec<Value> = (0..per_file)
            .map(|i| {
                json!({"eventVersion":"1.09","eventID":format!("f{f}-r{i}"),"eventTime":"2026-11-20T10:00:00Z",
                       "eventSource":"iam.amazonaws.com",
                       "eventName": if i % 10 == 0 {"CreateAccessKey"} else {"ListUsers"},
                       "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/s"},
                       "requestParameters":{"padding":"x".repeat(400)}})
            })
            .collect();
        let text = json!({ "Records": recs }).to_string();
        std::fs::write(dir.join(format!("f{f:03}.json.gz")), gzip(text.as_bytes())).unwrap();
    }
}

#[test]
fn kill_9_at_random_points_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (files, per_file) = (40, 3000);
    corpus(&dir.path().join("in"), files, per_file);
    // Seeded, bounded: a few kills at pseudo-random moments.
    let mut seed: u64 = 0x5eed_1234;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut kills = 0;
    for _ in 0..6 {
        let mut child = Command::new(bin())
            .args(["run", "--once", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for progress (the alert file grows), then a random moment.
        let size = |d: &Path| std::fs::metadata(d.join("alerts.jsonl")).map_or(0, |m| m.len());
        let before = size(dir.path());
        let t = Instant::now();
        while size(dir.path()) == before
            && child.try_wait().unwrap().is_none()
            && t.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(next() % 200));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    eprintln!("{kills} kills");
    run_once(&cfg, &[]); // finish whatever is left
    let got = counts(&written(dir.path()));
    assert_eq!(
        got.len(),
        files * per_file / 10,
        "every alert present ({kills} kills)"
    );
    let repeated: Vec<_> = got.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "duplicates after {kills} kills: {repeated:?}"
    );
    assert!(kills >= 1, "the test must actually kill the daemon mid-run");
}

#[test]
fn sigterm_stops_promptly_with_everything_committed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    corpus(&dir.path().join("in"), 3, 100);
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the three files' alerts, then ask it to stop.
    let started = Instant::now();
    // The daemon may be mid-append: count complete lines only.
    let complete = |d: &Path| {
        std::fs::read_to_string(d.join("alerts.jsonl"))
            .unwrap_or_default()
            .matches('\n')
            .count()
    };
    while complete(dir.path()) < 30 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    unsafe_sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        t.elapsed()
    );
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("signal received, all committed"), "{err}");
    assert_eq!(written(dir.path()).len(), 30);
}

/// SIGTERM without a libc dependency: the `kill` command.
fn unsafe_sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn config_check_and_the_example_file() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/trailwatch.example.toml");
    let out = trailwatch()
        .args(["config", "check"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every value in the example is the default.
    assert_eq!(
        trailwatch::config::Config::load(&example).unwrap(),
        trailwatch::config::Config::default()
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nobjects_in_flite = 4\n").unwrap();
    let out = trailwatch()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("objects_in_flite"),
        "{err}"
    );
    let out = trailwatch()
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
