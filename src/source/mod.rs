//! Source stage: where objects come from. Each source yields named objects
//! (a file path, later `s3://bucket/key`) as whole byte buffers for the
//! decode stage; it knows nothing of gzip or JSON.
//!
//! - [`files`]: local files, directories (recursive) and stdin.
//! - [`s3`]: CloudTrail's S3 key layout, polled with a trailing window.
//! - [`sqs`]: S3 / EventBridge / CloudTrail notifications on a queue.
//! - [`cloudwatch`]: a trail's CloudWatch Logs group, with a cursor.

pub mod cloudwatch;
pub mod files;
pub mod s3;
pub mod sqs;

use thiserror::Error;

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
    /// A remote service refused or failed (after the SDK's retries).
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
}
