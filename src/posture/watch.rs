//! The daemon's `[posture]`: the account's IAM picture ([`Model`]) read
//! from the IAM API every `interval_secs` on the runtime (never on the
//! engine's thread: a refresh is a few calls per user), and kept current
//! by the stream in between: an `EnableMFADevice`, `AttachUserPolicy`,
//! `UpdateAccountPasswordPolicy`, `CreateAccessKey`, a key's use… changes
//! the picture at once, and the picture is judged again.
//!
//! A finding alerts when it appears (an alert of the built-in rule named
//! after it, `trailwatch-console-user-without-mfa`, with the normal
//! delivery); while open it is known by its [`Finding::key`] and does not
//! alert again; when it clears, the clearing is recorded: an
//! informational `posture_finding_resolved` alert naming the finding and
//! what cleared it (the event, or the refresh), which the JSON lines and
//! webhooks carry and the mail's default `min_level` leaves out.
//!
//! State (in the store, written with the objects whose events changed
//! it): the picture, at most `max_users` users, and the open findings.
//! A key's use that changes no finding is written at most every ten
//! minutes; a change of IAM, a refresh and every finding's change at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::iam::{
    Answers, Finding, KeyInfo, MAX_USER_KEYS, MAX_USER_POLICIES, Model, Thresholds, UserInfo,
    judge, judge_account, judge_user,
};
use super::inventory::Seed;
use super::{Fact, FactKind};
use crate::alert::Alert;
use crate::checkpoint::{Overlay, Store, StoreError};
use crate::rules::{Level, RuleMeta, StageRule};

/// `[posture]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostureConfig {
    /// Read the IAM API every `interval_secs` and keep the findings
    /// current from the stream (needs the optional IAM statement of
    /// `deploy/iam/posture-policy.json`).
    pub enabled: bool,
    /// Between refreshes. IAM regenerates the credential report at most
    /// every 4 hours, so more often brings back the same report.
    pub interval_secs: u64,
    /// An IAM-compatible endpoint instead of AWS's (tests, VPC endpoints).
    pub endpoint_url: Option<String>,
    /// Users kept in the picture (IAM's own quota is 5,000 per account);
    /// past it, a crafted stream's `CreateUser` adds nothing.
    pub max_users: u64,
    /// A refresh taking longer is abandoned (and counted as failed).
    pub timeout_secs: u64,
}

impl Default for PostureConfig {
    fn default() -> Self {
        PostureConfig {
            enabled: false,
            interval_secs: 4 * 3600,
            endpoint_url: None,
            max_users: 5_000,
            timeout_secs: 600,
        }
    }
}

/// The fixed finding ids (the gauge's labels).
pub const FINDINGS: [&str; 8] = [
    "root_mfa_disabled",
    "root_access_key_present",
    "password_policy_weak",
    "console_user_without_mfa",
    "access_key_not_rotated",
    "credential_unused",
    "user_with_direct_policy",
    "user_with_inline_policy",
];

/// The picture but its users (one row, `header`).
const MODEL: TableDefinition<&str, &[u8]> = TableDefinition::new("posture_model");
/// The picture's users, by name.
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("posture_users");
const OPEN: TableDefinition<&str, &[u8]> = TableDefinition::new("posture_findings");

/// A picture changed only by uses is written at most this often.
const USE_WRITE_MS: u64 = 600_000;
/// Ages cross thresholds with time alone: judged again this often.
const JUDGE_MS: u64 = 600_000;
/// Changes dated further ahead of the clock are not applied.
const MAX_FUTURE_MS: i64 = 15 * 60_000;
/// Changes remembered, by event id, so a file delivered twice applies once.
const MAX_SEEN: usize = 10_000;
/// Changes kept to apply over a refresh: the report's greatest age (4
/// hours) and CloudTrail's delivery delay.
const REPLAY_MS: i64 = 6 * 3_600_000;
const MAX_REPLAY: usize = 2_000;
/// Characters of a finding's evidence kept while it is open.
const MAX_EVIDENCE: usize = 1024;

/// An open finding, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub finding: String,
    pub level: Level,
    pub principal: String,
    pub credential: String,
    pub evidence: String,
    /// When it appeared (wall clock, ms).
    pub since_ms: i64,
}

/// A refresh's outcome, from the runtime to the engine.
pub struct Refreshed {
    pub answers: Result<Answers, String>,
    /// When the API was read (wall clock, ms).
    pub read_ms: i64,
}

/// What one step decided, written with the commit.
pub struct Plan {
    /// The picture but its users.
    header: Option<Vec<u8>>,
    /// Users changed (or removed).
    users: Overlay<UserInfo>,
    /// A refresh: the users' table is replaced.
    clear_users: bool,
    open: Overlay<Open>,
    /// Alerts, by the index of the object whose event raised them (none:
    /// a refresh's or time's, which the engine gives a marker object).
    pub alerts: Vec<(Option<usize>, Alert)>,
    /// What the inventory learns from a refresh.
    pub seeds: Vec<Seed>,
    /// A refresh's outcome: (ok, when).
    pub refreshed: Option<(bool, i64)>,
    /// Changes not applied, by reason (`future`, `duplicate`, `older`,
    /// `full`).
    pub dropped: BTreeMap<&'static str, u64>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            header: None,
            users: Overlay::new(USERS),
            clear_users: false,
            open: Overlay::new(OPEN),
            alerts: Vec::new(),
            seeds: Vec::new(),
            refreshed: None,
            dropped: BTreeMap::new(),
        }
    }
}

impl Plan {
    fn count(&mut self, reason: &'static str, n: usize) {
        if n > 0 {
            *self.dropped.entry(reason).or_default() += n as u64;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.header.is_none()
            && self.users.is_empty()
            && !self.clear_users
            && self.open.is_empty()
            && self.alerts.is_empty()
            && self.seeds.is_empty()
            && self.refreshed.is_none()
            && self.dropped.is_empty()
    }

    pub fn apply(&self, txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        if let Some(m) = &self.header {
            txn.open_table(MODEL)?.insert("header", m.as_slice())?;
        }
        if self.clear_users {
            txn.open_table(USERS)?.retain(|_, _| false)?;
        }
        self.users.apply(txn)?;
        self.open.apply(txn)?;
        Ok(())
    }
}

/// The posture stage, on the engine's thread.
pub struct Posture {
    config: PostureConfig,
    thresholds: Thresholds,
    model: Option<Model>,
    open: BTreeMap<String, Open>,
    /// Access key id → user name, for the picture's keys.
    keys: HashMap<String, String>,
    refreshes: Receiver<Refreshed>,
    /// A refresh is due at start (`--once` waits for it).
    first_due: bool,
    /// The picture changed by uses only, since (wall clock, ms).
    unwritten_since: Option<u64>,
    /// Changes applied, by kind, subject and event id (at most
    /// [`MAX_SEEN`], oldest forgotten first).
    seen: std::collections::HashSet<String>,
    seen_order: std::collections::VecDeque<String>,
    /// The open findings were counted for the gauge since they last
    /// changed.
    counted: bool,
    /// Users changed since the last write.
    dirty: std::collections::BTreeSet<String>,
    /// Root's or the account's part changed since the last write.
    header_dirty: bool,
    /// A refresh replaced the picture since the last write.
    clear: bool,
    /// Changes of IAM seen in the last [`REPLAY_MS`] (at most
    /// [`MAX_REPLAY`]): a refresh's report may be hours old, so what
    /// happened since it was generated is applied again over it.
    recent: std::collections::VecDeque<Fact>,
    judged_ms: u64,
}

impl Posture {
    /// The stage, with its stored state, and the refresh task spawned on
    /// `rt` (its first refresh at once, unless the stored picture is
    /// younger than `interval_secs`: a restart loop must not hammer IAM).
    pub fn start(
        config: PostureConfig,
        thresholds: Thresholds,
        store: &Store,
        rt: &tokio::runtime::Runtime,
    ) -> Result<Posture, StoreError> {
        let read = store.database().begin_read().map_err(|e| store.error(e))?;
        let load = || -> Result<_, redb::Error> {
            let mut model = Overlay::<Model>::new(MODEL).get(&read, "header")?;
            if let Some(m) = &mut model {
                m.users = Overlay::new(USERS).all(&read, config.max_users as usize)?;
            }
            Ok((model, Overlay::new(OPEN).all(&read, usize::MAX)?))
        };
        let (model, open) = load().map_err(|e| store.error(e))?;
        let now = crate::checkpoint::now_ms() as i64;
        let interval_ms = config.interval_secs.max(1) as i64 * 1000;
        let age = model.as_ref().map_or(i64::MAX, |m| now - m.read_ms);
        // A picture read in the future (a clock set back) is refreshed.
        let first = if (0..interval_ms).contains(&age) {
            Duration::from_millis((interval_ms - age) as u64)
        } else {
            Duration::ZERO
        };
        let (tx, rx) = std::sync::mpsc::channel();
        drop(rt.spawn(refresh_forever(config.clone(), first, tx)));
        Ok(Posture::new(
            config,
            thresholds,
            model,
            open,
            rx,
            first.is_zero(),
        ))
    }

