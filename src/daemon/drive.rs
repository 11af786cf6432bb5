//! Each source runs on a thread of its own: it waits for its poll, lists,
//! drops what the store already has, fetches a batch and hands it to the
//! engine, which processes and commits batches one at a time, in the order
//! they come. A slow listing or a long poll holds only its own source.
//!
//! In flight at once, per source: one batch fetched and waiting for the
//! engine (a rendezvous channel: the source fetches the next batch while
//! the engine works on its last), so the bytes held are bounded by
//! `limits.objects_in_flight × limits.max_object_bytes` per source plus the
//! batch in the engine. A source acknowledges (a queue deletes its
//! messages) only after the engine has answered for every batch of the
//! listing; it lists again only then, so nothing is processed twice.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use crate::checkpoint::Store;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::metrics::events::{InternalEvent, ListingFailed};
use crate::source::{Body, Fetched, Item, Poll, Source, SourceError};

/// A batch of one source's objects, fetched, for the engine.
pub(super) struct Work {
    /// The source's metric label.
    pub(super) label: String,
    pub(super) items: Vec<Item>,
    /// For each item, its bytes when the source fetched them (`None` for
    /// items the workers read themselves).
    pub(super) fetched: Vec<Option<Result<Fetched, SourceError>>>,
    /// When its listing returned: the arrival the time-to-alert histogram
    /// measures from.
    pub(super) arrived: Instant,
    /// Answered once the batch is committed; dropped unanswered when the
    /// engine stops first (the source then acknowledges nothing of it).
    pub(super) committed: mpsc::Sender<()>,
}

/// What every source thread shares.
pub(super) struct Shared<'a> {
    pub(super) rt: &'a tokio::runtime::Runtime,
    pub(super) once: bool,
    pub(super) store: &'a Store,
    /// Set by the engine when it stops (end, error): sources stop waiting
    /// and listing.
    pub(super) halt: &'a AtomicBool,
    /// The stop request ([`super::Signals::stop`]), heeded at once too.
    pub(super) stop: &'a AtomicBool,
    pub(super) metrics: &'a Metrics,
    pub(super) health: &'a Health,
    pub(super) batch: usize,
    pub(super) max_object_bytes: u64,
    /// Objects skipped as already processed, listings that failed.
    pub(super) skipped: AtomicU64,
    pub(super) errors: AtomicU64,
}

/// Sets the flag when dropped: however the engine leaves (a return, an
/// error, a panic), the source threads it waits for are told to stop.
pub(super) struct HaltOnDrop<'a>(pub(super) &'a AtomicBool);

impl Drop for HaltOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How often a source waiting for its poll, or for the engine, looks at
/// the halt flag (and keeps its messages claimed).
const LOOK: Duration = Duration::from_millis(100);

/// Run one source until it is finished, `once` is done, or the engine
/// halts.
pub(super) fn drive(mut src: Box<dyn Source>, shared: &Shared<'_>, to_engine: SyncSender<Work>) {
    let label = src.label();
    let halted = || shared.halt.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed);
    let mut due = Instant::now();
    while !halted() {
        if !shared.once {
            while Instant::now() < due {
                if halted() {
                    return;
                }
                std::thread::sleep(LOOK.min(due.saturating_duration_since(Instant::now())));
            }
        }
        due = Instant::now() + src.poll_interval();
        // A queue is drained in `once` mode; other sources list once.
        loop {
            let poll = Poll {
                rt: shared.rt,
                once: shared.once,
                store: shared.store,
                stop: shared.halt,
                metrics: shared.metrics,
            };
            let watched = !src.listing_waits_for_input();
            shared.health.busy(&label, watched);
            let listed = src.list(&poll);
            shared.health.busy(&label, false);
            let listed = match listed {
                Ok(l) => {
                    shared.health.source(&label, None);
                    l
                }
                Err(e) => {
                    // A source that cannot be listed (network, permissions)
                    // is retried at its next poll.
                    ListingFailed {
                        source: &label,
                        error: &e,
                    }
                    .emit(shared.metrics);
                    shared
                        .health
                        .source(&label, Some(crate::alert::bound(&e.to_string())));
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            let arrived = Instant::now();
            let mut pending = Vec::with_capacity(listed.len());
            for item in listed {
                // A store that cannot answer: processed again rather than
                // lost (the commit step deduplicates the alerts).
                if shared.store.is_processed(&item.id).unwrap_or(false) {
                    shared.skipped.fetch_add(1, Ordering::Relaxed);
                    shared
                        .metrics
                        .objects
                        .with_label_values(&[&label, "already_processed"])
                        .inc();
                } else {
                    pending.push(item);
                }
            }
            let (committed, answers) = mpsc::channel();
            let mut sent = 0usize;
            while !pending.is_empty() && !halted() {
                let rest = pending.split_off(shared.batch.min(pending.len()));
                let items = std::mem::replace(&mut pending, rest);
                src.heartbeat(shared.rt);
                shared.health.busy(&label, true);
                let fetched = fetch(src.as_ref(), shared.rt, &items, shared.max_object_bytes);
                shared.health.busy(&label, false);
                let work = Work {
                    label: label.clone(),
                    items,
                    fetched,
                    arrived,
                    committed: committed.clone(),
                };
                if to_engine.send(work).is_err() {
                    break; // the engine has stopped
                }
                sent += 1;
            }
            drop(committed);
            // Wait for the engine to commit what was handed over, keeping
            // it claimed meanwhile.
            let mut answered = 0;
            while answered < sent {
                match answers.recv_timeout(Duration::from_secs(1)) {
                    Ok(()) => answered += 1,
                    Err(RecvTimeoutError::Timeout) => src.heartbeat(shared.rt),
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            src.ack(shared.rt, &|id| {
                shared.store.is_processed(id).unwrap_or(false)
            });
            if !(shared.once && src.drained_more()) || halted() {
                break;
            }
        }
        if shared.once || src.finished() {
            return;
        }
    }
}

/// A [`Body::Fetch`] item its source returned no bytes for.
pub(super) fn not_fetched(item: &Item) -> SourceError {
    SourceError::Remote {
        name: item.name.clone(),
        message: "not fetched".into(),
    }
}

/// Read a batch's [`Body::Fetch`] items through their source (together:
/// remote reads overlap); `None` for the items the workers read.
fn fetch(
    src: &dyn Source,
    rt: &tokio::runtime::Runtime,
    batch: &[Item],
    cap: u64,
) -> Vec<Option<Result<Fetched, SourceError>>> {
    let remote: Vec<&Item> = batch
        .iter()
        .filter(|i| matches!(i.body, Body::Fetch { .. }))
        .collect();
    let mut got = src.fetch(rt, &remote, cap).into_iter();
    batch
        .iter()
        .map(|i| {
            matches!(i.body, Body::Fetch { .. })
                .then(|| got.next().unwrap_or_else(|| Err(not_fetched(i))))
        })
        .collect()
}
