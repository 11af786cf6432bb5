//! The credential inventory: what the stream has shown of each long-term
//! access key, console user, cross-account role and root, kept in the
//! state store, and the alerts only that memory makes possible.
//!
//! | state | per | kept |
//! |---|---|---|
//! | key | access key id (`AKIA…`) | owner, account, created and deleted (when seen), first and last use, last address and region |
//! | console user | user (or root) ARN | last sign-in, whether it used MFA |
//! | role | role ARN | last assumed from another account, the accounts (at most [`MAX_ROLE_ACCOUNTS`]) |
//!
//! Each entry is about 300 bytes; `max_keys` bounds the keys (the oldest
//! by last use are forgotten first, at the hourly prune), users and roles
//! are bounded by the same count each. Ages are event-time differences:
//! a backfill judges old keys by old dates, and an event older than what
//! is stored changes nothing it would make younger.

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Fact, FactKind};
use crate::alert::Alert;
use crate::checkpoint::{Overlay, Store, StoreError};
use crate::rules::{Level, RuleMeta};

/// `[inventory]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Keep the inventory and raise its alerts.
    pub enabled: bool,
    /// A key or console password unused this many days, then used: an
    /// alert (a stolen old credential is the classic case). CIS: 45.
    pub dormant_days: u64,
    /// A key created more than this many days before a use: an alert, at
    /// most once a month per key. CIS: 90.
    pub rotation_days: u64,
    /// Access keys remembered (each about 300 bytes in the store).
    pub max_keys: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            enabled: true,
            dormant_days: 45,
            rotation_days: 90,
            max_keys: 100_000,
        }
    }
}

/// Accounts remembered per role; past it, new ones are not alerted on (a
/// role trusted by the whole organisation is not a story per account).
pub const MAX_ROLE_ACCOUNTS: usize = 32;

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("inventory_keys");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("inventory_users");
const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("inventory_roles");
/// Per `ACCOUNT/USER`: the policies attached to the user directly.
const USER_POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("inventory_user_policies");

/// Policies remembered per user.
const MAX_USER_POLICIES: usize = 64;

const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KeyState {
    pub owner: Option<String>,
    pub account: Option<String>,
    pub created_ms: Option<i64>,
    pub deleted_ms: Option<i64>,
    pub first_use_ms: Option<i64>,
    pub last_use_ms: Option<i64>,
    pub last_ip: Option<String>,
    pub last_region: Option<String>,
    /// Month (days / 30) an "old key" alert was last raised in.
    #[serde(default)]
    pub old_alerted: Option<i64>,
    /// Day a "root access key" alert was last raised on.
    #[serde(default)]
    pub root_alerted: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UserState {
    pub last_login_ms: Option<i64>,
    pub last_mfa: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UserPolicies {
    pub policies: Vec<String>,
    /// When it last changed (event time), for the prune.
    pub at_ms: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RoleState {
    pub last_assumed_ms: Option<i64>,
    pub accounts: Vec<String>,
}

/// The kinds of inventory alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    DormantKeyUsed,
    DormantPasswordUsed,
    OldKeyInUse,
    RootKeyUsed,
    RoleNewAccount,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::DormantKeyUsed => "dormant_access_key_used",
            Kind::DormantPasswordUsed => "dormant_console_password_used",
            Kind::OldKeyInUse => "access_key_not_rotated_in_use",
            Kind::RootKeyUsed => "root_access_key_used",
            Kind::RoleNewAccount => "role_assumed_from_new_account",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::DormantKeyUsed => "Dormant access key used again",
            Kind::DormantPasswordUsed => "Dormant console password used again",
            Kind::OldKeyInUse => "Access key past its rotation age in use",
            Kind::RootKeyUsed => "Root access key used",
            Kind::RoleNewAccount => "Role assumed from an account never seen before",
        }
    }

    fn level(self) -> Level {
        match self {
            Kind::RootKeyUsed => Level::Critical,
            Kind::DormantKeyUsed | Kind::DormantPasswordUsed | Kind::RoleNewAccount => Level::High,
            Kind::OldKeyInUse => Level::Medium,
        }
    }

    fn runbook(self) -> &'static str {
        match self {
            Kind::DormantKeyUsed => {
                "Ask the owner whether they used the key; if not, deactivate it \
                 (UpdateAccessKey --status Inactive) and review what it did since.\n\
                 Unused keys should be removed (CIS: 45 days)."
            }
            Kind::DormantPasswordUsed => {
                "Confirm the sign-in with the user; if not theirs, reset the password, \
                 require MFA and review the session's calls.\nUnused passwords should be \
                 removed (CIS: 45 days)."
            }
            Kind::OldKeyInUse => {
                "Rotate the key: create a second key, move its users, deactivate and \
                 delete the old one (CIS: 90 days)."
            }
            Kind::RootKeyUsed => {
                "Root should have no access keys: find who holds this one, delete it \
                 (root sign-in, Security credentials), and review what it did."
            }
            Kind::RoleNewAccount => {
                "Check the role's trust policy: was this account meant to be trusted? \
                 If not, remove it and review the session's calls."
            }
        }
    }
}

