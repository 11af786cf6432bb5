//! Posture stage: the IAM picture the stream keeps current. Every record
//! that uses or changes a credential leaves a [`Fact`] (a long-term access
//! key used, a console sign-in, a role assumed from another account, a key
//! created or deleted, root acting); the [`inventory`] keeps, per key,
//! user, role and root, when each was created and last used, in the state
//! store, and raises what only that memory makes visible: a dormant
//! credential used again, a key past its rotation age still in use, root's
//! access key used, a trusted account assuming a role for the first time.
//!
//! Ages come from event times, never the wall clock: a backfill of last
//! year's logs judges last year's keys by last year's dates.

pub mod iam;
pub mod inventory;
pub mod watch;

use crate::parse::{Ident, Record, Top};

/// Longest text kept from an event field (ARNs, key ids, addresses).
const MAX_FIELD: usize = 256;

/// What a fact is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FactKind {
    /// A call made with a long-term access key (`AKIA…`).
    KeyUsed,
    /// A successful console sign-in (IAM user or root).
    ConsoleLogin,
    /// `AssumeRole` of a role in another account than the caller's.
    RoleAssumed,
    /// `CreateAccessKey` succeeded.
    KeyCreated,
    /// `DeleteAccessKey` succeeded.
    KeyDeleted,
    /// A policy attached to a user, or an inline one put
    /// (`AttachUserPolicy`, `PutUserPolicy`): `subject` is
    /// `ACCOUNT/USER`, `user` the policy (its ARN, or `inline:NAME`).
    UserPolicyAdded,
    /// ... detached or deleted (`DetachUserPolicy`, `DeleteUserPolicy`).
    UserPolicyRemoved,
    /// An MFA device enabled for a user (`EnableMFADevice`): `subject` is
    /// `ACCOUNT/USER`, or `ACCOUNT/<root_account>` for root.
    MfaEnabled,
    /// ... deactivated (`DeactivateMFADevice`).
    MfaDisabled,
    /// A console password set or changed (`CreateLoginProfile`,
    /// `UpdateLoginProfile`): `subject` is `ACCOUNT/USER`.
    PasswordSet,
    /// ... removed (`DeleteLoginProfile`).
    PasswordRemoved,
    /// `CreateUser`: `subject` is `ACCOUNT/USER`, `user` its ARN.
    UserCreated,
    /// `DeleteUser`.
    UserDeleted,
    /// `UpdateAccessKey`: `subject` is the key, `active` its new status.
    KeyStatus,
    /// `UpdateAccountPasswordPolicy`: `subject` is the account, `policy`
    /// the whole new policy (the call replaces it; what it leaves out
    /// takes IAM's defaults).
    PasswordPolicySet,
    /// `DeleteAccountPasswordPolicy`.
    PasswordPolicyDeleted,
}

impl FactKind {
    /// Facts that change the account's IAM picture (the posture stage's;
    /// key uses and sign-ins matter to it only for credentials it holds).
    pub fn changes_posture(self) -> bool {
        !matches!(
            self,
            FactKind::KeyUsed | FactKind::ConsoleLogin | FactKind::RoleAssumed
        )
    }
}

/// One credential event, with what an alert about it shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub kind: FactKind,
    /// eventTime, ms.
    pub time_ms: i64,
    /// The credential: the access key id, the user's or root's ARN, the
    /// role's ARN.
    pub subject: String,
    /// Who: userIdentity.arn (the key's owner, the caller).
    pub principal: Option<String>,
    /// Root acting.
    pub root: bool,
    /// Console sign-in: MFA used.
    pub mfa: Option<bool>,
    /// Role assumed: the caller's account.
    pub from_account: Option<String>,
    /// Key created: the user it belongs to.
    pub user: Option<String>,
    /// `KeyStatus`: whether the key is now active.
    pub active: Option<bool>,
    /// `PasswordPolicySet`: the new policy.
    pub policy: Option<Box<iam::PasswordPolicy>>,
    pub account: Option<String>,
    pub region: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    pub event_time: Option<String>,
}

fn keep(s: Option<&str>) -> Option<String> {
    s.map(|s| s.chars().take(MAX_FIELD).collect())
}

/// `requestParameters.KEY` when it is a string: a list or a number there
/// is not what IAM writes, and is not taken for a name.
fn param<'i>(r: &Record<'_, 'i>, key: &str) -> Option<&'i str> {
    r.field("requestParameters")?.get(key)?.as_str()
}

