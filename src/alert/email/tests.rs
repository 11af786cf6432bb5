use super::*;
use crate::rules::RuleMeta;
use std::sync::Arc;

fn hostile() -> Alert {
    let mut a = Alert::example(Arc::new(RuleMeta::example("r")));
    a.principal = Some("arn:aws:iam::1:user/x\r\nBcc: victim@example.com".into());
    a.user_agent = Some("<script>alert(1)</script>".into());
    a.account = Some("123\n456".into());
    a.region = Some("evil.example.com/".into());
    a.event_id = Some("0b7e3f0e-1111-2222-3333-444455556666".into());
    a
}

fn entry(a: Alert) -> (u64, Entry) {
    (7, Entry::new(a, 0))
}

/// Message-IDs come from what a mail carries: the same alerts give the
/// same ID (a resend after a crash, from any store), any other alert,
/// or a summary of it, another one; a fresh store does not reuse IDs.
#[test]
fn message_ids_follow_the_alerts_not_the_store() {
    let with_id = |id: &str| {
        let mut a = hostile();
        a.event_id = Some(id.into());
        a
    };
    let one = message_id(&[entry(with_id("e1"))], "example.com");
    // Same alert, queued under another sequence number (another store).
    let mut moved = entry(with_id("e1"));
    moved.0 = 0;
    moved.1.queued_ms = 99;
    moved.1.attempts = 3;
    assert_eq!(one, message_id(&[moved], "example.com"));
    assert_ne!(one, message_id(&[entry(with_id("e2"))], "example.com"));
    let mut summary = entry(with_id("e1"));
    summary.1.summary = true;
    summary.1.suppressed_before = 5;
    assert_ne!(one, message_id(&[summary], "example.com"));
    // A digest: order does not matter, content does.
    let ab = message_id(&[entry(with_id("a")), entry(with_id("b"))], "example.com");
    let ba = message_id(&[entry(with_id("b")), entry(with_id("a"))], "example.com");
    assert_eq!(ab, ba);
    assert_ne!(ab, message_id(&[entry(with_id("a"))], "example.com"));
    assert!(one.starts_with("<trailwatch.") && one.ends_with("@example.com>"));
    assert!(!one.contains(['\r', '\n', ' ']));
}

/// The text part is read line by line (and by scripts): an event value
/// cannot add a line such as a forged `Rule id:` or reorder one.
#[test]
fn text_part_lines_cannot_be_forged() {
    let mut a = hostile();
    a.principal = Some("x\n      Rule id: forged\u{2028}Event id: y\u{202e}".into());
    a.source_ip = Some("1.2.3.4\r\nFound in: s3://elsewhere".into());
    let (_, e) = entry(a);
    let text = text_body(&e);
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("Rule id:"))
            .count(),
        1
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("Found in:"))
            .count(),
        1
    );
    assert!(!text.contains(['\r', '\u{2028}', '\u{202e}']), "{text}");
    assert!(text.contains("Principal: x\\n"), "{text}");
}

#[test]
fn subjects_cannot_carry_header_lines() {
    let s = subject("{title} {principal} {account}", &hostile());
    assert!(!s.contains('\r') && !s.contains('\n'));
    assert!(s.contains("Bcc: victim")); // as harmless text, on one line
    let long = Alert {
        principal: Some("p".repeat(5000)),
        ..hostile()
    };
    assert!(subject("{principal}", &long).chars().count() <= 251);
}

#[test]
fn html_is_escaped_and_links_need_a_real_region() {
    let e = Entry::new(hostile(), 0);
    let html = html_body(&e);
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(console_link(&e.alert).is_none());
    let mut ok = e.alert.clone();
    ok.region = Some("eu-west-1".into());
    assert_eq!(
        console_link(&ok).unwrap(),
        "https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/0b7e3f0e-1111-2222-3333-444455556666"
    );
}

#[test]
fn routes_add_recipients_by_level_and_tag() {
    let mut c = example_config();
    c.routes = vec![
        Route {
            levels: vec!["critical".into()],
            to: vec!["oncall@example.com".into()],
            from: Some("tw-critical <tw-critical@example.com>".into()),
            ..Route::default()
        },
        Route {
            tags: vec!["attack.persistence".into()],
            cc: vec!["iam-team@example.com".into(), "sec@example.com".into()],
            ..Route::default()
        },
    ];
    let mut a = hostile();
    a.level = Level::High;
    a.tags = vec!["attack.persistence".to_owned()].into();
    let (from, to, cc) = c.recipients(&a);
    assert_eq!(from, "tw <tw@example.com>");
    assert_eq!(to.into_iter().collect::<Vec<_>>(), ["sec@example.com"]);
    // Already in To: not repeated in Cc.
    assert_eq!(cc.into_iter().collect::<Vec<_>>(), ["iam-team@example.com"]);
    a.level = Level::Critical;
    a.tags = std::sync::Arc::from([]);
    let (from, to, cc) = c.recipients(&a);
    assert_eq!(from, "tw-critical <tw-critical@example.com>");
    assert_eq!(
        to.into_iter().collect::<Vec<_>>(),
        ["oncall@example.com", "sec@example.com"]
    );
    assert!(cc.is_empty());
}

