//! Online validation: the daemon's half of log-file integrity.
//!
//! As CloudTrail's signed digests arrive (S3 polling lists the
//! `CloudTrail-Digest/` folders beside the logs; notifications name them),
//! each is checked (signature, place) and chained to the digest it names
//! as previous; every log file it lists is reconciled with what trailwatch
//! processed, by the SHA-256 of the uncompressed content taken as the
//! object was parsed ([`crate::pipeline::Limits::sha256`]):
//!
//! - listed and processed with the same hash: **verified**;
//! - processed with another hash: **altered** (the alerts raised from it
//!   came from content CloudTrail did not deliver);
//! - listed and not processed within `grace_secs`: **missing** (deleted
//!   before trailwatch could read it, or moved);
//! - a digest named as previous by a valid one and not seen within the
//!   grace: **missing digest** (deleted, as an attacker hiding an hour
//!   would); seen with another hash: **altered digest**;
//! - a digest whose signature does not verify: **invalid** (its list is
//!   not trusted);
//! - an account and region whose logs arrive with no digest at all for
//!   hours: **no digests** (validation off, or the digests go elsewhere),
//!   reported once.
//!
//! Each finding is an alert of a fixed, built-in kind ([`Kind`]), written
//! and delivered like a rule's (same outbox, same deduplication), and
//! counted in `trailwatch_integrity_total{check, outcome}`.
//!
//! State lives in the daemon's store, in tables of its own, written in the
//! same transaction as the objects it comes from: a crash replays both.
//! Only the engine writes them (one thread), so each step reads, decides,
//! and writes its plan at the commit. Entries are kept
//! [`RETENTION_MS`] after their last change; the store grows with the log
//! files of that window (about 200 bytes each).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::keys::PublicKeys;
use super::{DigestProblem, check_digest, parse_digest, sha256_hex};
use crate::alert::Alert;
use crate::checkpoint::{Overlay, StoreError};
use crate::rules::Level;
use crate::rules::RuleMeta;

/// `[integrity]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrityConfig {
    /// Validate CloudTrail digests as they arrive (S3 and SQS sources).
    /// Costs a SHA-256 of every log file's content (about as much CPU as
    /// inflating it) and a few hundred bytes of store per log file.
    pub enabled: bool,
    /// CloudTrail's public keys as `FINGERPRINT.der` files (PKCS#1 DER, as
    /// `ListPublicKeys` returns them). Without it the keys come from
    /// `ListPublicKeys` in each digest's region, cached.
    pub public_keys_dir: Option<PathBuf>,
    /// How long a log file (or digest) a valid digest names may take to be
    /// seen before it is reported missing. Covers polling, retries and a
    /// backlog; CloudTrail delivers a digest after the logs it lists.
    pub grace_secs: u64,
    /// Hours an account and region may deliver logs without a single
    /// digest before it is reported (once) as not validated; and how far
    /// (at least an hour) its log files may run past its newest digest
    /// before the digests are reported stopped.
    pub no_digest_hours: u64,
    /// How long after a log file is read a digest should list it, on top
    /// of the grace: CloudTrail writes each hour's digest after the hour.
    pub digest_delay_secs: u64,
    /// Days the S3 polling re-lists (its largest `lookback_days`), set by
    /// the daemon: a log file or digest older than the window is never
    /// listed, so it is not awaited. `None` (notifications only): no
    /// window.
    #[serde(skip)]
    pub window_days: Option<u64>,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        IntegrityConfig {
            enabled: false,
            public_keys_dir: None,
            grace_secs: 3600,
            no_digest_hours: 3,
            digest_delay_secs: 7200,
            window_days: None,
        }
    }
}

/// Every (check, outcome) label pair of `trailwatch_integrity_total`.
pub const OUTCOMES: [(&str, &str); 13] = [
    ("digest", "unchecked"),
    ("log", "verified"),
    ("log", "not_listed"),
    ("digest", "stopped"),
    ("log", "altered"),
    ("log", "missing"),
    ("log", "unverifiable"),
    ("digest", "valid"),
    ("digest", "invalid"),
    ("digest", "altered"),
    ("digest", "missing"),
    ("digest", "chain_start"),
    ("digest", "no_digests"),
];

/// Entries are forgotten this long after their last change.
pub const RETENTION_MS: u64 = 3 * 24 * 3_600_000;

const LOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("integrity_logs");
const DIGESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("integrity_digests");
/// (deadline ms, `l:`/`d:` + object): what is waited for, by when.
const DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("integrity_due");
/// Per account and region ([`place_key`]): log and digest sightings.
const PLACES: TableDefinition<&str, &[u8]> = TableDefinition::new("integrity_places");
/// Per trail (a digest's name without its time): when its last digest was
/// seen. A trail's first digest starts trailwatch's view of its chain.
const TRAILS: TableDefinition<&str, &[u8]> = TableDefinition::new("integrity_trails");

/// What is known of one log file (`bucket/key`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct LogEntry {
    /// SHA-256 (hex) of what trailwatch processed.
    seen: Option<String>,
    /// What a valid digest lists: (SHA-256 hex, the digest).
    listed: Option<(String, String)>,
    /// When it must be seen by (listed, not yet seen).
    due_ms: u64,
    /// Last change.
    at_ms: u64,
}

