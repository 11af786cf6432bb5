//! `trailwatch posture` against moto's IAM on loopback: users made with a
//! console password and no MFA, a policy attached directly, an inline
//! policy, no password policy; each finding appears for the right
//! principal, then clears when the test fixes what it says.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::collections::BTreeSet;

fn posture(moto: &moto::Moto) -> (i32, BTreeSet<(String, String)>, Vec<serde_json::Value>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args([
            "posture",
            "--format",
            "json",
            "--endpoint-url",
            &moto.endpoint,
        ])
        .envs(moto.env())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let all: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids = all
        .iter()
        .map(|f| {
            (
                f["finding"].as_str().unwrap().to_owned(),
                f["principal"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (out.status.code().unwrap(), ids, all)
}

/// In moto: alice with a console password and no MFA; bob with an access
/// key and a customer-managed policy (`ReadS3`) attached directly.
async fn alice_and_bob(iam: &aws_sdk_iam::Client) {
    for u in ["alice", "bob"] {
        iam.create_user().user_name(u).send().await.unwrap();
    }
    iam.create_login_profile()
        .user_name("alice")
        .password("Correct-Horse-9")
        .send()
        .await
        .unwrap();
    iam.create_access_key()
        .user_name("bob")
        .send()
        .await
        .unwrap();
    iam.create_policy()
        .policy_name("ReadS3")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    iam.attach_user_policy()
        .user_name("bob")
        .policy_arn("arn:aws:iam::123456789012:policy/ReadS3")
        .send()
        .await
        .unwrap();
}

/// A password policy meeting every CIS requirement `posture` checks.
async fn cis_password_policy(iam: &aws_sdk_iam::Client) {
    iam.update_account_password_policy()
        .minimum_password_length(14)
        .require_symbols(true)
        .require_numbers(true)
        .require_uppercase_characters(true)
        .require_lowercase_characters(true)
        .password_reuse_prevention(24)
        .max_password_age(90)
        .send()
        .await
        .unwrap();
}

#[test]
fn each_finding_names_its_principal_and_clears_when_fixed() {
    let moto = moto::Moto::start();
    let iam = moto.iam();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let arn = |u: &str| format!("arn:aws:iam::123456789012:user/{u}");
    rt.block_on(async {
        alice_and_bob(&iam).await;
        iam.create_user().user_name("carol").send().await.unwrap();
        iam.put_user_policy()
            .user_name("carol")
            .policy_name("inline")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#)
            .send()
            .await
            .unwrap();
    });
    let (code, ids, all) = posture(&moto);
    assert_eq!(code, 1, "{all:?}");
    for want in [
        ("console_user_without_mfa", arn("alice")),
        ("user_with_direct_policy", arn("bob")),
        ("user_with_inline_policy", arn("carol")),
        ("password_policy_weak", "account".to_owned()),
    ] {
        assert!(
            ids.contains(&(want.0.to_owned(), want.1.clone())),
            "{want:?} in {ids:?}"
        );
    }
    assert!(
        !ids.iter()
            .any(|(f, p)| p == &arn("bob") && f == "console_user_without_mfa"),
        "bob has no console password: {ids:?}"
    );
    let weak = all
        .iter()
        .find(|f| f["finding"] == "password_policy_weak")
        .unwrap();
    assert_eq!(weak["evidence"], "no password policy is set");
    assert!(
        weak["fix"]
            .as_str()
            .unwrap()
            .contains("UpdateAccountPasswordPolicy")
    );

    // Fixed: alice's password removed, bob's policy detached, carol's
    // inline policy deleted, a strong password policy.
    rt.block_on(async {
        iam.delete_login_profile()
            .user_name("alice")
            .send()
            .await
            .unwrap();
        iam.detach_user_policy()
            .user_name("bob")
            .policy_arn("arn:aws:iam::123456789012:policy/ReadS3")
            .send()
            .await
            .unwrap();
        iam.delete_user_policy()
            .user_name("carol")
            .policy_name("inline")
            .send()
            .await
            .unwrap();
        cis_password_policy(&iam).await;
    });
    let (_, ids, _) = posture(&moto);
    for gone in [
        "console_user_without_mfa",
        "user_with_direct_policy",
        "user_with_inline_policy",
        "password_policy_weak",
    ] {
        assert!(
            !ids.iter().any(|(f, _)| f == gone),
            "{gone} still in {ids:?}"
        );
    }
}

/// The daemon's `[posture]`: a refresh at start raises what IAM shows,
/// once; the stream then clears and raises findings between refreshes
/// (each alert naming the event that did it); a later refresh is the
/// truth again, and what it no longer finds is recorded as resolved.
#[test]
fn the_daemon_keeps_posture_findings_current() {
    let moto = moto::Moto::start();
    let iam = moto.iam();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let arn = |u: &str| format!("arn:aws:iam::123456789012:user/{u}");
    rt.block_on(alice_and_bob(&iam));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    common::no_rules(dir.path());
    let cfg = dir.path().join("trailwatch.toml");
    let config = |interval: u64| {
        std::fs::write(
            &cfg,
            format!(
                "[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n[output]\njsonl_path = {:?}\n\
                 [rules]\ndirs = [{:?}]\n[posture]\nenabled = true\ninterval_secs = {interval}\n\
                 endpoint_url = {:?}\n",
                dir.path().join("state"),
                input,
                dir.path().join("alerts.jsonl"),
                dir.path().join("no-rules"),
                moto.endpoint,
            ),
        )
        .unwrap();
    };
    let env: Vec<(&str, String)> = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut seen = 0;
    // The alerts a run added: (rule name, principal, description).
    let mut run = |interval: u64| -> Vec<(String, String, String)> {
        config(interval);
        let log = common::run_once(&cfg, &[], &env);
        eprintln!("--- run (interval {interval}) ---\n{log}");
        let all = common::written(dir.path());
        let new: Vec<_> = all[seen..]
            .iter()
            .map(|a| {
                (
                    a["rule_name"].as_str().unwrap_or("").to_owned(),
                    a["principal"].as_str().unwrap_or("").to_owned(),
                    a["rule"]["description"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        seen = all.len();
        new
    };
    let names = |v: &[(String, String, String)]| -> BTreeSet<(String, String)> {
        v.iter().map(|(n, p, _)| (n.clone(), p.clone())).collect()
    };

    // 1. The first start refreshes (`--once` waits for it).
    let first = run(3600);
    assert_eq!(
        names(&first),
        BTreeSet::from([
            ("console_user_without_mfa".to_owned(), arn("alice")),
            ("password_policy_weak".to_owned(), "account".to_owned()),
            // moto's root has no MFA device.
            ("root_mfa_disabled".to_owned(), "root".to_owned()),
            ("user_with_direct_policy".to_owned(), arn("bob")),
        ]),
        "{first:#?}"
    );

    // 2. A restart within the interval does not read IAM again; the
    // stream moves the picture: alice enables MFA, bob's policy is
    // detached, a new user dave gets one attached.
    // Event times are whole seconds: a second after the refresh's read.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let now = trailwatch::time::iso_time(trailwatch::time::now_event_ms());
    let ev = |name: &str, extra: &str| {
        format!(
            r#"{{"eventTime":"{now}","eventName":"{name}","eventID":"e-{name}","recipientAccountId":"123456789012","userIdentity":{{"type":"IAMUser","arn":"{}","accountId":"123456789012"}}{extra}}}"#,
            arn("admin")
        )
    };
    let records = [
        ev(
            "EnableMFADevice",
            r#","requestParameters":{"userName":"alice","serialNumber":"arn:aws:iam::123456789012:mfa/alice"}"#,
        ),
        ev(
            "DetachUserPolicy",
            r#","requestParameters":{"userName":"bob","policyArn":"arn:aws:iam::123456789012:policy/ReadS3"}"#,
        ),
        ev(
            "CreateUser",
            r#","requestParameters":{"userName":"dave"},"responseElements":{"user":{"userName":"dave","arn":"arn:aws:iam::123456789012:user/dave"}}"#,
        ),
        ev(
            "AttachUserPolicy",
            r#","requestParameters":{"userName":"dave","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#,
        ),
    ];
    std::fs::write(
        input.join("stream.json"),
        format!(r#"{{"Records":[{}]}}"#, records.join(",")),
    )
    .unwrap();
    let second = run(3600);
    assert_eq!(
        names(&second),
        BTreeSet::from([
            ("posture_finding_resolved".to_owned(), arn("alice")),
            ("posture_finding_resolved".to_owned(), arn("bob")),
            ("user_with_direct_policy".to_owned(), arn("dave")),
        ]),
        "{second:#?}"
    );
    for (name, who, text) in &second {
        if name == "posture_finding_resolved" {
            let by = if who == &arn("alice") {
                "EnableMFADevice"
            } else {
                "DetachUserPolicy"
            };
            assert!(text.contains(&format!("cleared by {by}")), "{text}");
        }
    }

    // 3. IAM fixed for real (the policy detached, a strong password
    // policy) but alice's MFA never was: a refresh due at start is the
    // truth again.
    rt.block_on(async {
        iam.detach_user_policy()
            .user_name("bob")
            .policy_arn("arn:aws:iam::123456789012:policy/ReadS3")
            .send()
            .await
            .unwrap();
        cis_password_policy(&iam).await;
    });
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let third = run(1);
    assert_eq!(
        names(&third),
        BTreeSet::from([
            ("console_user_without_mfa".to_owned(), arn("alice")),
            ("posture_finding_resolved".to_owned(), "account".to_owned()),
            ("posture_finding_resolved".to_owned(), arn("dave")),
        ]),
        "{third:#?}"
    );
    assert!(
        third
            .iter()
            .filter(|(n, _, _)| n == "posture_finding_resolved")
            .all(|(_, _, t)| t.contains("not found by the IAM refresh")),
        "{third:#?}"
    );
}
