//! Remote sinks (email, webhook, PagerDuty): each an [`Outbox`] plus a transport, and
//! the delivery loop that drains the outbox on the daemon's runtime.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::email::{EmailConfig, EmailError, EmailSink};
use super::outbox::Outbox;
use super::pagerduty::{PagerDutyConfig, PagerDutyError, PagerDutySink};
use super::webhook::{WebhookConfig, WebhookError, WebhookSink};
use crate::checkpoint::{Store, now_ms};
use crate::metrics::Metrics;
use crate::metrics::events::{Delivered, DeliveryFailed, InternalEvent};

/// The transport of a remote sink.
pub(crate) enum Transport {
    Email(Box<EmailSink>),
    Webhook(WebhookSink),
    PagerDuty(PagerDutySink),
}

/// A remote sink: where alerts go, and their outbox.
pub struct Remote {
    pub outbox: Outbox,
    pub transport: Transport,
    /// Woken when alerts are queued, so delivery starts at once.
    pub wake: Notify,
    /// When the next bookkeeping pass is due (ms): closing suppression
    /// windows and counting the queue each read every window or entry, so
    /// with tens of thousands queued they ran between every two messages
    /// and delivery slowed as the queue grew. Now at most once per
    /// [`BOOKKEEPING_MS`].
    bookkeeping_due_ms: std::sync::atomic::AtomicU64,
}

/// How often a delivery loop closes suppression windows and counts its
/// queue.
const BOOKKEEPING_MS: u64 = 2_000;

/// Why one delivery failed (the alerts stay queued and are tried again).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("nothing to send")]
    Empty,
    #[error("{role} address {address}: {source}")]
    Address {
        /// `from`, `to` or `cc`.
        role: &'static str,
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("building the mail: {0}")]
    Mail(#[from] lettre::error::Error),
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("no answer from the SMTP server within {secs} s")]
    SmtpTimeout { secs: u64 },
    /// The webhook could not be reached (its URL, which may hold a token,
    /// is left out).
    #[error("{0}")]
    Http(#[source] reqwest::Error),
    #[error("the endpoint answered {0}")]
    Status(reqwest::StatusCode),
}

/// Why a remote sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Email(#[from] EmailError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    PagerDuty(#[from] PagerDutyError),
}