/// The account a change happened in: `recipientAccountId` when it is
/// there (and a string: a list naming two accounts is neither), else the
/// caller's.
fn change_account<'i>(r: &Record<'_, 'i>) -> Option<&'i str> {
    match r.top(Top::RecipientAccountId) {
        Some(v) => v.as_str(),
        None => r.ident_str(Ident::AccountId),
    }
}

fn is_long_term_key(k: &str) -> bool {
    k.len() >= 16
        && k.len() <= 128
        && k.starts_with("AKIA")
        && k.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Fact {
    /// The facts one record is (at most two: a call with a key that
    /// creates a key). Costs an eventName and accessKeyId look-up per
    /// record; failed calls are facts only as uses of the key that made
    /// them (a denied call still proves the key is alive).
    /// `time_ms` is the record's eventTime, which the caller has parsed
    /// already (the daemon's metrics need it for every record): a record
    /// without one is no fact.
    pub fn of(r: &Record<'_, '_>, time_ms: Option<i64>, mut f: impl FnMut(Fact)) {
        let Some(time_ms) = time_ms else {
            return;
        };
        let base = |kind, subject: &str| Fact {
            kind,
            time_ms,
            subject: subject.chars().take(MAX_FIELD).collect(),
            principal: keep(r.ident_str(Ident::Arn)),
            root: r.ident_str(Ident::Type) == Some("Root"),
            mfa: None,
            from_account: None,
            user: None,
            active: None,
            policy: None,
            account: keep(
                r.str(Top::RecipientAccountId)
                    .or(r.ident_str(Ident::AccountId)),
            ),
            region: keep(r.str(Top::AwsRegion)),
            source_ip: keep(r.str(Top::SourceIpAddress)),
            user_agent: keep(r.str(Top::UserAgent)),
            event_id: keep(r.str(Top::EventId)),
            event_name: keep(r.str(Top::EventName)),
            event_source: keep(r.str(Top::EventSource)),
            event_time: keep(r.str(Top::EventTime)),
        };
        if let Some(k) = r.str_at(&["userIdentity", "accessKeyId"])
            && is_long_term_key(k)
        {
            f(base(FactKind::KeyUsed, k));
        }
        if r.str(Top::ErrorCode).is_some() {
            return;
        }
        match r.str(Top::EventName) {
            Some("ConsoleLogin") => {
                if r.str_at(&["responseElements", "ConsoleLogin"]) != Some("Success") {
                    return;
                }
                let kind = r.ident_str(Ident::Type);
                if !matches!(kind, Some("Root" | "IAMUser")) {
                    return;
                }
                let Some(arn) = r.ident_str(Ident::Arn) else {
                    return;
                };
                let mut fact = base(FactKind::ConsoleLogin, arn);
                fact.mfa = match r.str_at(&["additionalEventData", "MFAUsed"]) {
                    Some("Yes") => Some(true),
                    Some("No") => Some(false),
                    _ => None,
                };
                f(fact);
            }
            Some("AssumeRole") => {
                let Some(role) = r.str_at(&["requestParameters", "roleArn"]) else {
                    return;
                };
                let role_account = role.split(':').nth(4).unwrap_or_default();
                let caller = r.ident_str(Ident::AccountId).unwrap_or_default();
                // Services assume roles for themselves (no account):
                // only a caller from another account is a trust in use.
                if caller.is_empty() || role_account.is_empty() || caller == role_account {
                    return;
                }
                let mut fact = base(FactKind::RoleAssumed, role);
                fact.from_account = keep(Some(caller));
                fact.account = keep(Some(role_account));
                f(fact);
            }
            Some(
                name @ ("AttachUserPolicy" | "PutUserPolicy" | "DetachUserPolicy"
                | "DeleteUserPolicy"),
            ) => {
                let Some(user) = param(r, "userName") else {
                    return;
                };
                let policy = match param(r, "policyArn") {
                    Some(arn) => arn.to_owned(),
                    None => match param(r, "policyName") {
                        Some(n) => format!("inline:{n}"),
                        None => return,
                    },
                };
                let Some(account) = change_account(r) else {
                    return;
                };
                let kind = if name.starts_with("Attach") || name.starts_with("Put") {
                    FactKind::UserPolicyAdded
                } else {
                    FactKind::UserPolicyRemoved
                };
                let mut fact = base(kind, &format!("{account}/{user}"));
                fact.account = keep(Some(account));
                fact.user = keep(Some(&policy));
                f(fact);
            }
            Some(
                name @ ("EnableMFADevice"
                | "DeactivateMFADevice"
                | "CreateLoginProfile"
                | "UpdateLoginProfile"
                | "DeleteLoginProfile"
                | "CreateUser"
                | "DeleteUser"),
            ) => {
                let Some(account) = change_account(r) else {
                    return;
                };
                // Root enabling its own MFA names no user.
                let user = match param(r, "userName") {
                    Some(u) => u,
                    None if r.ident_str(Ident::Type) == Some("Root") => "<root_account>",
                    None => return,
                };
                let kind = match name {
                    "EnableMFADevice" => FactKind::MfaEnabled,
                    "DeactivateMFADevice" => FactKind::MfaDisabled,
                    "CreateLoginProfile" | "UpdateLoginProfile" => FactKind::PasswordSet,
                    "DeleteLoginProfile" => FactKind::PasswordRemoved,
                    "CreateUser" => FactKind::UserCreated,
                    _ => FactKind::UserDeleted,
                };
                let mut fact = base(kind, &format!("{account}/{user}"));
                fact.account = keep(Some(account));
                if kind == FactKind::UserCreated {
                    // Without the response (a trimmed event), the ARN a
                    // user at the root path has.
                    fact.user = keep(Some(
                        &r.str_at(&["responseElements", "user", "arn"]).map_or_else(
                            || format!("arn:aws:iam::{account}:user/{user}"),
                            str::to_owned,
                        ),
                    ));
                }
                f(fact);
            }
            Some("UpdateAccessKey") => {
                let Some(key) = param(r, "accessKeyId").filter(|k| is_long_term_key(k)) else {
                    return;
                };
                let mut fact = base(FactKind::KeyStatus, key);
                fact.active = match param(r, "status") {
                    Some("Active") => Some(true),
                    Some("Inactive") => Some(false),
                    _ => return,
                };
                fact.user = keep(param(r, "userName"));
                f(fact);
            }
            Some(name @ ("UpdateAccountPasswordPolicy" | "DeleteAccountPasswordPolicy")) => {
                let Some(account) = change_account(r) else {
                    return;
                };
                if name.starts_with("Delete") {
                    let mut fact = base(FactKind::PasswordPolicyDeleted, account);
                    fact.account = keep(Some(account));
                    f(fact);
                    return;
                }
                let p = r.field("requestParameters");
                let num = |k: &str| {
                    p.as_ref()
                        .and_then(|p| p.get(k))
                        .and_then(|v| v.as_f64())
                        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e6)
                        .map(|v| v as i64)
                };
                let yes = |k: &str| {
                    p.as_ref()
                        .and_then(|p| p.get(k))
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                };
                let mut fact = base(FactKind::PasswordPolicySet, account);
                fact.account = keep(Some(account));
                fact.policy = Some(Box::new(iam::PasswordPolicy {
                    // IAM's default when the call leaves it out.
                    minimum_length: Some(num("minimumPasswordLength").unwrap_or(8)),
                    require_symbols: yes("requireSymbols"),
                    require_numbers: yes("requireNumbers"),
                    require_uppercase: yes("requireUppercaseCharacters"),
                    require_lowercase: yes("requireLowercaseCharacters"),
                    reuse_prevention: num("passwordReusePrevention"),
                    max_age_days: num("maxPasswordAge").filter(|d| *d > 0),
                }));
                f(fact);
            }
            Some(name @ ("CreateAccessKey" | "DeleteAccessKey")) => {
                let key = if name == "CreateAccessKey" {
                    r.str_at(&["responseElements", "accessKey", "accessKeyId"])
                } else {
                    r.str_at(&["requestParameters", "accessKeyId"])
                };
                let Some(key) = key.filter(|k| is_long_term_key(k)) else {
                    return;
                };
                let kind = if name == "CreateAccessKey" {
                    FactKind::KeyCreated
                } else {
                    FactKind::KeyDeleted
                };
                let mut fact = base(kind, key);
                fact.user = keep(
                    r.str_at(&["responseElements", "accessKey", "userName"])
                        .or(r.str_at(&["requestParameters", "userName"]))
                        .or(r.ident_str(Ident::UserName)),
                );
                f(fact);
            }
            _ => {}
        }
    }
}

