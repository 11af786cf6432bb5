//! The engine's step for one batch a source handed over: its objects
//! through the pipeline a thread's worth at a time, their hits through the
//! correlations in order, and each group committed before the next runs.

use super::drive::{Work, not_fetched};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::deliver::{Done, Outputs, deliver};
use super::{DaemonError, DropLog, RunStats};
use crate::checkpoint::{ObjectId, now_ms};
use crate::correlate::Correlator;
use crate::http::Health;
use crate::integrity::online::{Online, Plan, Seen};
use crate::metrics::Metrics;
use crate::metrics::events::{InternalEvent, ObjectProcessed, ObjectUnreadable};
use crate::pipeline::{self, ErrorKind, Limits, ObjectReport};
use crate::posture::inventory::{self, Inventory, Seed};
use crate::posture::watch::{self, Posture, Refreshed};
use crate::rules::RuleSet;
use crate::source::{Body, Fetched};

/// What the engine holds across batches.
pub(super) struct Engine<'a> {
    pub(super) rules: &'a RuleSet,
    pub(super) limits: Limits,
    pub(super) metrics: &'a Metrics,
    pub(super) health: &'a Health,
    pub(super) correlator: Correlator,
    pub(super) drops: DropLog,
    pub(super) outputs: Outputs<'a>,
    pub(super) stats: RunStats,
    /// Online digest validation (`[integrity]`), when on.
    pub(super) online: Option<Online>,
    /// The credential inventory (`[inventory]`), when on.
    pub(super) inventory: Option<Inventory>,
    /// When the inventory's gauges were last counted.
    pub(super) gauges_ms: u64,
    /// The IAM posture (`[posture]`), when on.
    pub(super) posture: Option<Posture>,
    /// The runtime `ListPublicKeys` runs on.
    pub(super) rt: &'a tokio::runtime::Runtime,
}

/// The bucket and key of an S3 item (sources `s3:BUCKET`).
fn s3_place(item: &crate::source::Item) -> Option<(&str, &str)> {
    Some((item.id.source.strip_prefix("s3:")?, item.id.key.as_str()))
}

/// Is `key` hashed for digest validation? Every S3 object but digests,
/// whatever its name: a file an attacker adds under a name CloudTrail
/// never gives is still read by the rules, so it is still reconciled.
fn is_log_key(key: &str) -> bool {
    !pipeline::is_digest_name(key)
}

