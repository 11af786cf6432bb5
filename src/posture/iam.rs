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

use serde::{Deserialize, Serialize};
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
    /// Which of the principal's credentials: an access key's id (or its
    /// slot, `1`/`2`, when the key's id is not known), `password`; empty
    /// for findings about the principal itself. With `finding` and
    /// `principal`, what a finding is known by while it stays open.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credential: String,
    pub evidence: String,
    pub fix: &'static str,
}

impl Finding {
    /// What the finding is known by, from the moment it appears to the
    /// moment it clears.
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.finding, self.principal, self.credential)
    }
}

/// What the IAM API said.
#[derive(Clone, Debug, Default)]
pub struct Answers {
    /// The credential report (CSV).
    pub report: String,
    /// When IAM generated it (it may be up to 4 hours old).
    pub report_ms: Option<i64>,
    /// `GetAccountPasswordPolicy`; `None`: the account has none.
    pub policy: Option<PasswordPolicy>,
    /// `GetAccountSummary`: `AccountMFAEnabled`, `AccountAccessKeysPresent`.
    pub summary: BTreeMap<String, i64>,
    /// Per user name: (attached managed policies, inline policies).
    pub policies: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// Per user name: its ARN, from `ListUsers` (live, where the report
    /// may be hours old: a user it does not list yet is still judged).
    pub arns: BTreeMap<String, String>,
    /// Per user name: `ListAccessKeys` (id, created, active), which names
    /// the keys the report only numbers.
    pub keys: BTreeMap<String, Vec<(String, Option<i64>, bool)>>,
}

/// Keys kept per user (IAM allows two; a crafted stream may claim more).
pub const MAX_USER_KEYS: usize = 4;
/// Policies kept per user, each list (IAM's quota on managed policies
/// per user is 10, at most 20).
pub const MAX_USER_POLICIES: usize = 20;

/// One access key, as the picture holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's id, or its slot in the report (`1`, `2`) when
    /// `ListAccessKeys` did not name it.
    pub id: String,
    pub active: bool,
    pub created_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// One IAM user, as the picture holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub arn: String,
    pub created_ms: Option<i64>,
    /// Has a console password (a login profile).
    pub password: bool,
    pub password_last_used_ms: Option<i64>,
    /// Password set or changed: an unused password is counted from here
    /// when it is newer than its last use.
    pub password_changed_ms: Option<i64>,
    pub mfa: bool,
    pub keys: Vec<KeyInfo>,
    /// Managed policies attached to the user (ARNs).
    pub attached: Vec<String>,
    /// Inline policies (names).
    pub inline: Vec<String>,
    /// Per aspect (`mfa`, `password`, `attached`, `inline`, `keys`): the
    /// time of the newest event applied to it; an older one arriving late
    /// (or a file delivered again) changes nothing.
    #[serde(default)]
    pub changed: BTreeMap<String, i64>,
}

/// The account's IAM picture: what the API said at the last refresh,
/// kept current by the stream between refreshes (see
/// [`crate::posture::watch`]). [`judge`] turns it into findings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The account (from the report's root ARN): the stream's events of
    /// other accounts do not touch this picture.
    pub account: Option<String>,
    /// When the IAM API was read (wall clock, ms).
    pub read_ms: i64,
    /// When the picture was true: the credential report's generation
    /// (up to 4 hours before the read), else the read. Events newer than
    /// this are applied over it, even those seen before the refresh.
    pub as_of_ms: i64,
    pub root_mfa: Option<bool>,
    pub root_keys: Option<bool>,
    /// `None`: the account has no password policy.
    pub policy: Option<PasswordPolicy>,
    /// As [`UserInfo::changed`], for root's and the account's aspects.
    #[serde(default)]
    pub changed: BTreeMap<String, i64>,
    /// By user name. Stored one row per user (the stream changes one
    /// user at a time), not with the rest of the picture.
    #[serde(skip)]
    pub users: BTreeMap<String, UserInfo>,
}

