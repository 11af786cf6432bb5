//! `trailwatch run` end to end on the local-files source: the demo, exactly
//! once across reruns and kill -9, the sink cut back to what was committed,
//! SIGTERM, and configuration checking.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trailwatch"))
}

/// A config for a daemon rooted in `dir`, alerts to a file.
fn config(dir: &Path) -> PathBuf {
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\npoll_interval_secs = 1\nsettle_secs = 0\n\
             [output]\njsonl_path = {:?}\n[shutdown]\ngrace_secs = 5\n",
            dir.join("state"),
            dir.join("in"),
            dir.join("alerts.jsonl")
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn demo_alerts_once_and_reruns_add_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let stderr = run_once(&cfg, &["--demo"], &[]);
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
    let stderr = run_once(&cfg, &[], &[]);
    assert!(
        stderr.contains("objects=0") && stderr.contains("already_processed=3"),
        "{stderr}"
    );
    // Rewritten files (new etags) are read again, and every alert is a duplicate.
    let stderr = run_once(&cfg, &["--demo"], &[]);
    assert!(stderr.contains("alerts=0"), "{stderr}");
    assert_eq!(written(dir.path()), first);
}

#[test]
fn uncommitted_alerts_are_cut_from_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    run_once(&cfg, &["--demo"], &[]);
    let before = std::fs::read(dir.path().join("alerts.jsonl")).unwrap();
    // What a crash after writing and before committing leaves behind.
    let mut torn = before.clone();
    torn.extend_from_slice(b"{\"rule_id\":\"half-written");
    std::fs::write(dir.path().join("alerts.jsonl"), &torn).unwrap();
    let stderr = run_once(&cfg, &[], &[]);
    assert!(stderr.contains("written but not committed"), "{stderr}");
    assert_eq!(
        std::fs::read(dir.path().join("alerts.jsonl")).unwrap(),
        before
    );
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
    run_once(&cfg, &[], &[]); // finish whatever is left
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
    succeeded(
        trailwatch()
            .args(["config", "check"])
            .arg(&example)
            .output()
            .unwrap(),
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

#[test]
fn the_examples_commented_source_blocks_are_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/trailwatch.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    // Uncomment each `# [[sources.X]]`, `# [email...]`, `# [webhook]` and
    // `# [pagerduty]` block and its `# key = value` lines.
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        if [
            "# [[sources.",
            "# [email",
            "# [[email",
            "# [webhook",
            "# [pagerduty",
        ]
        .iter()
        .any(|p| line.starts_with(p))
        {
            in_block = true;
        } else if line.trim().is_empty() {
            in_block = false;
        }
        if in_block && (line.starts_with("# [") || (line.starts_with("# ") && line.contains(" = ")))
        {
            out.push_str(&line[2..]);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let c = trailwatch::config::Config::parse(&out, "uncommented example").unwrap();
    assert_eq!(
        (
            c.sources.files.len(),
            c.sources.s3.len(),
            c.sources.sqs.len(),
            c.sources.cloudwatch.len()
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(c.sources.s3[0].bucket, "my-cloudtrail-bucket");
    assert_eq!(c.sources.s3[0].organization_id.as_deref(), Some("o-abc123"));
    assert_eq!(c.sources.sqs[0].visibility_timeout_secs, 300);
    assert_eq!(c.sources.cloudwatch[0].max_requests_per_sec, 2);
    let pd = c.pagerduty.as_ref().expect("the pagerduty block");
    assert_eq!(pd.min_level, "high");
    assert_eq!(pd.url, trailwatch::alert::pagerduty::EVENTS_URL);
    let email = c.email.expect("the email block");
    assert_eq!(email.routes[0].levels, ["critical"]);
    assert_eq!(email.storm.suppress_secs, 3600);
    assert_eq!(
        c.webhook.expect("the webhook block").url_env.as_deref(),
        Some("TRAILWATCH_WEBHOOK_URL")
    );
}

#[test]
fn stdin_json_lines_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    // JSON lines of the burst example (10 denied calls, 5 failed logins).
    let native =
        fixtures().join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1020Z_burst.json");
    let lines: String = records_of(&native)
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    let feed = |input: &str| {
        let out = trailwatch()
            .args(["run", "--stdin", "--config"])
            .arg(&cfg)
            .write_stdin(input.to_owned())
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    feed(&lines);
    let got = written(dir.path());
    let out = trailwatch().arg("scan").arg(&native).output().unwrap();
    assert_eq!(counts(&got), counts(&alerts(&out.stdout)));
    assert!(got.iter().any(|a| a["rule_name"] == "access_denied_burst"));
    assert!(
        got.iter()
            .all(|a| a["source"].as_str().unwrap().starts_with("stdin@"))
    );
    // The same records again: every alert is a duplicate.
    let stderr = feed(&lines);
    assert!(stderr.contains("alerts=0"), "{stderr}");
    assert_eq!(written(dir.path()).len(), got.len());
}

#[test]
fn a_burst_split_by_a_kill_is_seen_once_after_restart() {
    // The burst fixture's first 7 denied calls, then the other 3 (plus its
    // failed sign-ins): 10 in five minutes from one principal.
    let fixture =
        fixtures().join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1020Z_burst.json");
    let records = records_of(&fixture);
    let halves = [&records[..7], &records[7..]];
    let doc = |rs: &[Value]| serde_json::to_vec(&serde_json::json!({ "Records": rs })).unwrap();
    let burst_alerts = |a: &[Value]| {
        a.iter()
            .filter(|a| a["rule_name"] == "access_denied_burst")
            .cloned()
            .collect::<Vec<_>>()
    };
    // Neither half alone is a burst: the test means something.
    for half in halves {
        let out = trailwatch()
            .args(["scan", "-"])
            .write_stdin(doc(half))
            .output()
            .unwrap();
        assert!(burst_alerts(&alerts(&out.stdout)).is_empty());
    }

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("127.0.0.1:0", &addr)).unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let commits = |addr: &str| {
        http_get(addr, "/metrics")
            .and_then(|(_, m)| sample(&m, "trailwatch_store_commits_total"))
            .unwrap_or(0.0)
    };
    for (i, half) in halves.iter().enumerate() {
        std::fs::write(dir.path().join(format!("in/part{i}.json")), doc(half)).unwrap();
        let mut child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the part to be committed", 30, || {
            (commits(&addr) >= 1.0).then_some(())
        });
        // No goodbye: state must already be on disk.
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let written = written(dir.path());
    let bursts = burst_alerts(&written);
    assert_eq!(bursts.len(), 1, "{written:#?}");
    assert_eq!(bursts[0]["count"], 10);
    assert_eq!(bursts[0]["event_ids"].as_array().unwrap().len(), 10);
}

/// `run --stdin`: a first line that is garbage or cut short costs only
/// itself; every later record alerts as it would alone.
#[test]
fn stdin_loses_only_a_bad_first_line() {
    let native =
        fixtures().join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1020Z_burst.json");
    let lines: String = records_of(&native)
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    let want = {
        let out = trailwatch().arg("scan").arg(&native).output().unwrap();
        counts(&alerts(&out.stdout))
    };
    for bad in ["garbage", r#"{"eventVersion":"1.08","eventID":"cut"#] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let out = trailwatch()
            .args(["run", "--stdin", "--config"])
            .arg(&cfg)
            .write_stdin(format!("{bad}\n{lines}"))
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert_eq!(counts(&written(dir.path())), want, "{bad}: {stderr}");
        assert!(stderr.contains("record 0"), "{stderr}");
    }
}

/// A symlink loop, a dangling link and an unreadable directory under the
/// watched directory cost only themselves: the other files alert, and
/// each bad entry is logged once.
#[test]
fn bad_entries_in_the_watched_directory_cost_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::copy(
        fixtures().join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json"),
        input.join("sub/example.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&input, input.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), input.join("dangling")).unwrap();
    let stderr = run_once(&cfg, &[], &[]);
    let got = written(dir.path());
    let out = trailwatch()
        .arg("scan")
        .arg(
            fixtures()
                .join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json"),
        )
        .output()
        .unwrap();
    assert_eq!(counts(&got), counts(&alerts(&out.stdout)), "{stderr}");
    assert_eq!(stderr.matches("symlink loop").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("dangling symlink").count(), 1, "{stderr}");
}

/// Fifty distinct root logins in one object with a tiny event budget: every
/// alert is written, the first ones with their event, the rest with a note
/// saying why, and the note is counted.
#[test]
fn the_events_one_object_holds_are_bounded_by_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[limits]\nmax_event_bytes_per_object = 4000\n");
    std::fs::write(&cfg, text).unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let records: Vec<Value> = (0..50)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.08", "eventID": format!("root-{i}"), "eventName": "ConsoleLogin",
                "eventSource": "signin.amazonaws.com", "eventTime": "2026-11-20T10:00:00Z",
                "userIdentity": {"type": "Root", "arn": "arn:aws:iam::123456789012:root"},
                "responseElements": {"ConsoleLogin": "Success"},
                "additionalEventData": {"MFAUsed": "No"}, "recipientAccountId": "123456789012",
            })
        })
        .collect();
    std::fs::write(
        input.join("flood.json.gz"),
        gzip(
            serde_json::json!({ "Records": records })
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
    let stderr = run_once(&cfg, &[], &[]);
    let got = written(dir.path());
    let logins: Vec<&Value> = got
        .iter()
        .filter(|a| a["rule_name"] == "root_console_login")
        .collect();
    assert_eq!(logins.len(), 50, "{stderr}");
    let with_event = got.iter().filter(|a| a["event"].is_object()).count();
    let noted = got
        .iter()
        .filter(|a| {
            a["event"]
                .as_str()
                .is_some_and(|n| n.contains("max_event_bytes_per_object"))
        })
        .count();
    assert!(
        (1..20).contains(&with_event),
        "{with_event} alerts kept their event"
    );
    assert_eq!(
        with_event + noted,
        got.len(),
        "every alert has its event or the note"
    );
    let events: usize = got
        .iter()
        .filter(|a| a["event"].is_object())
        .map(|a| a["event"].to_string().len())
        .sum();
    assert!(events <= 4000, "{events} bytes of events");
    assert!(
        stderr.contains("carry a note instead of their event"),
        "{stderr}"
    );
}

/// `config check` (what `ExecStartPre` and CI run) refuses exactly what
/// `run` would refuse at start: an unknown threshold name, a missing rule
/// directory, an interval so large the clock arithmetic would overflow.
#[test]
fn config_check_refuses_what_run_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n[http]\nlisten = \"\"\n",
        dir.path().join("state"),
        dir.path().join("in"),
    );
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let missing = dir.path().join("no-such-rules");
    let typo = dir.path().join("filters");
    std::fs::create_dir_all(&typo).unwrap();
    std::fs::write(
        typo.join("mf_typo.yml"),
        "title: Typo\nlogsource: {product: aws}\nfilter:\n  rules: [root_console_logn]\n  \
         selection:\n    eventName: X\n  condition: selection\n",
    )
    .unwrap();
    for (extra, says) in [
        (
            format!("[rules]\nfilters = [{missing:?}]\n"),
            "no-such-rules",
        ),
        (
            format!("[rules]\nstrict = true\nfilters = [{typo:?}]\n"),
            "`root_console_logn`, which is not loaded",
        ),
        (
            "[rules.thresholds]\nno_such_burst = 3\n".to_string(),
            "no_such_burst",
        ),
        (format!("[rules]\ndirs = [{missing:?}]\n"), "no-such-rules"),
        (
            "[[sources.files]]\npath = \"/tmp\"\npoll_interval_secs = 9223372036854775807\n"
                .to_string(),
            "poll_interval_secs",
        ),
        (
            "[shutdown]\ngrace_secs = 999999999999\n".to_string(),
            "grace_secs",
        ),
    ] {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, format!("{base}{extra}")).unwrap();
        let check = trailwatch()
            .args(["config", "check"])
            .arg(&cfg)
            .output()
            .unwrap();
        let run = trailwatch()
            .args(["run", "--once", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        for (what, out) in [("config check", &check), ("run", &run)] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what} with {extra:?}: {stderr}"
            );
            assert!(stderr.contains(says), "{what} with {extra:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        }
    }
    // And accepts what run accepts.
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("{base}[rules.thresholds]\naccess_denied_burst = 3\n"),
    )
    .unwrap();
    let check = trailwatch()
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A damaged state store is a clear error naming the file, never a panic
/// (redb panics on some corrupted pages): whatever the damage.
#[test]
fn a_damaged_state_store_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for f in std::fs::read_dir(fixtures().join("cloudtrail")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&f, input.join(f.file_name().unwrap())).unwrap();
        }
    }
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[state]\ndir = {:?}\n[[sources.files]]\npath = {input:?}\n[output]\njsonl_path = {:?}\n[http]\nlisten = \"\"\n",
            dir.path().join("state"),
            dir.path().join("alerts.jsonl"),
        ),
    )
    .unwrap();
    run_once(&cfg, &[], &[]);
    let path = dir.path().join("state/state.redb");
    let good = std::fs::read(&path).unwrap();
    let mut pages = good.clone();
    for at in (4096..pages.len()).step_by(4096) {
        for b in &mut pages[at..(at + 64).min(good.len())] {
            *b ^= 0xFF;
        }
    }
    let mut header = good.clone();
    for b in &mut header[..512] {
        *b ^= 0x5A;
    }
    let truncated = good[..good.len() / 2].to_vec();
    for (name, bytes) in [
        ("pages", pages),
        ("header", header),
        ("truncated", truncated),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let out = trailwatch()
            .args(["run", "--once", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{name}: {stderr}"
        );
        assert!(stderr.lines().count() <= 3, "{name}: {stderr}");
    }
    // The good copy back: it runs.
    std::fs::write(&path, &good).unwrap();
    run_once(&cfg, &[], &[]);
}