    fn new(
        config: PostureConfig,
        thresholds: Thresholds,
        model: Option<Model>,
        open: BTreeMap<String, Open>,
        refreshes: Receiver<Refreshed>,
        first_due: bool,
    ) -> Posture {
        let mut p = Posture {
            first_due,
            config,
            thresholds,
            model,
            open,
            keys: HashMap::new(),
            refreshes,
            unwritten_since: None,
            counted: false,
            seen: std::collections::HashSet::new(),
            seen_order: std::collections::VecDeque::new(),
            dirty: std::collections::BTreeSet::new(),
            header_dirty: false,
            clear: false,
            recent: std::collections::VecDeque::new(),
            judged_ms: 0,
        };
        p.index();
        p
    }

    fn index(&mut self) {
        self.keys.clear();
        for (name, u) in self.model.iter().flat_map(|m| &m.users) {
            for k in &u.keys {
                self.keys.insert(k.id.clone(), name.clone());
            }
        }
    }

    /// The findings open now, per id, when they changed since last asked
    /// (the gauge: counting them all for every group would walk every
    /// open finding on the hot path).
    pub fn counts_if_changed(&mut self) -> Option<BTreeMap<&'static str, i64>> {
        if std::mem::replace(&mut self.counted, true) {
            return None;
        }
        Some(self.counts())
    }