/// An inventory finding on the fact that raised it.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub fact: Fact,
    pub detail: String,
}

impl Finding {
    pub fn alert(&self) -> Alert {
        let k = self.kind;
        let meta = Arc::new(RuleMeta::of_stage(crate::rules::StageRule {
            stage: "inventory",
            name: k.name(),
            title: k.title(),
            level: k.level(),
            tags: ["attack.initial-access", "attack.t1078.004"],
            reference: "https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html",
            runbook: k.runbook(),
            detail: &self.detail,
        }));
        let f = &self.fact;
        let mut a = Alert::of_rule(&meta, "inventory".into(), 0);
        a.event_id = Some(match &f.event_id {
            Some(id) => format!("{}:{id}", k.name()),
            None => format!("{}:{}:{}", k.name(), f.subject, f.time_ms),
        });
        a.event_name = f.event_name.clone();
        a.event_source = f.event_source.clone();
        a.event_time = f.event_time.clone();
        a.account = f.account.clone();
        a.region = f.region.clone();
        a.principal = f.principal.clone();
        a.source_ip = f.source_ip.clone();
        a.user_agent = f.user_agent.clone();
        a
    }
}

/// One step's decisions, written with the commit.
pub struct Plan {
    keys: Overlay<KeyState>,
    users: Overlay<UserState>,
    roles: Overlay<RoleState>,
    user_policies: Overlay<UserPolicies>,
    /// Findings, by the index of the object they came from.
    pub findings: Vec<(usize, Finding)>,
    prune: Option<u64>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.users.is_empty()
            && self.roles.is_empty()
            && self.user_policies.is_empty()
            && self.findings.is_empty()
            && self.prune.is_none()
    }

    pub fn apply(&self, txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        self.keys.apply(txn)?;
        self.users.apply(txn)?;
        self.roles.apply(txn)?;
        self.user_policies.apply(txn)?;
        if let Some(max) = self.prune {
            prune(txn, max)?;
        }
        Ok(())
    }
}

/// Keep at most `max` entries per table: the least recently used go.
fn prune(txn: &redb::WriteTransaction, max: u64) -> Result<(), redb::Error> {
    fn trim<T: for<'de> Deserialize<'de>>(
        txn: &redb::WriteTransaction,
        table: TableDefinition<&str, &[u8]>,
        max: u64,
        last: impl Fn(&T) -> i64,
    ) -> Result<(), redb::Error> {
        let mut t = txn.open_table(table)?;
        let n = t.len()?;
        if n <= max {
            return Ok(());
        }
        let mut ages: Vec<i64> = Vec::with_capacity(n as usize);
        for e in t.iter()? {
            let (_, v) = e?;
            ages.push(serde_json::from_slice::<T>(v.value()).map_or(i64::MIN, |s| last(&s)));
        }
        ages.sort_unstable();
        let cut = ages[(n - max) as usize];
        let mut over = n - max;
        t.retain(|_, v| {
            let age = serde_json::from_slice::<T>(v).map_or(i64::MIN, |s| last(&s));
            if over > 0 && age <= cut {
                over -= 1;
                false
            } else {
                true
            }
        })?;
        Ok(())
    }
    trim::<KeyState>(txn, KEYS, max, |s| {
        s.last_use_ms.or(s.created_ms).unwrap_or(i64::MIN)
    })?;
    trim::<UserState>(txn, USERS, max, |s| s.last_login_ms.unwrap_or(i64::MIN))?;
    trim::<RoleState>(txn, ROLES, max, |s| s.last_assumed_ms.unwrap_or(i64::MIN))?;
    trim::<UserPolicies>(txn, USER_POLICIES, max, |s| s.at_ms)
}

