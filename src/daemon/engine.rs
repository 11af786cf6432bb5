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
use crate::metrics::Metrics;
use crate::metrics::events::{InternalEvent, ObjectProcessed, ObjectUnreadable};
use crate::pipeline::{self, ErrorKind, Limits, ObjectReport};
use crate::rules::RuleSet;
use crate::source::Body;

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
        // Its objects run a thread's worth at a time, in parallel, and each
        // such group's results are written and committed before the next
        // group runs: the results held at once (matches, hits, events) are
        // those of as many objects as there are threads, not of the batch.
        let mut fetched = fetched.into_iter();
        for group in items.chunks(rayon::current_num_threads().max(1)) {
            let fetched: Vec<_> = fetched.by_ref().take(group.len()).collect();
            let reports: Vec<(ObjectReport, Duration)> = group
                .par_iter()
                .zip(fetched)
                .map(|(item, fetched)| {
                    let started = Instant::now();
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
                        (Body::Fetch { .. }, Some(Ok(bytes))) => {
                            pipeline::process_object(&item.name, &bytes, rules, limits)
                        }
                        (Body::Fetch { .. }, Some(Err(e))) => {
                            return (pipeline::read_failed(&item.name, &e), Duration::ZERO);
                        }
                        (Body::Fetch { .. }, None) => {
                            pipeline::read_failed(&item.name, &not_fetched(item))
                        }
                    };
                    (report, started.elapsed())
                })
                .collect();
            rayon::broadcast(|_| pipeline::release_large_buffers());
            let mut done = Vec::with_capacity(group.len());
            let now = crate::time::now_event_ms();
            for (item, (report, took)) in group.iter().zip(reports) {
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
            self.commit(done)?;
            self.health.tick();
        }
        // The source may be gone (stopping): nothing to tell then.
        let _ = committed.send(());
        Ok(())
    }

    /// Write and commit processed objects with the correlation windows.
    pub(super) fn commit(&mut self, done: Vec<Done>) -> Result<(), DaemonError> {
        let metrics = self.metrics;
        metrics
            .correlation_groups
            .set(self.correlator.groups() as i64);
        metrics.correlation(&self.correlator.stats);
        self.drops.report(&self.correlator.stats);
        let windows = self.correlator.is_dirty().then(|| self.correlator.save());
        deliver(&mut self.outputs, done, windows, &mut self.stats)
    }

    /// End of input: decide the windows still open, and commit what they
    /// raise, through the same step as every batch.
    pub(super) fn finish(&mut self) -> Result<(), DaemonError> {
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
