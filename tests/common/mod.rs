//! Helpers shared by the integration tests.
//!
//! The one place that knows where the shared test data lives: `../shared`
//! beside the repository (or `$TRAILWATCH_SHARED`). Tests that need it fail
//! with a message naming the missing folder instead of passing vacuously.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value, json};

/// `../shared/data` or `$TRAILWATCH_SHARED/data`; panics naming the folder
/// when it is absent.
pub fn shared_data() -> PathBuf {
    let root = std::env::var_os("TRAILWATCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let data = root.join("data");
    assert!(
        data.join("cloudtrail/logs").is_dir(),
        "shared test data is missing: {} does not exist. Put the `shared` folder beside the \
         repository (../shared) or set TRAILWATCH_SHARED to its path.",
        data.join("cloudtrail/logs").display()
    );
    data
}

/// The repository's own fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The trailwatch binary under test.
pub fn trailwatch() -> Command {
    let mut c = Command::cargo_bin("trailwatch").expect("binary built by cargo test");
    c.env_remove("RUST_LOG");
    c
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every real CloudTrail event in `../shared`: the records of every log
/// file, then each labeled case's event (objects only).
pub fn shared_events() -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    for e in walkdir::WalkDir::new(shared_data().join("cloudtrail/logs")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            events.extend(records_of(e.path()));
        }
    }
    let labeled = std::fs::read_to_string(
        shared_data().join("cloudtrail/labeled/panther-analysis_rule-tests.jsonl"),
    )
    .unwrap();
    for line in labeled.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        if case["event"].is_object() {
            events.push(case["event"].clone());
        }
    }
    events
}

/// Records of a CloudTrail file (gzip or not), read with serde_json: an
/// implementation independent of the one under test.
pub fn records_of(path: &Path) -> Vec<serde_json::Value> {
    let raw = std::fs::read(path).unwrap();
    let text = if raw.starts_with(&[0x1f, 0x8b]) {
        gunzip(&raw)
    } else {
        raw
    };
    let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
    doc["Records"].as_array().cloned().unwrap_or_default()
}

/// Parse JSON-lines output into values.
pub fn alerts(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad alert line {l:?}: {e}")))
        .collect()
}

/// (rule_id, event_id or group) → how many times it was written.
pub fn counts(alerts: &[Value]) -> BTreeMap<(String, String), usize> {
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

/// A corpus of `files` native files, each with `per_file` records of which
/// every tenth creates an access key (one alert each, unique event ids).
pub fn corpus(dir: &Path, files: usize, per_file: usize) {
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

/// `trailwatch run --once --config CFG ARGS` with `env`; asserts success
/// and returns its log (stderr).
pub fn run_once(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = trailwatch()
        .args(["run", "--once", "--config"])
        .arg(cfg)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    String::from_utf8_lossy(&succeeded(out).stderr).into_owned()
}

/// `out`, once its command is asserted to have succeeded (its stderr is
/// the message when it did not).
pub fn succeeded(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The alerts a daemon wrote to `DIR/alerts.jsonl` (none if absent).
pub fn written(dir: &Path) -> Vec<serde_json::Value> {
    alerts(&std::fs::read(dir.join("alerts.jsonl")).unwrap_or_default())
}

/// A command-line tool the tests run (promtool, cfn-lint, systemd-analyze),
/// or a panic naming it and where it comes from; `.ci/test` installs each.
/// `$TRAILWATCH_<NAME>` (upper case, `-` as `_`) may give its path.
pub fn tool(name: &str, from: &str) -> String {
    let var = format!("TRAILWATCH_{}", name.to_uppercase().replace('-', "_"));
    let path = std::env::var(&var).unwrap_or_else(|_| name.to_owned());
    let found = std::process::Command::new(&path)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} not found (nor ${var}): run the tests through .ci/test, which installs {from}"
    );
    path
}

/// The Python the tests run helpers with (`.ci/test`'s venv, which has
/// aiosmtpd and cfn-lint), from `$TRAILWATCH_PYTHON`.
pub fn python() -> String {
    std::env::var("TRAILWATCH_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A free TCP port on loopback (bind, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `http://{addr}{path}`: (status, body); `None` when nothing listens.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::net::TcpStream;
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// Poll `f` every 100 ms until it returns `Some`, or panic with `what`.
pub fn wait_for<T>(what: &str, timeout_secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout_secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The value of one sample in a Prometheus text exposition, by its exact
/// series text (`name{labels}` with labels in the exposition's order).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A rules folder `DIR/no-rules` holding one rule that never matches, so a
/// daemon's alerts are its stages' alone (the inventory's, posture's).
pub fn no_rules(dir: &Path) -> PathBuf {
    let rules = dir.join("no-rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("none.yml"),
        "title: Never\nid: never\nlogsource: {product: aws, service: cloudtrail}\n\
         detection:\n  sel:\n    eventName: NeverHappens\n  condition: sel\n",
    )
    .unwrap();
    rules
}