/// Learn a seed: a creation only makes a key older, a use only newer;
/// no alert (what the API says is not an event).
fn seed(read: &redb::ReadTransaction, plan: &mut Plan, s: &Seed) -> Result<(), redb::Error> {
    match s {
        Seed::Key {
            id,
            owner,
            account,
            created_ms,
            last_used_ms,
        } => {
            let mut k = plan.keys.get(read, id)?.unwrap_or_default();
            let before = k.clone();
            if let Some(c) = created_ms {
                k.created_ms = Some(k.created_ms.map_or(*c, |v| v.min(*c)));
            }
            if let Some(u) = last_used_ms
                && k.last_use_ms.is_none_or(|l| *u > l)
            {
                k.last_use_ms = Some(*u);
            }
            k.owner.get_or_insert_with(|| owner.clone());
            if k.account.is_none() {
                k.account = account.clone();
            }
            if k != before {
                plan.keys.put(id.clone(), k);
            }
        }
        Seed::User { arn, last_login_ms } => {
            let mut u = plan.users.get(read, arn)?.unwrap_or_default();
            if u.last_login_ms.is_none_or(|l| *last_login_ms > l) {
                u.last_login_ms = Some(*last_login_ms);
                plan.users.put(arn.clone(), u);
            }
        }
    }
    Ok(())
}

/// What a posture refresh (`[posture]`) teaches the inventory, so its
/// rules know ages from the first day rather than from the first event.
#[derive(Clone, Debug, PartialEq)]
pub enum Seed {
    /// An access key the IAM API listed.
    Key {
        id: String,
        /// The user's ARN.
        owner: String,
        account: Option<String>,
        created_ms: Option<i64>,
        last_used_ms: Option<i64>,
    },
    /// A console user's last sign-in, from the credential report.
    User { arn: String, last_login_ms: i64 },
}

/// The inventory.
pub struct Inventory {
    config: InventoryConfig,
    /// When the last prune ran (wall clock, ms).
    pruned_ms: u64,
}

impl Inventory {
    pub fn new(config: InventoryConfig) -> Inventory {
        Inventory {
            config,
            pruned_ms: 0,
        }
    }

    /// Judge and record a group's facts (each with the index of its
    /// object), oldest first.
    pub fn plan(
        &mut self,
        store: &Store,
        mut facts: Vec<(usize, Fact)>,
        seeds: &[Seed],
        now_ms: u64,
    ) -> Result<Plan, StoreError> {
        let mut plan = Plan {
            keys: Overlay::new(KEYS),
            users: Overlay::new(USERS),
            roles: Overlay::new(ROLES),
            user_policies: Overlay::new(USER_POLICIES),
            findings: Vec::new(),
            prune: None,
        };
        if now_ms >= self.pruned_ms + 3_600_000 {
            self.pruned_ms = now_ms;
            plan.prune = Some(self.config.max_keys.max(1));
        }
        // An event dated more than a day ahead of the clock would make
        // its key's last use the future, and every real use after it look
        // older: such facts are left out (and said so).
        let horizon = now_ms as i64 + DAY_MS;
        let before = facts.len();
        facts.retain(|(_, f)| f.time_ms <= horizon);
        if facts.len() < before {
            tracing::warn!(
                left_out = before - facts.len(),
                "credential facts dated more than a day ahead of the clock not kept"
            );
        }
        if facts.is_empty() && seeds.is_empty() {
            return Ok(plan);
        }
        facts.sort_by_key(|(_, f)| f.time_ms);
        let read = store.database().begin_read().map_err(|e| store.error(e))?;
        for s in seeds {
            seed(&read, &mut plan, s).map_err(|e| store.error(e))?;
        }
        for (i, f) in facts {
            self.judge(&read, &mut plan, i, f)
                .map_err(|e| store.error(e))?;
        }
        Ok(plan)
    }

