//! SQS: notifications of new CloudTrail files, and CloudTrail events
//! themselves as EventBridge delivers them (seconds after the call, where a
//! log file takes 5 to 15 minutes).
//!
//! Accepted message bodies ([`super::notification`]): S3 event
//! notifications sent directly, wrapped by SNS, or as EventBridge "Object
//! Created" events; CloudTrail's own SNS notifications (`s3Bucket` +
//! `s3ObjectKey` list); EventBridge CloudTrail events (every `… via
//! CloudTrail` detail-type), raw or through SNS, whose record goes through
//! the pipeline as it is. The same event arrives again in the trail's log
//! file: its alerts share their dedup keys (rule and eventID) and its
//! correlation windows count event ids once, so it alerts and counts once.
//! S3's `s3:TestEvent` and malformed messages are counted, logged and
//! deleted (they would never become valid).
//!
//! At least once, then exactly once: a message is deleted only after every
//! object it names is committed (or was already); until then, a failure
//! leaves it to come back after its visibility timeout, which is extended
//! while the daemon is still working on it. The store drops the repeats.

use std::time::Instant;

use serde::Deserialize;

use super::notification::{self, Parsed};
use super::s3::S3Object;
use super::{Body, Item, SourceError};
use crate::checkpoint::ObjectId;

/// `[[sources.sqs]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SqsConfig {
    /// The queue's URL.
    pub queue_url: String,
    /// Long-poll wait per receive, in seconds (at most 20).
    pub wait_time_secs: i32,
    /// How long a received message stays hidden, in seconds; extended while
    /// its objects are still being processed.
    pub visibility_timeout_secs: i32,
    /// Messages per receive (at most 10).
    pub max_messages: i32,
    /// The queue's and buckets' region (else the default chain's).
    pub region: Option<String>,
    /// An SQS/S3-compatible endpoint (tests); S3 then uses path style.
    pub endpoint_url: Option<String>,
    /// Read the digests notifications name (set when `[integrity]` is on).
    #[serde(skip)]
    pub digests: bool,
}

impl Default for SqsConfig {
    fn default() -> Self {
        SqsConfig {
            queue_url: String::new(),
            wait_time_secs: 20,
            visibility_timeout_secs: 300,
            max_messages: 10,
            region: None,
            endpoint_url: None,
            digests: false,
        }
    }
}

/// The store's source for CloudTrail events that came through
/// EventBridge, whatever the queue: an event is known by its id, so
/// EventBridge's own repeats (it delivers at least once) and a second queue
/// fed by the same rule are skipped as processed.
pub(crate) const EVENTBRIDGE_SOURCE: &str = "eventbridge";

/// Longest event id kept as it is in the store's key.
const MAX_EVENT_ID_KEY: usize = 128;

fn sha256_hex(text: &str) -> String {
    crate::alert::hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref(),
    )
}

/// A CloudTrail event from the queue, as the engine reads it: the record in
/// hand, named after the queue and message.
fn event_item(e: notification::CloudTrailEvent, queue_url: &str, message_id: &str) -> Item {
    Item {
        via: "eventbridge",
        id: ObjectId {
            source: EVENTBRIDGE_SOURCE.into(),
            key: match e.event_id {
                // CloudTrail's ids are 36-character UUIDs; a longer one (a
                // forgery) is kept as its hash, so the store's key stays small.
                Some(id) if id.len() > MAX_EVENT_ID_KEY => format!("sha256:{}", sha256_hex(&id)),
                Some(id) => id,
                None => format!("message:{message_id}"),
            },
            etag: String::new(),
        },
        name: format!("{queue_url}#{message_id}"),
        body: Body::Bytes(e.record.into_bytes()),
        cursor: None,
    }
}

/// A received message not yet deleted.
struct InFlight {
    receipt: String,
    objects: Vec<ObjectId>,
    /// When its visibility was last set.
    since: Instant,
}

/// Counters of message handling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SqsStats {
    pub received: u64,
    pub deleted: u64,
    pub test_events: u64,
    pub malformed: u64,
    /// CloudTrail events EventBridge delivered.
    pub events: u64,
    /// Valid notifications naming nothing to read (ObjectRemoved, an empty
    /// `Records`, digest files only): deleted, counted, logged at debug.
    pub nothing_to_read: u64,
}

impl SqsStats {
    /// The `outcome` label of each counter, for
    /// `trailwatch_sqs_messages_total`.
    pub(crate) const OUTCOMES: [&'static str; 6] = [
        "received",
        "deleted",
        "test_event",
        "malformed",
        "cloudtrail_event",
        "nothing_to_read",
    ];

    /// The counters in [`SqsStats::OUTCOMES`] order.
    pub fn values(&self) -> [u64; 6] {
        [
            self.received,
            self.deleted,
            self.test_events,
            self.malformed,
            self.events,
            self.nothing_to_read,
        ]
    }
}

