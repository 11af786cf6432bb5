//! CloudWatch Logs: a trail's log group, read with FilterLogEvents.
//!
//! Each poll reads from (cursor − `lookback_secs`) on: CloudTrail events
//! reach CloudWatch Logs minutes late, with timestamps older than events
//! already read, and a cursor alone would skip them. Events seen in that
//! window are remembered by id and not read twice; after a restart (memory
//! empty) the window is read again and the store's alert dedup keys keep
//! repeats out. The cursor (newest timestamp read) is committed in the same
//! transaction as the alerts of the events read.
//!
//! Requests are budgeted (`max_requests_per_sec`; AWS allows about 5 per
//! second per account and region for FilterLogEvents, shared by every
//! client), and throttling is retried with backoff by the SDK.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::SourceError;

/// `[[sources.cloudwatch]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CloudWatchConfig {
    /// The trail's log group.
    pub log_group: String,
    /// First run: read events from this many seconds ago.
    pub initial_lookback_secs: u64,
    /// Re-read this many seconds before the cursor on every poll, for
    /// events delivered late.
    pub lookback_secs: u64,
    /// How often to poll, in seconds.
    pub poll_interval_secs: u64,
    /// FilterLogEvents calls per second at most, paging included.
    pub max_requests_per_sec: u32,
    pub region: Option<String>,
    /// A CloudWatch Logs-compatible endpoint (tests).
    pub endpoint_url: Option<String>,
}

impl Default for CloudWatchConfig {
    fn default() -> Self {
        CloudWatchConfig {
            log_group: String::new(),
            initial_lookback_secs: 3600,
            lookback_secs: 900,
            poll_interval_secs: 30,
            max_requests_per_sec: 2,
            region: None,
            endpoint_url: None,
        }
    }
}

/// Events read by one poll, as one JSON-lines document.
pub(crate) struct Batch {
    /// One CloudTrail record per line.
    pub document: Vec<u8>,
    pub events: usize,
    /// Newest timestamp among them (the cursor to commit).
    pub newest_ms: i64,
    pub oldest_ms: i64,
}

pub(crate) struct CloudWatchSource {
    pub config: CloudWatchConfig,
    client: aws_sdk_cloudwatchlogs::Client,
    /// Event id → timestamp, for the lookback window.
    seen: HashMap<String, i64>,
    last_request: Option<Instant>,
}

impl CloudWatchSource {
    pub async fn new(config: CloudWatchConfig) -> CloudWatchSource {
        let shared =
            super::aws_config(config.region.as_deref(), config.endpoint_url.as_deref()).await;
        CloudWatchSource {
            client: aws_sdk_cloudwatchlogs::Client::new(&shared),
            config,
            seen: HashMap::new(),
            last_request: None,
        }
    }

    /// The store key of this source's cursor.
    pub(crate) fn cursor_name(&self) -> String {
        format!("cloudwatch:{}", self.config.log_group)
    }

    /// Wait so requests stay within the budget.
    async fn pace(&mut self) {
        let gap = Duration::from_secs_f64(1.0 / f64::from(self.config.max_requests_per_sec.max(1)));
        if let Some(last) = self.last_request {
            let next = last + gap;
            let now = Instant::now();
            if next > now {
                tokio::time::sleep(next - now).await;
            }
        }
        self.last_request = Some(Instant::now());
    }

    /// Read the events after the cursor (less the lookback) not seen yet.
    pub async fn read(&mut self, cursor_ms: Option<i64>) -> Result<Batch, SourceError> {
        let start = match cursor_ms {
            Some(c) => c - (self.config.lookback_secs as i64) * 1000,
            None => crate::time::now_event_ms() - (self.config.initial_lookback_secs as i64) * 1000,
        };
        self.seen.retain(|_, ts| *ts >= start);
        let mut batch = Batch {
            document: Vec::new(),
            events: 0,
            newest_ms: cursor_ms.unwrap_or(0),
            oldest_ms: i64::MAX,
        };
        let mut token: Option<String> = None;
        loop {
            self.pace().await;
            let resp = self
                .client
                .filter_log_events()
                .log_group_name(&self.config.log_group)
                .start_time(start)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    SourceError::aws(format!("cloudwatch:{}", self.config.log_group), e)
                })?;
            for ev in resp.events() {
                let (Some(id), Some(ts), Some(msg)) = (ev.event_id(), ev.timestamp(), ev.message())
                else {
                    continue;
                };
                if self.seen.insert(id.to_owned(), ts).is_some() {
                    continue;
                }
                // One record per line: a message never holds a raw newline
                // in JSON, but collapse any, to keep lines whole.
                batch
                    .document
                    .extend(msg.trim().replace('\n', " ").as_bytes());
                batch.document.push(b'\n');
                batch.events += 1;
                batch.newest_ms = batch.newest_ms.max(ts);
                batch.oldest_ms = batch.oldest_ms.min(ts);
            }
            match resp.next_token() {
                Some(t) if Some(t) != token.as_deref() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(batch)
    }
}

impl super::Source for CloudWatchSource {
    fn label(&self) -> String {
        self.cursor_name()
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.config.poll_interval_secs)
    }

    fn list(&mut self, poll: &super::Poll<'_>) -> Result<Vec<super::Item>, SourceError> {
        let name = self.cursor_name();
        let cursor = poll
            .store
            .cursor(&name)
            .map_err(|source| SourceError::Cursor {
                name: name.clone(),
                source,
            })?
            .and_then(|c| String::from_utf8(c).ok())
            .and_then(|c| c.parse::<i64>().ok());
        let batch = poll.rt.block_on(self.read(cursor))?;
        if batch.events == 0 {
            return Ok(Vec::new());
        }
        let id = crate::checkpoint::ObjectId {
            source: name.clone(),
            key: format!("{}-{}", batch.oldest_ms, batch.newest_ms),
            etag: format!("{}-{}", batch.events, crate::time::now_event_ms()),
        };
        Ok(vec![super::Item {
            via: "cloudwatch",
            name: format!("{}@{}", id.source, id.key),
            id,
            body: super::Body::Bytes(batch.document),
            cursor: Some((name, batch.newest_ms.to_string().into_bytes())),
        }])
    }
}