    fn judge(
        &self,
        read: &redb::ReadTransaction,
        plan: &mut Plan,
        i: usize,
        f: Fact,
    ) -> Result<(), redb::Error> {
        let dormant = self.config.dormant_days as i64 * DAY_MS;
        let days = |ms: i64| ms / DAY_MS;
        let t = f.time_ms;
        match f.kind {
            FactKind::KeyUsed => {
                let mut s = plan.keys.get(read, &f.subject)?.unwrap_or_default();
                if let Some(last) = s.last_use_ms
                    && t - last >= dormant
                {
                    plan.findings.push((
                        i,
                        Finding {
                            kind: Kind::DormantKeyUsed,
                            detail: format!(
                                "access key {} ({}) used {} days after its last use ({}), from {}",
                                f.subject,
                                s.owner.as_deref().or(f.principal.as_deref()).unwrap_or("-"),
                                days(t - last),
                                crate::time::iso_time(last),
                                f.source_ip.as_deref().unwrap_or("-"),
                            ),
                            fact: f.clone(),
                        },
                    ));
                }
                if let Some(created) = s.created_ms
                    && t - created >= self.config.rotation_days as i64 * DAY_MS
                    && s.old_alerted != Some(days(t) / 30)
                {
                    s.old_alerted = Some(days(t) / 30);
                    plan.findings.push((
                        i,
                        Finding {
                            kind: Kind::OldKeyInUse,
                            detail: format!(
                                "access key {} ({}) created {} ({} days before this use): past \
                                 the {}-day rotation period",
                                f.subject,
                                s.owner.as_deref().or(f.principal.as_deref()).unwrap_or("-"),
                                crate::time::iso_time(created),
                                days(t - created),
                                self.config.rotation_days
                            ),
                            fact: f.clone(),
                        },
                    ));
                }
                if f.root && s.root_alerted != Some(days(t)) {
                    s.root_alerted = Some(days(t));
                    plan.findings.push((
                        i,
                        Finding {
                            kind: Kind::RootKeyUsed,
                            detail: format!(
                                "root of account {} used access key {} ({} from {}); root \
                                 should have no access key",
                                f.account.as_deref().unwrap_or("-"),
                                f.subject,
                                f.event_name.as_deref().unwrap_or("-"),
                                f.source_ip.as_deref().unwrap_or("-"),
                            ),
                            fact: f.clone(),
                        },
                    ));
                }
                if s.last_use_ms.is_none_or(|l| t >= l) {
                    s.last_use_ms = Some(t);
                    s.last_ip = f.source_ip.clone();
                    s.last_region = f.region.clone();
                }
                s.first_use_ms = Some(s.first_use_ms.map_or(t, |v| v.min(t)));
                if s.owner.is_none() {
                    s.owner = f.principal.clone();
                }
                if s.account.is_none() {
                    s.account = f.account.clone();
                }
                plan.keys.put(f.subject, s);
            }
            FactKind::KeyCreated | FactKind::KeyDeleted => {
                let mut s = plan.keys.get(read, &f.subject)?.unwrap_or_default();
                if f.kind == FactKind::KeyCreated {
                    s.created_ms = Some(s.created_ms.map_or(t, |v| v.min(t)));
                    if let Some(u) = &f.user {
                        s.owner = Some(u.clone());
                    }
                } else {
                    s.deleted_ms = Some(t);
                }
                if s.account.is_none() {
                    s.account = f.account.clone();
                }
                plan.keys.put(f.subject, s);
            }
            FactKind::ConsoleLogin => {
                let mut s = plan.users.get(read, &f.subject)?.unwrap_or_default();
                if let Some(last) = s.last_login_ms
                    && t - last >= dormant
                {
                    plan.findings.push((
                        i,
                        Finding {
                            kind: Kind::DormantPasswordUsed,
                            detail: format!(
                                "{} signed in to the console {} days after its last sign-in \
                                 ({}), from {}, MFA {}",
                                f.subject,
                                days(t - last),
                                crate::time::iso_time(last),
                                f.source_ip.as_deref().unwrap_or("-"),
                                match f.mfa {
                                    Some(true) => "used",
                                    Some(false) => "not used",
                                    None => "unknown",
                                }
                            ),
                            fact: f.clone(),
                        },
                    ));
                }
                if s.last_login_ms.is_none_or(|l| t >= l) {
                    s.last_login_ms = Some(t);
                    s.last_mfa = f.mfa;
                }
                plan.users.put(f.subject, s);
            }
            FactKind::UserPolicyAdded | FactKind::UserPolicyRemoved => {
                let Some(policy) = f.user.clone() else {
                    return Ok(());
                };
                let mut s = plan
                    .user_policies
                    .get(read, &f.subject)?
                    .unwrap_or_default();
                if t < s.at_ms {
                    return Ok(()); // older than what is known
                }
                s.policies.retain(|p| *p != policy);
                if f.kind == FactKind::UserPolicyAdded && s.policies.len() < MAX_USER_POLICIES {
                    s.policies.push(policy);
                }
                s.at_ms = t;
                plan.user_policies.put(f.subject, s);
            }
            // Changes the posture stage follows, not the inventory.
            FactKind::MfaEnabled
            | FactKind::MfaDisabled
            | FactKind::PasswordSet
            | FactKind::PasswordRemoved
            | FactKind::UserCreated
            | FactKind::UserDeleted
            | FactKind::KeyStatus
            | FactKind::PasswordPolicySet
            | FactKind::PasswordPolicyDeleted => {}
            FactKind::RoleAssumed => {
                let Some(from) = f.from_account.clone() else {
                    return Ok(());
                };
                let mut s = plan.roles.get(read, &f.subject)?.unwrap_or_default();
                if !s.accounts.contains(&from) {
                    // The first account seen teaches; each new one after
                    // it is news, until the list is full.
                    if !s.accounts.is_empty() && s.accounts.len() < MAX_ROLE_ACCOUNTS {
                        plan.findings.push((
                            i,
                            Finding {
                                kind: Kind::RoleNewAccount,
                                detail: format!(
                                    "{} assumed from account {from} for the first time (seen \
                                     before from {})",
                                    f.subject,
                                    s.accounts.join(", ")
                                ),
                                fact: f.clone(),
                            },
                        ));
                    }
                    if s.accounts.len() < MAX_ROLE_ACCOUNTS {
                        s.accounts.push(from);
                    }
                }
                if s.last_assumed_ms.is_none_or(|l| t >= l) {
                    s.last_assumed_ms = Some(t);
                }
                plan.roles.put(f.subject, s);
            }
        }
        Ok(())
    }