/// What is known of one digest (`bucket/key`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct DigestEntry {
    /// SHA-256 (hex) of its uncompressed content, once seen valid.
    seen: Option<String>,
    /// Named as previous by a valid digest: (SHA-256 hex it gives, that
    /// digest).
    expected: Option<(String, String)>,
    due_ms: u64,
    at_ms: u64,
}

/// One account and region.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Place {
    first_log_ms: u64,
    #[serde(default)]
    last_log_ms: u64,
    last_digest_ms: u64,
    /// The latest end time of a valid digest here (from its name).
    #[serde(default)]
    last_digest_end_ms: u64,
    /// "No digests" was reported (once).
    reported: bool,
    /// "Digests stopped" was reported since the last digest.
    #[serde(default)]
    stopped: bool,
    /// The earliest start of a valid digest here: log files delivered
    /// before it precede validation, and are not judged unlisted.
    #[serde(default)]
    covered_from_ms: Option<u64>,
    /// The hour (ms / 1 h) an invalid digest here was last alerted: one
    /// alert an hour, the rest counted (a flood of junk is one story).
    #[serde(default)]
    invalid_hour: Option<u64>,
}

/// The kinds of finding, each an alert of its own built-in "rule".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    LogAltered,
    LogMissing,
    DigestInvalid,
    DigestAltered,
    DigestMissing,
    NoDigests,
    DigestsStopped,
    LogNotListed,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::LogAltered => "integrity_log_altered",
            Kind::LogMissing => "integrity_log_missing",
            Kind::DigestInvalid => "integrity_digest_invalid",
            Kind::DigestAltered => "integrity_digest_altered",
            Kind::DigestMissing => "integrity_digest_missing",
            Kind::NoDigests => "integrity_no_digests",
            Kind::DigestsStopped => "integrity_digests_stopped",
            Kind::LogNotListed => "integrity_log_not_listed",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::LogAltered => "CloudTrail log file altered",
            Kind::LogMissing => "CloudTrail log file missing",
            Kind::DigestInvalid => "CloudTrail digest file invalid",
            Kind::DigestAltered => "CloudTrail digest file altered",
            Kind::DigestMissing => "CloudTrail digest file missing",
            Kind::NoDigests => "CloudTrail logs without digests",
            Kind::DigestsStopped => "CloudTrail digests stopped",
            Kind::LogNotListed => "CloudTrail log file listed by no digest",
        }
    }

    /// The metric's (check, outcome).
    pub fn outcome(self) -> (&'static str, &'static str) {
        match self {
            Kind::LogAltered => ("log", "altered"),
            Kind::LogMissing => ("log", "missing"),
            Kind::DigestInvalid => ("digest", "invalid"),
            Kind::DigestAltered => ("digest", "altered"),
            Kind::DigestMissing => ("digest", "missing"),
            Kind::NoDigests => ("digest", "no_digests"),
            Kind::DigestsStopped => ("digest", "stopped"),
            Kind::LogNotListed => ("log", "not_listed"),
        }
    }

    fn level(self) -> Level {
        match self {
            Kind::NoDigests => Level::Medium,
            Kind::DigestsStopped | Kind::LogNotListed => Level::High,
            _ => Level::Critical,
        }
    }

    fn runbook(self) -> &'static str {
        match self {
            Kind::LogAltered => {
                "Treat the alerts from this file as unproven: the content differs from what \
                 CloudTrail signed.\nCompare with the object's versions (S3 versioning) and \
                 find who wrote it (S3 data events, server access logs).\nRun `trailwatch \
                 verify` over the day."
            }
            Kind::LogMissing | Kind::DigestMissing => {
                "Look for DeleteObject on the trail's bucket (S3 data events, server access \
                 logs) and restore the version if versioning is on.\nWhat happened in the \
                 hour it covered is unknown: use the event history (LookupEvents) for \
                 management events.\nRun `trailwatch verify` over the day."
            }
            Kind::DigestInvalid | Kind::DigestAltered => {
                "A digest CloudTrail did not sign is in the bucket: someone with write \
                 access to it forged or replaced one.\nFind the writer (S3 data events, \
                 server access logs); run `trailwatch verify` over the day."
            }
            Kind::DigestsStopped => {
                "Check the trail (GetTrailStatus: logging, validation, latest digest delivery \
                 error) and the bucket for deleted digests (S3 data events, server access \
                 logs).\nWhile no digest arrives, deleted or edited log files go unseen: run \
                 `trailwatch verify` once they are back."
            }
            Kind::LogNotListed => {
                "The file was put there by someone other than CloudTrail, or its digest is \
                 missing or forged: treat the alerts from it as unproven.\nFind the writer \
                 (S3 data events, server access logs); run `trailwatch verify` over the day."
            }
            Kind::NoDigests => {
                "Turn on log file validation for the trail (`aws cloudtrail update-trail \
                 --enable-log-file-validation`), or point trailwatch at where its digests \
                 go. Without digests a deleted or edited log file goes unseen."
            }
        }
    }
}

/// A finding, ready to become an alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    /// `s3://bucket/key` of the object it is about.
    pub object: String,
    /// What was found, one line.
    pub detail: String,
    /// Told apart from the same finding on the same object before (a
    /// second stop of the digests): 0 for findings made once.
    pub instance: u64,
}