/// `n` CreateAccessKey events with ids `{tag}-{i}` in `in/{tag}.json`:
/// `n` alerts.
fn key_events(dir: &Path, tag: &str, n: usize) {
    let into = dir.join("in");
    std::fs::create_dir_all(&into).unwrap();
    let recs: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({"eventVersion":"1.09","eventID":format!("{tag}-{i}"),
                "eventTime":"2026-11-20T10:00:00Z","eventSource":"iam.amazonaws.com",
                "eventName":"CreateAccessKey",
                "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/s"}})
        })
        .collect();
    // Written aside and renamed in: the daemon never sees half a file.
    let tmp = dir.join(format!("{tag}.tmp"));
    std::fs::write(&tmp, serde_json::json!({ "Records": recs }).to_string()).unwrap();
    std::fs::rename(&tmp, into.join(format!("{tag}.json"))).unwrap();
}

/// Complete alert lines in `path` (none if it is absent).
fn alert_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read(path).unwrap_or_default();
    assert!(!text.contains(&0), "NUL bytes in {}", path.display());
    let text = String::from_utf8(text).unwrap();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The alerts file is the team's history: a lost or new state store (an
/// EFS mount that failed, a relative state dir started elsewhere) never
/// cuts it, nor does a store cut a file that replaced the one it wrote;
/// it cuts only its own uncommitted tail.
#[test]
fn a_lost_store_never_truncates_the_alert_history() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let alerts = dir.path().join("alerts.jsonl");
    key_events(dir.path(), "a", 5);
    run_once(&cfg, &[], &[]);
    let history = std::fs::read(&alerts).unwrap();
    assert_eq!(alert_lines(&alerts).len(), 5);
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let stderr = run_once(&cfg, &[], &[]);
    assert!(
        stderr.contains("no record of writing this file"),
        "{stderr}"
    );
    let now = std::fs::read(&alerts).unwrap();
    assert!(now.starts_with(&history), "the history was cut");
    assert_eq!(
        alert_lines(&alerts).len(),
        10,
        "re-sent after it, not over it"
    );
    // Another file put in its place (renamed over it): kept whole.
    let other = b"{\"kept\":1}\n{\"kept\":2}\n".to_vec();
    std::fs::write(dir.path().join("other"), &other).unwrap();
    std::fs::rename(dir.path().join("other"), &alerts).unwrap();
    key_events(dir.path(), "b", 2);
    run_once(&cfg, &[], &[]);
    let now = std::fs::read(&alerts).unwrap();
    assert!(now.starts_with(&other));
    assert_eq!(alert_lines(&alerts).len(), 4);
}

