//! Metrics and health end to end, with real tools: a running daemon's
//! `/metrics` checked by Debian's `promtool`, scraped by a real
//! `prometheus` whose query API must return the counts of a known input,
//! and `/healthz`, `/readyz` and `trailwatch healthcheck` against a live
//! daemon and a broken source.
//!
//! `.ci/test` installs `prometheus` (which brings `promtool`) with apt.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value;

/// A daemon process, stopped (SIGTERM, then kill) on drop.
struct Daemon {
    child: Child,
    addr: String,
}

impl Daemon {
    /// Start `trailwatch run` on `config`, listening on `addr`.
    fn start(config: &Path, addr: String) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
            .args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon { child, addr };
        wait_for("the metrics listener", 20, || http_get(&d.addr, "/healthz"));
        d
    }

    fn metrics(&self) -> String {
        let (status, body) = http_get(&self.addr, "/metrics").expect("listening");
        assert_eq!(status, 200);
        body
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A files-source config in `dir` listening on `addr`; `extra` is appended.
fn config(dir: &Path, addr: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = {addr:?}\n[metrics]\naccounts = [\"123456789012\"]\n\
             [state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\npoll_interval_secs = 1\n\
             settle_secs = 0\n[output]\njsonl_path = {:?}\n{extra}",
            dir.join("state"),
            dir.join("in"),
            dir.join("alerts.jsonl")
        ),
    )
    .unwrap();
    cfg
}

/// The two CloudTrail fixture files, copied into `dir/in`; their records.
fn input(dir: &Path) -> Vec<Value> {
    let into = dir.join("in");
    std::fs::create_dir_all(&into).unwrap();
    let mut records = Vec::new();
    for name in [
        "123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json",
        "123456789012_CloudTrail_eu-west-1_20261120T1020Z_burst.json",
    ] {
        let from = fixtures().join("cloudtrail").join(name);
        std::fs::copy(&from, into.join(name)).unwrap();
        records.extend(records_of(&from));
    }
    records
}