/// What facts are gathered by: kind, credential, calling account, and
/// the user or policy (one per policy attached, not one per user).
type FactKey = (FactKind, String, Option<String>, Option<String>);

/// A record's facts gathered over an object: per credential (and kind,
/// and calling account), the earliest and the latest, so a file of ten
/// thousand calls with one key is two facts, not ten thousand.
#[derive(Debug, Default)]
pub struct Facts {
    by: std::collections::HashMap<FactKey, (Fact, Fact)>,
    /// Facts dropped past [`MAX_FACTS_PER_OBJECT`] distinct credentials.
    pub dropped: u64,
    /// Changes of IAM kept: they have their own cap, so a flood of key
    /// uses cannot crowd out the one `AttachUserPolicy` that matters.
    changes: usize,
}

/// Distinct credentials one object may bring (a crafted file of a million
/// key ids must not hold a million facts).
pub const MAX_FACTS_PER_OBJECT: usize = 10_000;

impl Facts {
    pub fn add(&mut self, f: Fact) {
        let key = (
            f.kind,
            f.subject.clone(),
            f.from_account.clone(),
            f.user.clone(),
        );
        let change = f.kind.changes_posture();
        let full = if change {
            self.changes >= MAX_FACTS_PER_OBJECT
        } else {
            self.by.len() - self.changes >= MAX_FACTS_PER_OBJECT
        };
        match self.by.get_mut(&key) {
            Some((first, last)) => {
                if f.time_ms < first.time_ms {
                    *first = f;
                } else if f.time_ms >= last.time_ms {
                    *last = f;
                }
            }
            None if full => self.dropped += 1,
            None => {
                self.changes += usize::from(change);
                self.by.insert(key, (f.clone(), f));
            }
        }
    }