impl Finding {
    /// As an alert: its own rule metadata (the detail in the description),
    /// the account and region from the key, an id that makes the same
    /// finding one alert however often it is found again.
    pub fn alert(&self, now_ms: i64) -> Alert {
        let k = self.kind;
        let meta = Arc::new(RuleMeta::of_stage(crate::rules::StageRule {
            stage: "integrity",
            name: k.name(),
            title: k.title(),
            level: k.level(),
            tags: ["attack.defense-evasion", "attack.t1070"],
            reference: "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-validation-intro.html",
            runbook: k.runbook(),
            detail: &self.detail,
        }));
        let mut a = Alert::of_rule(&meta, self.object.clone(), 0);
        let (account, region) = place_of(&self.object);
        a.account = account;
        a.region = region;
        a.event_id = Some(if self.instance == 0 {
            format!("{}:{}", k.name(), self.object)
        } else {
            format!("{}:{}:{}", k.name(), self.object, self.instance)
        });
        a.event_name = Some(k.title().to_owned());
        a.event_source = Some("cloudtrail.amazonaws.com".into());
        a.event_time = Some(crate::time::iso_time(now_ms));
        a
    }
}

/// Account and region of a CloudTrail key
/// (`…AWSLogs/[o-…/]ACCOUNT/CloudTrail[-Digest]/REGION/…`).
fn place_of(object: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = object.split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if (*p == "CloudTrail" || *p == "CloudTrail-Digest") && i >= 1 && i + 1 < parts.len() {
            let account = parts[i - 1];
            if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
                return (Some(account.to_owned()), Some(parts[i + 1].to_owned()));
            }
        }
    }
    (None, None)
}

/// The folder of a CloudTrail key's account and region, digests folded
/// onto logs (`bucket/…/AWSLogs/ACCOUNT/CloudTrail/REGION`): where a
/// trail's logs and digests are counted together.
fn place_key(object: &str) -> Option<String> {
    let parts: Vec<&str> = object.split('/').collect();
    let i = parts
        .iter()
        .position(|p| *p == "CloudTrail" || *p == "CloudTrail-Digest")?;
    if i == 0 || i + 1 >= parts.len() {
        return None;
    }
    let mut out: Vec<&str> = parts[..=i + 1].to_vec();
    out[i] = "CloudTrail";
    Some(out.join("/"))
}

/// When a log file was delivered, as far as its key tells: the minute in
/// its name, else (a name CloudTrail never gives) the end of its day
/// folder (`…/REGION/YYYY/MM/DD/`), so it is judged once digests cover
/// the whole day.
fn delivered_ms(object: &str) -> Option<u64> {
    if let Some(t) = super::verify::log_key_ms(object) {
        return Some(t.max(0) as u64);
    }
    let parts: Vec<&str> = object.split('/').collect();
    let i = parts.iter().position(|p| *p == "CloudTrail")?;
    let day = parts.get(i + 2..i + 5)?.join("-");
    let days = crate::time::parse_date(&day)?;
    Some(((days + 1) * 86_400_000 - 16 * 60_000).max(0) as u64)
}

/// What the engine saw in one processed object.
pub enum Seen<'a> {
    /// A log file and the SHA-256 of its content as processed (`None`:
    /// it could not be hashed whole, over the size cap: seen, not
    /// verifiable).
    Log {
        bucket: &'a str,
        key: &'a str,
        sha256: Option<[u8; 32]>,
    },
    /// A digest, its bytes and signature metadata.
    Digest {
        bucket: &'a str,
        key: &'a str,
        fetched: &'a crate::source::Fetched,
    },
}

/// The validator: keys, configuration, and the store it keeps state in.
pub struct Online {
    config: IntegrityConfig,
    keys: PublicKeys,
    /// Keys come from `ListPublicKeys` (no directory given).
    fetch_keys: bool,
    /// When each region's keys were last asked for: a digest naming an
    /// unknown key asks again at most every [`KEY_REFRESH_MS`] (crafted
    /// digests must not turn into a request each).
    asked: BTreeMap<String, u64>,
    /// When the last sweep ran.
    swept_ms: u64,
    /// When keys were last asked for, any region.
    asked_any: u64,
}

const KEY_REFRESH_MS: u64 = 10 * 60_000;

/// What a log file that could not be hashed whole is recorded as.
const UNHASHED: &str = "unhashed";
/// How often due entries are looked at.
const SWEEP_MS: u64 = 30_000;

