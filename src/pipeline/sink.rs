//! What one object's records become while it is parsed: matches, their
//! events within the object's budget, correlation hits, event times,
//! posture changes and the errors kept, gathered from the parallel chunks
//! and put back in order.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{InputError, KEPT_ERRORS_PER_OBJECT, Limits, ObjectReport, Posture};
use crate::alert::{EventJson, Match, MatchBatch, bound};
use crate::correlate::{self, Hit, HitContext};
use crate::parse::{self, Kind, Layout, ParseError, ParseErrorKind, Record, Sink, Top};
use crate::rules::RuleSet;

/// Collects one object's matches and problems from parallel chunk tasks.
pub(super) struct ObjectSink<'a> {
    rules: &'a RuleSet,
    with_events: bool,
    source_arc: std::sync::Arc<str>,
    /// Collect event times and posture events (the daemon's metrics).
    metrics: bool,
    /// Per-object deduplication of matches by (rule, event id): those that
    /// carry an event (the daemon) or feed a correlation.
    seen: Mutex<std::collections::HashSet<(u32, u64)>>,
    /// The event-id hash of `seen`: SipHash with keys random per object,
    /// so no one can choose two ids that collide (a collision would drop
    /// an alert; by chance, at 2^-64 per pair, never).
    id_keys: std::hash::RandomState,
    deduplicated: AtomicU64,
    /// Event text this object's alerts may hold, and hold so far.
    event_budget: usize,
    event_bytes: std::sync::atomic::AtomicUsize,
    events_omitted: AtomicU64,
    /// What an alert past the budget carries instead of its event: one
    /// text shared by all of them (a flood past the budget allocated a
    /// copy per alert, 18 MB for 350,000 of them).
    omitted_note: EventJson,
    records: AtomicU64,
    /// Records with a duplicate key (at the top level, in `userIdentity`,
    /// or on a path a rule or the alert read).
    duplicate_keys: AtomicU64,
    /// One batch per `records` call: no giant vector regrown (and its pages
    /// faulted in again) as a noisy rule's alerts pile up.
    alerts: Mutex<Vec<Vec<Match>>>,
    /// One batch of hits per `records` call, as for alerts.
    hits: Mutex<Vec<Vec<Hit>>>,
    errors: Mutex<KeptErrors>,
    times: Mutex<Vec<i64>>,
    posture: Mutex<Vec<(Posture, String)>>,
    /// Collect credential facts (the inventory).
    facts_on: bool,
    facts: Mutex<crate::posture::Facts>,
}

impl<'a> ObjectSink<'a> {
    pub(super) fn new(rules: &'a RuleSet, limits: Limits, source: &'a str) -> Self {
        ObjectSink {
            rules,
            with_events: limits.with_events,
            metrics: limits.metrics,
            source_arc: std::sync::Arc::from(source),
            seen: Mutex::new(std::collections::HashSet::new()),
            id_keys: std::hash::RandomState::new(),
            deduplicated: AtomicU64::new(0),
            event_budget: limits.max_event_bytes_per_object,
            omitted_note: EventJson::note(&format!(
                "[event omitted: this object's alerts already hold {} bytes of events \
                 (limits.max_event_bytes_per_object)]",
                limits.max_event_bytes_per_object
            )),
            event_bytes: std::sync::atomic::AtomicUsize::new(0),
            events_omitted: AtomicU64::new(0),
            records: AtomicU64::new(0),
            duplicate_keys: AtomicU64::new(0),
            alerts: Mutex::new(Vec::new()),
            hits: Mutex::new(Vec::new()),
            errors: Mutex::new(KeptErrors::default()),
            times: Mutex::new(Vec::new()),
            posture: Mutex::new(Vec::new()),
            facts_on: limits.facts,
            facts: Mutex::new(crate::posture::Facts::default()),
        }
    }

    /// The record's event for an alert, within the object's budget: past
    /// it, a note saying so (one object's alerts never hold more event
    /// text than configured, whatever it holds).
    pub(super) fn event_of(&self, r: &Record<'_, '_>) -> EventJson {
        let event = EventJson::of(r);
        let used = self.event_bytes.fetch_add(event.len(), Ordering::Relaxed) + event.len();
        if used <= self.event_budget {
            return event;
        }
        self.event_bytes.fetch_sub(event.len(), Ordering::Relaxed);
        self.events_omitted.fetch_add(1, Ordering::Relaxed);
        self.omitted_note.clone()
    }