impl Model {
    /// The picture `answers` give, read at `read_ms`.
    pub fn of(answers: &Answers, read_ms: i64) -> Model {
        let mut m = Model {
            read_ms,
            as_of_ms: answers.report_ms.map_or(read_ms, |r| r.min(read_ms)),
            policy: answers.policy.clone(),
            root_mfa: answers.summary.get("AccountMFAEnabled").map(|v| *v == 1),
            root_keys: answers
                .summary
                .get("AccountAccessKeysPresent")
                .map(|v| *v >= 1),
            ..Model::default()
        };
        for row in csv_rows(&answers.report) {
            let get = |k: &str| row.get(k).map(String::as_str).unwrap_or("");
            let user = get("user").to_owned();
            if user == "<root_account>" {
                m.account = get("arn").split(':').nth(4).map(str::to_owned);
                m.root_mfa = m.root_mfa.or(Some(get("mfa_active") == "true"));
                m.root_keys = Some(
                    m.root_keys.unwrap_or(false)
                        || get("access_key_1_active") == "true"
                        || get("access_key_2_active") == "true",
                );
                continue;
            }
            let slots: Vec<KeyInfo> = ["1", "2"]
                .iter()
                .map(|n| KeyInfo {
                    id: (*n).to_owned(),
                    active: get(&format!("access_key_{n}_active")) == "true",
                    created_ms: date(row.get(&format!("access_key_{n}_last_rotated"))),
                    last_used_ms: date(row.get(&format!("access_key_{n}_last_used_date"))),
                })
                .filter(|k| k.active || k.created_ms.is_some())
                .collect();
            // The report numbers keys; ListAccessKeys names them. A key's
            // slot is the one rotated when it was created (to the second).
            let keys = match answers.keys.get(&user) {
                Some(listed) => listed
                    .iter()
                    .take(MAX_USER_KEYS)
                    .map(|(id, created, active)| KeyInfo {
                        id: id.clone(),
                        active: *active,
                        created_ms: *created,
                        last_used_ms: slots
                            .iter()
                            .find(|s| {
                                s.created_ms.is_some()
                                    && s.created_ms.map(|c| c / 1000) == created.map(|c| c / 1000)
                            })
                            .and_then(|s| s.last_used_ms),
                    })
                    .collect(),
                None => slots,
            };
            let (attached, inline) = answers.policies.get(&user).cloned().unwrap_or_default();
            // Without a root row (some IAM look-alikes), a user's ARN says
            // the account.
            if m.account.is_none() {
                m.account = get("arn").split(':').nth(4).map(str::to_owned);
            }
            m.users.insert(
                user,
                UserInfo {
                    arn: get("arn").to_owned(),
                    created_ms: date(row.get("user_creation_time")),
                    password: get("password_enabled") == "true",
                    password_last_used_ms: date(row.get("password_last_used")),
                    password_changed_ms: date(row.get("password_last_changed")),
                    mfa: get("mfa_active") == "true",
                    keys,
                    attached,
                    inline,
                    changed: BTreeMap::new(),
                },
            );
        }
        for (name, arn) in &answers.arns {
            if m.users.contains_key(name) {
                continue;
            }
            if m.account.is_none() {
                m.account = arn.split(':').nth(4).map(str::to_owned);
            }
            let (attached, inline) = answers.policies.get(name).cloned().unwrap_or_default();
            m.users.insert(
                name.clone(),
                UserInfo {
                    arn: arn.clone(),
                    keys: answers
                        .keys
                        .get(name)
                        .into_iter()
                        .flatten()
                        .take(MAX_USER_KEYS)
                        .map(|(id, created, active)| KeyInfo {
                            id: id.clone(),
                            active: *active,
                            created_ms: *created,
                            last_used_ms: None,
                        })
                        .collect(),
                    attached,
                    inline,
                    ..UserInfo::default()
                },
            );
        }
        m
    }