    pub fn merge(&mut self, other: Facts) {
        self.dropped += other.dropped;
        for (_, (a, b)) in other.by {
            self.add(a);
            self.add(b);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by.is_empty()
    }

    /// Every (earliest, latest) pair.
    pub fn into_pairs(self) -> impl Iterator<Item = (Fact, Fact)> {
        self.by.into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What records become facts: a long-term key's use (not a temporary
    /// one's), a policy attached and one put inline (one fact each, though
    /// for one user), a failed call only as a use of its key.
    #[test]
    fn records_become_facts() {
        let doc = br#"{"Records":[
          {"eventTime":"2026-01-01T00:00:00Z","eventName":"AttachUserPolicy","recipientAccountId":"1",
           "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/a","accessKeyId":"AKIAAAAAAAAAAAAAAAA1"},
           "requestParameters":{"userName":"bob","policyArn":"arn:aws:iam::1:policy/P"}},
          {"eventTime":"2026-01-01T00:01:00Z","eventName":"PutUserPolicy","recipientAccountId":"1",
           "userIdentity":{"type":"AssumedRole","accessKeyId":"ASIAAAAAAAAAAAAAAAA1"},
           "requestParameters":{"userName":"bob","policyName":"inline"}},
          {"eventTime":"2026-01-01T00:02:00Z","eventName":"DetachUserPolicy","errorCode":"AccessDenied",
           "recipientAccountId":"1","userIdentity":{"type":"IAMUser","accessKeyId":"AKIAAAAAAAAAAAAAAAA2"},
           "requestParameters":{"userName":"bob","policyArn":"arn:aws:iam::1:policy/P"}}
        ]}"#;
        let limits = crate::pipeline::Limits {
            facts: true,
            ..crate::pipeline::Limits::default()
        };
        let report = crate::pipeline::process_object(
            "t.json",
            doc,
            &crate::rules::RuleSet::builtin(),
            limits,
        );
        let mut got: Vec<(FactKind, String, Option<String>)> = report
            .facts
            .into_pairs()
            .map(|(_, f)| (f.kind, f.subject, f.user))
            .collect();
        got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(
            got,
            vec![
                (FactKind::KeyUsed, "AKIAAAAAAAAAAAAAAAA1".into(), None),
                (FactKind::KeyUsed, "AKIAAAAAAAAAAAAAAAA2".into(), None),
                (
                    FactKind::UserPolicyAdded,
                    "1/bob".into(),
                    Some("arn:aws:iam::1:policy/P".into())
                ),
                (
                    FactKind::UserPolicyAdded,
                    "1/bob".into(),
                    Some("inline:inline".into())
                ),
            ]
        );
    }
}