    /// The gauges: keys by days since last use (relative to the newest
    /// use seen: event time, not the wall clock), keys unused past the
    /// dormancy period, console users whose last sign-in was without MFA.
    pub fn gauges(&self, store: &Store) -> Result<Gauges, StoreError> {
        let read = store.database().begin_read().map_err(|e| store.error(e))?;
        let mut g = Gauges::default();
        let keys: Vec<KeyState> = read_all(&read, KEYS).map_err(|e| store.error(e))?;
        let newest = keys.iter().filter_map(|k| k.last_use_ms).max().unwrap_or(0);
        for k in keys.iter().filter(|k| k.deleted_ms.is_none()) {
            let Some(last) = k.last_use_ms.or(k.created_ms) else {
                continue;
            };
            let age = (newest - last) / DAY_MS;
            let bucket = match age {
                ..7 => 0,
                7..45 => 1,
                45..90 => 2,
                _ => 3,
            };
            g.keys_by_age[bucket] += 1;
            if newest - last >= self.config.dormant_days as i64 * DAY_MS {
                g.unused_keys += 1;
            }
        }
        let users: Vec<UserState> = read_all(&read, USERS).map_err(|e| store.error(e))?;
        g.console_without_mfa = users.iter().filter(|u| u.last_mfa == Some(false)).count() as u64;
        let direct: Vec<UserPolicies> =
            read_all(&read, USER_POLICIES).map_err(|e| store.error(e))?;
        g.users_with_direct_policies =
            direct.iter().filter(|u| !u.policies.is_empty()).count() as u64;
        Ok(g)
    }
}

