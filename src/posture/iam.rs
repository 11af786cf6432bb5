//! Posture from the IAM API: the credential report, the password policy,
//! the account summary and each user's policies, read and judged against
//! IAM's best practices (and the CIS AWS Foundations Benchmark's numbers).
//! `trailwatch posture` prints the findings; each has a fixed id, the
//! principal, the evidence and the fix.
//!
//! The judging ([`judge`]) is pure: the API's answers in, findings out,
//! with the clock as an argument, so every age rule is tested on crafted
//! reports.

use std::collections::BTreeMap;

use serde::Serialize;
use thiserror::Error;

use crate::rules::Level;

/// Ages the findings use (the inventory's `[inventory]` numbers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Unused this many days: `credential_unused` (CIS: 45).
    pub unused_days: i64,
    /// Not rotated this many days: `access_key_not_rotated` (CIS: 90).
    pub rotation_days: i64,
}

/// One finding, as printed (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Its fixed id (`root_mfa_disabled`, …).
    pub finding: &'static str,
    pub level: Level,
    /// The user's ARN, `root`, or `account`.
    pub principal: String,
    pub evidence: String,
    pub fix: &'static str,
}

/// What the IAM API said.
#[derive(Clone, Debug, Default)]
pub struct Answers {
    /// The credential report (CSV).
    pub report: String,
    /// `GetAccountPasswordPolicy`; `None`: the account has none.
    pub policy: Option<PasswordPolicy>,
    /// `GetAccountSummary`: `AccountMFAEnabled`, `AccountAccessKeysPresent`.
    pub summary: BTreeMap<String, i64>,
    /// Per user name: (attached managed policies, inline policies).
    pub policies: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PasswordPolicy {
    pub minimum_length: Option<i64>,
    pub require_symbols: bool,
    pub require_numbers: bool,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub reuse_prevention: Option<i64>,
    pub max_age_days: Option<i64>,
}

/// Problems reading the IAM API.
#[derive(Debug, Error)]
pub enum PostureError {
    #[error("IAM {call}: {message}")]
    Api { call: &'static str, message: String },
    #[error("the credential report was not ready after {0} tries")]
    ReportNotReady(u32),
}

fn api<E: std::error::Error>(call: &'static str) -> impl Fn(E) -> PostureError {
    move |e| PostureError::Api {
        call,
        message: aws_sdk_iam::error::DisplayErrorContext(&e)
            .to_string()
            .chars()
            .take(300)
            .collect(),
    }
}

/// Read everything [`judge`] needs.
pub async fn read(client: &aws_sdk_iam::Client) -> Result<Answers, PostureError> {
    let mut answers = Answers::default();
    // The report is generated asynchronously: ask, then read until ready.
    let mut tries = 0;
    let report = loop {
        tries += 1;
        client
            .generate_credential_report()
            .send()
            .await
            .map_err(api("GenerateCredentialReport"))?;
        match client.get_credential_report().send().await {
            Ok(r) => break r,
            Err(e)
                if tries < 30
                    && e.as_service_error().is_some_and(|s| {
                        s.is_credential_report_not_present_exception()
                            || s.is_credential_report_not_ready_exception()
                    }) =>
            {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) if tries >= 30 => {
                let _ = e;
                return Err(PostureError::ReportNotReady(tries));
            }
            Err(e) => return Err(api("GetCredentialReport")(e)),
        }
    };
    answers.report = report
        .content()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default();
    answers.policy = match client.get_account_password_policy().send().await {
        Ok(p) => p.password_policy().map(|p| PasswordPolicy {
            minimum_length: p.minimum_password_length().map(i64::from),
            require_symbols: p.require_symbols(),
            require_numbers: p.require_numbers(),
            require_uppercase: p.require_uppercase_characters(),
            require_lowercase: p.require_lowercase_characters(),
            reuse_prevention: p.password_reuse_prevention().map(i64::from),
            max_age_days: p.max_password_age().map(i64::from),
        }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => return Err(api("GetAccountPasswordPolicy")(e)),
    };
    let summary = client
        .get_account_summary()
        .send()
        .await
        .map_err(api("GetAccountSummary"))?;
    for (k, v) in summary.summary_map().into_iter().flatten() {
        answers.summary.insert(k.as_str().to_owned(), i64::from(*v));
    }
    let mut users = client.list_users().into_paginator().send();
    while let Some(page) = users.next().await {
        let page = page.map_err(api("ListUsers"))?;
        for u in page.users() {
            let name = u.user_name().to_owned();
            let mut attached = Vec::new();
            let mut pages = client
                .list_attached_user_policies()
                .user_name(&name)
                .into_paginator()
                .send();
            while let Some(p) = pages.next().await {
                let p = p.map_err(api("ListAttachedUserPolicies"))?;
                attached.extend(
                    p.attached_policies()
                        .iter()
                        .filter_map(|a| a.policy_arn().map(str::to_owned)),
                );
            }
            let mut inline = Vec::new();
            let mut pages = client
                .list_user_policies()
                .user_name(&name)
                .into_paginator()
                .send();
            while let Some(p) = pages.next().await {
                let p = p.map_err(api("ListUserPolicies"))?;
                inline.extend(p.policy_names().iter().cloned());
            }
            answers.policies.insert(name, (attached, inline));
        }
    }
    Ok(answers)
}

/// The report's rows, by header name. Quoted fields (RFC 4180) are read;
/// IAM user names may hold commas.
pub fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    let mut it = rows.into_iter();
    let Some(header) = it.next() else {
        return Vec::new();
    };
    it.filter(|r| r.len() > 1)
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

/// A report date (`2026-01-05T10:00:00+00:00`), in ms; `N/A`,
/// `no_information`, `not_supported`: none.
fn date(v: Option<&String>) -> Option<i64> {
    let v = v?;
    let v = v
        .strip_suffix("+00:00")
        .map_or(v.clone(), |s| format!("{s}Z"));
    crate::time::parse_event_time(&v)
}

const DAY_MS: i64 = 86_400_000;

/// Judge `answers` at `now_ms`.
pub fn judge(answers: &Answers, t: Thresholds, now_ms: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    let days = |ms: i64| (now_ms - ms) / DAY_MS;
    let mut root_mfa = answers.summary.get("AccountMFAEnabled").map(|v| *v == 1);
    let mut root_keys = answers
        .summary
        .get("AccountAccessKeysPresent")
        .map(|v| *v >= 1);
    for row in csv_rows(&answers.report) {
        let get = |k: &str| row.get(k).map(String::as_str).unwrap_or("");
        let user = get("user").to_owned();
        let arn = get("arn").to_owned();
        if user == "<root_account>" {
            root_mfa = root_mfa.or(Some(get("mfa_active") == "true"));
            root_keys = Some(
                root_keys.unwrap_or(false)
                    || get("access_key_1_active") == "true"
                    || get("access_key_2_active") == "true",
            );
            continue;
        }
        let password = get("password_enabled") == "true";
        if password && get("mfa_active") != "true" {
            out.push(Finding {
                finding: "console_user_without_mfa",
                level: Level::High,
                principal: arn.clone(),
                evidence: format!("{user} has a console password and no MFA device"),
                fix: "Enable a virtual or hardware MFA device for the user, or remove the \
                      console password if it is not needed.",
            });
        }
        let created = date(row.get("user_creation_time"));
        if password {
            let last = date(row.get("password_last_used")).or(created);
            if let Some(l) = last
                && days(l) >= t.unused_days
            {
                out.push(Finding {
                    finding: "credential_unused",
                    level: Level::Medium,
                    principal: arn.clone(),
                    evidence: format!(
                        "{user}'s console password unused for {} days (last used {})",
                        days(l),
                        get("password_last_used")
                    ),
                    fix: "Remove the console password (DeleteLoginProfile) if the user no \
                          longer signs in.",
                });
            }
        }
        for n in ["1", "2"] {
            if get(&format!("access_key_{n}_active")) != "true" {
                continue;
            }
            let rotated = date(row.get(&format!("access_key_{n}_last_rotated")));
            if let Some(r) = rotated
                && days(r) >= t.rotation_days
            {
                out.push(Finding {
                    finding: "access_key_not_rotated",
                    level: Level::Medium,
                    principal: arn.clone(),
                    evidence: format!("{user}'s access key {n} last rotated {} days ago", days(r)),
                    fix: "Rotate the key: create a new one, move its users, deactivate and \
                          delete the old.",
                });
            }
            let used = date(row.get(&format!("access_key_{n}_last_used_date"))).or(rotated);
            if let Some(u) = used
                && days(u) >= t.unused_days
            {
                out.push(Finding {
                    finding: "credential_unused",
                    level: Level::Medium,
                    principal: arn.clone(),
                    evidence: format!(
                        "{user}'s access key {n} unused for {} days (last used {})",
                        days(u),
                        get(&format!("access_key_{n}_last_used_date"))
                    ),
                    fix: "Deactivate, then delete, keys no one uses.",
                });
            }
        }
        if let Some((attached, inline)) = answers.policies.get(&user) {
            if !attached.is_empty() {
                out.push(Finding {
                    finding: "user_with_direct_policy",
                    level: Level::Low,
                    principal: arn.clone(),
                    evidence: format!(
                        "{user} has managed policies attached: {}",
                        attached.join(", ")
                    ),
                    fix: "Grant permissions through groups or roles: attach the policy to a \
                          group, add the user, detach it from the user.",
                });
            }
            if !inline.is_empty() {
                out.push(Finding {
                    finding: "user_with_inline_policy",
                    level: Level::Low,
                    principal: arn.clone(),
                    evidence: format!("{user} has inline policies: {}", inline.join(", ")),
                    fix: "Move inline policies to managed policies on groups or roles.",
                });
            }
        }
    }
    if root_mfa == Some(false) {
        out.push(Finding {
            finding: "root_mfa_disabled",
            level: Level::Critical,
            principal: "root".into(),
            evidence: "the root user has no MFA device (AccountMFAEnabled = 0)".into(),
            fix: "Sign in as root and enable a hardware or virtual MFA device.",
        });
    }
    if root_keys == Some(true) {
        out.push(Finding {
            finding: "root_access_key_present",
            level: Level::Critical,
            principal: "root".into(),
            evidence: "the root user has an access key (AccountAccessKeysPresent = 1)".into(),
            fix: "Sign in as root and delete its access keys; use IAM roles instead.",
        });
    }
    let failed = match &answers.policy {
        None => vec!["no password policy is set".to_owned()],
        Some(p) => {
            let mut f = Vec::new();
            if p.minimum_length.unwrap_or(0) < 14 {
                f.push(format!(
                    "minimum length {} < 14 (CIS 1.8)",
                    p.minimum_length.unwrap_or(0)
                ));
            }
            for (ok, what) in [
                (p.require_symbols, "symbols not required"),
                (p.require_numbers, "numbers not required"),
                (p.require_uppercase, "upper-case letters not required"),
                (p.require_lowercase, "lower-case letters not required"),
            ] {
                if !ok {
                    f.push(what.to_owned());
                }
            }
            if p.reuse_prevention.unwrap_or(0) < 24 {
                f.push(format!(
                    "reuse prevention {} < 24 (CIS 1.9)",
                    p.reuse_prevention.unwrap_or(0)
                ));
            }
            match p.max_age_days {
                None => f.push("passwords never expire".to_owned()),
                Some(d) if d > 90 => f.push(format!("passwords expire after {d} > 90 days")),
                _ => {}
            }
            f
        }
    };
    if !failed.is_empty() {
        out.push(Finding {
            finding: "password_policy_weak",
            level: Level::Medium,
            principal: "account".into(),
            evidence: failed.join("; "),
            fix: "UpdateAccountPasswordPolicy: minimum length 14, every character class, \
                  reuse prevention 24, maximum age 90 days.",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n";

    fn ids(f: &[Finding]) -> Vec<(&'static str, String)> {
        let mut v: Vec<_> = f.iter().map(|f| (f.finding, f.principal.clone())).collect();
        v.sort();
        v
    }

    /// Each age rule on a crafted report: a key 100 days old and unused for
    /// 50; a password unused for 60; a quoted user name with a comma; a
    /// recent key and an MFA user raise nothing; root from the report.
    #[test]
    fn the_report_is_judged_by_its_dates() {
        let now = crate::time::parse_event_time("2026-06-01T00:00:00Z").unwrap();
        let report = format!(
            "{HEAD}<root_account>,arn:aws:iam::1:root,2020-01-01T00:00:00+00:00,not_supported,2026-05-30T00:00:00+00:00,not_supported,not_supported,false,true,2025-01-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
             old,arn:aws:iam::1:user/old,2026-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2026-02-21T00:00:00+00:00,2026-04-12T00:00:00+00:00,us-east-1,iam,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
             \"a,b\",\"arn:aws:iam::1:user/a,b\",2026-01-01T00:00:00+00:00,true,2026-04-02T00:00:00+00:00,N/A,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
             fine,arn:aws:iam::1:user/fine,2026-01-01T00:00:00+00:00,true,2026-05-31T00:00:00+00:00,N/A,N/A,true,true,2026-05-01T00:00:00+00:00,2026-05-31T00:00:00+00:00,us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n"
        );
        let answers = Answers {
            report,
            policy: Some(PasswordPolicy {
                minimum_length: Some(14),
                require_symbols: true,
                require_numbers: true,
                require_uppercase: true,
                require_lowercase: true,
                reuse_prevention: Some(24),
                max_age_days: Some(90),
            }),
            ..Answers::default()
        };
        let t = Thresholds {
            unused_days: 45,
            rotation_days: 90,
        };
        let f = judge(&answers, t, now);
        assert_eq!(
            ids(&f),
            vec![
                ("access_key_not_rotated", "arn:aws:iam::1:user/old".into()),
                ("console_user_without_mfa", "arn:aws:iam::1:user/a,b".into()),
                ("credential_unused", "arn:aws:iam::1:user/a,b".into()),
                ("credential_unused", "arn:aws:iam::1:user/old".into()),
                ("root_access_key_present", "root".into()),
                ("root_mfa_disabled", "root".into()),
            ]
        );
        let unused = f
            .iter()
            .find(|f| f.finding == "credential_unused" && f.principal.ends_with("old"))
            .unwrap();
        assert!(unused.evidence.contains("50 days"), "{}", unused.evidence);
    }

    /// Every failed CIS requirement is named; a policy meeting them all, none.
    #[test]
    fn a_weak_password_policy_names_each_failed_requirement() {
        let t = Thresholds {
            unused_days: 45,
            rotation_days: 90,
        };
        let weak = Answers {
            policy: Some(PasswordPolicy {
                minimum_length: Some(8),
                require_symbols: false,
                require_numbers: true,
                require_uppercase: true,
                require_lowercase: true,
                reuse_prevention: None,
                max_age_days: None,
            }),
            ..Answers::default()
        };
        let f = judge(&weak, t, 0);
        assert_eq!(f.len(), 1);
        let e = &f[0].evidence;
        for want in [
            "8 < 14",
            "symbols",
            "reuse prevention 0 < 24",
            "never expire",
        ] {
            assert!(e.contains(want), "{e}");
        }
        assert!(!e.contains("numbers"), "{e}");
        let none = judge(&Answers::default(), t, 0);
        assert_eq!(none[0].evidence, "no password policy is set");
    }
}