    /// What the object produced, in order, into `report`.
    pub(super) fn finish(
        self,
        name: &str,
        layout: Layout,
        mut report: ObjectReport,
    ) -> ObjectReport {
        report.layout = Some(layout);
        report.matches_deduplicated = self.deduplicated.into_inner();
        report.events_omitted = self.events_omitted.into_inner();
        report.records = self.records.into_inner();
        report.duplicate_keys = self.duplicate_keys.into_inner();
        let mut batches = self.alerts.into_inner().unwrap_or_else(|p| p.into_inner());
        // Batches finish in any order (parallel chunks); each is in record
        // order, and within a record, in rule order.
        batches.sort_by_key(|b| b.first().map_or(0, |a| a.record));
        let mut alerts = Vec::with_capacity(batches.iter().map(Vec::len).sum());
        for b in batches {
            alerts.extend(b);
        }
        report.alerts = alerts;
        // Batches of hits moved into one vector sized to fit, each freed as
        // it is moved: a flood of hits never holds two copies.
        let mut batches = self.hits.into_inner().unwrap_or_else(|p| p.into_inner());
        batches.sort_by_key(|b| b.first().map_or(0, |h| h.ctx.record()));
        let mut hits = Vec::with_capacity(batches.iter().map(Vec::len).sum());
        for b in batches {
            hits.extend(b);
        }
        hits.sort_by_key(|h| h.ctx.record());
        report.hits = hits;
        let errors = self.errors.into_inner().unwrap_or_else(|p| p.into_inner());
        let room = KEPT_ERRORS_PER_OBJECT.saturating_sub(report.errors.len());
        let mut kept = errors.first.into_sorted_vec();
        for e in kept.drain(room.min(kept.len())..) {
            *report.errors_not_kept.entry(e.0.kind.into()).or_default() += 1;
        }
        report.errors.extend(kept.into_iter().map(|e| InputError {
            source: name.to_owned(),
            kind: e.0.kind.into(),
            message: e.0.to_string(),
        }));
        for (kind, n) in errors.counted {
            *report.errors_not_kept.entry(kind.into()).or_default() += n;
        }
        report.event_times_ms = self.times.into_inner().unwrap_or_else(|p| p.into_inner());
        report.posture = self.posture.into_inner().unwrap_or_else(|p| p.into_inner());
        report.facts = self.facts.into_inner().unwrap_or_else(|p| p.into_inner());
        report
    }
}