pub(crate) struct SqsSource {
    pub config: SqsConfig,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    inflight: Vec<InFlight>,
    pub stats: SqsStats,
    /// Messages the last receive returned.
    pub last_received: usize,
    /// `stats` as last exported ([`SqsSource::stats_since_last`]).
    exported: SqsStats,
    /// A long poll in flight ([`SqsSource::start_receive`]).
    pending: Option<tokio::task::JoinHandle<Received>>,
}

impl Drop for SqsSource {
    /// A long poll still waiting is abandoned (whatever it receives shows
    /// again after the visibility timeout: delivered later, never lost).
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.abort();
        }
    }
}

type Received = Result<
    aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput,
    aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::receive_message::ReceiveMessageError>,
>;

impl SqsSource {
    pub async fn new(config: SqsConfig) -> SqsSource {
        let shared =
            super::aws_config(config.region.as_deref(), config.endpoint_url.as_deref()).await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.endpoint_url.is_some())
            .build();
        SqsSource {
            sqs: aws_sdk_sqs::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3),
            config,
            inflight: Vec::new(),
            stats: SqsStats::default(),
            last_received: 0,
            exported: SqsStats::default(),
            pending: None,
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> SourceError {
        SourceError::Remote {
            name: self.config.queue_url.clone(),
            message: e.to_string(),
        }
    }

    /// What the counters gained since the last call: the daemon adds it
    /// to its metrics after each receive.
    pub(crate) fn stats_since_last(&mut self) -> [u64; 6] {
        let now = self.stats.values();
        let before = self.exported.values();
        self.exported = self.stats.clone();
        std::array::from_fn(|i| now[i] - before[i])
    }

    /// Start a long poll as a task of its own, unless one is running: a
    /// wait cut short (a stop) leaves it running, and the next receive
    /// takes what it brings instead of asking again. Needs a tokio runtime.
    fn start_receive(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let call = self
            .sqs
            .receive_message()
            .queue_url(&self.config.queue_url)
            .max_number_of_messages(self.config.max_messages.clamp(1, 10))
            .wait_time_seconds(self.config.wait_time_secs.clamp(0, 20))
            .visibility_timeout(self.config.visibility_timeout_secs.max(1));
        self.pending = Some(tokio::spawn(call.send()));
    }

    /// Receive one batch of messages (long poll, waiting for it); returns
    /// the S3 objects they name (to fetch) and the CloudTrail events they
    /// carry (in hand). Messages naming nothing to read are deleted at the
    /// next acknowledgement.
    pub async fn receive(&mut self) -> Result<Vec<Item>, SourceError> {
        self.start_receive();
        self.finish_receive().await
    }

    async fn finish_receive(&mut self) -> Result<Vec<Item>, SourceError> {
        // Cancel-safe: the handle is kept until the poll has returned.
        let joined = match self.pending.as_mut() {
            Some(p) => p.await,
            None => return Ok(Vec::new()),
        };
        self.pending = None;
        let resp = joined
            .map_err(|e| self.err(format!("receive task failed: {e}")))?
            .map_err(|e| SourceError::aws(self.config.queue_url.clone(), e))?;
        let mut out = Vec::new();
        // An object or event named again in the same receive (one message
        // can repeat a key thousands of times) is read once: its message
        // still waits for its commit.
        let mut named = std::collections::HashSet::new();
        self.last_received = resp.messages().len();
        for m in resp.messages() {
            self.stats.received += 1;
            let (Some(receipt), body) = (m.receipt_handle(), m.body().unwrap_or("")) else {
                continue;
            };
            let id = m.message_id().unwrap_or("?");
            let parsed = notification::parse(body);
            // A test event or a malformed message is counted as such, not
            // as a notification naming nothing.
            let names_objects = matches!(parsed, Ok(Parsed::Objects(_)));
            let objects = match parsed {
                Ok(Parsed::Objects(objs)) => objs,
                Ok(Parsed::Event(e)) => {
                    self.stats.events += 1;
                    let item = event_item(e, &self.config.queue_url, id);
                    self.inflight.push(InFlight {
                        receipt: receipt.to_owned(),
                        objects: vec![item.id.clone()],
                        since: Instant::now(),
                    });
                    if named.insert(item.id.clone()) {
                        out.push(item);
                    }
                    continue;
                }
                Ok(Parsed::TestEvent) => {
                    self.stats.test_events += 1;
                    tracing::info!(queue = %self.config.queue_url, message = %id, "S3 test event received and deleted");
                    Vec::new()
                }
                Err(why) => {
                    self.stats.malformed += 1;
                    // Bounded: a serde error quotes the offending value whole.
                    let why = crate::alert::bound(&why.to_string());
                    tracing::warn!(queue = %self.config.queue_url, message = %id, "skipping malformed message: {why}");
                    Vec::new()
                }
            };
            let mut ids = Vec::new();
            for o in objects {
                if crate::pipeline::is_digest_name(&o.key) && !self.config.digests {
                    continue; // digests: read only to validate them
                }
                let obj = S3Object {
                    id: ObjectId {
                        source: format!("s3:{}", o.bucket),
                        key: o.key,
                        etag: o.etag.unwrap_or_default().trim_matches('"').to_owned(),
                    },
                    size: o.size.unwrap_or(0),
                };
                ids.push(obj.id.clone());
                if named.insert(obj.id.clone()) {
                    out.push(obj.item(&o.bucket, "s3_notification"));
                }
            }
            if ids.is_empty() && names_objects {
                self.stats.nothing_to_read += 1;
                tracing::debug!(queue = %self.config.queue_url, message = %id, "notification names nothing to read (removal, digest or empty); deleted");
            }
            self.inflight.push(InFlight {
                receipt: receipt.to_owned(),
                objects: ids,
                since: Instant::now(),
            });
        }
        Ok(out)
    }