impl Remote {
    pub fn email(config: &EmailConfig) -> Result<Remote, RemoteError> {
        Ok(Remote {
            outbox: Outbox {
                sink: "email",
                storm: config.storm.clone(),
                min_level: config.min_level(),
                resolve: false,
            },
            transport: Transport::Email(Box::new(EmailSink::new(config.clone())?)),
            wake: Notify::new(),
            bookkeeping_due_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn webhook(config: &WebhookConfig) -> Result<Remote, RemoteError> {
        Ok(Remote {
            outbox: Outbox {
                sink: "webhook",
                storm: config.storm.clone(),
                min_level: config.min_level(),
                resolve: false,
            },
            transport: Transport::Webhook(WebhookSink::new(config)?),
            wake: Notify::new(),
            bookkeeping_due_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn pagerduty(config: &PagerDutyConfig) -> Result<Remote, RemoteError> {
        Ok(Remote {
            outbox: Outbox {
                sink: "pagerduty",
                storm: config.storm.clone(),
                min_level: config.min_level(),
                resolve: config.resolve,
            },
            transport: Transport::PagerDuty(PagerDutySink::new(config)?),
            wake: Notify::new(),
            bookkeeping_due_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Alerts waiting (0 if the store cannot be read; that is logged).
    pub fn depth(&self, store: &Store) -> u64 {
        self.outbox.depth(store.database()).unwrap_or_else(|e| {
            tracing::warn!(sink = self.outbox.sink, "outbox unreadable: {e}");
            0
        })
    }

    /// Queue a summary for each suppression window that ended having held
    /// alerts back (each round, and before a drain looks at the depth).
    pub(crate) fn close_windows(&self, store: &Store, metrics: &Metrics, now: u64) {
        let sink = self.outbox.sink;
        match self.outbox.close_windows(store.database(), now) {
            Ok(0) => {}
            Ok(n) => {
                metrics.alerts(sink, "summarised", n);
                tracing::info!(
                    sink,
                    summaries = n,
                    "suppression windows closed with alerts held back"
                );
            }
            Err(e) => tracing::error!(sink, "closing suppression windows: {e}"),
        }
    }

    /// Forget the incidents that are over, queuing a resolve for each where
    /// the sink sends them.
    pub(crate) fn close_incidents(&self, store: &Store, metrics: &Metrics, now: u64) {
        let sink = self.outbox.sink;
        match self.outbox.close_incidents(store.database(), now) {
            Ok(0) => {}
            Ok(n) => {
                metrics.alerts(sink, "resolved", n);
                tracing::info!(sink, incidents = n, "incidents over: resolves queued");
            }
            Err(e) => tracing::error!(sink, "closing incidents: {e}"),
        }
    }

    /// One round: send what is due. Returns how long to wait before the
    /// next round.
    async fn round(&self, store: &Store, metrics: &Metrics) -> Duration {
        let sink = self.outbox.sink;
        let digest = self.outbox.storm.digest_secs > 0;
        let db = store.database();
        let now = now_ms();
        let bookkeeping = now
            >= self
                .bookkeeping_due_ms
                .load(std::sync::atomic::Ordering::Relaxed);
        if bookkeeping {
            self.bookkeeping_due_ms
                .store(now + BOOKKEEPING_MS, std::sync::atomic::Ordering::Relaxed);
            self.close_windows(store, metrics, now);
            self.close_incidents(store, metrics, now);
            metrics
                .outbox_depth
                .with_label_values(&[sink])
                .set(self.depth(store) as i64);
        }
        let due = match self.outbox.due(db, now, if digest { 200 } else { 1 }) {
            Ok(Ok(due)) => due,
            Ok(Err(wait_ms)) => return Duration::from_millis(wait_ms),
            Err(e) => {
                tracing::error!(sink, "outbox unreadable: {e}");
                return Duration::from_secs(5);
            }
        };
        let queued: std::collections::HashMap<u64, u64> =
            due.iter().map(|(seq, e)| (*seq, e.queued_ms)).collect();
        let results = match &self.transport {
            Transport::Email(m) => m.send(due, digest).await,
            Transport::Webhook(w) => {
                let groups: Vec<Vec<(u64, super::outbox::Entry)>> = if digest {
                    vec![due]
                } else {
                    due.into_iter().map(|e| vec![e]).collect()
                };
                let mut out = Vec::new();
                for g in groups {
                    let seqs = g.iter().map(|(s, _)| *s).collect();
                    out.push((seqs, w.send(&g).await));
                }
                out
            }
            // One event per alert: a page is about one thing.
            Transport::PagerDuty(p) => {
                let mut out = Vec::new();
                for e in due {
                    let seqs = vec![e.0];
                    out.push((seqs, p.send(&[e]).await));
                }
                out
            }
        };
        let now = now_ms();
        for (seqs, result) in results {
            let n = seqs.len() as u64;
            let stored = match result {
                Ok(()) => {
                    Delivered {
                        sink,
                        queued_ms: seqs.iter().filter_map(|s| queued.get(s).copied()).collect(),
                        now_ms: now,
                    }
                    .emit(metrics);
                    self.outbox.delivered(db, &seqs, 1, now)
                }
                Err(error) => {
                    DeliveryFailed {
                        sink,
                        alerts: n,
                        error: &error,
                    }
                    .emit(metrics);
                    self.outbox.failed(db, &seqs, now)
                }
            };
            if let Err(e) = stored {
                // The alerts stay queued; at worst one is sent again.
                tracing::error!(sink, "outbox update failed: {e}");
            }
        }
        Duration::ZERO
    }
}

/// Deliver from `remote`'s outbox forever (the task is dropped with the
/// runtime at exit; whatever is not yet sent stays in the outbox).
pub(crate) async fn deliver_forever(remote: Arc<Remote>, store: Arc<Store>, metrics: Arc<Metrics>) {
    metrics
        .outbox_depth
        .with_label_values(&[remote.outbox.sink])
        .set(remote.depth(&store) as i64);
    loop {
        let wait = remote.round(&store, &metrics).await;
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = remote.wake.notified() => {}
            }
        }
    }
}