/// A tool from Debian's prometheus package, or a panic saying how to get it.
fn tool(name: &str) -> String {
    common::tool(
        name,
        "Debian's prometheus package (apt-get install prometheus)",
    )
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

#[test]
fn metrics_count_a_known_input_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let records = input(dir.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(&config(dir.path(), &addr, ""), addr);
    let source = format!("source=\"files:{}\"", dir.path().join("in").display());
    // Objects are counted when processed, alerts when written and
    // committed (a little later): wait for both.
    let text = wait_for(
        "both objects processed and their alerts written",
        30,
        || {
            let m = d.metrics();
            (sample(
                &m,
                &format!("trailwatch_objects_total{{outcome=\"processed\",{source}}}"),
            ) == Some(2.0)
                && sample(
                    &m,
                    "trailwatch_alerts_total{outcome=\"sent\",sink=\"jsonl\"}",
                )
                .is_some_and(|n| n > 0.0))
            .then_some(m)
        },
    );

    assert_eq!(
        sample(&text, &format!("trailwatch_records_total{{{source}}}")),
        Some(records.len() as f64)
    );
    let written = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    assert!(!written.is_empty());
    assert_eq!(
        sample(
            &text,
            "trailwatch_alerts_total{outcome=\"sent\",sink=\"jsonl\"}"
        ),
        Some(written.len() as f64)
    );
    // Every written alert's rule has a match counter at least as high.
    for a in &written {
        let id = a["rule_id"].as_str().unwrap();
        let matched: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "trailwatch_rule_matches_total{{level=\"{}\",rule=",
                    a["level"].as_str().unwrap()
                ))
            })
            .filter(|l| l.contains(&format!("rule_id=\"{id}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(matched >= 1.0, "no match counted for {id}");
    }
    // Posture counters equal what the input holds, labelled by the listed
    // account.
    let denied = records
        .iter()
        .filter(|r| {
            matches!(
                r["errorCode"].as_str(),
                Some("AccessDenied" | "AccessDeniedException" | "Client.UnauthorizedOperation")
            )
        })
        .count();
    let keys = records
        .iter()
        .filter(|r| r["eventName"] == "CreateAccessKey" && r.get("errorCode").is_none())
        .count();
    let root_logins = records
        .iter()
        .filter(|r| {
            r["eventName"] == "ConsoleLogin"
                && str_at(r, &["userIdentity", "type"]) == Some("Root")
                && str_at(r, &["responseElements", "ConsoleLogin"]) == Some("Success")
        })
        .count();
    assert!(denied > 0 && keys > 0 && root_logins > 0);
    for (kind, n) in [
        ("access_denied", denied),
        ("access_key_created", keys),
        ("root_login", root_logins),
    ] {
        assert_eq!(
            sample(
                &text,
                &format!(
                    "trailwatch_posture_events_total{{account=\"123456789012\",kind=\"{kind}\"}}"
                )
            ),
            Some(n as f64),
            "{kind}"
        );
    }
    assert_eq!(
        sample(
            &text,
            &format!("trailwatch_ingest_lag_seconds_count{{{source}}}"),
        ),
        Some(records.len() as f64)
    );
    assert_eq!(
        sample(&text, "trailwatch_build_info{version=\"0.1.0\"}"),
        Some(1.0)
    );
    // Time to alert: one observation per written alert with an event time,
    // one per object that raised alerts, under the path they came by.
    let timed = written
        .iter()
        .filter(|a| a["event_time"].is_string())
        .count();
    assert!(timed > 0);
    assert_eq!(
        sample(
            &text,
            "trailwatch_event_to_alert_seconds_count{via=\"files\"}"
        ),
        Some(timed as f64)
    );
    let arrivals = sample(
        &text,
        "trailwatch_arrival_to_alert_seconds_count{via=\"files\"}",
    );
    assert!(
        matches!(arrivals, Some(n) if (1.0..=2.0).contains(&n)),
        "{arrivals:?}"
    );
    // Every path's series exists before anything comes by it.
    assert_eq!(
        sample(
            &text,
            "trailwatch_event_to_alert_seconds_count{via=\"eventbridge\"}"
        ),
        Some(0.0)
    );

    // promtool's linter: names, units, _total suffixes, help text.
    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The container health check against the live daemon.
    for path in ["/healthz", "/readyz"] {
        trailwatch()
            .args(["healthcheck", "--url", &format!("http://{}{path}", d.addr)])
            .assert()
            .success();
    }
}

#[test]
fn prometheus_scrapes_the_daemon_and_answers_queries() {
    let dir = tempfile::tempdir().unwrap();
    let records = input(dir.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(&config(dir.path(), &addr, ""), addr);

    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: trailwatch\n    \
             static_configs:\n      - targets: ['{}']\n",
            d.addr
        ),
    )
    .unwrap();
    let out = Command::new(tool("promtool"))
        .args(["check", "config"])
        .arg(&prom_cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let mut prom = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Stop<'a>(&'a mut Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _stop = Stop(&mut prom);

    let query = |q: &str| -> Option<f64> {
        let (status, body) = http_get(&prom_addr, &format!("/api/v1/query?query={q}"))?;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    // Up, and the records counter at the input's count (after both objects).
    let n = wait_for("prometheus to scrape the full count", 60, || {
        query("sum(trailwatch_records_total)").filter(|n| *n == records.len() as f64)
    });
    assert_eq!(n, records.len() as f64);
    assert_eq!(query("up%7Bjob%3D%22trailwatch%22%7D"), Some(1.0));
    let written = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    assert_eq!(
        query("sum(trailwatch_alerts_total%7Boutcome%3D%22sent%22%7D)"),
        Some(written.len() as f64)
    );
}

#[test]
fn readyz_names_a_broken_source_and_healthcheck_fails() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // An S3 source whose endpoint nothing listens on.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cfg = config(
        dir.path(),
        &addr,
        &format!(
            "[[sources.s3]]\nbucket = \"trail-bucket\"\nendpoint_url = {dead:?}\n\
             region = \"us-east-1\"\npoll_interval_secs = 1\n"
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let body = wait_for("/readyz to report the source", 60, || {
        http_get(&addr, "/readyz").filter(|(status, _)| *status == 503)
    })
    .1;
    assert!(body.contains("source s3:trail-bucket"), "{body}");
    // Alive all the same: a restart would not fix the network.
    assert_eq!(http_get(&addr, "/healthz").map(|r| r.0), Some(200));
    let out = trailwatch()
        .args(["healthcheck", "--url", &format!("http://{addr}/readyz")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("s3:trail-bucket"));
    let m = http_get(&addr, "/metrics").unwrap().1;
    assert!(
        sample(
            &m,
            "trailwatch_source_errors_total{source=\"s3:trail-bucket\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    let _ = child.kill();
    let _ = child.wait();
    // Nothing listening: unhealthy, exit 1, saying so.
    let out = trailwatch()
        .args(["healthcheck", "--url", &format!("http://{addr}/healthz")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));
}

/// Metric names an expression file uses (`trailwatch_*`, `process_*`).
fn names_used(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for prefix in ["trailwatch_", "process_"] {
        for (i, _) in text.match_indices(prefix) {
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// Series names of an exposition (histograms as _bucket, _sum, _count).
fn names_exported(metrics: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for l in metrics.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            out.insert(name.to_owned());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
        } else if !l.starts_with('#') && !l.is_empty() {
            // A family only exists once one of its series does.
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(out.iter().any(|n| n == name), "{name} without # TYPE");
        }
    }
    out
}

#[test]
fn dashboard_and_alerting_rules_use_only_exported_metric_names() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    // Damaged input and an unreachable webhook, so the error, failure and
    // outbox series exist too.
    std::fs::write(
        dir.path().join("in/bad.json.gz"),
        b"\x1f\x8b\x08\x00garbage",
    )
    .unwrap();
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(
        &config(
            dir.path(),
            &addr,
            &format!("[webhook]\nurl = {dead:?}\nmin_level = \"informational\"\n"),
        ),
        addr,
    );
    let text = wait_for("errors, failed deliveries and the outbox", 60, || {
        let m = d.metrics();
        (m.contains("trailwatch_input_errors_total{")
            && m.contains("trailwatch_ingest_lag_seconds_bucket{")
            && sample(
                &m,
                "trailwatch_alerts_total{outcome=\"failed\",sink=\"webhook\"}",
            )
            .is_some_and(|n| n > 0.0))
        .then_some(m)
    });
    let exported = names_exported(&text);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut checked = 0;
    for file in ["grafana/trailwatch.json", "prometheus/trailwatch.rules.yml"] {
        let used = names_used(&std::fs::read_to_string(root.join(file)).unwrap());
        assert!(used.len() >= 5, "{file}: {used:?}");
        let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the daemon does not export: {unknown:?}\nexported: {exported:?}"
        );
        checked += used.len();
    }
    assert!(checked > 10);
    // The dashboard: stable uid, a data source variable every panel uses.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/trailwatch.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dash["uid"], "trailwatch-overview");
    assert!(
        dash["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["type"] == "datasource" && v["name"] == "datasource")
    );
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
}

/// The series of an exposition: every sample line's name and labels.
fn series(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .filter(|s| !s.starts_with("process_"))
        .collect()
}

/// A file of `n` denied calls and failed console logins, each from its own
/// principal, account and address.
fn distinct_principals(path: &Path, n: usize, tag: &str) {
    let recs: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.09", "eventTime": "2026-11-20T10:00:00Z",
                "eventSource": if i % 2 == 0 { "iam.amazonaws.com" } else { "signin.amazonaws.com" },
                "eventName": if i % 2 == 0 { "GetUser" } else { "ConsoleLogin" },
                "errorCode": if i % 2 == 0 { Some("AccessDenied") } else { None },
                "responseElements": if i % 2 == 0 { Value::Null } else { serde_json::json!({"ConsoleLogin": "Failure"}) },
                "eventID": format!("{tag}-{i}"),
                "recipientAccountId": format!("{:012}", 500_000_000 + i),
                "sourceIPAddress": format!("198.51.{}.{}", (i >> 8) & 255, i & 255),
                "userAgent": format!("agent-{tag}-{i}"),
                "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::1:user/{tag}-{i}"),
                                  "accountId": format!("{:012}", 500_000_000 + i)},
            })
        })
        .collect();
    std::fs::write(
        path,
        gzip(
            serde_json::json!({ "Records": recs })
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
}

#[test]
fn series_do_not_grow_with_distinct_principals_accounts_or_addresses() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    distinct_principals(&dir.path().join("in/a.json.gz"), 200, "a");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(&config(dir.path(), &addr, ""), addr);
    let processed = |n: f64| {
        move |m: &str| {
            m.lines()
                .filter(|l| l.starts_with("trailwatch_objects_total{outcome=\"processed\""))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>()
                == n
        }
    };
    let first = wait_for("the first file", 30, || {
        let m = d.metrics();
        processed(1.0)(&m).then_some(m)
    });
    // 100 times more distinct principals, accounts and addresses.
    distinct_principals(&dir.path().join("in/b.json.gz"), 20_000, "b");
    let second = wait_for("the second file", 60, || {
        let m = d.metrics();
        processed(2.0)(&m).then_some(m)
    });
    let (s1, s2) = (series(&first), series(&second));
    assert_eq!(
        s2.difference(&s1).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "new series appeared with new principals"
    );
    assert!(s2.len() < 400, "{} series", s2.len());
    for needle in ["arn:aws:iam", "198.51.", "agent-b", "00050000"] {
        assert!(!second.contains(needle), "{needle} reached /metrics");
    }
    assert!(second.contains("account=\"unlisted\""));
}

