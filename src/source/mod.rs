//! Source stage: where objects come from. Each source lists named objects
//! ([`Item`]: a local file, bytes in hand, or an object to fetch) for the
//! decode stage; it knows nothing of gzip or JSON.
//!
//! Every source implements [`Source`]; the daemon drives them through it
//! and never names a kind. A new source is its own file, its configuration
//! block, and one line in [`from_config`].
//!
//! - [`files`]: local files, directories (recursive) and stdin (`scan`),
//!   and the daemon's watched directories.
//! - [`stdin`]: JSON lines on the daemon's standard input.
//! - [`s3`]: CloudTrail's S3 key layout, polled with a trailing window.
//! - [`sqs`]: S3 / EventBridge / CloudTrail notifications on a queue, in
//!   the formats [`notification`] reads.
//! - [`cloudwatch`]: a trail's CloudWatch Logs group, with a cursor.

pub mod cloudwatch;
pub mod files;
pub mod notification;
pub mod s3;
pub mod sqs;
pub mod stdin;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use thiserror::Error;

use crate::checkpoint::{ObjectId, Store};
use crate::metrics::Metrics;

/// One object a source listed, as the engine reads it.
#[derive(Debug)]
pub struct Item {
    /// Its identity in the store (what makes it processed once).
    pub id: ObjectId,
    /// Its name in alerts and logs.
    pub name: String,
    pub body: Body,
    /// The source cursor that committing this item advances, if any.
    pub cursor: Option<(String, Vec<u8>)>,
    /// The path it came by, for the time-to-alert histograms' `via` label
    /// (one of [`VIA`]).
    pub via: &'static str,
}

/// Every path an item comes by: the `via` label values of the time-to-alert
/// histograms (a fixed set, whatever the configuration).
pub(crate) const VIA: [&str; 6] = [
    "files",
    "stdin",
    "s3_poll",
    "s3_notification",
    "eventbridge",
    "cloudwatch",
];

/// Where an item's bytes are.
#[derive(Debug)]
pub enum Body {
    /// A local file, read by the worker that parses it (as a stream when
    /// large), never held whole for a batch.
    File(PathBuf),
    /// Already read (log events, lines of stdin).
    Bytes(Vec<u8>),
    /// Remote, `size` bytes as listed: [`Source::fetch`] reads it.
    Fetch { size: u64 },
}

/// An object's bytes as read, with the metadata the integrity stage
/// needs: CloudTrail signs each digest and puts the signature in the
/// digest object's metadata, not in its body.
#[derive(Debug, Default)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// `x-amz-meta-signature` (hex), when the object has one.
    pub signature: Option<String>,
    /// `x-amz-meta-signature-algorithm`.
    pub signature_algorithm: Option<String>,
}

impl From<Vec<u8>> for Fetched {
    fn from(bytes: Vec<u8>) -> Fetched {
        Fetched {
            bytes,
            ..Fetched::default()
        }
    }
}

/// What a source may use while listing.
pub struct Poll<'a> {
    /// The runtime the AWS SDK runs on.
    pub rt: &'a tokio::runtime::Runtime,
    /// `run --once`: list everything there is now, waiting for it.
    pub once: bool,
    /// Progress state (a cursor to resume from).
    pub store: &'a Store,
    /// Set when the daemon is asked to stop: long waits end early.
    pub stop: &'a AtomicBool,
    pub metrics: &'a Metrics,
}

/// A source of objects.
pub trait Source: Send {
    /// The `source` label of its metrics and logs: from the configuration,
    /// so bounded.
    fn label(&self) -> String;

    /// How long until the next look.
    fn poll_interval(&self) -> Duration;

    /// Create the source's own metric series at zero (beyond the ones
    /// every source has), so they exist before anything happens.
    fn declare_metrics(&self, _metrics: &Metrics) {}

