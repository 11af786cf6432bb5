//! Alert email end to end against a real SMTP server: aiosmtpd (from the
//! venv `.ci/test` makes; `tests/support/smtpd.py`) on 127.0.0.1, messages
//! read back with Python's email package (`tests/support/read_mail.py`).
//! Plain SMTP to loopback, STARTTLS and implicit TLS with a self-signed
//! certificate and AUTH, hostile event text, an outage across a kill -9,
//! and storm control (suppression, digest, hourly cap).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::{Value, json};

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// aiosmtpd on 127.0.0.1:`port`, delivering into `maildir`; stopped on drop.
struct Smtpd {
    child: Child,
    maildir: PathBuf,
}

impl Smtpd {
    fn start(port: u16, maildir: &Path, extra: &[&str]) -> Smtpd {
        let mut child = Command::new(python())
            .arg(support("smtpd.py"))
            .args(["--port", &port.to_string(), "--maildir"])
            .arg(maildir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start aiosmtpd ({e}): run the tests through .ci/test, which installs it"
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd did not start (is it installed? .ci/test installs it)"
        );
        Smtpd {
            child,
            maildir: maildir.to_owned(),
        }
    }

    /// Every message received, parsed.
    fn mails(&self) -> Vec<Value> {
        let out = succeeded(
            Command::new(python())
                .arg(support("read_mail.py"))
                .arg(&self.maildir)
                .output()
                .unwrap(),
        );
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(mail: &'a Value, name: &str) -> Vec<&'a str> {
    mail["headers"][name]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A daemon config in `dir`: the `in` directory, alerts to a file, an
/// email block (`email` is its body, after `[email]`). Incidents are off
/// (`incident_secs = 0`: one mail per alert, which these tests count)
/// unless `email` sets them.
fn config(dir: &Path, email: &str, extra: &str) -> PathBuf {
    let email = if email.contains("incident_secs") {
        email.to_owned()
    } else if email.contains("[email.storm]\n") {
        email.replace("[email.storm]\n", "[email.storm]\nincident_secs = 0\n")
    } else {
        format!("{email}\n[email.storm]\nincident_secs = 0\n")
    };
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n\
             poll_interval_secs = 1\nsettle_secs = 0\n[output]\njsonl_path = {:?}\n\
             [shutdown]\ngrace_secs = 15\n{extra}\n[email]\nfrom = \"trailwatch <trailwatch@example.com>\"\n\
             to = [\"secops@example.com\"]\nmin_level = \"informational\"\n{email}",
            dir.join("state"),
            dir.join("in"),
            dir.join("alerts.jsonl"),
        ),
    )
    .unwrap();
    cfg
}

fn plain(port: u16) -> String {
    format!(
        "smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nallow_plaintext = true\n"
    )
}

/// `config` with the metrics listener on `metrics` (an address the test
/// reads), for daemons the test watches through `/metrics`.
fn config_watched(dir: &Path, email: &str, metrics: &str) -> PathBuf {
    let cfg = config(dir, email, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:0", metrics);
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Every alert written to the sink was mailed exactly once.
fn assert_each_alert_mailed_once(dir: &Path, mails: &[Value]) {
    let want: BTreeMap<_, usize> = written(dir).iter().map(|a| (identity(a), 1)).collect();
    let mut got: BTreeMap<_, usize> = BTreeMap::new();
    for m in mails {
        *got.entry(mail_identity(m["text"].as_str().unwrap()))
            .or_default() += 1;
    }
    assert_eq!(got, want, "each alert exactly once");
}

/// The fixture files (a root login without MFA, keys for another user,
/// bursts) into `dir/in`.
fn input(dir: &Path) {
    let into = dir.join("in");
    std::fs::create_dir_all(&into).unwrap();
    for name in [
        "123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json",
        "123456789012_CloudTrail_eu-west-1_20261120T1020Z_burst.json",
    ] {
        std::fs::copy(fixtures().join("cloudtrail").join(name), into.join(name)).unwrap();
    }
}

/// What suppression groups alerts by: the rule and the correlation group,
/// else the rule, principal and account; and the action and level (a
/// different action by the same principal is news).
fn pair(a: &Value) -> String {
    let who = if a["group"].is_object() {
        a["group"].to_string()
    } else {
        format!("{}{}", a["principal"], a["account"])
    };
    format!("{}{who}{}{}", a["rule_id"], a["event_name"], a["level"])
}

/// (rule id, first correlated event id or event id) of an alert, from its
/// JSON.
fn identity(a: &Value) -> (String, String) {
    let id = a["event_ids"][0]
        .as_str()
        .or_else(|| a["event_id"].as_str())
        .unwrap_or("-");
    (a["rule_id"].as_str().unwrap().to_owned(), id.to_owned())
}

/// The same identity, read back from a mail's text.
fn mail_identity(text: &str) -> (String, String) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{name}: ")))
            .unwrap_or("-")
            .to_owned()
    };
    let mut id = field("Event id");
    if let Some(first) = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Event ids: "))
    {
        id = first.split(", ").next().unwrap().to_owned();
    }
    (field("Rule id"), id)
}

#[test]
fn each_alert_mail_carries_the_facts_and_defuses_hostile_event_text() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("in");
    std::fs::create_dir_all(&into).unwrap();
    // The example file's root sign-in, with hostile text where an attacker
    // controls it.
    let mut records = records_of(
        &fixtures()
            .join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json"),
    );
    let root = records
        .iter_mut()
        .find(|r| r["eventName"] == "ConsoleLogin" && r["userIdentity"]["type"] == "Root")
        .unwrap();
    root["userAgent"] = json!("<script>alert(1)</script>\r\nBcc: victim@example.com");
    root["recipientAccountId"] = json!("123456789012\r\nX-Injected: yes");
    root["userIdentity"]["arn"] =
        json!("arn:aws:iam::123456789012:root\n<img src=x onerror=alert(1)>");
    std::fs::write(
        into.join("hostile.json"),
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
    )
    .unwrap();

    let port = free_port();
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    let cfg = config(
        dir.path(),
        &format!(
            "{}subject = \"[tw] {{level}} {{title}} {{principal}} {{account}}\"\n[email.storm]\nsuppress_secs = 0\n",
            plain(port)
        ),
        "",
    );
    run_once(&cfg, &[], &[]);
    let alerts = written(dir.path());
    let mails = smtp.mails();
    assert_eq!(mails.len(), alerts.len(), "one mail per alert");
    let want: BTreeSet<_> = alerts.iter().map(identity).collect();
    let got: BTreeSet<_> = mails
        .iter()
        .map(|m| mail_identity(m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(got, want);

    for m in &mails {
        // Only the configured recipient, whatever the event said.
        assert_eq!(header(m, "x-rcptto"), ["secops@example.com"]);
        assert_eq!(header(m, "to"), ["secops@example.com"]);
        assert!(header(m, "bcc").is_empty() && header(m, "x-injected").is_empty());
        let raw = m["raw_header_block"].as_str().unwrap();
        assert!(!raw.to_ascii_lowercase().contains("\nbcc:"), "{raw}");
        assert!(!raw.contains("\nX-Injected"), "{raw}");
        let subject = header(m, "subject")[0];
        assert!(subject.starts_with("[tw] ") && !subject.contains('\n'));
        assert!(m["html"].as_str().is_some() && m["text"].as_str().is_some());
        assert_eq!(header(m, "message-id").len(), 1);
    }

    let root_alert = alerts
        .iter()
        .find(|a| {
            a["user_agent"]
                .as_str()
                .is_some_and(|u| u.contains("<script>"))
        })
        .unwrap();
    let root_mail = mails
        .iter()
        .find(|m| mail_identity(m["text"].as_str().unwrap()) == identity(root_alert))
        .expect("the root sign-in alert's mail");
    let text = root_mail["text"].as_str().unwrap();
    let html = root_mail["html"].as_str().unwrap();
    assert!(text.contains("<script>alert(1)</script>"));
    assert!(!html.contains("<script>") && !html.contains("<img"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // The facts, the rule's documentation and the event.
    for (k, v) in [
        ("Rule", root_alert["rule_title"].as_str().unwrap()),
        ("Level", root_alert["level"].as_str().unwrap()),
        ("Source IP", root_alert["source_ip"].as_str().unwrap()),
        ("Event name", "ConsoleLogin"),
        ("Event time", root_alert["event_time"].as_str().unwrap()),
        ("Region", "eu-west-1"),
    ] {
        assert!(text.contains(&format!("{k}: {v}")), "{k} in {text}");
    }
    let rule = &root_alert["rule"];
    if let Some(d) = rule["description"].as_str() {
        assert!(text.contains(d.trim()));
    }
    for r in rule["references"].as_array().unwrap() {
        assert!(text.contains(r.as_str().unwrap()));
    }
    for f in rule["falsepositives"].as_array().unwrap() {
        assert!(text.contains(f.as_str().unwrap()));
    }
    for t in root_alert["tags"].as_array().unwrap() {
        assert!(text.contains(t.as_str().unwrap()));
    }
    let event_id = root_alert["event_id"].as_str().unwrap();
    assert!(text.contains(&format!(
        "https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/{event_id}"
    )));
    assert!(html.contains(&format!("#/events/{event_id}\"")));
    assert!(
        text.contains("\"eventName\": \"ConsoleLogin\""),
        "pretty event JSON"
    );
}

/// A self-signed leaf certificate for 127.0.0.1 (CA:FALSE, serverAuth).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    succeeded(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .args([
                "-addext",
                "keyUsage=critical,digitalSignature,keyEncipherment",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl"),
    );
    (cert, key)
}

#[test]
fn starttls_and_implicit_tls_with_auth_and_the_password_never_logged() {
    const PASSWORD: &str = "s3cr3t-Pa55word-xyzzy";
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let pwfile = dir.path().join("smtp-password");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    for (mode, flag) in [("starttls", None), ("tls", Some("--implicit-tls"))] {
        let case = dir.path().join(mode);
        input(&case);
        let port = free_port();
        let mut args = vec![
            "--cert".to_owned(),
            cert.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
            "--user".to_owned(),
            "alerts".to_owned(),
            "--password".to_owned(),
            PASSWORD.to_owned(),
        ];
        args.extend(flag.map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let smtp = Smtpd::start(port, &case.join("mail"), &args);
        let email = |password: &str| {
            format!(
                "smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = {mode:?}\nca_file = {cert:?}\n\
                 username = \"alerts\"\npassword_env = \"TW_SMTP_PASSWORD\"\n# {password}\n"
            )
        };
        // A wrong password first: nothing delivered, nothing lost, and the
        // password in no log line.
        let cfg = config(&case, &email(""), "");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("grace_secs = 15", "grace_secs = 3");
        std::fs::write(&cfg, text).unwrap();
        let log = run_once(&cfg, &[], &[("TW_SMTP_PASSWORD", "wrong-password-123")]);
        assert!(log.contains("delivery failed"), "{log}");
        assert!(log.contains("alerts left in the outbox"), "{log}");
        assert!(!log.contains("wrong-password-123"), "{log}");
        assert!(smtp.mails().is_empty());
        // The right one: the queued alerts go out, each once (with the
        // usual grace to send them all before `--once` ends).
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("grace_secs = 3", "grace_secs = 30");
        std::fs::write(&cfg, text).unwrap();
        let log = run_once(&cfg, &[], &[("TW_SMTP_PASSWORD", PASSWORD)]);
        assert!(!log.contains(PASSWORD), "{log}");
        let alerts = written(&case);
        let mails = smtp.mails();
        let pairs: BTreeSet<_> = alerts.iter().map(pair).collect();
        assert_eq!(
            mails.len(),
            pairs.len(),
            "{mode}: one mail per (rule, group)"
        );
        let ids: BTreeSet<_> = mails
            .iter()
            .map(|m| header(m, "message-id")[0].to_owned())
            .collect();
        assert_eq!(ids.len(), mails.len(), "no mail twice");
        // The password file works too.
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "password_env = \"TW_SMTP_PASSWORD\"",
            &format!("password_file = {pwfile:?}"),
        );
        std::fs::write(&cfg, text).unwrap();
        trailwatch()
            .args(["config", "check"])
            .arg(&cfg)
            .assert()
            .success();
    }
    // Not in --help either (it is never an option).
    let help = trailwatch().args(["run", "--help"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains(PASSWORD));
}

#[test]
fn an_smtp_outage_across_a_kill_delivers_every_alert_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = config_watched(
        dir.path(),
        &format!(
            "{}[email.storm]\nsuppress_secs = 0\nretry_initial_secs = 1\nretry_max_secs = 1\n",
            plain(port)
        ),
        &metrics,
    );
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_trailwatch"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let metric =
        |series: &str| http_get(&metrics, "/metrics").and_then(|(_, m)| sample(&m, series));
    // SMTP down: every alert waits in the outbox, attempts fail.
    let mut daemon = spawn();
    let n = wait_for("alerts written", 30, || {
        let n = written(dir.path()).len();
        (n > 0
            && metric("trailwatch_outbox_depth{sink=\"email\"}") == Some(n as f64)
            && metric("trailwatch_alerts_total{outcome=\"failed\",sink=\"email\"}").unwrap_or(0.0)
                >= 1.0)
            .then_some(n)
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // SMTP back, daemon restarted: the outbox drains.
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    let mut daemon = spawn();
    wait_for("the outbox to drain", 30, || {
        (metric("trailwatch_outbox_depth{sink=\"email\"}") == Some(0.0)
            && metric("trailwatch_alerts_total{outcome=\"sent\",sink=\"email\"}") == Some(n as f64))
        .then_some(())
    });
    // Commit → SMTP server accepted, for every alert: each waited out the
    // outage (its queue time survives the kill).
    assert_eq!(
        metric("trailwatch_alert_delivery_seconds_count{sink=\"email\"}"),
        Some(n as f64)
    );
    let waited = metric("trailwatch_alert_delivery_seconds_sum{sink=\"email\"}").unwrap();
    assert!(waited >= n as f64 * 0.1, "{waited} s for {n} alerts");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let mails = smtp.mails();
    assert_eq!(mails.len(), n);
    assert_each_alert_mailed_once(dir.path(), &mails);
}

#[test]
fn storm_control_suppresses_digests_and_caps_without_dropping() {
    // Suppression (default 60 min): one mail per (rule, group), the rest
    // counted.
    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    let port = free_port();
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    run_once(&config(dir.path(), &plain(port), ""), &[], &[]);
    let alerts = written(dir.path());
    let mut pairs: BTreeMap<String, usize> = BTreeMap::new();
    for a in &alerts {
        *pairs.entry(pair(a)).or_default() += 1;
    }
    assert!(
        pairs.values().any(|n| *n > 1),
        "the input must repeat a pair"
    );
    assert_eq!(smtp.mails().len(), pairs.len());
    // The next alert of a pair after its window says how many were held
    // back: covered by the outbox unit tests (it needs an hour to pass).

    // Digest: everything of one batch in one mail.
    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    let port = free_port();
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    run_once(
        &config(
            dir.path(),
            &format!(
                "{}[email.storm]\nsuppress_secs = 0\ndigest_secs = 600\n",
                plain(port)
            ),
            "",
        ),
        &[],
        &[],
    );
    let alerts = written(dir.path());
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let subject = header(&mails[0], "subject")[0];
    assert!(
        subject.starts_with(&format!("[trailwatch] {} alerts, highest ", alerts.len())),
        "{subject}"
    );
    let text = mails[0]["text"].as_str().unwrap();
    for a in &alerts {
        let (rule, id) = identity(a);
        assert!(text.contains(&rule) && text.contains(&id));
    }

    // Hourly cap of 2: two mails, the rest queued (not dropped), and the
    // cap still holds after a restart.
    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    let port = free_port();
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    let cfg = config(
        dir.path(),
        &format!(
            "{}[email.storm]\nsuppress_secs = 0\nmax_per_hour = 2\n",
            plain(port)
        ),
        "",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("grace_secs = 15", "grace_secs = 3");
    std::fs::write(&cfg, text).unwrap();
    let log = run_once(&cfg, &[], &[]);
    let n = written(dir.path()).len();
    assert!(n > 2);
    assert_eq!(smtp.mails().len(), 2);
    assert!(log.contains(&format!("queued={}", n - 2)), "{log}");
    let log = run_once(&cfg, &[], &[]);
    assert_eq!(smtp.mails().len(), 2);
    assert!(log.contains(&format!("queued={}", n - 2)), "{log}");
}

#[test]
fn a_server_that_refuses_hangs_or_drops_mid_data_loses_and_repeats_nothing() {
    // The server refuses (451), never answers the end of DATA, and closes
    // the connection after the data, on successive messages; the daemon
    // times out (2 s), backs off, retries: every alert arrives once.
    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let smtp = Smtpd::start(
        port,
        &dir.path().join("mail"),
        &["--faults", "refuse,hang,drop,refuse,drop,hang"],
    );
    let cfg = config_watched(
        dir.path(),
        &format!(
            "{}timeout_secs = 2\n[email.storm]\nsuppress_secs = 0\nretry_initial_secs = 1\nretry_max_secs = 1\n",
            plain(port)
        ),
        &metrics,
    );
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metric =
        |series: &str| http_get(&metrics, "/metrics").and_then(|(_, m)| sample(&m, series));
    let n = wait_for("alerts written", 30, || {
        let n = written(dir.path()).len();
        (n > 0).then_some(n)
    });
    let failed = wait_for("every alert delivered through the faults", 90, || {
        (metric("trailwatch_outbox_depth{sink=\"email\"}") == Some(0.0)
            && metric("trailwatch_alerts_total{outcome=\"sent\",sink=\"email\"}") == Some(n as f64))
        .then(|| metric("trailwatch_alerts_total{outcome=\"failed\",sink=\"email\"}"))
        .flatten()
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(
        failed >= 6.0,
        "the faults were met: {failed} failed attempts"
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), n, "one mail per alert");
    assert_each_alert_mailed_once(dir.path(), &mails);
}

/// The first event of `rules/{rule}.tests.jsonl` that the rule must match.
fn matching_event(rule: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rules")
        .join(format!("{rule}.tests.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|c| c["match"] == true)
        .unwrap_or_else(|| panic!("no matching case in {}", path.display()))["event"]
        .clone()
}

/// `event` with its id and who did it (`arn`) set, and the action.
fn event_as(mut event: Value, id: &str, arn: &str, name: Option<&str>) -> Value {
    event["eventID"] = json!(id);
    event["userIdentity"]["arn"] = json!(arn);
    if let Some(name) = name {
        event["eventName"] = json!(name);
    }
    event
}

fn write_records(dir: &Path, file: &str, records: &[Value]) {
    let into = dir.join("in");
    std::fs::create_dir_all(&into).unwrap();
    std::fs::write(
        into.join(file),
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
    )
    .unwrap();
}

/// Event ids the mails carry (one per mail, or the summary's), in order
/// of arrival.
fn mailed_ids(mails: &[Value]) -> Vec<String> {
    mails
        .iter()
        .map(|m| mail_identity(m["text"].as_str().unwrap()).1)
        .collect()
}

/// Under the hourly cap the most severe alert goes first, and a critical
/// alert is never held by a used-up cap: three low AccessDenied mails
/// queued before a root login do not delay it, now or an hour later.
#[test]
fn critical_alerts_go_first_and_the_cap_never_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let denied = matching_event("errors/access_denied");
    let root = matching_event("root/root_console_login_without_mfa");
    let mut records: Vec<Value> = (0..3)
        .map(|i| {
            event_as(
                denied.clone(),
                &format!("deny-{i}"),
                &format!("arn:aws:iam::123456789012:user/u{i}"),
                None,
            )
        })
        .collect();
    records.push(event_as(
        root.clone(),
        "root-1",
        "arn:aws:iam::123456789012:root",
        None,
    ));
    write_records(dir.path(), "a.json", &records);
    let port = free_port();
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    let cfg = config(
        dir.path(),
        &format!(
            "{}[email.storm]\nsuppress_secs = 0\nmax_per_hour = 1\n",
            plain(port)
        ),
        "",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("grace_secs = 15", "grace_secs = 3");
    std::fs::write(&cfg, text).unwrap();
    run_once(&cfg, &[], &[]);
    assert_eq!(
        mailed_ids(&smtp.mails()),
        ["root-1"],
        "the critical goes first"
    );
    // The cap is used up; another critical is not held by it.
    write_records(
        dir.path(),
        "b.json",
        &[event_as(
            root,
            "root-2",
            "arn:aws:iam::123456789012:root",
            None,
        )],
    );
    run_once(&cfg, &[], &[]);
    assert_eq!(mailed_ids(&smtp.mails()), ["root-1", "root-2"]);
}

/// Suppression holds back repeats of the same action only, a window that
/// held alerts back ends in a summary mail (no further alert needed), and
/// Message-IDs follow the alerts: distinct per mail, the same for the same
/// alert mailed from a fresh store (a lost volume, a second instance).
#[test]
fn summaries_at_window_close_and_message_ids_from_the_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let tamper = matching_event("tamper/cloudtrail_tampering");
    let denied = matching_event("errors/access_denied");
    let who = "arn:aws:iam::123456789012:user/mallory";
    let mut records = vec![
        event_as(tamper.clone(), "stop-1", who, Some("StopLogging")),
        event_as(tamper, "delete-1", who, Some("DeleteTrail")),
    ];
    for i in 0..3 {
        records.push(event_as(denied.clone(), &format!("deny-{i}"), who, None));
    }
    write_records(dir.path(), "a.json", &records);
    let port = free_port();
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    let email = format!("{}[email.storm]\nsuppress_secs = 2\n", plain(port));
    let cfg = config(dir.path(), &email, "");
    run_once(&cfg, &[], &[]);
    let first = smtp.mails();
    let ids: BTreeSet<String> = mailed_ids(&first).into_iter().collect();
    for want in ["stop-1", "delete-1", "deny-0"] {
        assert!(ids.contains(want), "{want} not mailed: {ids:?}");
    }
    assert!(
        !ids.contains("deny-1") && !ids.contains("deny-2"),
        "{ids:?}"
    );
    // The window ends: its summary goes out on the next pass.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    run_once(&cfg, &[], &[]);
    let mails = smtp.mails();
    let summaries: Vec<&Value> = mails
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .contains("Summary: 2 alerts like this one")
        })
        .collect();
    // One per rule the denied calls matched.
    let rules: BTreeSet<String> = written(dir.path())
        .iter()
        .filter(|a| a["event_id"] == "deny-0")
        .map(|a| a["rule_id"].to_string())
        .collect();
    assert!(!rules.is_empty());
    assert_eq!(summaries.len(), rules.len(), "{:#?}", mailed_ids(&mails));
    for s in &summaries {
        assert_eq!(mailed_ids(&[(*s).clone()]), ["deny-2"]);
    }
    let message_ids: Vec<&str> = mails.iter().map(|m| header(m, "message-id")[0]).collect();
    let distinct: BTreeSet<&str> = message_ids.iter().copied().collect();
    assert_eq!(distinct.len(), mails.len(), "{message_ids:?}");

    // The same input into a fresh store: the same alerts, the same IDs;
    // an alert never mailed before gets one of its own.
    let fresh = tempfile::tempdir().unwrap();
    write_records(fresh.path(), "a.json", &records);
    write_records(
        fresh.path(),
        "b.json",
        &[event_as(
            denied,
            "deny-x",
            "arn:aws:iam::123456789012:user/eve",
            None,
        )],
    );
    let port2 = free_port();
    let smtp2 = Smtpd::start(port2, &fresh.path().join("mail"), &[]);
    let email = format!("{}[email.storm]\nsuppress_secs = 2\n", plain(port2));
    run_once(&config(fresh.path(), &email, ""), &[], &[]);
    let by_event = |mails: &[Value]| -> BTreeMap<String, String> {
        mails
            .iter()
            .filter(|m| !m["text"].as_str().unwrap().contains("Summary: "))
            .map(|m| {
                (
                    mail_identity(m["text"].as_str().unwrap()).1,
                    header(m, "message-id")[0].to_owned(),
                )
            })
            .collect()
    };
    let before = by_event(&first);
    let after = by_event(&smtp2.mails());
    for (event, id) in &before {
        assert_eq!(after.get(event), Some(id), "{event}");
    }
    let new_id = &after["deny-x"];
    assert!(!distinct.contains(new_id.as_str()));
}

/// A rule in dry run (`rules.dry_run`) is written to the JSON lines, marked,
/// and never mailed; every other alert is mailed once, with the account's
/// name beside its id, the call's result and the default subject naming
/// who did what.
#[test]
fn a_rule_in_dry_run_is_written_not_mailed_and_mails_name_the_account() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    let port = free_port();
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    let cfg = config(
        dir.path(),
        &format!(
            "{}account_names = {{ \"123456789012\" = \"production\" }}\n[email.storm]\nsuppress_secs = 0\n",
            plain(port)
        ),
        "[rules]\ndry_run = [\"root_console_login_without_mfa\"]\n",
    );
    run_once(&cfg, &[], &[]);
    let alerts = written(dir.path());
    let (trial, live): (Vec<&Value>, Vec<&Value>) =
        alerts.iter().partition(|a| a["rule"]["dry_run"] == true);
    assert!(!trial.is_empty(), "the dry-run rule still matched");
    assert!(
        trial
            .iter()
            .all(|a| a["rule"]["name"] == "root_console_login_without_mfa")
    );
    assert!(!live.is_empty());
    let mails = smtp.mails();
    let mailed: BTreeSet<_> = mails
        .iter()
        .map(|m| mail_identity(m["text"].as_str().unwrap()))
        .collect();
    let want: BTreeSet<_> = live.iter().map(|a| identity(a)).collect();
    assert_eq!(mailed, want, "every live alert mailed, no dry-run one");
    assert_eq!(mails.len(), live.len());
    let single = mails
        .iter()
        .find(|m| m["text"].as_str().unwrap().contains("Event id: "))
        .expect("a single-event alert's mail");
    let text = single["text"].as_str().unwrap();
    assert!(
        text.contains("Account: production (123456789012)"),
        "{text}"
    );
    assert!(text.contains("Result: "), "{text}");
    let subject = header(single, "subject")[0];
    assert!(
        subject.ends_with("(production (123456789012))"),
        "{subject}"
    );
}

/// CreateUser → CreateAccessKey → AttachUserPolicy(AdministratorAccess) →
/// DeleteTrail by one principal, in one CloudTrail file, is one mail: its
/// subject names the principal and the path, its body the timeline in order
/// and the most severe alert's facts; another principal's alert in the same
/// file is its own mail. The next alert of the incident, in a later file,
/// is an update in the same thread (`References` the incident).
#[test]
fn one_principal_across_rules_is_one_incident_mail_then_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let mallory = "arn:aws:iam::123456789012:user/mallory";
    let at = |rule: &str, id: &str, t: &str| {
        let mut e = event_as(matching_event(rule), id, mallory, None);
        e["eventTime"] = json!(t);
        e["recipientAccountId"] = json!("123456789012");
        e["userIdentity"]["accountId"] = json!("123456789012");
        e["userIdentity"]["type"] = json!("IAMUser");
        e["userIdentity"]["userName"] = json!("mallory");
        e
    };
    let story = vec![
        at(
            "users/iam_user_created",
            "e0000000-0000-4000-8000-00000000aa01",
            "2026-12-01T10:00:01Z",
        ),
        at(
            "keys/access_key_created_for_other_user",
            "e0000000-0000-4000-8000-00000000aa02",
            "2026-12-01T10:00:02Z",
        ),
        at(
            "policy/admin_policy_attached",
            "e0000000-0000-4000-8000-00000000aa03",
            "2026-12-01T10:00:03Z",
        ),
        at(
            "tamper/cloudtrail_tampering",
            "e0000000-0000-4000-8000-00000000aa04",
            "2026-12-01T10:00:04Z",
        ),
    ];
    let mut bob = event_as(
        matching_event("users/iam_user_created"),
        "e0000000-0000-4000-8000-00000000bb01",
        "arn:aws:iam::123456789012:user/bob",
        None,
    );
    bob["recipientAccountId"] = json!("123456789012");
    let mut records = story.clone();
    records.push(bob);
    write_records(dir.path(), "a.json", &records);
    let port = free_port();
    let smtp = Smtpd::start(port, &dir.path().join("mail"), &[]);
    let cfg = config(
        dir.path(),
        &format!(
            "{}[email.storm]\nsuppress_secs = 0\nincident_secs = 3600\n",
            plain(port)
        ),
        "",
    );
    run_once(&cfg, &[], &[]);
    let alerts = written(dir.path());
    let by_mallory = alerts.iter().filter(|a| a["principal"] == mallory).count();
    assert!(by_mallory >= 4, "{by_mallory} alerts by mallory");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "one mail for mallory's story, one for bob");
    let story_mail = mails
        .iter()
        .find(|m| header(m, "subject")[0].contains("user/mallory"))
        .expect("mallory's incident mail");
    let names: Vec<String> = story
        .iter()
        .map(|e| e["eventName"].as_str().unwrap().to_owned())
        .collect();
    let subject = header(story_mail, "subject")[0];
    assert!(
        subject.contains(&format!("incident, {by_mallory} alerts by user/mallory: ")),
        "{subject}"
    );
    for n in &names {
        assert!(subject.contains(n.as_str()), "{n} in {subject}");
    }
    // The most severe call leads (AdministratorAccess, the trail).
    let after = &subject[subject.find("user/mallory: ").unwrap()..];
    assert!(!after.contains(&format!(": {}", names[0])), "{subject}");
    // Every folded alert is listed with its facts, not only the timeline.
    assert!(
        story_mail["text"]
            .as_str()
            .unwrap()
            .contains("Also in this message"),
        "folded alerts listed"
    );
    let text = story_mail["text"].as_str().unwrap();
    let timeline = &text[text.find("\nIncident ").expect("a timeline")..];
    let order: Vec<usize> = names
        .iter()
        .map(|e| {
            timeline
                .find(&format!(" {e} "))
                .unwrap_or_else(|| panic!("{e} not in the timeline:\n{text}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order:\n{text}");
    let thread = header(story_mail, "references");
    assert_eq!(thread.len(), 1);
    assert!(thread[0].starts_with("<trailwatch.incident."), "{thread:?}");

    // Later: one more step by mallory is an update in the same thread.
    let more = at(
        "mfa/mfa_device_deactivated",
        "e0000000-0000-4000-8000-00000000aa05",
        "2026-12-01T10:09:00Z",
    );
    write_records(dir.path(), "b.json", &[more]);
    run_once(&cfg, &[], &[]);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3);
    let update = mails
        .iter()
        .filter(|m| header(m, "references") == thread)
        .count();
    assert_eq!(update, 2, "the update threads under the incident");
}