    /// The findings open now, per id.
    pub fn counts(&self) -> BTreeMap<&'static str, i64> {
        let mut c: BTreeMap<&'static str, i64> = FINDINGS.iter().map(|f| (*f, 0)).collect();
        for o in self.open.values() {
            if let Some(n) = FINDINGS
                .iter()
                .find(|f| **f == o.finding)
                .and_then(|f| c.get_mut(f))
            {
                *n += 1;
            }
        }
        c
    }

    /// Does `f` concern the picture? Changes of IAM in its account, and
    /// uses of the credentials it holds; older than the picture's read,
    /// the picture has it already.
    pub fn wants(&self, f: &Fact) -> bool {
        let Some(m) = &self.model else {
            return false;
        };
        let since = if live(f.kind) { m.read_ms } else { m.as_of_ms };
        if f.time_ms <= since || f.account.as_deref() != m.account.as_deref() {
            return false;
        }
        match f.kind {
            FactKind::KeyUsed => self.keys.contains_key(&f.subject),
            FactKind::ConsoleLogin => true,
            k => k.changes_posture(),
        }
    }

    /// `--once`: wait (at most the refresh's timeout, and not once a stop
    /// is asked) for the refresh due at start, so one run reports it.
    pub fn wait_first(&mut self, stopping: &dyn Fn() -> bool) -> Option<Refreshed> {
        if !std::mem::take(&mut self.first_due) {
            return None;
        }
        let deadline =
            std::time::Instant::now() + Duration::from_secs(self.config.timeout_secs.max(1) + 5);
        while std::time::Instant::now() < deadline && !stopping() {
            match self.refreshes.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => return Some(r),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        tracing::warn!("posture: the refresh due at start did not come; stopping without it");
        None
    }

    /// One step: a refresh that arrived (or `refreshed`), then the group's
    /// facts (each with the index of its object), oldest first, then the
    /// findings judged again if anything could have changed them.
    pub fn plan(
        &mut self,
        facts: Vec<(usize, Fact)>,
        refreshed: Option<Refreshed>,
        now_ms: u64,
    ) -> Plan {
        let mut plan = Plan::default();
        let refreshed = refreshed.or_else(|| self.refreshes.try_recv().ok());
        if refreshed.is_some() {
            // `--once` waits for none now: this was the one due at start.
            self.first_due = false;
        }
        let mut full = now_ms >= self.judged_ms + JUDGE_MS;
        let mut write = false;
        // Principals (user ARNs, `root`, `account`) whose findings the
        // step's events may have changed.
        let mut touched = std::collections::BTreeSet::new();
        // What changed whom, for the alerts: `PRINCIPAL|CREDENTIAL` and
        // `PRINCIPAL` → (object, fact), the latest.
        let mut cause: HashMap<String, (usize, Fact)> = HashMap::new();
        if let Some(r) = refreshed {
            match r.answers {
                Ok(answers) => {
                    let mut m = Model::of(&answers, r.read_ms);
                    let mut replay: Vec<&Fact> = self
                        .recent
                        .iter()
                        .filter(|f| {
                            f.time_ms > m.as_of_ms && f.account.as_deref() == m.account.as_deref()
                        })
                        .collect();
                    replay.sort_by_key(|f| order(f));
                    for f in replay {
                        apply(&mut m, f, self.config.max_users as usize);
                    }
                    if m.users.len() as u64 > self.config.max_users {
                        tracing::warn!(
                            users = m.users.len(),
                            kept = self.config.max_users,
                            "posture: more IAM users than [posture] max_users; the rest are not judged"
                        );
                        let cut = self.config.max_users as usize;
                        m.users = std::mem::take(&mut m.users).into_iter().take(cut).collect();
                    }
                    plan.seeds = seeds(&m);
                    tracing::info!(
                        users = m.users.len(),
                        account = m.account.as_deref().unwrap_or("-"),
                        "posture: IAM refreshed"
                    );
                    self.dirty = m.users.keys().cloned().collect();
                    self.header_dirty = true;
                    self.clear = true;
                    self.model = Some(m);
                    self.index();
                    plan.refreshed = Some((true, r.read_ms));
                    full = true;
                    write = true;
                }
                Err(e) => {
                    tracing::warn!("posture: IAM refresh failed: {e}");
                    plan.refreshed = Some((false, r.read_ms));
                }
            }
        }
        let mut facts = facts;
        // Dated ahead of the clock (past CloudTrail's own skew): a forged
        // change dated tomorrow would otherwise outrank every real one.
        let before = facts.len();
        facts.retain(|(_, f)| f.time_ms <= now_ms as i64 + MAX_FUTURE_MS);
        plan.count("future", before - facts.len());
        facts.sort_by_key(|(_, f)| order(f));
        for (_, f) in &facts {
            // Only what the report says is replayed over it.
            if f.kind.changes_posture() && !live(f.kind) && f.time_ms > now_ms as i64 - REPLAY_MS {
                if self.recent.len() >= MAX_REPLAY {
                    self.recent.pop_front();
                }
                self.recent.push_back(f.clone());
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|f| f.time_ms <= now_ms as i64 - REPLAY_MS)
        {
            self.recent.pop_front();
        }
        facts.retain(|(_, f)| self.wants(f));
        let max_users = self.config.max_users as usize;
        if let Some(m) = &mut self.model {
            for (i, f) in facts {
                // A change delivered again (the same event in two files).
                let id = (f.kind.changes_posture())
                    .then(|| {
                        f.event_id
                            .as_ref()
                            .map(|e| format!("{:?}|{}|{e}", f.kind, f.subject))
                    })
                    .flatten();
                if id.as_ref().is_some_and(|id| self.seen.contains(id)) {
                    plan.count("duplicate", 1);
                    continue;
                }
                // Whom it concerns, before it changes who holds what.
                let principal = principal_of(m, &f);
                let user = touched_user(m, &f);
                let change = apply(m, &f, max_users);
                match change {
                    Change::None => continue,
                    Change::Older => {
                        plan.count("older", 1);
                        continue;
                    }
                    Change::Full => {
                        plan.count("full", 1);
                        continue;
                    }
                    Change::Use | Change::Iam => {}
                }
                if let Some(id) = id {
                    if self.seen_order.len() >= MAX_SEEN
                        && let Some(old) = self.seen_order.pop_front()
                    {
                        self.seen.remove(&old);
                    }
                    self.seen.insert(id.clone());
                    self.seen_order.push_back(id);
                }
                match user {
                    Some(u) => {
                        self.dirty.insert(u);
                    }
                    None => self.header_dirty = true,
                }
                // By credential too: a key's use clears that key's
                // finding, whatever else the user's events did.
                let credential = match f.kind {
                    FactKind::KeyUsed
                    | FactKind::KeyCreated
                    | FactKind::KeyDeleted
                    | FactKind::KeyStatus => f.subject.as_str(),
                    FactKind::ConsoleLogin | FactKind::PasswordSet | FactKind::PasswordRemoved => {
                        "password"
                    }
                    FactKind::MfaEnabled | FactKind::MfaDisabled => "mfa",
                    FactKind::UserPolicyAdded | FactKind::UserPolicyRemoved
                        if f.user.as_deref().is_some_and(|p| p.starts_with("inline:")) =>
                    {
                        "inline"
                    }
                    FactKind::UserPolicyAdded | FactKind::UserPolicyRemoved => "attached",
                    _ => "",
                };
                if let Some(p) = principal {
                    let by_credential = format!("{p}|{credential}");
                    // A use clears only its own credential's finding.
                    if change == Change::Iam
                        || self
                            .open
                            .contains_key(&format!("credential_unused|{by_credential}"))
                    {
                        touched.insert(p.clone());
                    }
                    cause.insert(by_credential, (i, f.clone()));
                    cause.insert(p, (i, f.clone()));
                }
                if change == Change::Use {
                    self.unwritten_since.get_or_insert(now_ms);
                } else {
                    write = true;
                }
            }
        }
        if write {
            self.index();
        }
        if let Some(m) = &self.model {
            // Everything after a refresh and every ten minutes (ages cross
            // thresholds by time alone); else only whom the events touched.
            let (found, scope) = if full {
                self.judged_ms = now_ms;
                (judge(m, self.thresholds, now_ms as i64), None)
            } else if touched.is_empty() {
                (Vec::new(), Some(&touched))
            } else {
                let mut found = Vec::new();
                if touched.contains("root") || touched.contains("account") {
                    judge_account(m, &mut found);
                    found.retain(|f| touched.contains(&f.principal));
                }
                for (name, u) in &m.users {
                    if touched.contains(&u.arn) {
                        judge_user(name, u, self.thresholds, now_ms as i64, &mut found);
                    }
                }
                (found, Some(&touched))
            };
            if full || !touched.is_empty() {
                diff(
                    &mut self.open,
                    found,
                    scope,
                    &cause,
                    &mut plan,
                    now_ms as i64,
                    m,
                );
            }
        }
        let stale = self
            .unwritten_since
            .is_some_and(|t| now_ms >= t + USE_WRITE_MS);
        if !plan.open.is_empty() {
            self.counted = false;
        }
        if write || stale || !plan.open.is_empty() {
            self.persist(&mut plan);
        }
        plan
    }
}

/// Open what `found` holds and was not open; record as cleared what was
/// open and is not found, among the principals of `scope` (all: `None`).
fn diff(
    open: &mut BTreeMap<String, Open>,
    found: Vec<Finding>,
    scope: Option<&std::collections::BTreeSet<String>>,
    cause: &HashMap<String, (usize, Fact)>,
    plan: &mut Plan,
    now_ms: i64,
    m: &Model,
) {
    let mut now_open: BTreeMap<String, Finding> = BTreeMap::new();
    for f in found {
        now_open.insert(f.key(), f);
    }
    // The event that made or cleared a finding: one that changed what the
    // finding is about, else the principal's latest.
    let cause_of = |finding: &str, principal: &str, credential: &str| {
        let aspects: &[&str] = match finding {
            "console_user_without_mfa" => &["mfa", "password"],
            "user_with_direct_policy" => &["attached"],
            "user_with_inline_policy" => &["inline"],
            _ => &[],
        };
        aspects
            .iter()
            .chain(std::iter::once(&credential))
            .find_map(|a| cause.get(&format!("{principal}|{a}")))
            .or_else(|| cause.get(principal))
    };
    for (k, f) in &now_open {
        if open.contains_key(k) {
            continue;
        }
        let o = Open {
            finding: f.finding.to_owned(),
            level: f.level,
            principal: f.principal.clone(),
            credential: f.credential.clone(),
            // Bounded: evidence is event text.
            evidence: f.evidence.chars().take(MAX_EVIDENCE).collect(),
            since_ms: now_ms,
        };
        let c = cause_of(f.finding, &f.principal, &f.credential);
        plan.alerts
            .push((c.map(|c| c.0), appeared(f, &o, c.map(|c| &c.1), m)));
        plan.open.put(k.clone(), o.clone());
        open.insert(k.clone(), o);
    }
    let gone: Vec<String> = open
        .iter()
        .filter(|(k, o)| {
            scope.is_none_or(|s| s.contains(&o.principal)) && !now_open.contains_key(*k)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        let Some(o) = open.remove(&k) else {
            continue;
        };
        let c = cause_of(&o.finding, &o.principal, &o.credential);
        let how = match (c, plan.refreshed) {
            (Some((_, f)), _) => format!(
                "cleared by {} at {} (by {}, event {})",
                f.event_name.as_deref().unwrap_or("-"),
                f.event_time.as_deref().unwrap_or("-"),
                f.principal.as_deref().unwrap_or("-"),
                f.event_id.as_deref().unwrap_or("-"),
            ),
            (None, Some((true, at))) => {
                format!(
                    "not found by the IAM refresh of {}",
                    crate::time::iso_time(at)
                )
            }
            (None, _) => "no longer holds".to_owned(),
        };
        plan.alerts
            .push((c.map(|c| c.0), resolved(&o, &how, now_ms, m)));
        plan.open.remove(k);
    }
}

impl Posture {
    /// Hand what changed of the picture to the plan: the users changed
    /// (all after a refresh, which replaces the table), the rest when it
    /// changed.
    fn persist(&mut self, plan: &mut Plan) {
        let Some(m) = &self.model else {
            return;
        };
        if std::mem::take(&mut self.header_dirty) {
            plan.header = encode(m);
        }
        plan.clear_users = std::mem::take(&mut self.clear);
        for name in std::mem::take(&mut self.dirty) {
            match m.users.get(&name) {
                Some(u) => plan.users.put(name, u.clone()),
                None => plan.users.remove(name),
            }
        }
        self.unwritten_since = None;
    }
}

fn encode<T: Serialize>(v: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(v)
        .map_err(|e| tracing::warn!("posture: state not encodable: {e}"))
        .ok()
}

/// What a fact did to the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    None,
    /// Nothing: a newer event changed the same aspect.
    Older,
    /// Nothing: the picture holds `max_users` users.
    Full,
    /// A credential's last use moved.
    Use,
    /// IAM changed.
    Iam,
}

/// Is what `kind` changes read live by a refresh (policies, keys, users,
/// the password policy: their `List`/`Get` calls), rather than from the
/// credential report, which may be hours old (MFA, console passwords, last
/// uses)? A live part is the truth as of the refresh's read: no event
/// older than that changes it, replayed or late, forged or not.
fn live(kind: FactKind) -> bool {
    matches!(
        kind,
        FactKind::UserPolicyAdded
            | FactKind::UserPolicyRemoved
            | FactKind::PasswordPolicySet
            | FactKind::PasswordPolicyDeleted
            | FactKind::KeyCreated
            | FactKind::KeyDeleted
            | FactKind::KeyStatus
            | FactKind::UserCreated
            | FactKind::UserDeleted
    )
}

/// The order facts are applied in: by time, and within one second (event
/// times are whole seconds; a script creates a user and attaches a policy
/// in the same one) a user created before, and deleted after, the rest.
fn order(f: &Fact) -> (i64, u8) {
    let rank = match f.kind {
        FactKind::UserCreated => 0,
        FactKind::UserDeleted => 2,
        _ => 1,
    };
    (f.time_ms, rank)
}

/// The user a fact's `ACCOUNT/USER` subject names.
fn user_of(f: &Fact) -> &str {
    f.subject.split_once('/').map_or("", |(_, u)| u)
}

/// The user whose row a fact changes (none: root's or the account's,
/// which are the picture's header).
fn touched_user(m: &Model, f: &Fact) -> Option<String> {
    match f.kind {
        FactKind::KeyUsed | FactKind::KeyStatus | FactKind::KeyDeleted => {
            m.key_owner(&f.subject).map(str::to_owned)
        }
        FactKind::KeyCreated if f.root && f.user.is_none() => None,
        FactKind::KeyCreated => f.user.clone(),
        FactKind::ConsoleLogin => m
            .users
            .iter()
            .find(|(_, u)| u.arn == f.subject)
            .map(|(n, _)| n.clone()),
        FactKind::PasswordPolicySet | FactKind::PasswordPolicyDeleted | FactKind::RoleAssumed => {
            None
        }
        _ if user_of(f) == "<root_account>" => None,
        _ => Some(user_of(f).to_owned()),
    }
}

/// Whose finding a fact may change: the user's ARN, `root`, `account`.
fn principal_of(m: &Model, f: &Fact) -> Option<String> {
    match f.kind {
        FactKind::PasswordPolicySet | FactKind::PasswordPolicyDeleted => Some("account".into()),
        FactKind::KeyUsed | FactKind::KeyStatus | FactKind::KeyDeleted | FactKind::KeyCreated => {
            if f.kind == FactKind::KeyCreated && f.root && f.user.is_none() {
                return Some("root".into());
            }
            m.key_owner(&f.subject)
                .or(f.user.as_deref())
                .and_then(|u| m.users.get(u))
                .map(|u| u.arn.clone())
        }
        FactKind::ConsoleLogin => Some(f.subject.clone()),
        FactKind::UserCreated => f.user.clone(),
        _ if user_of(f) == "<root_account>" => Some("root".into()),
        _ => m.users.get(user_of(f)).map(|u| u.arn.clone()),
    }
}

/// The aspect of the picture a change of IAM concerns: the user it
/// belongs to (none: root's and the account's part) and which of theirs.
fn aspect(m: &Model, f: &Fact) -> Option<(Option<String>, String)> {
    let user = || Some(user_of(f).to_owned());
    Some(match f.kind {
        FactKind::KeyCreated if f.root && f.user.is_none() => (None, "root_keys".into()),
        FactKind::KeyCreated | FactKind::KeyDeleted | FactKind::KeyStatus => {
            (touched_user(m, f), format!("key:{}", f.subject))
        }
        FactKind::UserPolicyAdded | FactKind::UserPolicyRemoved => {
            let inline = f.user.as_deref().is_some_and(|p| p.starts_with("inline:"));
            (user(), if inline { "inline" } else { "attached" }.into())
        }
        FactKind::MfaEnabled | FactKind::MfaDisabled if user_of(f) == "<root_account>" => {
            (None, "root_mfa".into())
        }
        FactKind::MfaEnabled | FactKind::MfaDisabled => (user(), "mfa".into()),
        FactKind::PasswordSet | FactKind::PasswordRemoved => (user(), "password".into()),
        FactKind::PasswordPolicySet | FactKind::PasswordPolicyDeleted => (None, "policy".into()),
        _ => return None,
    })
}

/// Aspect times kept per user (the oldest go first).
const MAX_ASPECTS: usize = 16;

/// Change the picture by one fact, unless an event newer than it already
/// changed the same aspect (files arrive out of order; CloudTrail
/// delivers late).
fn apply(m: &mut Model, f: &Fact, max_users: usize) -> Change {
    let aspect = aspect(m, f);
    if let Some((user, a)) = &aspect {
        let last = match user {
            Some(u) => m.users.get(u).and_then(|u| u.changed.get(a)).copied(),
            None => m.changed.get(a).copied(),
        };
        if last.is_some_and(|l| f.time_ms < l) {
            return Change::Older;
        }
    }
    let change = apply_change(m, f, max_users);
    if change == Change::Iam
        && let Some((user, a)) = aspect
    {
        let map = match user {
            Some(u) => m.users.get_mut(&u).map(|u| &mut u.changed),
            None => Some(&mut m.changed),
        };
        if let Some(map) = map {
            map.insert(a, f.time_ms);
            while map.len() > MAX_ASPECTS {
                let oldest = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => map.remove(&k),
                    None => break,
                };
            }
        }
    }
    change
}