    /// What is new. An error is logged and counted, and the source is
    /// tried again at its next poll.
    fn list(&mut self, poll: &Poll<'_>) -> Result<Vec<Item>, SourceError>;

    /// The bytes of these [`Body::Fetch`] items (at most `cap` bytes
    /// each), in order; concurrently for remote sources.
    fn fetch(
        &self,
        _rt: &tokio::runtime::Runtime,
        items: &[&Item],
        _cap: u64,
    ) -> Vec<Result<Fetched, SourceError>> {
        items
            .iter()
            .map(|i| {
                Err(SourceError::Remote {
                    name: i.name.clone(),
                    message: format!("{} fetches nothing", self.label()),
                })
            })
            .collect()
    }

    /// Keep what is in progress claimed (a queue's messages hidden).
    fn heartbeat(&mut self, _rt: &tokio::runtime::Runtime) {}

    /// Release what is committed (`committed` says which items are): a
    /// queue deletes its messages.
    fn ack(&mut self, _rt: &tokio::runtime::Runtime, _committed: &dyn Fn(&ObjectId) -> bool) {}

    /// In `once` mode: list again at once (a queue is received from until
    /// it comes back empty).
    fn drained_more(&self) -> bool {
        false
    }

    /// A listing waits for input as long as there is none (stdin), so a
    /// long one is not a stuck one (`/readyz` reports a source inside one
    /// listing or fetch for longer than `http.stall_secs`).
    fn listing_waits_for_input(&self) -> bool {
        false
    }

    /// Nothing more to give, ever (stdin closed).
    fn finished(&self) -> bool {
        false
    }
}

/// Every configured source, in configuration order by kind.
pub(crate) fn from_config(
    config: &crate::config::Config,
    rt: &tokio::runtime::Runtime,
) -> Vec<Box<dyn Source>> {
    let s = &config.sources;
    let mut out: Vec<Box<dyn Source>> = Vec::new();
    out.extend(
        s.files
            .iter()
            .map(|c| Box::new(files::Watched::new(c.clone())) as Box<dyn Source>),
    );
    out.extend(s.s3.iter().map(|c| {
        let c = s3::S3Config {
            digests: config.integrity.enabled,
            ..c.clone()
        };
        Box::new(rt.block_on(s3::S3Source::new(c))) as Box<dyn Source>
    }));
    out.extend(s.sqs.iter().map(|c| {
        let c = sqs::SqsConfig {
            digests: config.integrity.enabled,
            ..c.clone()
        };
        Box::new(rt.block_on(sqs::SqsSource::new(c))) as Box<dyn Source>
    }));
    out.extend(s.cloudwatch.iter().map(|c| {
        Box::new(rt.block_on(cloudwatch::CloudWatchSource::new(c.clone()))) as Box<dyn Source>
    }));
    if s.stdin {
        out.push(Box::new(stdin::StdinSource::start()));
    }
    out
}

/// A problem reading an object from its source.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read {name}: {source}")]
    Io {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} is {size} bytes, over the cap of {cap} bytes")]
    TooLarge { name: String, size: u64, cap: u64 },
    /// A remote read failed for a reason of our own (not fetched, a body
    /// cut short).
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
    /// An AWS call refused or failed (after the SDK's retries): one short
    /// line to log ([`aws_error`]), and the SDK's error, with the service's
    /// error and the raw response, as the cause.
    #[error("{name}: {summary}")]
    Aws {
        name: String,
        summary: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The source's saved cursor could not be read.
    #[error("reading the cursor of {name}: {source}")]
    Cursor {
        name: String,
        #[source]
        source: crate::checkpoint::StoreError,
    },
}

impl SourceError {
    /// An AWS call on `name` failed: its short line, and the error kept as
    /// the cause.
    pub fn aws<E>(
        name: impl Into<String>,
        e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> SourceError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        SourceError::Aws {
            name: name.into(),
            summary: aws_error(&e),
            source: Box::new(e),
        }
    }
}

/// How long an AWS call may wait for the first byte of its answer.
pub(crate) const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The shared AWS configuration of a source: the default credential chain
/// (env, profile, web identity, ECS task role, IMDSv2) with the source's
/// own region and endpoint, when given.
pub(crate) async fn aws_config(
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> aws_config::SdkConfig {
    // A server that accepts the connection and never answers must fail the
    // call (and so the listing, logged, counted and shown on /readyz), not
    // hold its source forever: no bytes within a minute is an error. A long
    // poll answers within its 20 s wait.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(READ_TIMEOUT)
        .build();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// [`aws_config`] for callers outside the sources (`trailwatch posture`).
pub async fn aws_config_for(region: &str, endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    aws_config(Some(region), endpoint_url).await
}

/// An AWS call's failure in one short line: the service's error code and
/// message with the HTTP status (`NoSuchKey (404): The specified key does
/// not exist.`), or for a failure before any answer (a timeout, a refused
/// connection) its cause chain, cut at 300 characters. The SDK's full
/// context (the raw response, some 2,000 characters) is for debugging, not
/// for a log line repeated at every visibility timeout of a poison message.
pub(crate) fn aws_error<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
    let status = e.raw_response().map(|r| r.status().as_u16());
    let line = match (e.code(), e.message()) {
        (Some(code), message) => {
            let status = status.map(|s| format!(" ({s})")).unwrap_or_default();
            match message {
                Some(m) => format!("{code}{status}: {m}"),
                None => format!("{code}{status}"),
            }
        }
        (None, _) => match e {
            SdkError::ServiceError(_) => format!(
                "service error{} without an error code",
                status.map(|s| format!(" ({s})")).unwrap_or_default()
            ),
            _ => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        },
    };
    let line = crate::alert::jsonl::clean(Some(line.trim()));
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
