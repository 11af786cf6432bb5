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

#[test]
fn each_finding_names_its_principal_and_clears_when_fixed() {
    let moto = moto::Moto::start();
    let iam = moto.iam();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let arn = |u: &str| format!("arn:aws:iam::123456789012:user/{u}");
    rt.block_on(async {
        for u in ["alice", "bob", "carol"] {
            iam.create_user().user_name(u).send().await.unwrap();
        }
        iam.create_login_profile()
            .user_name("alice")
            .password("Correct-Horse-9")
            .send()
            .await
            .unwrap();
        iam.create_access_key().user_name("bob").send().await.unwrap();
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