fn apply_change(m: &mut Model, f: &Fact, max_users: usize) -> Change {
    let t = f.time_ms;
    match f.kind {
        FactKind::KeyUsed => {
            let Some(owner) = m.key_owner(&f.subject).map(str::to_owned) else {
                return Change::None;
            };
            let Some(k) = m
                .users
                .get_mut(&owner)
                .and_then(|u| u.keys.iter_mut().find(|k| k.id == f.subject))
            else {
                return Change::None;
            };
            if k.last_used_ms.is_some_and(|l| l >= t) {
                return Change::None;
            }
            k.last_used_ms = Some(t);
            Change::Use
        }
        FactKind::ConsoleLogin => {
            if f.root {
                return Change::None;
            }
            let Some(u) = m.users.values_mut().find(|u| u.arn == f.subject) else {
                return Change::None;
            };
            if u.password_last_used_ms.is_some_and(|l| l >= t) {
                return Change::None;
            }
            u.password_last_used_ms = Some(t);
            Change::Use
        }
        FactKind::KeyCreated => {
            if f.root && f.user.is_none() {
                m.root_keys = Some(true);
                return Change::Iam;
            }
            let Some(u) = f.user.as_deref().and_then(|u| m.users.get_mut(u)) else {
                return Change::None;
            };
            if u.keys.len() >= MAX_USER_KEYS || u.keys.iter().any(|k| k.id == f.subject) {
                return Change::None;
            }
            u.keys.push(KeyInfo {
                id: f.subject.clone(),
                active: true,
                created_ms: Some(t),
                last_used_ms: None,
            });
            Change::Iam
        }
        FactKind::KeyDeleted | FactKind::KeyStatus => {
            let Some(owner) = m.key_owner(&f.subject).map(str::to_owned) else {
                return Change::None;
            };
            let Some(u) = m.users.get_mut(&owner) else {
                return Change::None;
            };
            if f.kind == FactKind::KeyDeleted {
                u.keys.retain(|k| k.id != f.subject);
            } else if let Some(k) = u.keys.iter_mut().find(|k| k.id == f.subject) {
                k.active = f.active.unwrap_or(k.active);
            }
            Change::Iam
        }
        FactKind::UserPolicyAdded | FactKind::UserPolicyRemoved => {
            let (Some(u), Some(policy)) = (m.users.get_mut(user_of(f)), f.user.as_deref()) else {
                return Change::None;
            };
            let (list, name) = match policy.strip_prefix("inline:") {
                Some(n) => (&mut u.inline, n),
                None => (&mut u.attached, policy),
            };
            list.retain(|p| p != name);
            if f.kind == FactKind::UserPolicyAdded && list.len() < MAX_USER_POLICIES {
                list.push(name.to_owned());
            }
            Change::Iam
        }
        FactKind::MfaEnabled | FactKind::MfaDisabled => {
            let on = f.kind == FactKind::MfaEnabled;
            if user_of(f) == "<root_account>" {
                m.root_mfa = Some(on);
                return Change::Iam;
            }
            let Some(u) = m.users.get_mut(user_of(f)) else {
                return Change::None;
            };
            // A user may have several devices: one deactivated may leave
            // another (the next refresh says); the picture errs on alarm.
            u.mfa = on;
            Change::Iam
        }
        FactKind::PasswordSet | FactKind::PasswordRemoved => {
            let Some(u) = m.users.get_mut(user_of(f)) else {
                return Change::None;
            };
            u.password = f.kind == FactKind::PasswordSet;
            if u.password {
                u.password_changed_ms = Some(t);
            }
            Change::Iam
        }
        FactKind::UserCreated => {
            let name = user_of(f).to_owned();
            if m.users.contains_key(&name) {
                return Change::None;
            }
            if m.users.len() >= max_users {
                return Change::Full;
            }
            let Some(arn) = f.user.clone() else {
                return Change::None;
            };
            m.users.insert(
                name,
                UserInfo {
                    arn,
                    created_ms: Some(t),
                    ..UserInfo::default()
                },
            );
            Change::Iam
        }
        FactKind::UserDeleted => {
            if m.users.remove(user_of(f)).is_none() {
                return Change::None;
            }
            Change::Iam
        }
        FactKind::PasswordPolicySet => {
            m.policy = f.policy.as_deref().cloned();
            Change::Iam
        }
        FactKind::PasswordPolicyDeleted => {
            m.policy = None;
            Change::Iam
        }
        FactKind::RoleAssumed => Change::None,
    }
}