/// Log rotation of the alerts file: `copytruncate` (appending at the new
/// end, no hole of NULs), renaming (the next alerts go to a new file at
/// the path, not to the rotated one), and SIGHUP (reopen; the daemon keeps
/// running instead of dying of the signal's default action).
#[test]
fn rotation_by_copytruncate_rename_or_sighup_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let alerts = dir.path().join("alerts.jsonl");
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_lines = |path: &Path, n: usize| {
        wait_for(&format!("{n} alerts in {}", path.display()), 30, || {
            (alert_lines(path).len() >= n).then_some(())
        })
    };
    let ids = |path: &Path| -> Vec<String> {
        alert_lines(path)
            .iter()
            .map(|a| a["event_id"].as_str().unwrap()[..1].to_owned())
            .collect()
    };
    key_events(dir.path(), "a", 3);
    wait_lines(&alerts, 3);

    // copytruncate.
    std::fs::copy(&alerts, dir.path().join("alerts.jsonl.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&alerts)
        .unwrap()
        .set_len(0)
        .unwrap();
    key_events(dir.path(), "b", 3);
    wait_lines(&alerts, 3);
    assert_eq!(ids(&alerts), ["b", "b", "b"]);
    assert!(std::fs::read(&alerts).unwrap().starts_with(b"{"));

    // Renamed away.
    std::fs::rename(&alerts, dir.path().join("alerts.jsonl.2")).unwrap();
    key_events(dir.path(), "c", 3);
    wait_lines(&alerts, 3);
    assert_eq!(ids(&alerts), ["c", "c", "c"]);
    assert_eq!(ids(&dir.path().join("alerts.jsonl.2")), ["b", "b", "b"]);

    // SIGHUP: still running, and the file reopened.
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP killed the daemon"
    );
    key_events(dir.path(), "d", 3);
    wait_lines(&alerts, 6);
    assert_eq!(ids(&alerts), ["c", "c", "c", "d", "d", "d"]);
    unsafe_sigterm(child.id());
    assert!(child.wait().unwrap().success());
}