/// Read-then-write against the store: reads go through the overlay of
/// what this step already decided, writes wait for the commit.
pub struct Plan {
    logs: Overlay<LogEntry>,
    digests: Overlay<DigestEntry>,
    places: Overlay<Place>,
    due_add: BTreeSet<(u64, String)>,
    due_remove: BTreeSet<(u64, String)>,
    trails: Overlay<u64>,
    /// Findings, by the index of the object they belong to (`None`: the
    /// sweep's).
    pub findings: Vec<(Option<usize>, Finding)>,
    /// (check, outcome) counts to add once committed.
    pub counts: Vec<(&'static str, &'static str)>,
    /// Entries to forget (`prune`).
    forget: bool,
    now_ms: u64,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.digests.is_empty()
            && self.places.is_empty()
            && self.due_add.is_empty()
            && self.due_remove.is_empty()
            && self.findings.is_empty()
            && self.counts.is_empty()
            && !self.forget
    }

    /// Write what was decided, in the commit's transaction.
    pub fn apply(&self, txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        self.logs.apply(txn)?;
        self.digests.apply(txn)?;
        self.places.apply(txn)?;
        let mut due = txn.open_table(DUE)?;
        for (t, k) in &self.due_remove {
            due.remove((*t, k.as_str()))?;
        }
        for (t, k) in &self.due_add {
            due.insert((*t, k.as_str()), ())?;
        }
        self.trails.apply(txn)?;
        if self.forget {
            let before = self.now_ms.saturating_sub(RETENTION_MS);
            let mut logs = txn.open_table(LOGS)?;
            logs.retain(|_, v| {
                serde_json::from_slice::<LogEntry>(v).is_ok_and(|e| e.at_ms >= before)
            })?;
            let mut digests = txn.open_table(DIGESTS)?;
            digests.retain(|_, v| {
                serde_json::from_slice::<DigestEntry>(v).is_ok_and(|e| e.at_ms >= before)
            })?;
        }
        Ok(())
    }
}

impl Online {
    pub fn new(config: IntegrityConfig) -> Result<Online, super::keys::KeyError> {
        let (keys, fetch_keys) = match &config.public_keys_dir {
            Some(dir) => (PublicKeys::from_dir(dir)?, false),
            None => (PublicKeys::default(), true),
        };
        Ok(Online {
            config,
            keys,
            fetch_keys,
            asked: BTreeMap::new(),
            swept_ms: 0,
            asked_any: 0,
        })
    }

    /// The start of the oldest day the S3 polling lists now (ms), if it
    /// polls.
    fn window_start(&self, now: u64) -> Option<u64> {
        let days = self.config.window_days?;
        let today = now / 86_400_000;
        Some(today.saturating_sub(days.max(1) - 1) * 86_400_000)
    }

    /// Look at what is overdue at the next step, whenever it comes.
    pub fn sweep_next(&mut self) {
        self.swept_ms = 0;
    }

