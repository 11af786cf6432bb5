//! The daemon (`trailwatch run`): sources polled for new objects, each
//! object through the pipeline, alerts deduplicated against the store,
//! written, and the object committed, forever, until SIGTERM/SIGINT.
//!
//! Per object, in this order (what makes alerts exactly once):
//! 1. skip it if the store has it (same source, key, etag);
//! 2. run it through decode → parse → rules, then its rule hits through
//!    the correlations (in input order);
//! 3. drop alerts whose dedup key the store already has;
//! 4. append the rest to the sink and make them durable (fsync);
//! 5. commit, in one transaction: the object, the alerts' dedup keys, and
//!    the sink's new length.
//!
//! A crash between 4 and 5 leaves alerts in the file that the store does
//! not know of: at start the file sink is cut back to the committed length
//! and the object is read again. Stdout cannot be cut back, so with stdout
//! the last object's alerts may repeat after a crash (at least once).
//!
//! Correlation windows are saved in the same transaction as the objects
//! whose events they hold, and restored at start: a burst split by a
//! restart is still seen, and no event is counted twice.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use thiserror::Error;

use crate::alert::outbox::Outbox;
use crate::alert::remote::{self, Remote};
use crate::alert::{Alert, Match, jsonl};
use crate::checkpoint::{Commit, ObjectId, Store, StoreError, now_ms};
use crate::config::Config;
use crate::correlate::Correlator;
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::pipeline::{self, ErrorKind, Limits, ObjectReport};
use crate::rules::RuleSet;
use crate::source::{self, Body, Item, Poll, Source, SourceError};

mod deliver;
mod sink;

use deliver::{Done, Outputs, deliver};
use sink::Sink;

/// Why the daemon stopped with an error.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("alert sink {path}: {source}")]
    Sink {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Remote(#[from] crate::alert::remote::RemoteError),
}

/// How a run goes.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Process what is there now, then exit (tests, one-shot jobs).
    pub once: bool,
    /// How the daemon is asked to stop or to reopen its alerts file.
    pub signals: Signals,
}

/// Requests to a running daemon, as flags it polls: set by the binary's
/// signal handlers (SIGTERM/SIGINT stop, SIGHUP reopens the alerts file),
/// or by whatever embeds or tests it. The daemon installs no handler and
/// never exits the process itself.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    /// Finish what is in hand, commit, drain the outboxes for the grace
    /// period, return.
    pub stop: Arc<AtomicBool>,
    /// Reopen the alerts file (logrotate's postrotate).
    pub reopen: Arc<AtomicBool>,
}

impl Signals {
    /// Ask the daemon to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Peak resident memory of this process in bytes (Linux; `None`
/// elsewhere), for the stop log: a backlog should not make it grow.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Counters of a run (metrics come later; tests read these).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub objects: u64,
    pub skipped_known: u64,
    pub alerts_written: u64,
    pub alerts_deduplicated: u64,
    pub errors: u64,
}

/// The key that makes an alert unique (see [`Alert::dedup_key`]).
pub fn dedup_key(a: &Alert) -> String {
    a.dedup_key()
}

/// Run the daemon until a signal (or, with `once`, until the current files
/// are done).
pub fn run(config: &Config, rules: &RuleSet, opts: RunOptions) -> Result<RunStats, DaemonError> {
    run_with(config, rules, opts, |rt| source::from_config(config, rt))
}

