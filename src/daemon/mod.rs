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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::alert::Alert;
use crate::alert::outbox::Outbox;
use crate::alert::remote::{self, Remote};
use crate::checkpoint::{Store, StoreError, now_ms};
use crate::config::Config;
use crate::correlate::Correlator;
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::pipeline::{self, Limits};
use crate::rules::RuleSet;
use crate::source::{self, Source};

mod deliver;
mod drive;
mod engine;
mod sink;

use deliver::Outputs;
use drive::{HaltOnDrop, Shared, Work, drive};
use engine::Engine;
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
    #[error("integrity.public_keys_dir: {0}")]
    Integrity(String),
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
        config.output.stdout_format,
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
        // Per object, by the engine (S3 log files, digests validated).
        sha256: false,
        facts: config.inventory.enabled,
    };
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
    let sources: Vec<Box<dyn Source>> = sources(&rt);
    let saved_times: std::collections::HashMap<String, f64> = store
        .meta(LAST_EVENT_TIMES)?
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default();
    let now_secs = now_ms() as f64 / 1000.0;
    for s in &sources {
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
    if let Some(p) = &config.pagerduty {
        remotes.push(Arc::new(Remote::pagerduty(p)?));
    }
    metrics.filters(rules);
    metrics.declare_latency(&remotes.iter().map(|r| r.outbox.sink).collect::<Vec<_>>());
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
    let online = if config.integrity.enabled {
        Some(
            crate::integrity::online::Online::new(crate::integrity::online::IntegrityConfig {
                // What the S3 polling lists: older is never read.
                window_days: config
                    .sources
                    .s3
                    .iter()
                    .map(|s| {
                        // A backfill lists from its start date at each
                        // start of the daemon.
                        let since = s
                            .start_date
                            .as_deref()
                            .and_then(crate::time::parse_date)
                            .map_or(0, |d| (crate::time::today() - d + 1).max(0) as u64);
                        u64::from(s.lookback_days.max(1)).max(since)
                    })
                    .max(),
                ..config.integrity.clone()
            })
            .map_err(|e| DaemonError::Integrity(e.to_string()))?,
        )
    } else {
        None
    };
    // At 0 even when off, so dashboards and alert rules see the series.
    metrics.declare_posture_findings();
    let mut engine = Engine {
        rules,
        limits,
        metrics: &metrics,
        health: &health,
        correlator,
        drops: DropLog::default(),
        outputs: Outputs {
            store: &store,
            sink: &mut sink,
            remotes: &remotes,
            metrics: &metrics,
            rules,
            retention_ms,
            accounts: &config.accounts,
        },
        stats: RunStats::default(),
        online,
        inventory: config
            .inventory
            .enabled
            .then(|| crate::posture::inventory::Inventory::new(config.inventory.clone())),
        gauges_ms: 0,
        posture: if config.posture.enabled {
            Some(crate::posture::watch::Posture::start(
                config.posture.clone(),
                crate::posture::iam::Thresholds {
                    unused_days: config.inventory.dormant_days as i64,
                    rotation_days: config.inventory.rotation_days as i64,
                },
                &store,
                &rt,
            )?)
        } else {
            None
        },
        rt: &rt,
    };
    let halt = AtomicBool::new(false);
    let shared = Shared {
        rt: &rt,
        once: opts.once,
        store: &store,
        halt: &halt,
        stop: &stop,
        metrics: &metrics,
        health: &health,
        batch: config.limits.objects_in_flight,
        max_object_bytes: limits.max_object_bytes,
        skipped: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    };
    // Each source on its own thread; the engine here takes their batches
    // one at a time (one thread of commit order). Leaving the scope waits
    // for every source thread, which the halt flag ends.
    let end = std::thread::scope(|scope| -> Result<End, DaemonError> {
        let _halt = HaltOnDrop(&halt);
        let (to_engine, batches) = mpsc::sync_channel::<Work>(0);
        for src in sources {
            let to_engine = to_engine.clone();
            let shared = &shared;
            std::thread::Builder::new()
                .name("trailwatch-src".into())
                .spawn_scoped(scope, move || drive(src, shared, to_engine))
                .map_err(DaemonError::Runtime)?;
        }
        drop(to_engine);
        loop {
            health.tick();
            if stop.load(Ordering::Relaxed) {
                return Ok(End::Stopped);
            }
            match batches.recv_timeout(Duration::from_millis(100)) {
                // A stop asked while waiting: the batch is left for the
                // next run (its source acknowledges nothing of it).
                Ok(_) if stop.load(Ordering::Relaxed) => return Ok(End::Stopped),
                Ok(work) => engine.take(work)?,
                Err(RecvTimeoutError::Timeout) => engine.idle()?,
                // Every source is done: `once`, or input that ends (stdin),
                // unless they ended because a stop was asked.
                Err(RecvTimeoutError::Disconnected) if stop.load(Ordering::Relaxed) => {
                    return Ok(End::Stopped);
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(End::Drained),
            }
        }
    })?;
    engine.stats.skipped_known += shared.skipped.load(Ordering::Relaxed);
    engine.stats.errors += shared.errors.load(Ordering::Relaxed);
    if end == End::Drained || opts.once {
        engine.finish(&|| stop.load(Ordering::Relaxed))?;
        drain(&rt, &remotes, &store, &metrics, grace);
    } else {
        tracing::info!("stopping: signal received, all committed");
        // Within the grace period the watchdog allows.
        drain(
            &rt,
            &remotes,
            &store,
            &metrics,
            grace.saturating_sub(Duration::from_secs(1)),
        );
    }
    Ok(engine.stats)
}

/// Why the engine's loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Every source finished (or listed once, in `once` mode).
    Drained,
    /// Asked to stop.
    Stopped,
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
        // So are incidents over, a resolve where the sink sends one.
        r.close_incidents(store, metrics, crate::checkpoint::now_ms());
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
pub(super) struct DropLog {
    last: crate::correlate::CorrelationStats,
    at: Option<Instant>,
}

impl DropLog {
    pub(super) fn report(&mut self, now: &crate::correlate::CorrelationStats) {
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
