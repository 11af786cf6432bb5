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

/// An AWS call's failure in one short line: the service's error code and
/// message with the HTTP status (`NoSuchKey (404): The specified key does
/// not exist.`), or for a failure before any answer (a timeout, a refused
/// connection) its cause chain, cut at 300 characters. The SDK's full
/// context (the raw response, some 2,000 characters) is for debugging, not
/// for a log line repeated at every visibility timeout of a poison message.
pub fn aws_error<E>(
    e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
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
        (None, _) => match &e {
            SdkError::ServiceError(_) => format!(
                "service error{} without an error code",
                status.map(|s| format!(" ({s})")).unwrap_or_default()
            ),
            _ => aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        },
    };
    let line = crate::alert::jsonl::clean(Some(line.trim()));
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