    /// Keep messages still being worked on hidden: extend their visibility
    /// once half of it has passed.
    pub(crate) async fn extend_visibility(&mut self) {
        let half =
            std::time::Duration::from_secs((self.config.visibility_timeout_secs.max(2) / 2) as u64);
        for m in self
            .inflight
            .iter_mut()
            .filter(|m| m.since.elapsed() >= half)
        {
            let r = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.config.queue_url)
                .receipt_handle(&m.receipt)
                .visibility_timeout(self.config.visibility_timeout_secs.max(1))
                .send()
                .await;
            match r {
                Ok(_) => m.since = Instant::now(),
                Err(e) => tracing::warn!("extending visibility: {}", super::aws_error(&e)),
            }
        }
    }

    /// Delete the messages whose objects are all `done`; the others come
    /// back after their visibility timeout.
    pub(crate) async fn delete_committed(
        &mut self,
        done: &dyn Fn(&ObjectId) -> bool,
    ) -> Result<(), SourceError> {
        // Messages not done are forgotten here: SQS hands them out again
        // after their visibility timeout.
        for m in std::mem::take(&mut self.inflight) {
            if m.objects.iter().all(done) {
                self.sqs
                    .delete_message()
                    .queue_url(&self.config.queue_url)
                    .receipt_handle(&m.receipt)
                    .send()
                    .await
                    .map_err(|e| SourceError::aws(self.config.queue_url.clone(), e))?;
                self.stats.deleted += 1;
            }
        }
        Ok(())
    }
}

impl super::Source for SqsSource {
    fn label(&self) -> String {
        format!(
            "sqs:{}",
            self.config.queue_url.rsplit('/').next().unwrap_or_default()
        )
    }

    fn declare_metrics(&self, metrics: &crate::metrics::Metrics) {
        let label = super::Source::label(self);
        for outcome in SqsStats::OUTCOMES {
            metrics.sqs_messages.with_label_values(&[&label, outcome]);
        }
    }

    fn poll_interval(&self) -> std::time::Duration {
        // Long polling does the waiting: receive again at once.
        std::time::Duration::ZERO
    }

    fn list(&mut self, poll: &super::Poll<'_>) -> Result<Vec<super::Item>, SourceError> {
        // Wait for the long poll (up to 20 s) on this source's own thread:
        // a message is taken the moment SQS hands it over, and the other
        // sources go on meanwhile. A stop cuts the wait short (the poll
        // still running is kept, and abandoned if the source is dropped:
        // what it receives shows again after the visibility timeout).
        let received = poll.rt.block_on(async {
            tokio::select! {
                r = self.receive() => Some(r),
                () = stopped(poll.stop) => None,
            }
        });
        let label = super::Source::label(self);
        for (outcome, n) in SqsStats::OUTCOMES.iter().zip(self.stats_since_last()) {
            poll.metrics
                .sqs_messages
                .with_label_values(&[label.as_str(), outcome])
                .inc_by(n);
        }
        Ok(received.transpose()?.unwrap_or_default())
    }

    fn fetch(
        &self,
        rt: &tokio::runtime::Runtime,
        items: &[&super::Item],
        cap: u64,
    ) -> Vec<Result<super::Fetched, SourceError>> {
        super::s3::fetch_items(&self.s3, rt, items, cap)
    }

    fn heartbeat(&mut self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.extend_visibility());
    }

    fn ack(&mut self, rt: &tokio::runtime::Runtime, committed: &dyn Fn(&ObjectId) -> bool) {
        if let Err(e) = rt.block_on(self.delete_committed(committed)) {
            tracing::warn!("deleting messages: {e}");
        }
    }

    fn drained_more(&self) -> bool {
        self.last_received > 0
    }
}

/// Resolves once the stop flag is set (checked every 100 ms).
async fn stopped(stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