/// Every entry of `table` (the store's, nothing decided on top).
fn read_all<T: Serialize + serde::de::DeserializeOwned + Clone>(
    read: &redb::ReadTransaction,
    table: TableDefinition<'static, &'static str, &'static [u8]>,
) -> Result<Vec<T>, redb::Error> {
    Ok(Overlay::<T>::new(table)
        .all(read, usize::MAX)?
        .into_values()
        .collect())
}

/// What the dashboard shows of the inventory (counts only: no label per
/// user or key).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gauges {
    /// Keys by days since last use: <7, 7–45, 45–90, ≥90.
    pub keys_by_age: [u64; 4],
    pub unused_keys: u64,
    pub console_without_mfa: u64,
    /// Users with a policy attached or put directly (seen in the stream,
    /// not since detached or deleted).
    pub users_with_direct_policies: u64,
}

/// The `age` label values of [`Gauges::keys_by_age`].
pub const AGE_BUCKETS: [&str; 4] = ["lt_7d", "7d_45d", "45d_90d", "ge_90d"];

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(kind: FactKind, subject: &str, user: Option<&str>, time: &str) -> Fact {
        Fact {
            kind,
            time_ms: crate::time::parse_event_time(time).unwrap(),
            subject: subject.into(),
            principal: None,
            root: false,
            mfa: Some(false),
            from_account: None,
            user: user.map(str::to_owned),
            active: None,
            policy: None,
            account: Some("1".into()),
            region: None,
            source_ip: None,
            user_agent: None,
            event_id: None,
            event_name: None,
            event_source: None,
            event_time: Some(time.into()),
        }
    }

    /// The gauges count what the stream left standing: a policy attached
    /// then detached leaves none; an inline one put stays; a key unused
    /// for 100 days (relative to the newest use) is old and unused; a
    /// console sign-in without MFA counts.
    #[test]
    fn the_gauges_count_what_the_stream_left_standing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut inv = Inventory::new(InventoryConfig::default());
        let facts = vec![
            fact(
                FactKind::UserPolicyAdded,
                "1/bob",
                Some("arn:p1"),
                "2026-01-01T00:00:00Z",
            ),
            fact(
                FactKind::UserPolicyAdded,
                "1/carol",
                Some("inline:x"),
                "2026-01-01T00:00:00Z",
            ),
            fact(
                FactKind::UserPolicyRemoved,
                "1/bob",
                Some("arn:p1"),
                "2026-01-02T00:00:00Z",
            ),
            fact(
                FactKind::KeyUsed,
                "AKIAOLD0000000000001",
                None,
                "2026-01-01T00:00:00Z",
            ),
            fact(
                FactKind::KeyUsed,
                "AKIANEW0000000000001",
                None,
                "2026-04-11T00:00:00Z",
            ),
            fact(
                FactKind::ConsoleLogin,
                "arn:aws:iam::1:user/dan",
                None,
                "2026-04-11T00:00:00Z",
            ),
        ]
        .into_iter()
        .map(|f| (0, f))
        .collect();
        let plan = inv
            .plan(&store, facts, &[], crate::checkpoint::now_ms())
            .unwrap();
        store.commit_batch(&[], &[], |txn| plan.apply(txn)).unwrap();
        let g = inv.gauges(&store).unwrap();
        assert_eq!(g.users_with_direct_policies, 1);
        assert_eq!(g.keys_by_age, [1, 0, 0, 1]);
        assert_eq!(g.unused_keys, 1);
        assert_eq!(g.console_without_mfa, 1);
    }

    /// What a posture refresh teaches gives ages from the first event: a
    /// key the stream never saw created, seeded as created 100 days ago,
    /// is old at its first use; one seeded as last used 60 days ago is
    /// dormant at its first use; a console user seeded likewise. A seed
    /// never makes a key younger or a use older than the stream's.
    #[test]
    fn seeds_give_ages_from_the_first_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut inv = Inventory::new(InventoryConfig::default());
        let t = |s: &str| crate::time::parse_event_time(s).unwrap();
        let seeds = [
            Seed::Key {
                id: "AKIAOLD0000000000001".into(),
                owner: "arn:aws:iam::1:user/old".into(),
                account: Some("1".into()),
                created_ms: Some(t("2026-01-01T00:00:00Z")),
                last_used_ms: Some(t("2026-04-09T00:00:00Z")),
            },
            Seed::Key {
                id: "AKIADORMANT000000001".into(),
                owner: "arn:aws:iam::1:user/dormant".into(),
                account: Some("1".into()),
                created_ms: Some(t("2026-03-01T00:00:00Z")),
                last_used_ms: Some(t("2026-02-10T00:00:00Z")),
            },
            Seed::User {
                arn: "arn:aws:iam::1:user/dan".into(),
                last_login_ms: t("2026-02-10T00:00:00Z"),
            },
        ];
        let plan = inv
            .plan(&store, Vec::new(), &seeds, crate::checkpoint::now_ms())
            .unwrap();
        assert!(plan.findings.is_empty(), "a seed is no event");
        store.commit_batch(&[], &[], |txn| plan.apply(txn)).unwrap();
        let facts = vec![
            fact(
                FactKind::KeyUsed,
                "AKIAOLD0000000000001",
                None,
                "2026-04-11T00:00:00Z",
            ),
            fact(
                FactKind::KeyUsed,
                "AKIADORMANT000000001",
                None,
                "2026-04-11T00:00:00Z",
            ),
            fact(
                FactKind::ConsoleLogin,
                "arn:aws:iam::1:user/dan",
                None,
                "2026-04-11T00:00:00Z",
            ),
        ]
        .into_iter()
        .map(|f| (0, f))
        .collect();
        let plan = inv
            .plan(&store, facts, &[], crate::checkpoint::now_ms())
            .unwrap();
        let mut kinds: Vec<(&str, String)> = plan
            .findings
            .iter()
            .map(|(_, f)| (f.kind.name(), f.fact.subject.clone()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec![
                (
                    "access_key_not_rotated_in_use",
                    "AKIAOLD0000000000001".into()
                ),
                ("dormant_access_key_used", "AKIADORMANT000000001".into()),
                (
                    "dormant_console_password_used",
                    "arn:aws:iam::1:user/dan".into()
                ),
            ]
        );
        store.commit_batch(&[], &[], |txn| plan.apply(txn)).unwrap();
        // A refresh again, with an older use and a newer creation: the
        // stream's dates stand.
        let again = [Seed::Key {
            id: "AKIAOLD0000000000001".into(),
            owner: "arn:aws:iam::1:user/old".into(),
            account: Some("1".into()),
            created_ms: Some(t("2026-04-01T00:00:00Z")),
            last_used_ms: Some(t("2026-03-01T00:00:00Z")),
        }];
        let plan = inv
            .plan(&store, Vec::new(), &again, crate::checkpoint::now_ms())
            .unwrap();
        let read = store.database().begin_read().unwrap();
        let k = plan
            .keys
            .get(&read, "AKIAOLD0000000000001")
            .unwrap()
            .unwrap();
        assert_eq!(k.created_ms, Some(t("2026-01-01T00:00:00Z")));
        assert_eq!(k.last_use_ms, Some(t("2026-04-11T00:00:00Z")));
    }
}