    /// The user who holds access key `id`.
    pub fn key_owner(&self, id: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(_, u)| u.keys.iter().any(|k| k.id == id))
            .map(|(n, _)| n.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    answers.report_ms = report.generated_time().and_then(|d| d.to_millis().ok());
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
            answers.arns.insert(name.clone(), u.arn().to_owned());
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
            let mut keys = Vec::new();
            let mut pages = client
                .list_access_keys()
                .user_name(&name)
                .into_paginator()
                .send();
            while let Some(p) = pages.next().await {
                let p = p.map_err(api("ListAccessKeys"))?;
                keys.extend(p.access_key_metadata().iter().filter_map(|k| {
                    Some((
                        k.access_key_id()?.to_owned(),
                        k.create_date().and_then(|d| d.to_millis().ok()),
                        k.status() == Some(&aws_sdk_iam::types::StatusType::Active),
                    ))
                }));
            }
            answers.keys.insert(name.clone(), keys);
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

/// Judge the picture at `now_ms`.
pub fn judge(m: &Model, t: Thresholds, now_ms: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    for (user, u) in &m.users {
        judge_user(user, u, t, now_ms, &mut out);
    }
    judge_account(m, &mut out);
    out
}

/// A list in evidence: the first few, and how many more (a user may hold
/// twenty long policy ARNs; the finding need not carry them all).
fn few(list: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = list
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        s.push_str(&format!(" and {} more", list.len() - SHOWN));
    }
    s
}

/// One user's findings (the stream changes one user at a time, and only
/// that user is judged again).
pub fn judge_user(user: &str, u: &UserInfo, t: Thresholds, now_ms: i64, out: &mut Vec<Finding>) {
    let days = |ms: i64| (now_ms - ms) / DAY_MS;
    let day = |ms: Option<i64>| ms.map_or("never".to_owned(), crate::time::iso_time);
    {
        let arn = &u.arn;
        let finding = |finding, level, credential: &str, evidence: String, fix| Finding {
            finding,
            level,
            principal: arn.clone(),
            credential: credential.to_owned(),
            evidence,
            fix,
        };
        if u.password && !u.mfa {
            out.push(finding(
                "console_user_without_mfa",
                Level::High,
                "",
                format!("{user} has a console password and no MFA device"),
                "Enable a virtual or hardware MFA device for the user, or remove the \
                 console password if it is not needed.",
            ));
        }
        if u.password {
            // Unused since its last use, or since it was set if newer.
            let since = u
                .password_last_used_ms
                .max(u.password_changed_ms)
                .or(u.created_ms);
            if let Some(l) = since
                && days(l) >= t.unused_days
            {
                out.push(finding(
                    "credential_unused",
                    Level::Medium,
                    "password",
                    format!(
                        "{user}'s console password unused for {} days (last used {})",
                        days(l),
                        day(u.password_last_used_ms)
                    ),
                    "Remove the console password (DeleteLoginProfile) if the user no \
                     longer signs in.",
                ));
            }
        }
        for k in u.keys.iter().filter(|k| k.active) {
            if let Some(r) = k.created_ms
                && days(r) >= t.rotation_days
            {
                out.push(finding(
                    "access_key_not_rotated",
                    Level::Medium,
                    &k.id,
                    format!(
                        "{user}'s access key {} last rotated {} days ago",
                        k.id,
                        days(r)
                    ),
                    "Rotate the key: create a new one, move its users, deactivate and \
                     delete the old.",
                ));
            }
            if let Some(l) = k.last_used_ms.or(k.created_ms)
                && days(l) >= t.unused_days
            {
                out.push(finding(
                    "credential_unused",
                    Level::Medium,
                    &k.id,
                    format!(
                        "{user}'s access key {} unused for {} days (last used {})",
                        k.id,
                        days(l),
                        day(k.last_used_ms)
                    ),
                    "Deactivate, then delete, keys no one uses.",
                ));
            }
        }
        if !u.attached.is_empty() {
            out.push(finding(
                "user_with_direct_policy",
                Level::Low,
                "",
                format!("{user} has managed policies attached: {}", few(&u.attached)),
                "Grant permissions through groups or roles: attach the policy to a \
                 group, add the user, detach it from the user.",
            ));
        }
        if !u.inline.is_empty() {
            out.push(finding(
                "user_with_inline_policy",
                Level::Low,
                "",
                format!("{user} has inline policies: {}", few(&u.inline)),
                "Move inline policies to managed policies on groups or roles.",
            ));
        }
    }
}

/// Root's and the account's findings.
pub fn judge_account(m: &Model, out: &mut Vec<Finding>) {
    let (root_mfa, root_keys) = (m.root_mfa, m.root_keys);
    if root_mfa == Some(false) {
        out.push(Finding {
            finding: "root_mfa_disabled",
            level: Level::Critical,
            principal: "root".into(),
            credential: String::new(),
            evidence: "the root user has no MFA device (AccountMFAEnabled = 0)".into(),
            fix: "Sign in as root and enable a hardware or virtual MFA device.",
        });
    }
    if root_keys == Some(true) {
        out.push(Finding {
            finding: "root_access_key_present",
            level: Level::Critical,
            principal: "root".into(),
            credential: String::new(),
            evidence: "the root user has an access key (AccountAccessKeysPresent = 1)".into(),
            fix: "Sign in as root and delete its access keys; use IAM roles instead.",
        });
    }
    let failed = match &m.policy {
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
            credential: String::new(),
            evidence: failed.join("; "),
            fix: "UpdateAccountPasswordPolicy: minimum length 14, every character class, \
                  reuse prevention 24, maximum age 90 days.",
        });
    }
}

#[cfg(test)]
impl PasswordPolicy {
    /// A policy meeting every CIS requirement [`judge`] checks.
    pub(crate) fn cis() -> PasswordPolicy {
        PasswordPolicy {
            minimum_length: Some(14),
            require_symbols: true,
            require_numbers: true,
            require_uppercase: true,
            require_lowercase: true,
            reuse_prevention: Some(24),
            max_age_days: Some(90),
        }
    }
}

/// The credential report's header row (tests build reports on it).
#[cfg(test)]
pub(crate) const REPORT_HEAD: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n";

#[cfg(test)]
mod tests {
    use super::*;

    use super::REPORT_HEAD as HEAD;

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
            policy: Some(PasswordPolicy::cis()),
            ..Answers::default()
        };
        let t = Thresholds {
            unused_days: 45,
            rotation_days: 90,
        };
        let f = judge(&Model::of(&answers, now), t, now);
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
        let f = judge(&Model::of(&weak, 0), t, 0);
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
        let none = judge(&Model::of(&Answers::default(), 0), t, 0);
        assert_eq!(none[0].evidence, "no password policy is set");
    }
}