impl Engine<'_> {
    /// Process and commit a batch, then tell its source.
    pub(super) fn take(&mut self, work: Work) -> Result<(), DaemonError> {
        let Work {
            label,
            items,
            fetched,
            arrived,
            committed,
        } = work;
        let (rules, limits, metrics) = (self.rules, self.limits, self.metrics);
        let validating = self.online.is_some();
        // Its objects run a thread's worth at a time, in parallel, and each
        // such group's results are written and committed before the next
        // group runs: the results held at once (matches, hits, events) are
        // those of as many objects as there are threads, not of the batch.
        let mut fetched = fetched.into_iter();
        for group in items.chunks(rayon::current_num_threads().max(1)) {
            let fetched: Vec<_> = fetched.by_ref().take(group.len()).collect();
            let reports: Vec<(ObjectReport, Duration, Option<Fetched>)> = group
                .par_iter()
                .zip(fetched)
                .map(|(item, fetched)| {
                    let started = Instant::now();
                    // Log files from S3 are hashed as they are parsed when
                    // digests are validated; digests are kept for it.
                    let s3 = s3_place(item).filter(|_| validating);
                    let limits = Limits {
                        sha256: s3.is_some_and(|(_, k)| is_log_key(k)),
                        ..limits
                    };
                    let mut kept = None;
                    let report = match (&item.body, fetched) {
                        // Local files are read by the worker that parses
                        // them (as a stream when large), not held all at
                        // once for the batch.
                        (Body::File(path), _) => {
                            pipeline::process_file(&item.name, path, rules, limits)
                        }
                        (Body::Bytes(bytes), _) => {
                            pipeline::process_object(&item.name, bytes, rules, limits)
                        }
                        // Under a digest folder, when validating, every
                        // object is a digest: junk there is an invalid
                        // digest, not records to match.
                        (Body::Fetch { .. }, Some(Ok(f)))
                            if s3.is_some_and(|(_, k)| k.contains("/CloudTrail-Digest/")) =>
                        {
                            let r = pipeline::digest_report(&item.name, f.bytes.len() as u64);
                            kept = Some(f);
                            r
                        }
                        (Body::Fetch { .. }, Some(Ok(f))) => {
                            let r = pipeline::process_object(&item.name, &f.bytes, rules, limits);
                            if r.is_digest() && s3.is_some() {
                                kept = Some(f);
                            }
                            r
                        }
                        (Body::Fetch { .. }, Some(Err(e))) => {
                            return (pipeline::read_failed(&item.name, &e), Duration::ZERO, None);
                        }
                        (Body::Fetch { .. }, None) => {
                            pipeline::read_failed(&item.name, &not_fetched(item))
                        }
                    };
                    (report, started.elapsed(), kept)
                })
                .collect();
            rayon::broadcast(|_| pipeline::release_large_buffers());
            let mut done = Vec::with_capacity(group.len());
            let now = crate::time::now_event_ms();
            // What digest validation is told: (index in `done`, what).
            let mut digests: Vec<(usize, &crate::source::Item, Fetched)> = Vec::new();
            let mut logs: Vec<(usize, &crate::source::Item, Option<[u8; 32]>)> = Vec::new();
            let mut facts: Vec<(usize, crate::posture::Fact)> = Vec::new();
            for (item, (mut report, took, kept)) in group.iter().zip(reports) {
                self.stats.errors += report.error_count();
                if report.errors.iter().any(|e| e.kind == ErrorKind::Read) {
                    ObjectUnreadable {
                        source: &label,
                        report: &report,
                    }
                    .emit(metrics);
                    continue; // perhaps transient: try again later
                }
                ObjectProcessed {
                    source: &label,
                    report: &report,
                    took,
                    now_ms: now,
                }
                .emit(metrics);
                // Matches stay compact until delivery, which makes each
                // alert as it writes it.
                for m in &report.alerts {
                    let meta = &rules.rule(m.rule).meta;
                    metrics.rule_match(&meta.id, &meta.title, meta.level.as_str());
                }
                for hit in &report.hits {
                    // Hidden rules feed correlations without alerting
                    // (visible ones were counted with the alerts).
                    let rule = rules.rule(hit.rule);
                    if rule.hidden {
                        metrics.rule_match(
                            &rule.meta.id,
                            &rule.meta.title,
                            rule.meta.level.as_str(),
                        );
                    }
                }
                let fired = pipeline::correlate(&report, &mut self.correlator);
                for a in &fired {
                    metrics.rule_match(&a.rule_id, &a.rule_title, a.level.as_str());
                }
                let object_facts = std::mem::take(&mut report.facts);
                if object_facts.dropped > 0 {
                    tracing::warn!(object = %item.name, dropped = object_facts.dropped, "credential facts past {} distinct credentials in one object not kept", crate::posture::MAX_FACTS_PER_OBJECT);
                }
                for (first, last) in object_facts.into_pairs() {
                    if first != last {
                        facts.push((done.len(), first));
                    }
                    facts.push((done.len(), last));
                }
                if let Some(f) = kept {
                    digests.push((done.len(), item, f));
                } else if validating && report.sha256.is_some() {
                    // Over the size cap it was not read whole: seen, and
                    // its hash is not the file's.
                    let whole = !report.error_counts().contains_key(&ErrorKind::TooLarge);
                    logs.push((done.len(), item, report.sha256.filter(|_| whole)));
                }
                done.push(Done {
                    id: item.id.clone(),
                    source: report.source,
                    matches: report.alerts,
                    alerts: fired,
                    deduplicated: report.matches_deduplicated,
                    cursor: item.cursor.clone(),
                    via: item.via,
                    arrived: Some(arrived),
                });
            }
            self.stats.objects += done.len() as u64;
            metrics.filters(rules);
            let seen: Vec<(usize, Seen<'_>)> = digests
                .iter()
                .filter_map(|(i, item, f)| {
                    let (bucket, key) = s3_place(item)?;
                    Some((
                        *i,
                        Seen::Digest {
                            bucket,
                            key,
                            fetched: f,
                        },
                    ))
                })
                .chain(logs.iter().filter_map(|(i, item, h)| {
                    let (bucket, key) = s3_place(item)?;
                    Some((
                        *i,
                        Seen::Log {
                            bucket,
                            key,
                            sha256: *h,
                        },
                    ))
                }))
                .collect();
            let plan = self.integrity(&seen, &mut done)?;
            let posture = self.posture(&facts, None, &mut done);
            let seeds = posture.as_ref().map_or(&[][..], |p| &p.seeds[..]);
            let held = self.inventory(facts, seeds, &mut done)?;
            self.commit_with(done, plan.as_ref(), held.as_ref(), posture.as_ref())?;
            self.count(plan, posture);
            self.health.tick();
        }
        // The source may be gone (stopping): nothing to tell then.
        let _ = committed.send(());
        Ok(())
    }

    /// Digest validation's step for what a group showed (or, with nothing,
    /// what is overdue): its findings become alerts of the objects they
    /// came from (the sweep's, of a marker object of their own).
    fn integrity(
        &mut self,
        seen: &[(usize, Seen<'_>)],
        done: &mut Vec<Done>,
    ) -> Result<Option<Plan>, DaemonError> {
        let Some(online) = &mut self.online else {
            return Ok(None);
        };
        let now = now_ms();
        let mut plan = online.plan(self.outputs.store, self.rt, seen, now)?;
        let mut sweep = Vec::new();
        for (at, f) in std::mem::take(&mut plan.findings) {
            let (check, outcome) = f.kind.outcome();
            plan.counts.push((check, outcome));
            tracing::warn!(
                finding = f.kind.name(),
                object = %crate::alert::bound(&crate::alert::jsonl::clean(Some(&f.object))),
                "{}",
                crate::alert::bound(&crate::alert::jsonl::clean(Some(&f.detail)))
            );
            let alert = f.alert(now as i64);
            self.metrics
                .rule_match(&alert.rule_id, &alert.rule_title, alert.level.as_str());
            match at.and_then(|i| done.get_mut(i)) {
                Some(d) => d.alerts.push(alert),
                None => sweep.push(alert),
            }
        }
        if !sweep.is_empty() {
            done.push(Done {
                id: ObjectId {
                    source: "integrity".into(),
                    key: "sweep".into(),
                    etag: now.to_string(),
                },
                source: String::new(),
                matches: Vec::new(),
                alerts: sweep,
                deduplicated: 0,
                cursor: None,
                via: "",
                arrived: None,
            });
        }
        Ok((!plan.is_empty()).then_some(plan))
    }

    /// The posture stage's step: a refresh that arrived (or `refreshed`),
    /// then the group's facts; the findings that appear or clear become
    /// alerts of the objects whose events did it (a refresh's, of a marker
    /// object of their own).
    fn posture(
        &mut self,
        facts: &[(usize, crate::posture::Fact)],
        refreshed: Option<Refreshed>,
        done: &mut Vec<Done>,
    ) -> Option<watch::Plan> {
        let p = self.posture.as_mut()?;
        let mine: Vec<_> = facts
            .iter()
            .filter(|(_, f)| f.kind.changes_posture() || p.wants(f))
            .cloned()
            .collect();
        let now = now_ms();
        let mut plan = p.plan(mine, refreshed, now);
        let mut marker = Vec::new();
        for (at, alert) in std::mem::take(&mut plan.alerts) {
            self.metrics
                .rule_match(&alert.rule_id, &alert.rule_title, alert.level.as_str());
            match at.and_then(|i| done.get_mut(i)) {
                Some(d) => d.alerts.push(alert),
                None => marker.push(alert),
            }
        }
        if !marker.is_empty() {
            done.push(Done {
                id: ObjectId {
                    source: "posture".into(),
                    key: "refresh".into(),
                    etag: now.to_string(),
                },
                source: String::new(),
                matches: Vec::new(),
                alerts: marker,
                deduplicated: 0,
                cursor: None,
                via: "",
                arrived: None,
            });
        }
        (!plan.is_empty()).then_some(plan)
    }

    /// The inventory's step for a group's facts (and what a posture
    /// refresh taught): its findings become alerts of the objects they
    /// came from.
    fn inventory(
        &mut self,
        facts: Vec<(usize, crate::posture::Fact)>,
        seeds: &[Seed],
        done: &mut [Done],
    ) -> Result<Option<inventory::Plan>, DaemonError> {
        let Some(inv) = &mut self.inventory else {
            return Ok(None);
        };
        let mut plan = inv.plan(self.outputs.store, facts, seeds, now_ms())?;
        for (i, f) in std::mem::take(&mut plan.findings) {
            let alert = f.alert();
            self.metrics
                .rule_match(&alert.rule_id, &alert.rule_title, alert.level.as_str());
            if let Some(d) = done.get_mut(i) {
                d.alerts.push(alert);
            }
        }
        Ok((!plan.is_empty()).then_some(plan))
    }

    /// Count committed plans' outcomes.
    fn count(&mut self, plan: Option<Plan>, posture: Option<watch::Plan>) {
        for (check, outcome) in plan.into_iter().flat_map(|p| p.counts) {
            self.metrics
                .integrity
                .with_label_values(&[check, outcome])
                .inc();
        }
        self.posture_gauges();
        for (reason, n) in posture.iter().flat_map(|p| &p.dropped) {
            self.metrics
                .posture_dropped
                .with_label_values(&[reason])
                .inc_by(*n);
            tracing::warn!(
                reason,
                changes = n,
                "posture: IAM changes in the stream not applied (see trailwatch_posture_events_dropped_total)"
            );
        }
        if let Some((ok, at)) = posture.and_then(|p| p.refreshed) {
            self.metrics
                .posture_refreshes
                .with_label_values(&[if ok { "ok" } else { "failed" }])
                .inc();
            if ok {
                self.metrics.posture_last_refresh.set(at as f64 / 1000.0);
            }
        }
    }

    /// The open posture findings per id, when they changed (and once at
    /// start, for what the store held).
    fn posture_gauges(&mut self) {
        if let Some(counts) = self.posture.as_mut().and_then(Posture::counts_if_changed) {
            for (finding, n) in counts {
                self.metrics
                    .posture_findings
                    .with_label_values(&[finding])
                    .set(n);
            }
        }
    }

    /// With nothing to read: what digest validation finds overdue, the
    /// inventory's prune, and (each minute) its gauges.
    pub(super) fn idle(&mut self) -> Result<(), DaemonError> {
        let now = now_ms();
        if let Some(inv) = &self.inventory
            && now >= self.gauges_ms + 60_000
        {
            self.gauges_ms = now;
            match inv.gauges(self.outputs.store) {
                Ok(g) => self.metrics.inventory(&g),
                Err(e) => tracing::warn!("inventory gauges not counted: {e}"),
            }
        }
        self.posture_gauges();
        self.step_alone(None)
    }

    /// What the stages decide with no object: overdue digests, the
    /// inventory's prune, a posture refresh (`refreshed`, or one that
    /// arrived) and ages crossing thresholds.
    fn step_alone(&mut self, refreshed: Option<Refreshed>) -> Result<(), DaemonError> {
        let mut done = Vec::new();
        let plan = self.integrity(&[], &mut done)?;
        let posture = self.posture(&[], refreshed, &mut done);
        let seeds = posture.as_ref().map_or(&[][..], |p| &p.seeds[..]);
        let held = self.inventory(Vec::new(), seeds, &mut done)?;
        if plan.is_some() || held.is_some() || posture.is_some() || !done.is_empty() {
            self.commit_with(done, plan.as_ref(), held.as_ref(), posture.as_ref())?;
            self.count(plan, posture);
        }
        Ok(())
    }

    /// Write and commit processed objects with the correlation windows.
    pub(super) fn commit(&mut self, done: Vec<Done>) -> Result<(), DaemonError> {
        self.commit_with(done, None, None, None)
    }

    /// [`Engine::commit`], with digest validation's plan in the same
    /// transaction.
    fn commit_with(
        &mut self,
        done: Vec<Done>,
        plan: Option<&Plan>,
        held: Option<&inventory::Plan>,
        posture: Option<&watch::Plan>,
    ) -> Result<(), DaemonError> {
        let metrics = self.metrics;
        metrics
            .correlation_groups
            .set(self.correlator.groups() as i64);
        metrics.correlation(&self.correlator.stats);
        self.drops.report(&self.correlator.stats);
        let windows = self.correlator.is_dirty().then(|| self.correlator.save());
        let also = |txn: &redb::WriteTransaction| -> Result<(), redb::Error> {
            if let Some(p) = plan {
                p.apply(txn)?;
            }
            if let Some(p) = held {
                p.apply(txn)?;
            }
            if let Some(p) = posture {
                p.apply(txn)?;
            }
            Ok(())
        };
        let any = plan.is_some() || held.is_some() || posture.is_some();
        deliver(
            &mut self.outputs,
            done,
            windows,
            any.then_some(&also as &super::deliver::Also<'_>),
            &mut self.stats,
        )
    }

    /// End of input: decide the windows still open, and commit what they
    /// raise, through the same step as every batch.
    pub(super) fn finish(&mut self, stopping: &dyn Fn() -> bool) -> Result<(), DaemonError> {
        // What is overdue now is reported before leaving (`--once`).
        if let Some(o) = &mut self.online {
            o.sweep_next();
        }
        // So is the posture refresh due at start.
        if let Some(r) = self.posture.as_mut().and_then(|p| p.wait_first(stopping)) {
            self.step_alone(Some(r))?;
        }
        self.idle()?;
        let closing = self.correlator.finish();
        if closing.is_empty() {
            return Ok(());
        }
        let marker = ObjectId {
            source: "correlation".into(),
            key: "end-of-input".into(),
            etag: now_ms().to_string(),
        };
        let done = vec![Done {
            id: marker,
            source: String::new(),
            matches: Vec::new(),
            alerts: closing,
            deduplicated: 0,
            cursor: None,
            via: "",
            arrived: None,
        }];
        // `Correlator::finish` marks the windows dirty, so `commit` saves
        // them (all closed now) with the alerts they raised.
        self.commit(done)
    }
}