/// `rules.filters` in the daemon: a filter on top of the built-in pack
/// removes exactly the alerts it names (here: every rule's, for the events
/// of the first file), the others are written as before.
#[test]
fn filters_from_the_configuration_remove_what_they_name_in_the_daemon() {
    let run = |filter: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        corpus(&dir.path().join("in"), 2, 50);
        if let Some(f) = filter {
            let fdir = dir.path().join("filters");
            std::fs::create_dir_all(&fdir).unwrap();
            std::fs::write(fdir.join("mf_one_address.yml"), f).unwrap();
            let mut text = std::fs::read_to_string(&cfg).unwrap();
            text.push_str(&format!("[rules]\nfilters = [{fdir:?}]\n"));
            std::fs::write(&cfg, text).unwrap();
        }
        trailwatch()
            .args(["run", "--once", "--config"])
            .arg(&cfg)
            .assert()
            .success();
        written(dir.path())
    };
    let all = run(None);
    let first =
        |a: &&serde_json::Value| a["event_id"].as_str().is_some_and(|e| e.starts_with("f0-"));
    assert!(all.iter().any(|a| first(&a)) && !all.iter().all(|a| first(&a)));
    let filter = "title: The first file is a lab\nid: mf-lab\nlogsource: {product: aws, service: cloudtrail}\n\
         filter:\n  rules: []\n  selection:\n    eventID|startswith: 'f0-'\n  condition: selection\n";
    let kept = run(Some(filter));
    // (rule, event) of each alert: the runs' object names differ.
    let key = |a: &&serde_json::Value| format!("{} {}", a["rule_id"], a["event_id"]);
    let expected: Vec<String> = all
        .iter()
        .filter(|a| !first(a) && a["correlation"].is_null())
        .map(|a| key(&a))
        .collect();
    let kept_plain: Vec<String> = kept
        .iter()
        .filter(|a| a["correlation"].is_null())
        .map(|a| key(&a))
        .collect();
    assert!(kept_plain.len() < all.iter().filter(|a| a["correlation"].is_null()).count());
    assert_eq!(kept_plain, expected);
}