impl Sink for ObjectSink<'_> {
    fn records(&self, first: usize, records: &[Record<'_, '_>]) {
        self.records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let mut found = MatchBatch::default();
        let mut hits = Vec::new();
        let mut times = Vec::with_capacity(records.len());
        let mut posture = Vec::new();
        let mut facts = crate::posture::Facts::default();
        let mut duplicates = 0u64;
        parse::take_duplicate_keys(); // what an earlier record left
        for (i, r) in records.iter().enumerate() {
            // Parsed once per record when the daemon's metrics want it (the
            // lag histogram), else only for a correlation hit.
            let event_time = || {
                r.str(Top::EventTime)
                    .and_then(crate::time::parse_event_time)
            };
            let mut time_ms = None;
            if self.metrics {
                time_ms = event_time();
                times.extend(time_ms);
                Posture::of(r, |p| {
                    let account = r.str(Top::RecipientAccountId).unwrap_or_default();
                    posture.push((p, bound(account)));
                });
            }
            if self.facts_on {
                // The time the metrics parsed, not parsed again.
                crate::posture::Fact::of(r, time_ms.or_else(event_time), |f| facts.add(f));
            }
            self.rules.for_each_match(r, |index, rule| {
                let with_event = self.with_events && !rule.hidden;
                // The same event matched twice in one object (a duplicate
                // delivery inside a file, a flood of one record) counts
                // once: skipped before its event is built (the expensive
                // part), and before it reaches a correlation window twice.
                // (Matches that neither carry an event nor feed a
                // correlation are left alone: checking each costs a lock.)
                if (with_event || !rule.feeds.is_empty())
                    && let Some(id) = r.str(Top::EventId).filter(|id| !id.is_empty())
                    && !self
                        .seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((index as u32, self.id_keys.hash_one(id)))
                {
                    self.deduplicated.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let event = with_event.then(|| self.event_of(r));
                let at = found.len();
                found.push_as(index as u32, r, first + i, event, rule.hidden);
                if !rule.feeds.is_empty() {
                    // Its fields are pointed at once the batch is done.
                    hits.push((
                        at,
                        index as u32,
                        if self.metrics { time_ms } else { event_time() },
                        rule.feeds
                            .iter()
                            .map(|f| {
                                (
                                    f.correlation,
                                    correlate::GroupKey::new(
                                        f.group_paths.iter().map(|p| text_at(r, p)),
                                    ),
                                    f.value_path.as_ref().map(|p| text_at(r, p)),
                                )
                            })
                            .collect::<Vec<_>>(),
                    ));
                }
            });
            // Duplicates met indexing the record, or on a path its rules
            // and alert fields read (the last value counted everywhere).
            duplicates += u64::from(parse::take_duplicate_keys() | r.duplicate_keys());
        }
        if duplicates > 0 {
            self.duplicate_keys.fetch_add(duplicates, Ordering::Relaxed);
        }
        if !found.is_empty() {
            let (alerts, all) = found.finish_split();
            if !alerts.is_empty() {
                self.alerts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(alerts);
            }
            if !hits.is_empty() {
                // Each hit's fields: its match, sharing the batch's text.
                let hits: Vec<Hit> = hits
                    .into_iter()
                    .map(|(at, rule, time_ms, keys)| Hit {
                        rule,
                        time_ms,
                        keys,
                        ctx: HitContext::Match(
                            all[at].clone(),
                            std::sync::Arc::clone(&self.source_arc),
                        ),
                    })
                    .collect();
                self.hits
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(hits);
            }
        }
        self.times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(times);
        if !posture.is_empty() {
            self.posture
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(posture);
        }
        if !facts.is_empty() || facts.dropped > 0 {
            self.facts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .merge(facts);
        }
    }

    fn duplicate_keys(&self, n: u64) {
        self.duplicate_keys.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, err: ParseError) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(err);
    }
}

/// An object's first [`KEPT_ERRORS_PER_OBJECT`] problems by position (the
/// chunks report in any order), the rest counted by kind: an object of
/// millions of broken lines costs a hundred messages, not millions.
#[derive(Default)]
struct KeptErrors {
    /// A max-heap by position: the top is the one to give up first.
    first: std::collections::BinaryHeap<ByPosition>,
    counted: BTreeMap<ParseErrorKind, u64>,
}

impl KeptErrors {
    fn add(&mut self, err: ParseError) {
        let dropped = if self.first.len() < KEPT_ERRORS_PER_OBJECT {
            self.first.push(ByPosition(err));
            return;
        } else if self
            .first
            .peek()
            .is_some_and(|top| top.key() > (err.offset, err.record))
        {
            let top = self.first.pop().map(|t| t.0.kind);
            self.first.push(ByPosition(err));
            top
        } else {
            Some(err.kind)
        };
        if let Some(kind) = dropped {
            *self.counted.entry(kind).or_default() += 1;
        }
    }
}

/// A problem ordered by where it is in the object.
struct ByPosition(ParseError);

impl ByPosition {
    fn key(&self) -> (usize, Option<usize>) {
        (self.0.offset, self.0.record)
    }
}

impl PartialEq for ByPosition {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ByPosition {}

impl PartialOrd for ByPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// A field as text for grouping (first value at the path; numbers and
/// booleans as written; "" when absent), bounded in length.
fn text_at(r: &Record<'_, '_>, path: &[Box<str>]) -> String {
    let mut out = String::new();
    r.any_at(path, &mut |v| {
        match v.kind() {
            Kind::String => out = bound(v.as_str().unwrap_or("")),
            Kind::Number | Kind::Bool => out = v.to_json().to_string(),
            _ => return false,
        }
        true
    });
    out
}