/// [`run`] with the sources `sources` makes (given the runtime the AWS SDK
/// runs on) instead of the configured ones: an embedding, or a test with
/// a source of its own.
pub fn run_with(
    config: &Config,
    rules: &RuleSet,
    opts: RunOptions,
    sources: impl FnOnce(&tokio::runtime::Runtime) -> Vec<Box<dyn Source>>,
) -> Result<RunStats, DaemonError> {
    let stop = opts.signals.stop.clone();
    let grace = Duration::from_secs(config.shutdown.grace_secs);
    let store = Arc::new(Store::open(&config.state.dir, config.state.cache_bytes)?);
    let retention_ms = config.state.retention_days * 86_400_000;
    store.prune(now_ms().saturating_sub(retention_ms), now_ms())?;
    // Reopened on request (SIGHUP), and found without it by its inode
    // changing.
    let mut sink = Sink::open(
        config.output.jsonl_path.as_deref(),
        &store,
        Arc::clone(&opts.signals.reopen),
    )?;
    let metrics = Arc::new(Metrics::new(&config.metrics.accounts));
    metrics.declare_sink(sink.name(), &["sent", "deduplicated"]);
    metrics.declare_posture();
    let health = Arc::new(Health::new(Duration::from_secs(config.http.stall_secs)));
    let mut correlator = Correlator::new(
        rules.correlations().to_vec(),
        (config.correlation.lateness_secs.min(i64::MAX as u64 / 1000) as i64) * 1000,
        config.correlation.max_groups,
    )
    .with_max_future(
        (config
            .correlation
            .max_future_secs
            .min(i64::MAX as u64 / 1000) as i64)
            * 1000,
    );
    let mut drops = DropLog::default();
    if let Some(saved) = store.meta(CORRELATION_STATE)? {
        match correlator.restore(&saved) {
            Ok(groups) => tracing::info!(groups, "correlation windows restored"),
            Err(e) => tracing::warn!("saved correlation windows ignored: {e}"),
        }
    }
    let limits = Limits {
        max_object_bytes: config.limits.max_object_bytes,
        with_events: config.output.include_event,
        max_event_bytes_per_object: config.limits.max_event_bytes_per_object,
        metrics: true,
        keep_decode_bytes: pipeline::DAEMON_KEEP_DECODE_BYTES,
    };
    let mut stats = RunStats::default();
    for src in &config.sources.files {
        std::fs::create_dir_all(&src.path).map_err(|source| DaemonError::Watch {
            path: src.path.clone(),
            source,
        })?;
    }
    // The AWS SDK is async; the loop blocks on it between objects, which
    // keeps one thread of control (and of commit order).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let mut sources: Vec<(Box<dyn Source>, Instant)> = sources(&rt)
        .into_iter()
        .map(|s| (s, Instant::now()))
        .collect();
    let saved_times: std::collections::HashMap<String, f64> = store
        .meta(LAST_EVENT_TIMES)?
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default();
    let now_secs = now_ms() as f64 / 1000.0;
    for (s, _) in &sources {
        let label = s.label();
        metrics.declare_source(&label);
        s.declare_metrics(&metrics);
        if let Some(saved) = saved_times.get(&label) {
            metrics.restore_last_event_time(&label, *saved, now_secs);
        }
    }
    Outbox::init(store.database()).map_err(|e| store.error(e))?;
    let mut remotes: Vec<Arc<Remote>> = Vec::new();
    if let Some(e) = &config.email {
        remotes.push(Arc::new(Remote::email(e)?));
    }
    if let Some(w) = &config.webhook {
        remotes.push(Arc::new(Remote::webhook(w)?));
    }
    for r in &remotes {
        metrics.declare_sink(
            r.outbox.sink,
            &[
                "sent",
                "failed",
                "queued",
                "suppressed",
                "summarised",
                "filtered",
            ],
        );
        // Detached: it runs until the runtime is dropped at exit.
        drop(rt.spawn(remote::deliver_forever(
            Arc::clone(r),
            Arc::clone(&store),
            Arc::clone(&metrics),
        )));
    }
    if !config.http.listen.is_empty() {
        let addr = rt.block_on(http::serve(
            &config.http.listen,
            Arc::clone(&metrics),
            Arc::clone(&health),
            Arc::clone(&store),
        ))?;
        tracing::info!("metrics on http://{addr}/metrics, health on /healthz and /readyz");
    }
    tracing::info!(
        rules = rules.len(),
        correlations = rules.correlations().len(),
        sources = sources.len(),
        // Absolute: a relative `state.dir` depends on where it was started.
        state = %std::path::absolute(&config.state.dir)
            .unwrap_or_else(|_| config.state.dir.clone())
            .display(),
        "trailwatch running"
    );
    let mut outputs = Outputs {
        store: &store,
        sink: &mut sink,
        remotes: &remotes,
        metrics: &metrics,
        rules,
        retention_ms,
    };
    loop {
        health.tick();
        for (src, due) in sources.iter_mut() {
            if Instant::now() < *due && !opts.once {
                continue;
            }
            let label = src.label();
            *due = Instant::now() + src.poll_interval();
            // A queue is drained in `once` mode; other sources list once.
            loop {
                let poll = Poll {
                    rt: &rt,
                    once: opts.once,
                    store: &store,
                    stop: &stop,
                    metrics: &metrics,
                };
                let listed = match src.list(&poll) {
                    Ok(l) => {
                        health.source(&label, Ok(()));
                        l
                    }
                    Err(e) => {
                        // A source that cannot be listed (network,
                        // permissions) is retried at its next poll.
                        tracing::warn!(source = %label, "listing failed: {e}");
                        health.source(&label, Err(crate::alert::bound(&e.to_string())));
                        metrics.source_errors.with_label_values(&[&label]).inc();
                        stats.errors += 1;
                        break;
                    }
                };
                health.tick();
                let mut pending = Vec::new();
                for item in listed {
                    if store.is_processed(&item.id)? {
                        stats.skipped_known += 1;
                        metrics
                            .objects
                            .with_label_values(&[&label, "skipped"])
                            .inc();
                    } else {
                        pending.push(item);
                    }
                }
                for batch in pending.chunks(config.limits.objects_in_flight) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    src.heartbeat(&rt);
                    let fetched = fetch(src.as_ref(), &rt, batch, limits.max_object_bytes);
                    // A batch is fetched together (remote reads overlap);
                    // its objects then run a thread's worth at a time, in
                    // parallel, and each such group's results are written
                    // and committed before the next group runs: the results
                    // held at once (matches, hits, events) are those of as
                    // many objects as there are threads, not of the batch.
                    let mut fetched = fetched.into_iter();
                    for group in batch.chunks(rayon::current_num_threads().max(1)) {
                        let fetched: Vec<_> = fetched.by_ref().take(group.len()).collect();
                        let reports: Vec<(ObjectReport, Duration)> = group
                            .par_iter()
                            .zip(fetched)
                            .map(|(item, fetched)| {
                                let started = Instant::now();
                                let report = match (&item.body, fetched.as_ref()) {
                                    // Local files are read by the worker that
                                    // parses them (as a stream when large),
                                    // not held all at once for the batch.
                                    (Body::File(path), _) => {
                                        pipeline::process_file(&item.name, path, rules, limits)
                                    }
                                    (Body::Bytes(bytes), _) | (_, Some(Ok(bytes))) => {
                                        pipeline::process_object(&item.name, bytes, rules, limits)
                                    }
                                    (Body::Fetch { .. }, Some(Err(e))) => {
                                        return (
                                            pipeline::read_failed(&item.name, e),
                                            Duration::ZERO,
                                        );
                                    }
                                    (Body::Fetch { .. }, None) => unreachable!("fetched"),
                                };
                                (report, started.elapsed())
                            })
                            .collect();
                        rayon::broadcast(|_| pipeline::release_large_buffers());
                        let mut done = Vec::with_capacity(batch.len());
                        let now = now_ms() as i64;
                        for (item, (report, took)) in group.iter().zip(reports) {
                            pipeline::log_errors(&report);
                            stats.errors += report.error_count();
                            if report.errors.iter().any(|e| e.kind == ErrorKind::Read) {
                                metrics.objects.with_label_values(&[&label, "failed"]).inc();
                                metrics
                                    .input_errors
                                    .with_label_values(&[&label, ErrorKind::Read.as_str()])
                                    .inc();
                                continue; // perhaps transient: try again later
                            }
                            metrics.object(&label, &report, took, now);
                            if report.events_omitted > 0 {
                                tracing::warn!(
                                    source = %jsonl::clean(Some(&report.source)),
                                    "{} alerts carry a note instead of their event: the object's \
                                     alerts reached limits.max_event_bytes_per_object",
                                    report.events_omitted
                                );
                                metrics.events_omitted.inc_by(report.events_omitted);
                            }
                            // Matches stay compact until delivery, which makes
                            // each alert as it writes it.
                            for m in &report.alerts {
                                let meta = &rules.rule(m.rule).meta;
                                metrics.rule_match(&meta.id, &meta.title, meta.level.as_str());
                            }
                            let mut fired_all = Vec::new();
                            for hit in &report.hits {
                                // Hidden rules feed correlations without alerting
                                // (visible ones were counted with the alerts).
                                let meta = &rules.rule(hit.rule).meta;
                                if rules.rule(hit.rule).hidden {
                                    metrics.rule_match(&meta.id, &meta.title, meta.level.as_str());
                                }
                                let fired = correlator.push(hit);
                                for a in &fired {
                                    metrics.rule_match(&a.rule_id, &a.rule_title, a.level.as_str());
                                }
                                fired_all.extend(fired);
                            }
                            done.push(Done {
                                id: item.id.clone(),
                                source: report.source,
                                matches: report.alerts,
                                alerts: fired_all,
                                deduplicated: report.matches_deduplicated,
                                cursor: item.cursor.clone(),
                            });
                        }
                        stats.objects += done.len() as u64;
                        metrics.correlation_groups.set(correlator.groups() as i64);
                        metrics.correlation(&correlator.stats);
                        drops.report(&correlator.stats);
                        let windows = correlator.is_dirty().then(|| correlator.save());
                        deliver(&mut outputs, done, windows, &mut stats)?;
                        health.tick();
                    }
                }
                src.ack(&rt, &|id| store.is_processed(id).unwrap_or(false));
                if !(opts.once && src.drained_more()) || stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        if opts.once || sources.iter().all(|(s, _)| s.finished()) {
            // End of input: decide the windows still open.
            let closing = correlator.finish();
            if !closing.is_empty() {
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
                }];
                let windows = Some(correlator.save());
                deliver(&mut outputs, done, windows, &mut stats)?;
            }
            drain(&rt, &remotes, &store, &metrics, grace);
            return Ok(stats);
        }
        let next = sources
            .iter()
            .map(|(_, due)| *due)
            .min()
            .unwrap_or_else(Instant::now);
        while Instant::now() < next {
            health.tick();
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if stop.load(Ordering::Relaxed) {
            tracing::info!("stopping: signal received, all committed");
            // Within the grace period the watchdog allows.
            drain(
                &rt,
                &remotes,
                &store,
                &metrics,
                grace.saturating_sub(Duration::from_secs(1)),
            );
            return Ok(stats);
        }
    }
}