fn example_config() -> EmailConfig {
    EmailConfig {
        smtp_host: "smtp.example.com".into(),
        smtp_port: None,
        tls: TlsMode::Starttls,
        allow_plaintext: false,
        ca_file: None,
        username: None,
        password_env: None,
        password_file: None,
        from: "tw <tw@example.com>".into(),
        to: vec!["sec@example.com".into()],
        cc: vec![],
        routes: vec![],
        min_level: "low".into(),
        subject: default_subject(),
        timeout_secs: 5,
        storm: StormConfig::default(),
        account_names: Default::default(),
    }
}

/// A misspelt or unknown placeholder is refused when the configuration is
/// read, not sent in every subject as written.
#[test]
fn unknown_subject_placeholders_are_refused() {
    let mut c = example_config();
    c.subject = "[tw] {level} {who} {event_name}".into();
    assert!(c.validate().is_ok());
    for bad in ["{unknown}", "{{level}}", "{titel}", "{"] {
        c.subject = format!("[tw] {bad}");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("unknown placeholder"), "{bad}: {e}");
    }
}

#[test]
fn plaintext_only_to_loopback_and_only_when_allowed() {
    let base = EmailConfig {
        tls: TlsMode::None,
        allow_plaintext: true,
        ..example_config()
    };
    assert!(base.validate().is_err());
    let local = EmailConfig {
        smtp_host: "127.0.0.1".into(),
        ..base.clone()
    };
    assert!(local.validate().is_ok());
    let not_allowed = EmailConfig {
        allow_plaintext: false,
        ..local
    };
    assert!(not_allowed.validate().is_err());
}

/// The facts a responder acts on come from the event: whether the call
/// succeeded, the key used and the key created (what to revoke), what was
/// acted on; the runbook follows; the default subject says who did what.
/// Event text in them is cleaned and cut, and a value that looks like a
/// placeholder is not expanded in the subject.
#[test]
fn facts_say_what_happened_and_the_subject_who_did_it() {
    let mut meta = RuleMeta::example("r");
    meta.runbook = Some("Deactivate the new key.\nAsk the user.".into());
    let mut a = Alert::example(Arc::new(meta));
    a.principal = Some("arn:aws:iam::123456789012:user/mallory".into());
    a.event_name = Some("CreateAccessKey".into());
    a.account = Some("123456789012".into());
    let event = serde_json::json!({
        "eventName": "CreateAccessKey",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAEXAMPLEUSED00001"},
        "errorCode": "AccessDenied",
        "errorMessage": format!("not authorized\nBcc: x@example.com {}", "y".repeat(500)),
        "requestParameters": {"userName": "alice", "ignored": "zzz"},
        "responseElements": {"accessKey": {"accessKeyId": "AKIAEXAMPLENEW000002"}}
    });
    a.event = Some(crate::alert::EventJson::from_json(event.to_string()));
    let (_, e) = entry(a.clone());
    let text = text_body(&e);
    let line = |name: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    assert_eq!(line("Access key used"), "AKIAEXAMPLEUSED00001");
    assert_eq!(line("Key created"), "AKIAEXAMPLENEW000002");
    assert_eq!(line("Parameters"), "userName=alice");
    let result = line("Result");
    assert!(
        result.starts_with("failed: AccessDenied: not authorized"),
        "{result}"
    );
    assert!(
        result.chars().count() < 260 && result.ends_with('…'),
        "{result}"
    );
    assert!(!text.contains("\nBcc:"));
    assert!(text.contains("Runbook:\nDeactivate the new key.\nAsk the user."));
    assert!(
        html_body(&e).contains("<h3>Runbook</h3><pre>Deactivate the new key.\nAsk the user.</pre>")
    );
    assert_eq!(
        subject(&default_subject(), &a),
        "[trailwatch] high: R: user/mallory CreateAccessKey (123456789012)"
    );
    a.principal = Some("{title}{level}".into());
    assert_eq!(subject("{who} {title}", &a), "{title}{level} R");
    // An RFC 2047 encoded word would be decoded by the client into the
    // attacker's text; bidi and zero-width characters reorder or hide it.
    a.principal = Some("=?utf-8?b?cm91dGluZQ==?= x\u{202e}yz\u{200b}".into());
    let s = subject("{who}", &a);
    assert!(!s.contains("=?"), "{s}");
    assert!(!s.contains(['\u{202e}', '\u{200b}']), "{s}");
    assert_eq!(short_principal("arn:aws:iam::123456789012:root"), "root");
    assert_eq!(
        short_principal("arn:aws:sts::1:assumed-role/Deploy/s1"),
        "assumed-role/Deploy/s1"
    );

    // A successful call says so; a console sign-in says how it went.
    let ok = serde_json::json!({"eventName": "ConsoleLogin", "responseElements": {"ConsoleLogin": "Failure"}});
    let mut b = a.clone();
    b.event = Some(crate::alert::EventJson::from_json(ok.to_string()));
    assert!(text_body(&entry(b).1).contains("Result: Failure"));
}