/// `trailwatch_last_event_time_seconds` is what "no new events" watches:
/// it survives a restart (a trail stopped before the daemon started still
/// looks silent), a fresh store exposes the start time instead, and an
/// event dated 2099 cannot hold it ahead of the clock.
#[test]
fn the_newest_event_time_survives_restarts_and_never_passes_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("in");
    std::fs::create_dir_all(&into).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &addr, "");
    let source = format!("files:{}", into.display());
    let gauge = format!("trailwatch_last_event_time_seconds{{source=\"{source}\"}}");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    // A fresh store, no event yet: no newest time, the start time instead.
    {
        let d = Daemon::start(&cfg, addr.clone());
        let m = d.metrics();
        assert_eq!(sample(&m, &gauge), None, "{m}");
        let start = sample(&m, "trailwatch_start_time_seconds").unwrap();
        assert!((now() - start).abs() < 60.0, "{start}");
    }
    // Events of two hours ago, processed; then a restart with nothing new.
    let old = now() - 7200.0;
    let at = |secs: f64| trailwatch::time::iso_time((secs as i64) * 1000);
    let record = |id: &str, time: &str| {
        serde_json::json!({"eventVersion":"1.08","eventID":id,"eventTime":time,
            "eventName":"GetObject","eventSource":"s3.amazonaws.com"})
    };
    std::fs::write(
        into.join("old.json"),
        serde_json::json!({"Records":[record("o1", &at(old))]}).to_string(),
    )
    .unwrap();
    run_once(&cfg, &[], &[]);
    {
        let d = Daemon::start(&cfg, addr.clone());
        let got = sample(&d.metrics(), &gauge).expect("restored");
        assert!((got - old.trunc()).abs() < 1.5, "{got} vs {old}");
    }
    // An event dated 2099: the gauge stays at the clock, and stays there
    // after a restart.
    std::fs::write(
        into.join("future.json"),
        serde_json::json!({"Records":[record("f1", "2099-01-01T00:00:00Z")]}).to_string(),
    )
    .unwrap();
    run_once(&cfg, &[], &[]);
    let d = Daemon::start(&cfg, addr);
    let got = sample(&d.metrics(), &gauge).expect("restored");
    assert!(got <= now() + 1.0, "{got}");
    assert!(got > old + 3600.0, "{got}");
}