    /// Reconcile what a group of objects showed, and (at most every
    /// [`SWEEP_MS`]) what is overdue. `rt` serves `ListPublicKeys`.
    pub fn plan(
        &mut self,
        store: &crate::checkpoint::Store,
        rt: &tokio::runtime::Runtime,
        seen: &[(usize, Seen<'_>)],
        now_ms: u64,
    ) -> Result<Plan, StoreError> {
        self.plan_inner(store, rt, seen, now_ms)
            .map_err(|e| match e {
                Failed::Db(e) => store.error(e),
                Failed::Store(e) => e,
            })
    }

    fn plan_inner(
        &mut self,
        store: &crate::checkpoint::Store,
        rt: &tokio::runtime::Runtime,
        seen: &[(usize, Seen<'_>)],
        now_ms: u64,
    ) -> Result<Plan, Failed> {
        let read = store.database().begin_read().map_err(redb::Error::from)?;
        let mut plan = Plan {
            logs: Overlay::new(LOGS),
            digests: Overlay::new(DIGESTS),
            places: Overlay::new(PLACES),
            due_add: BTreeSet::new(),
            due_remove: BTreeSet::new(),
            trails: Overlay::new(TRAILS),
            findings: Vec::new(),
            counts: Vec::new(),
            forget: false,
            now_ms,
        };
        let mut r = Reader { read: &read, store };
        for (i, s) in seen {
            match s {
                Seen::Log {
                    bucket,
                    key,
                    sha256,
                } => self.log(&mut r, &mut plan, *i, bucket, key, sha256, now_ms)?,
                Seen::Digest {
                    bucket,
                    key,
                    fetched,
                } => self.digest(&mut r, &mut plan, rt, *i, bucket, key, fetched, now_ms)?,
            }
        }
        if now_ms >= self.swept_ms + SWEEP_MS {
            self.sweep(&mut r, &mut plan, now_ms)?;
            // Forgetting is a full pass: hourly.
            plan.forget = now_ms / 3_600_000 != self.swept_ms / 3_600_000;
            self.swept_ms = now_ms;
        }
        Ok(plan)
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        r: &mut Reader<'_>,
        plan: &mut Plan,
        i: usize,
        bucket: &str,
        key: &str,
        sha256: &Option<[u8; 32]>,
        now: u64,
    ) -> Result<(), Failed> {
        let object = format!("{bucket}/{key}");
        let hash = sha256.map_or_else(|| UNHASHED.to_owned(), |h| crate::alert::hex(&h));
        let mut e = r.log(plan, &object)?.unwrap_or_default();
        // Named for a time to come: CloudTrail never delivers ahead.
        if let Some(t) = super::verify::log_key_ms(key)
            && t > now as i64 + 3_600_000
        {
            plan.findings.push((
                Some(i),
                Finding {
                    kind: Kind::LogNotListed,
                    object: format!("s3://{object}"),
                    detail: format!(
                        "s3://{object}: named for {}, a time to come: not delivered by \
                         CloudTrail",
                        crate::time::iso_time(t)
                    ),
                    instance: 0,
                },
            ));
            e.seen = Some(hash);
            e.at_ms = now;
            plan.logs.put(object, e);
            return Ok(());
        }
        if let Some((want, digest)) = &e.listed {
            if hash == UNHASHED {
                plan.counts.push(("log", "unverifiable"));
            } else if *want == hash {
                plan.counts.push(("log", "verified"));
            } else {
                plan.findings.push((
                    Some(i),
                    Finding {
                        kind: Kind::LogAltered,
                        object: format!("s3://{object}"),
                        detail: format!(
                            "s3://{object}: trailwatch processed content with SHA-256 {hash}; \
                             the signed digest s3://{digest} lists {want}"
                        ),
                        instance: 0,
                    },
                ));
            }
            if e.due_ms > 0 {
                plan.due_remove.insert((e.due_ms, format!("l:{object}")));
                e.due_ms = 0;
            }
        } else if e.due_ms == 0 {
            // No digest listed it yet: one should within about two hours
            // (CloudTrail writes an hour's digest after the hour).
            e.due_ms = now + (self.config.grace_secs + self.config.digest_delay_secs) * 1000;
            plan.due_add.insert((e.due_ms, format!("n:{object}")));
        }
        e.seen = Some(hash);
        e.at_ms = now;
        plan.logs.put(object.clone(), e);
        if let Some(pk) = place_key(&object) {
            let mut p = r.place(plan, &pk)?.unwrap_or_default();
            if p.first_log_ms == 0 {
                p.first_log_ms = now;
            }
            // The newest delivery time by name (else now; never ahead of
            // now): compared with the digests' end times.
            let named = delivered_ms(key).unwrap_or(now).min(now);
            p.last_log_ms = p.last_log_ms.max(named);
            plan.places.put(pk, p);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn digest(
        &mut self,
        r: &mut Reader<'_>,
        plan: &mut Plan,
        rt: &tokio::runtime::Runtime,
        i: usize,
        bucket: &str,
        key: &str,
        fetched: &crate::source::Fetched,
        now: u64,
    ) -> Result<(), Failed> {
        let object = format!("{bucket}/{key}");
        let invalid = |r: &mut Reader<'_>, plan: &mut Plan, problem: &DigestProblem| {
            // One alert per place and hour; the rest counted (a thousand
            // junk objects are one story, not a thousand pages).
            let hour = now / 3_600_000;
            let place = place_key(&object);
            let mut p = match &place {
                Some(pk) => r.place(plan, pk)?.unwrap_or_default(),
                None => Place::default(),
            };
            if p.invalid_hour == Some(hour) {
                plan.counts.push(("digest", "invalid"));
                return Ok::<(), Failed>(());
            }
            p.invalid_hour = Some(hour);
            if let Some(pk) = place {
                plan.places.put(pk, p);
            }
            plan.findings.push((
                Some(i),
                Finding {
                    kind: Kind::DigestInvalid,
                    object: format!("s3://{object}"),
                    detail: format!(
                        "s3://{object}: {problem}; the log files it lists are not trusted \
                         (more invalid digests in this account and region within the hour \
                         are counted in trailwatch_integrity_total, not alerted)"
                    ),
                    instance: 0,
                },
            ));
            Ok(())
        };
        let parsed = if crate::pipeline::is_digest_name(key) {
            parse_digest(&fetched.bytes)
        } else {
            Err(DigestProblem::Format(
                "not named as CloudTrail names digests".into(),
            ))
        };
        let (d, inflated) = match parsed {
            Ok(x) => x,
            Err(p) => return invalid(r, plan, &p),
        };
        let sig = fetched.signature.as_deref().map(str::to_ascii_lowercase);
        let check = |keys: &PublicKeys| {
            check_digest(
                bucket,
                key,
                &d,
                &inflated,
                sig.as_deref(),
                fetched.signature_algorithm.as_deref(),
                keys,
            )
        };
        let mut checked = check(&self.keys);
        if matches!(checked, Err(DigestProblem::UnknownKey(_))) && self.fetch_keys {
            let region = place_of(&object).1.unwrap_or_default();
            let last = self.asked.get(&region).copied().unwrap_or(0);
            // Per region every 10 minutes, and across regions once a
            // minute: each ask may wait up to its timeout, and digests in
            // made-up region folders must not stall the engine.
            if (last == 0 || now >= last + KEY_REFRESH_MS) && now >= self.asked_any + 60_000 {
                self.asked.insert(region.clone(), now);
                self.asked_any = now;
                match rt.block_on(list_keys(&region, now)) {
                    Ok(k) => {
                        self.keys.merge(k);
                        checked = check(&self.keys);
                    }
                    Err(e) => {
                        // Not evidence of tampering; counted and logged.
                        tracing::warn!(digest = %crate::alert::jsonl::clean(Some(&object)), error = %e, "cannot fetch CloudTrail's public keys; digest not checked");
                        plan.counts.push(("digest", "unchecked"));
                        return Ok(());
                    }
                }
            } else if now < last + KEY_REFRESH_MS {
                // This region's keys are fresh: the fingerprint is unknown
                // (falls through to invalid).
            } else {
                plan.counts.push(("digest", "unchecked"));
                return Ok(());
            }
        }
        if let Err(p) = &checked {
            return invalid(r, plan, p);
        }
        plan.counts.push(("digest", "valid"));
        let hash = sha256_hex(&inflated);
        // A later digest named this one first: does it agree?
        let mut me = r.digest(plan, &object)?.unwrap_or_default();
        if let Some((want, by)) = &me.expected
            && !want.eq_ignore_ascii_case(&hash)
        {
            plan.findings.push((
                Some(i),
                Finding {
                    kind: Kind::DigestAltered,
                    object: format!("s3://{object}"),
                    detail: format!(
                        "s3://{object}: its content hashes to {hash}; the next digest \
                         s3://{by} vouches for {want}"
                    ),
                    instance: 0,
                },
            ));
        }
        if me.due_ms > 0 {
            plan.due_remove.insert((me.due_ms, format!("d:{object}")));
            me.due_ms = 0;
        }
        me.seen = Some(hash);
        me.at_ms = now;
        plan.digests.put(object.clone(), me);
        let trail = super::verify::trail_of(key);
        let first_of_trail = r.trail(plan, &trail)?.is_none();
        plan.trails.put(trail, now);
        // The chain: the previous digest, seen or awaited.
        match (&d.previous_digest_s3_bucket, &d.previous_digest_s3_object) {
            (Some(pb), Some(pk)) if !pk.is_empty() => {
                let prev = format!("{pb}/{pk}");
                let want = d
                    .previous_digest_hash_value
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let mut p = r.digest(plan, &prev)?.unwrap_or_default();
                match &p.seen {
                    Some(h) if *h != want => plan.findings.push((
                        Some(i),
                        Finding {
                            kind: Kind::DigestAltered,
                            object: format!("s3://{prev}"),
                            detail: format!(
                                "s3://{prev}: trailwatch read it with SHA-256 {h}; the next \
                                 digest s3://{object} vouches for {want}"
                            ),
                            instance: 0,
                        },
                    )),
                    Some(_) => {}
                    None => {
                        // The first digest of a trail trailwatch sees
                        // starts its view of the chain: what came before
                        // was never in reach (`trailwatch verify` walks
                        // it).
                        // So is a digest older than the days the polling
                        // lists: it is never read.
                        let listed = self.window_start(now).is_none_or(|w| {
                            super::key_end_ms(pk).is_none_or(|t| t.max(0) as u64 >= w)
                        });
                        if !first_of_trail && listed && p.expected.is_none() {
                            p.expected = Some((want, object.clone()));
                            p.due_ms = now + self.config.grace_secs * 1000;
                            plan.due_add.insert((p.due_ms, format!("d:{prev}")));
                        }
                    }
                }
                p.at_ms = now;
                plan.digests.put(prev, p);
            }
            _ => plan.counts.push(("digest", "chain_start")),
        }
        if let Some(pk) = place_key(&object) {
            let mut p = r.place(plan, &pk)?.unwrap_or_default();
            p.last_digest_ms = now;
            p.stopped = false;
            let end = super::key_end_ms(key).unwrap_or(0).max(0) as u64;
            p.last_digest_end_ms = p.last_digest_end_ms.max(end);
            if let Some(start) = crate::time::parse_event_time(&d.digest_start_time) {
                let start = start.max(0) as u64;
                p.covered_from_ms = Some(p.covered_from_ms.map_or(start, |c| c.min(start)));
            }
            plan.places.put(pk, p);
        }
        // Every log file it lists.
        for lf in &d.log_files {
            let lo = format!("{}/{}", lf.s3_bucket, lf.s3_object);
            let want = lf.hash_value.to_ascii_lowercase();
            let mut e = r.log(plan, &lo)?.unwrap_or_default();
            if e.listed.is_some() {
                continue; // listed twice (a replayed digest): judged once
            }
            if e.seen.is_some() && e.due_ms > 0 {
                // Awaited a listing: here it is.
                plan.due_remove.insert((e.due_ms, format!("n:{lo}")));
                e.due_ms = 0;
            }
            let window = self.window_start(now);
            match &e.seen {
                Some(h) if h == UNHASHED => plan.counts.push(("log", "unverifiable")),
                Some(h) if *h == want => plan.counts.push(("log", "verified")),
                Some(h) => plan.findings.push((
                    Some(i),
                    Finding {
                        kind: Kind::LogAltered,
                        object: format!("s3://{lo}"),
                        detail: format!(
                            "s3://{lo}: trailwatch processed content with SHA-256 {h}; \
                             the signed digest s3://{object} lists {want}"
                        ),
                        instance: 0,
                    },
                )),
                // Not seen, and not to be: the first digest of a trail the
                // daemon sees lists files delivered before it looked (the
                // day before the first day it lists, say); files older
                // than the days the polling lists are never read.
                None if first_of_trail
                    || window.is_some_and(|w| delivered_ms(&lo).is_some_and(|t| t < w)) =>
                {
                    plan.counts.push(("log", "unverifiable"));
                }
                None => {
                    // Processed before hashing was on (an upgrade, the
                    // first start): nothing to compare with.
                    if r.store
                        .processed_any(&format!("s3:{}", lf.s3_bucket), &lf.s3_object)
                        .map_err(Failed::Store)?
                    {
                        plan.counts.push(("log", "unverifiable"));
                    } else {
                        e.due_ms = now + self.config.grace_secs * 1000;
                        plan.due_add.insert((e.due_ms, format!("l:{lo}")));
                    }
                }
            }
            e.listed = Some((want, object.clone()));
            e.at_ms = now;
            plan.logs.put(lo, e);
        }
        Ok(())
    }

    /// What is overdue: log files and digests awaited past their grace,
    /// and places with logs and never a digest.
    fn sweep(&self, r: &mut Reader<'_>, plan: &mut Plan, now: u64) -> Result<(), Failed> {
        let due: Vec<(u64, String)> = {
            let t = match r.read.open_table(DUE) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return self.places(r, plan, now),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for entry in t.range((0u64, "")..(now + 1, ""))?.take(10_000) {
                let (k, _) = entry?;
                let (t, name) = k.value();
                out.push((t, name.to_owned()));
            }
            out
        };
        for (t, name) in due {
            if plan.due_remove.contains(&(t, name.clone())) {
                continue;
            }
            plan.due_remove.insert((t, name.clone()));
            if let Some(object) = name.strip_prefix("l:") {
                let Some(mut e) = r.log(plan, object)? else {
                    continue;
                };
                if e.seen.is_none() && e.due_ms == t {
                    let digest = e.listed.as_ref().map_or("", |(_, d)| d.as_str());
                    plan.findings.push((
                        None,
                        Finding {
                            kind: Kind::LogMissing,
                            object: format!("s3://{object}"),
                            detail: format!(
                                "s3://{object}: listed in the signed digest s3://{digest}, never \
                                 seen by trailwatch in the {} s after it (deleted before it \
                                 could be read, or moved)",
                                self.config.grace_secs
                            ),
                            instance: 0,
                        },
                    ));
                }
                e.due_ms = 0;
                e.at_ms = now;
                plan.logs.put(object.to_owned(), e);
            } else if let Some(object) = name.strip_prefix("n:") {
                let Some(mut e) = r.log(plan, object)? else {
                    continue;
                };
                let mut next_due = 0;
                if e.listed.is_none() && e.due_ms == t {
                    // Judged only where valid digests have since covered
                    // its delivery time, and began before it (a file
                    // delivered before validation was turned on is not
                    // unlisted): else the digests are late, stopped or
                    // absent, which the places report, and it is looked
                    // at again in an hour, for as long as it is kept.
                    let named = delivered_ms(object).unwrap_or(e.at_ms);
                    let place = match place_key(object) {
                        Some(pk) => r.place(plan, &pk)?,
                        None => None,
                    };
                    let covered = place.as_ref().is_some_and(|p| {
                        p.last_digest_end_ms > named + 15 * 60_000
                            && p.covered_from_ms.is_some_and(|c| c <= named)
                    });
                    let before_validation = place
                        .as_ref()
                        .is_some_and(|p| p.covered_from_ms.is_some_and(|c| c > named));
                    if !covered && !before_validation && e.at_ms + RETENTION_MS / 2 > now {
                        next_due = now + 3_600_000;
                        plan.due_add.insert((next_due, format!("n:{object}")));
                    }
                    if covered {
                        plan.findings.push((
                            None,
                            Finding {
                                kind: Kind::LogNotListed,
                                object: format!("s3://{object}"),
                                detail: format!(
                                    "s3://{object}: processed, and no valid digest lists it \
                                     though digests of its account and region now cover \
                                     its delivery time: not delivered by CloudTrail (added), \
                                     or its digest is missing or forged"
                                ),
                                instance: 0,
                            },
                        ));
                    }
                }
                e.due_ms = next_due;
                plan.logs.put(object.to_owned(), e);
            } else if let Some(object) = name.strip_prefix("d:") {
                let Some(mut e) = r.digest(plan, object)? else {
                    continue;
                };
                if e.seen.is_none() && e.due_ms == t {
                    let by = e.expected.as_ref().map_or("", |(_, d)| d.as_str());
                    plan.findings.push((
                        None,
                        Finding {
                            kind: Kind::DigestMissing,
                            object: format!("s3://{object}"),
                            detail: format!(
                                "s3://{object}: named as previous by the signed digest \
                                 s3://{by}, never seen by trailwatch in the {} s after it \
                                 (deleted: the log files of its hour cannot be vouched for)",
                                self.config.grace_secs
                            ),
                            instance: 0,
                        },
                    ));
                }
                e.due_ms = 0;
                e.at_ms = now;
                plan.digests.put(object.to_owned(), e);
            }
        }
        self.places(r, plan, now)
    }

    fn places(&self, r: &mut Reader<'_>, plan: &mut Plan, now: u64) -> Result<(), Failed> {
        let wait = self.config.no_digest_hours.saturating_mul(3_600_000);
        for (k, mut p) in plan.places.all(r.read, 100_000)? {
            if p.last_digest_ms > 0 {
                // Digests came, then stopped while logs go on: deleted as
                // they arrive, or validation turned off. By delivery
                // times (names), so a backlog read late is not a stop.
                if !p.stopped
                    && p.last_digest_end_ms > 0
                    && p.last_log_ms > p.last_digest_end_ms + wait.max(3_600_000)
                {
                    p.stopped = true;
                    plan.findings.push((
                        None,
                        Finding {
                            kind: Kind::DigestsStopped,
                            object: format!("s3://{k}"),
                            detail: format!(
                                "s3://{k}: log files delivered until {}, and no valid digest \
                                 after {}: the digests are deleted as they come, or log file \
                                 validation was turned off",
                                crate::time::iso_time(p.last_log_ms as i64),
                                crate::time::iso_time(p.last_digest_end_ms as i64),
                            ),
                            instance: p.last_digest_end_ms,
                        },
                    ));
                    plan.places.put(k, p);
                }
                continue;
            }
            if p.reported || p.first_log_ms == 0 || now < p.first_log_ms + wait {
                continue;
            }
            p.reported = true;
            plan.findings.push((
                None,
                Finding {
                    kind: Kind::NoDigests,
                    object: format!("s3://{k}"),
                    detail: format!(
                        "s3://{k}: log files for {} h and not one digest: log file \
                         validation is off for its trail, or its digests are not where \
                         trailwatch reads",
                        (now - p.first_log_ms) / 3_600_000
                    ),
                    instance: 0,
                },
            ));
            plan.places.put(k, p);
        }
        Ok(())
    }
}

/// Reads through the plan's overlay.
struct Reader<'a> {
    read: &'a redb::ReadTransaction,
    store: &'a crate::checkpoint::Store,
}

/// A failure while planning.
enum Failed {
    Db(redb::Error),
    Store(StoreError),
}

impl<E: Into<redb::Error>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed::Db(e.into())
    }
}

impl Reader<'_> {
    fn log(&mut self, plan: &Plan, key: &str) -> Result<Option<LogEntry>, redb::Error> {
        plan.logs.get(self.read, key)
    }

    fn digest(&mut self, plan: &Plan, key: &str) -> Result<Option<DigestEntry>, redb::Error> {
        plan.digests.get(self.read, key)
    }

    fn place(&mut self, plan: &Plan, key: &str) -> Result<Option<Place>, redb::Error> {
        plan.places.get(self.read, key)
    }

    fn trail(&mut self, plan: &Plan, key: &str) -> Result<Option<u64>, redb::Error> {
        plan.trails.get(self.read, key)
    }
}

/// CloudTrail's public keys for `region`, valid over the last days (a
/// digest is checked soon after delivery).
async fn list_keys(region: &str, now_ms: u64) -> Result<PublicKeys, super::keys::KeyError> {
    let shared = crate::source::aws_config(Some(region), None).await;
    // The engine waits on this call: ten seconds, one attempt. A key that
    // cannot be fetched leaves the digest unchecked (counted), not stalled.
    let conf = aws_sdk_cloudtrail::config::Builder::from(&shared)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(std::time::Duration::from_secs(10))
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    let client = aws_sdk_cloudtrail::Client::from_conf(conf);
    let now = (now_ms / 1000) as i64;
    PublicKeys::list(&client, now - 30 * 86_400, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key is whoever wrote it: a line break in it cannot forge a line
    /// in the mail's text or the log.
    #[test]
    fn a_findings_text_keeps_to_one_line() {
        let f = Finding {
            kind: Kind::LogAltered,
            object: "s3://b/AWSLogs/1/CloudTrail/r/x\nRule: forged".into(),
            detail: "s3://b/x\nRule: forged\u{202e}".into(),
            instance: 0,
        };
        let a = f.alert(0);
        let d = a.rule.description.as_deref().unwrap();
        assert!(!d.contains('\n') && !d.contains('\u{202e}'), "{d}");
        assert_eq!(a.level, Level::Critical);
        assert_eq!(a.rule.name.as_deref(), Some("integrity_log_altered"));
    }

    #[test]
    fn places_come_from_cloudtrail_keys() {
        assert_eq!(
            place_of(
                "s3://b/p/AWSLogs/o-abc/123456789012/CloudTrail/eu-west-1/2026/11/20/x.json.gz"
            ),
            (Some("123456789012".into()), Some("eu-west-1".into()))
        );
        assert_eq!(
            place_of("b/AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2026/11/20/d.json.gz"),
            (Some("123456789012".into()), Some("us-east-1".into()))
        );
        assert_eq!(
            place_of("b/AWSLogs/notanaccount/CloudTrail/r/x"),
            (None, None)
        );
        assert_eq!(
            place_key("b/p/AWSLogs/1/CloudTrail-Digest/us-east-1/2026/11/20/d.json.gz").as_deref(),
            Some("b/p/AWSLogs/1/CloudTrail/us-east-1")
        );
        assert_eq!(place_key("b/AWSLogs/1/CloudTrail"), None);
        let day = |s: &str| crate::time::parse_event_time(s).unwrap() as u64;
        assert_eq!(
            delivered_ms(
                "b/AWSLogs/1/CloudTrail/r/2026/11/20/1_CloudTrail_r_20261120T0145Z_x.json.gz"
            ),
            Some(day("2026-11-20T01:45:00Z"))
        );
        assert_eq!(
            delivered_ms("b/AWSLogs/1/CloudTrail/r/2026/11/20/evil.json.gz"),
            Some(day("2026-11-20T23:44:00Z"))
        );
        assert_eq!(delivered_ms("b/AWSLogs/1/CloudTrail/r/evil.json.gz"), None);
    }
}