/// What a refresh teaches the inventory: each named key's owner, creation
/// and last use; each console user's last sign-in.
fn seeds(m: &Model) -> Vec<Seed> {
    let mut out = Vec::new();
    for u in m.users.values() {
        for k in u.keys.iter().filter(|k| k.id.starts_with("AKIA")) {
            out.push(Seed::Key {
                id: k.id.clone(),
                owner: u.arn.clone(),
                account: m.account.clone(),
                created_ms: k.created_ms,
                last_used_ms: k.last_used_ms,
            });
        }
        if u.password
            && let Some(l) = u.password_last_used_ms
        {
            out.push(Seed::User {
                arn: u.arn.clone(),
                last_login_ms: l,
            });
        }
    }
    out
}

fn title(finding: &str) -> &'static str {
    match finding {
        "root_mfa_disabled" => "Root user without MFA",
        "root_access_key_present" => "Root user has an access key",
        "password_policy_weak" => "Password policy below CIS",
        "console_user_without_mfa" => "Console user without MFA",
        "access_key_not_rotated" => "Access key not rotated",
        "credential_unused" => "Credential unused",
        "user_with_direct_policy" => "Policy attached directly to a user",
        "user_with_inline_policy" => "Inline policy on a user",
        _ => "Posture finding",
    }
}

fn base(meta: RuleMeta, m: &Model, principal: &str, id: String) -> Alert {
    let mut a = Alert::of_rule(&Arc::new(meta), "posture".into(), 0);
    a.event_id = Some(id);
    a.account = m.account.clone();
    a.principal = Some(principal.to_owned());
    a
}

/// The alert of a finding that appeared; `cause` the event that made it.
fn appeared(f: &Finding, o: &Open, cause: Option<&Fact>, m: &Model) -> Alert {
    let detail = match cause {
        Some(c) => format!(
            "{} (after {} by {} at {})",
            f.evidence,
            c.event_name.as_deref().unwrap_or("-"),
            c.principal.as_deref().unwrap_or("-"),
            c.event_time.as_deref().unwrap_or("-"),
        ),
        None => f.evidence.clone(),
    };
    let meta = RuleMeta::of_stage(StageRule {
        stage: "posture",
        name: f.finding,
        title: title(f.finding),
        level: f.level,
        tags: ["attack.persistence", "attack.t1078.004"],
        reference: "https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html",
        runbook: f.fix,
        detail: &detail,
    });
    let mut a = base(
        meta,
        m,
        &f.principal,
        format!("posture:{}:{}", f.key(), o.since_ms),
    );
    if let Some(c) = cause {
        a.event_name = c.event_name.clone();
        a.event_source = c.event_source.clone();
        a.event_time = c.event_time.clone();
        a.region = c.region.clone();
        a.source_ip = c.source_ip.clone();
        a.user_agent = c.user_agent.clone();
    }
    a
}

/// The record of a finding that cleared.
fn resolved(o: &Open, how: &str, now_ms: i64, m: &Model) -> Alert {
    let detail = format!(
        "{} for {}{}: {how} (open since {}; was: {})",
        o.finding,
        o.principal,
        if o.credential.is_empty() {
            String::new()
        } else {
            format!(" ({})", o.credential)
        },
        crate::time::iso_time(o.since_ms),
        o.evidence,
    );
    let meta = RuleMeta::of_stage(StageRule {
        stage: "posture",
        name: "posture_finding_resolved",
        title: "Posture finding resolved",
        level: Level::Informational,
        tags: ["attack.persistence", "attack.t1078.004"],
        reference: "https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html",
        runbook: "Nothing to do: the finding no longer holds. Kept as the record of when \
                  and how it cleared.",
        detail: &detail,
    });
    base(
        meta,
        m,
        &o.principal,
        format!(
            "posture-resolved:{}|{}|{}:{now_ms}",
            o.finding, o.principal, o.credential
        ),
    )
}

