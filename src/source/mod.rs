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

/// The shared AWS configuration of a source: the default credential chain
/// (env, profile, web identity, ECS task role, IMDSv2) with the source's
/// own region and endpoint, when given.
pub async fn aws_config(region: Option<&str>, endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