/// Read a batch's [`Body::Fetch`] items through their source (together:
/// remote reads overlap); `None` for the items the workers read.
fn fetch(
    src: &dyn Source,
    rt: &tokio::runtime::Runtime,
    batch: &[Item],
    cap: u64,
) -> Vec<Option<Result<Vec<u8>, SourceError>>> {
    let remote: Vec<&Item> = batch
        .iter()
        .filter(|i| matches!(i.body, Body::Fetch { .. }))
        .collect();
    let mut got = src.fetch(rt, &remote, cap).into_iter();
    batch
        .iter()
        .map(|i| {
            matches!(i.body, Body::Fetch { .. }).then(|| {
                got.next().unwrap_or_else(|| {
                    Err(SourceError::Remote {
                        name: i.name.clone(),
                        message: "not fetched".into(),
                    })
                })
            })
        })
        .collect()
}

/// Give the remote sinks up to `limit` to empty their outboxes (the end of
/// `--once`, or a stop); what remains is sent after the next start.
fn drain(
    rt: &tokio::runtime::Runtime,
    remotes: &[Arc<Remote>],
    store: &Store,
    metrics: &Metrics,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    for r in remotes {
        // Ended suppression windows owe a summary: queued first, so the
        // depth counts it.
        r.close_windows(store, metrics, crate::checkpoint::now_ms());
        r.wake.notify_one();
    }
    let _guard = rt.enter();
    while remotes.iter().any(|r| r.depth(store) > 0) {
        if Instant::now() >= deadline {
            let left: u64 = remotes.iter().map(|r| r.depth(store)).sum();
            tracing::warn!(
                queued = left,
                "alerts left in the outbox; they are sent after the next start"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Logs what correlation windows dropped, at most once a minute, with
/// what changed since the last line (the counters are metrics too).
#[derive(Default)]
struct DropLog {
    last: crate::correlate::CorrelationStats,
    at: Option<Instant>,
}

impl DropLog {
    fn report(&mut self, now: &crate::correlate::CorrelationStats) {
        if *now == self.last
            || self
                .at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        let what: Vec<String> = now
            .named()
            .iter()
            .zip(self.last.named())
            .filter(|((_, n), (_, was))| n > was)
            .map(|((reason, n), (_, was))| format!("{} {reason}", n - was))
            .collect();
        if !what.is_empty() {
            tracing::warn!(
                "correlation windows did not count some events: {} (see \
                 trailwatch_correlation_dropped_total)",
                what.join(", ")
            );
        }
        self.last = now.clone();
        self.at = Some(Instant::now());
    }
}

/// The store's name for the saved correlation windows.
const CORRELATION_STATE: &str = "correlation-windows";
/// The newest event time of each source (JSON `{label: seconds}`), saved
/// with each commit so `trailwatch_last_event_time_seconds` survives a
/// restart.
const LAST_EVENT_TIMES: &str = "last-event-times";