/// The refresh task: read, hand over, sleep; forever (until the runtime
/// is dropped at exit, or the engine is gone).
async fn refresh_forever(
    config: PostureConfig,
    first: Duration,
    tx: std::sync::mpsc::Sender<Refreshed>,
) {
    tokio::time::sleep(first).await;
    // IAM is global: its endpoint lives in us-east-1.
    let shared = crate::source::aws_config_for("us-east-1", config.endpoint_url.as_deref()).await;
    let client = aws_sdk_iam::Client::new(&shared);
    let interval = Duration::from_secs(config.interval_secs.max(1));
    // After a failure, sooner than the interval: a minute, doubling.
    let mut retry = Duration::from_secs(60);
    loop {
        let read_ms = crate::checkpoint::now_ms() as i64;
        let answers = match tokio::time::timeout(
            Duration::from_secs(config.timeout_secs.max(1)),
            super::iam::read(&client),
        )
        .await
        {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", config.timeout_secs)),
        };
        let wait = if answers.is_ok() {
            retry = Duration::from_secs(60);
            interval
        } else {
            let w = retry.min(interval);
            retry = retry.saturating_mul(2);
            w
        };
        if tx.send(Refreshed { answers, read_ms }).is_err() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::iam::PasswordPolicy;

    const ACCOUNT: &str = "123456789012";
    use crate::posture::iam::REPORT_HEAD as HEAD;
    const BOB_KEY: &str = "AKIABOB0000000000001";
    const CAROL_KEY: &str = "AKIACAROL00000000001";

    fn ms(t: &str) -> i64 {
        crate::time::parse_event_time(t).unwrap()
    }

    fn arn(u: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT}:user/{u}")
    }

    /// The account as IAM tells it: alice signs in without MFA, bob's key
    /// is 151 days old and his policy attached directly, carol's key
    /// unused for 57 days; root has MFA; the password policy is strong.
    /// The report was generated two hours before the read.
    fn answers() -> Answers {
        let row =
            |u: &str, rest: &str| format!("{u},{},2025-12-01T00:00:00+00:00,{rest}\n", arn(u));
        let report = format!(
            "{HEAD}<root_account>,arn:aws:iam::{ACCOUNT}:root,2020-01-01T00:00:00+00:00,not_supported,N/A,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n{}{}{}",
            row(
                "alice",
                "true,2026-05-30T00:00:00+00:00,2026-05-01T00:00:00+00:00,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"
            ),
            row(
                "bob",
                "false,N/A,N/A,N/A,false,true,2026-01-01T00:00:00+00:00,2026-05-31T00:00:00+00:00,us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"
            ),
            row(
                "carol",
                "false,N/A,N/A,N/A,false,true,2026-04-01T00:00:00+00:00,2026-04-05T00:00:00+00:00,us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"
            ),
        );
        let mut a = Answers {
            report,
            report_ms: Some(ms("2026-05-31T22:00:00Z")),
            policy: Some(PasswordPolicy::cis()),
            ..Answers::default()
        };
        a.policies.insert(
            "bob".into(),
            (
                vec![format!("arn:aws:iam::{ACCOUNT}:policy/ReadS3")],
                vec![],
            ),
        );
        a.keys.insert(
            "bob".into(),
            vec![(BOB_KEY.into(), Some(ms("2026-01-01T00:00:00Z")), true)],
        );
        a.keys.insert(
            "carol".into(),
            vec![(CAROL_KEY.into(), Some(ms("2026-04-01T00:00:00Z")), true)],
        );
        a
    }

    fn posture() -> (Posture, std::sync::mpsc::Sender<Refreshed>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = Posture::new(
            PostureConfig {
                enabled: true,
                max_users: 5,
                ..PostureConfig::default()
            },
            Thresholds {
                unused_days: 45,
                rotation_days: 90,
            },
            None,
            BTreeMap::new(),
            rx,
            true,
        );
        (p, tx)
    }

    /// Facts of one object's records, each tagged with object `i`.
    fn facts(i: usize, records: &str) -> Vec<(usize, Fact)> {
        let doc = format!(r#"{{"Records":[{records}]}}"#);
        let limits = crate::pipeline::Limits {
            facts: true,
            ..crate::pipeline::Limits::default()
        };
        let report = crate::pipeline::process_object(
            "t.json",
            doc.as_bytes(),
            &crate::rules::RuleSet::builtin(),
            limits,
        );
        let mut out = Vec::new();
        for (a, b) in report.facts.into_pairs() {
            if a != b {
                out.push((i, a));
            }
            out.push((i, b));
        }
        out
    }

    fn event(time: &str, name: &str, account: &str, extra: &str) -> String {
        format!(
            r#"{{"eventTime":"{time}","eventName":"{name}","eventID":"ev-{name}-{time}","recipientAccountId":"{account}",
               "userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::{account}:user/admin","accountId":"{account}"}}{extra}}}"#
        )
    }

    fn names(plan: &Plan) -> Vec<(Option<usize>, String, String)> {
        let mut v: Vec<_> = plan
            .alerts
            .iter()
            .map(|(i, a)| {
                (
                    *i,
                    a.rule_name.clone().unwrap_or_default(),
                    a.principal.clone().unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// The whole life of findings: an event seen before the first refresh
    /// but after the report was generated is applied over it; a refresh
    /// raises what it finds once; the stream clears and raises findings at
    /// once, each alert on the object whose event did it; another
    /// account's events and events dated 2099 change nothing.
    #[test]
    fn findings_appear_once_and_clear_with_the_stream() {
        let (mut p, tx) = posture();
        let now = ms("2026-06-01T00:00:00Z") as u64;
        // Alice enabled MFA after the report was generated: the report
        // still says no MFA.
        let early = facts(
            0,
            &event(
                "2026-05-31T23:00:00Z",
                "EnableMFADevice",
                ACCOUNT,
                r#","requestParameters":{"userName":"alice","serialNumber":"arn:aws:iam::123456789012:mfa/alice"}"#,
            ),
        );
        assert!(p.plan(early, None, now).is_empty(), "no picture yet");
        tx.send(Refreshed {
            answers: Ok(answers()),
            read_ms: now as i64,
        })
        .unwrap();
        let first = p.plan(Vec::new(), None, now);
        assert_eq!(first.refreshed, Some((true, now as i64)));
        assert_eq!(
            names(&first),
            vec![
                (None, "access_key_not_rotated".into(), arn("bob")),
                (None, "credential_unused".into(), arn("carol")),
                (None, "user_with_direct_policy".into(), arn("bob")),
            ]
        );
        // The refresh taught the inventory both keys' ages.
        assert!(
            first
                .seeds
                .iter()
                .any(|s| matches!(s, Seed::Key { id, created_ms, .. }
            if id == BOB_KEY && *created_ms == Some(ms("2026-01-01T00:00:00Z"))))
        );
        // The same refresh again: nothing new.
        let again = p.plan(
            Vec::new(),
            Some(Refreshed {
                answers: Ok(answers()),
                read_ms: now as i64,
            }),
            now,
        );
        assert!(again.alerts.is_empty(), "{:?}", names(&again));

        let t = "2026-06-01T00:10:00Z";
        let mut stream = facts(
            0,
            &[
                event(t, "DetachUserPolicy", ACCOUNT, r#","requestParameters":{"userName":"bob","policyArn":"arn:aws:iam::123456789012:policy/ReadS3"}"#),
                event(t, "DeactivateMFADevice", ACCOUNT, r#","requestParameters":{"userName":"alice","serialNumber":"x"}"#),
                // Another account's user of the same name: not this picture.
                event(t, "AttachUserPolicy", "999999999999", r#","requestParameters":{"userName":"alice","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#),
                // Dated 2099: left out.
                event("2099-01-01T00:00:00Z", "DeleteAccessKey", ACCOUNT, &format!(r#","requestParameters":{{"userName":"bob","accessKeyId":"{BOB_KEY}"}}"#)),
            ]
            .join(","),
        );
        stream.extend(facts(
            1,
            &[
                // Carol's key used: no longer unused.
                format!(r#"{{"eventTime":"{t}","eventName":"GetObject","recipientAccountId":"{ACCOUNT}","userIdentity":{{"type":"IAMUser","arn":"{}","accessKeyId":"{CAROL_KEY}"}}}}"#, arn("carol")),
                event(t, "AttachUserPolicy", ACCOUNT, r#","requestParameters":{"userName":"carol","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#),
                event(t, "UpdateAccountPasswordPolicy", ACCOUNT, r#","requestParameters":{"minimumPasswordLength":8,"requireSymbols":true}"#),
                format!(r#"{{"eventTime":"{t}","eventName":"CreateAccessKey","recipientAccountId":"{ACCOUNT}","userIdentity":{{"type":"Root","arn":"arn:aws:iam::{ACCOUNT}:root","accountId":"{ACCOUNT}"}},"responseElements":{{"accessKey":{{"accessKeyId":"AKIAROOT000000000001","status":"Active"}}}}}}"#),
            ]
            .join(","),
        ));
        let later = now + 600_000;
        let step = p.plan(stream, None, later);
        assert_eq!(
            names(&step),
            vec![
                (Some(0), "console_user_without_mfa".into(), arn("alice")),
                (Some(0), "posture_finding_resolved".into(), arn("bob")),
                (Some(1), "password_policy_weak".into(), "account".into()),
                (Some(1), "posture_finding_resolved".into(), arn("carol")),
                (Some(1), "root_access_key_present".into(), "root".into()),
                (Some(1), "user_with_direct_policy".into(), arn("carol")),
            ]
        );
        let text = |name: &str, who: &str| {
            step.alerts
                .iter()
                .find(|(_, a)| {
                    a.rule_name.as_deref() == Some(name) && a.principal.as_deref() == Some(who)
                })
                .map(|(_, a)| a.rule.description.clone().unwrap_or_default())
                .unwrap()
        };
        let bob = text("posture_finding_resolved", &arn("bob"));
        assert!(
            bob.contains("user_with_direct_policy") && bob.contains("cleared by DetachUserPolicy"),
            "{bob}"
        );
        let carol = text("posture_finding_resolved", &arn("carol"));
        assert!(
            carol.contains("credential_unused") && carol.contains("cleared by GetObject"),
            "{carol}"
        );
        let weak = text("password_policy_weak", "account");
        assert!(
            weak.contains("8 < 14") && weak.contains("numbers not required"),
            "{weak}"
        );
        // Bob's key is still there (the 2099 deletion was left out).
        assert!(
            p.open.keys().any(|k| k.contains(BOB_KEY)),
            "{:?}",
            p.open.keys()
        );
        let counts = p.counts_if_changed().expect("the findings changed");
        assert!(p.counts_if_changed().is_none(), "counted once per change");
        assert_eq!(counts["user_with_direct_policy"], 1);
        assert_eq!(counts["credential_unused"], 0);
        assert_eq!(counts["root_access_key_present"], 1);
        // What changed is written with the step.
        assert!(step.header.is_some() && step.open.keys().count() == 6);
        assert_eq!(
            step.users.keys().map(String::as_str).collect::<Vec<_>>(),
            ["alice", "bob", "carol"]
        );
    }

    /// What the plans wrote is what a restart reads back: the picture
    /// (header and users) and the open findings, so a restart neither
    /// repeats an alert nor forgets one; a restart within the interval
    /// does not ask IAM at once.
    #[test]
    fn a_restart_reads_back_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let (mut p, tx) = posture();
        let now = crate::checkpoint::now_ms();
        tx.send(Refreshed {
            answers: Ok(answers()),
            read_ms: now as i64,
        })
        .unwrap();
        let plan = p.plan(Vec::new(), None, now);
        store.commit_batch(&[], &[], |txn| plan.apply(txn)).unwrap();
        let t = crate::time::iso_time(now as i64 + 1000);
        let plan = p.plan(
            facts(
                0,
                &[
                    event(
                        &t,
                        "DeleteUser",
                        ACCOUNT,
                        r#","requestParameters":{"userName":"carol"}"#,
                    ),
                    event(
                        &t,
                        "PutUserPolicy",
                        ACCOUNT,
                        r#","requestParameters":{"userName":"alice","policyName":"p"}"#,
                    ),
                ]
                .join(","),
            ),
            None,
            now + 2000,
        );
        // Carol's key, old and unused by now: two findings, two records.
        assert_eq!(
            names(&plan),
            vec![
                (Some(0), "posture_finding_resolved".into(), arn("carol")),
                (Some(0), "posture_finding_resolved".into(), arn("carol")),
                (Some(0), "user_with_inline_policy".into(), arn("alice")),
            ]
        );
        store.commit_batch(&[], &[], |txn| plan.apply(txn)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let again = Posture::start(p.config.clone(), p.thresholds, &store, &rt).unwrap();
        assert_eq!(again.model, p.model);
        assert!(!again.model.as_ref().unwrap().users.contains_key("carol"));
        assert_eq!(again.open, p.open);
        assert!(!again.first_due, "refreshed a moment ago");
    }

    /// `--once` waits for the refresh due at start only while it has not
    /// come: one that a step already took is not waited for again (it
    /// would wait the whole timeout for a refresh due hours later).
    #[test]
    fn once_does_not_wait_for_a_refresh_already_taken() {
        let (mut p, tx) = posture();
        tx.send(Refreshed {
            answers: Ok(answers()),
            read_ms: 0,
        })
        .unwrap();
        p.plan(Vec::new(), None, 0);
        let started = std::time::Instant::now();
        assert!(p.wait_first(&|| false).is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
        // And a stop ends the wait for one still due.
        let (mut p, _tx) = posture();
        assert!(p.wait_first(&|| true).is_none());
    }

    /// What a forger or an unlucky delivery cannot do: a change dated
    /// hours ahead is not applied; a late or replayed change of a part
    /// the refresh read live (policies) cannot undo what the API said; a
    /// file delivered twice, or an older change arriving after a newer,
    /// changes nothing; each finding names the event that made it.
    #[test]
    fn forged_late_and_repeated_changes_do_not_move_the_picture() {
        let (mut p, tx) = posture();
        let now = ms("2026-06-01T00:00:00Z") as u64;
        tx.send(Refreshed {
            answers: Ok(answers()),
            read_ms: now as i64,
        })
        .unwrap();
        p.plan(Vec::new(), None, now);
        let detach_bob = r#","requestParameters":{"userName":"bob","policyArn":"arn:aws:iam::123456789012:policy/ReadS3"}"#;
        // Dated 20 hours ahead: left out; bob keeps his finding.
        let step = p.plan(
            facts(
                0,
                &event(
                    "2026-06-01T20:00:00Z",
                    "DetachUserPolicy",
                    ACCOUNT,
                    detach_bob,
                ),
            ),
            None,
            now + 1000,
        );
        assert!(step.alerts.is_empty(), "{:?}", names(&step));
        assert_eq!(step.dropped.get("future"), Some(&1));
        // Dated before the refresh read the policies live: the API said
        // attached after it, so it is not applied, late or not.
        let step = p.plan(
            facts(
                0,
                &event(
                    "2026-05-31T23:59:00Z",
                    "DetachUserPolicy",
                    ACCOUNT,
                    detach_bob,
                ),
            ),
            None,
            now + 2000,
        );
        assert!(step.alerts.is_empty(), "{:?}", names(&step));
        // Alice loses MFA, then regains it; the first file comes again,
        // and an older deactivation arrives last: nothing reopens.
        let deactivate = event(
            "2026-06-01T00:01:00Z",
            "DeactivateMFADevice",
            ACCOUNT,
            r#","requestParameters":{"userName":"alice","serialNumber":"x"}"#,
        );
        let step = p.plan(
            facts(
                0,
                &[
                    event("2026-06-01T00:00:30Z", "EnableMFADevice", ACCOUNT, r#","requestParameters":{"userName":"alice","serialNumber":"x"}"#),
                    event("2026-06-01T00:00:40Z", "CreateLoginProfile", ACCOUNT, r#","requestParameters":{"userName":"carol"}"#),
                    event("2026-06-01T00:00:40Z", "AttachUserPolicy", ACCOUNT, r#","requestParameters":{"userName":"carol","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#),
                ]
                .join(","),
            ),
            None,
            now + 3000,
        );
        let made = |name: &str| {
            step.alerts
                .iter()
                .find(|(_, a)| a.rule_name.as_deref() == Some(name))
                .and_then(|(_, a)| a.event_name.clone())
        };
        assert_eq!(
            made("console_user_without_mfa").as_deref(),
            Some("CreateLoginProfile")
        );
        assert_eq!(
            made("user_with_direct_policy").as_deref(),
            Some("AttachUserPolicy")
        );
        let step = p.plan(facts(1, &deactivate), None, now + 4000);
        assert_eq!(
            names(&step),
            vec![(Some(1), "console_user_without_mfa".into(), arn("alice"))]
        );
        let step = p.plan(
            facts(
                2,
                &event(
                    "2026-06-01T00:02:00Z",
                    "EnableMFADevice",
                    ACCOUNT,
                    r#","requestParameters":{"userName":"alice","serialNumber":"x"}"#,
                ),
            ),
            None,
            now + 5000,
        );
        assert_eq!(
            names(&step),
            vec![(Some(2), "posture_finding_resolved".into(), arn("alice"))]
        );
        let again = p.plan(facts(3, &deactivate), None, now + 6000);
        assert!(again.alerts.is_empty(), "{:?}", names(&again));
        assert_eq!(again.dropped.get("duplicate"), Some(&1));
        let older = p.plan(
            facts(
                4,
                &event(
                    "2026-06-01T00:01:30Z",
                    "DeactivateMFADevice",
                    ACCOUNT,
                    r#","requestParameters":{"userName":"alice","serialNumber":"y"}"#,
                ),
            ),
            None,
            now + 7000,
        );
        assert!(older.alerts.is_empty(), "{:?}", names(&older));
        assert_eq!(older.dropped.get("older"), Some(&1));
    }

    /// A flood of key uses in one object does not crowd out its change
    /// of IAM (each has its own cap); a list where a name belongs, or an
    /// event addressed to two accounts, is no change.
    #[test]
    fn a_flood_of_uses_does_not_hide_a_change() {
        let mut records: Vec<String> = (0..10_050)
            .map(|i| {
                format!(r#"{{"eventTime":"2026-06-01T00:10:00Z","eventName":"GetCallerIdentity","recipientAccountId":"{ACCOUNT}","userIdentity":{{"type":"IAMUser","accessKeyId":"AKIAFLOOD{i:011}"}}}}"#)
            })
            .collect();
        records.push(event("2026-06-01T00:10:01Z", "AttachUserPolicy", ACCOUNT, r#","requestParameters":{"userName":"vic","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#));
        records.push(event(
            "2026-06-01T00:10:01Z",
            "AttachUserPolicy",
            ACCOUNT,
            r#","requestParameters":{"userName":["carol"],"policyArn":"arn:x"}"#,
        ));
        records.push(format!(r#"{{"eventTime":"2026-06-01T00:10:01Z","eventName":"AttachUserPolicy","recipientAccountId":["999999999999","{ACCOUNT}"],"userIdentity":{{"type":"IAMUser","accountId":"{ACCOUNT}"}},"requestParameters":{{"userName":"carol","policyArn":"arn:y"}}}}"#));
        let got = facts(0, &records.join(","));
        let changes: Vec<&Fact> = got
            .iter()
            .map(|(_, f)| f)
            .filter(|f| f.kind == FactKind::UserPolicyAdded)
            .collect();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].subject, format!("{ACCOUNT}/vic"));
    }

    /// A crafted stream cannot grow the picture: users past `max_users`
    /// and keys past [`MAX_USER_KEYS`] per user are not added.
    #[test]
    fn a_crafted_stream_cannot_grow_the_picture() {
        let (mut p, tx) = posture();
        let now = ms("2026-06-01T00:00:00Z") as u64;
        tx.send(Refreshed {
            answers: Ok(answers()),
            read_ms: now as i64,
        })
        .unwrap();
        p.plan(Vec::new(), None, now);
        let t = "2026-06-01T00:10:00Z";
        let mut records: Vec<String> = (0..50)
            .map(|i| {
                event(t, "CreateUser", ACCOUNT, &format!(r#","requestParameters":{{"userName":"u{i}"}},"responseElements":{{"user":{{"arn":"arn:aws:iam::{ACCOUNT}:user/u{i}","userName":"u{i}"}}}}"#))
            })
            .collect();
        records.extend((0..20).map(|i| {
            event(t, "CreateAccessKey", ACCOUNT, &format!(r#","requestParameters":{{"userName":"bob"}},"responseElements":{{"accessKey":{{"accessKeyId":"AKIAFLOOD{i:011}","userName":"bob"}}}}"#))
        }));
        p.plan(facts(0, &records.join(",")), None, now + 600_000);
        let m = p.model.as_ref().unwrap();
        assert_eq!(m.users.len(), 5, "max_users");
        assert_eq!(m.users["bob"].keys.len(), MAX_USER_KEYS);
    }

    /// A refresh that fails keeps the picture and its findings, and says so.
    #[test]
    fn a_failed_refresh_keeps_the_picture() {
        let (mut p, tx) = posture();
        let now = ms("2026-06-01T00:00:00Z") as u64;
        tx.send(Refreshed {
            answers: Ok(answers()),
            read_ms: now as i64,
        })
        .unwrap();
        p.plan(Vec::new(), None, now);
        let open = p.open.len();
        let failed = p.plan(
            Vec::new(),
            Some(Refreshed {
                answers: Err("IAM GetCredentialReport: AccessDenied".into()),
                read_ms: now as i64 + 1,
            }),
            now + 1,
        );
        assert_eq!(failed.refreshed, Some((false, now as i64 + 1)));
        assert!(failed.alerts.is_empty());
        assert_eq!(p.open.len(), open);
    }
}
