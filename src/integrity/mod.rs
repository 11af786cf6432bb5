//! CloudTrail log-file integrity validation: proof that no log file was
//! deleted or altered after CloudTrail delivered it.
//!
//! With validation on, CloudTrail writes an hourly *digest* per account and
//! region: the log files it delivered in the hour, each with the SHA-256 of
//! its uncompressed content, and a link to the previous digest (its key,
//! the SHA-256 of its uncompressed content and its signature). Each digest
//! is signed (SHA256withRSA, the hex signature in the object's
//! `x-amz-meta-signature`) over
//!
//! ```text
//! digestEndTime \n digestS3Bucket/digestS3Object \n hex(SHA-256(digest)) \n previousDigestSignature
//! ```
//!
//! (`null` for the first digest of a chain), with a key CloudTrail
//! publishes through `ListPublicKeys` and names by fingerprint in the
//! digest. The signature makes a digest unforgeable; the chain makes a
//! deleted digest visible; the hashes make a deleted or edited log visible.
//!
//! - this module: the digest's fields, the signature check and the log
//!   hash, pure functions over bytes;
//! - [`keys`]: the public keys, from a directory or `ListPublicKeys`;
//! - [`chain`]: the walk over one account and region's digests, naming
//!   each deleted, invalid or altered digest and each gap;
//! - [`verify`]: `trailwatch verify`, the walk over a bucket.
//!
//! Every byte of a digest and a log is the attacker's once they hold the
//! bucket: a digest is trusted only after its signature verified, a log
//! list only from a digest that verified, and a log is hashed whole (every
//! gzip member: data appended after the first member, which a reader
//! stopping there would miss, changes the hash).

pub mod chain;
pub mod keys;
pub mod verify;

use std::io::Read;

use serde::Deserialize;

/// The fields of a digest this validation reads (CloudTrail's names).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    #[serde(default)]
    pub aws_account_id: String,
    pub digest_start_time: String,
    pub digest_end_time: String,
    pub digest_s3_bucket: String,
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    #[serde(default)]
    pub digest_signature_algorithm: Option<String>,
    #[serde(default)]
    pub previous_digest_s3_bucket: Option<String>,
    #[serde(default)]
    pub previous_digest_s3_object: Option<String>,
    #[serde(default)]
    pub previous_digest_hash_value: Option<String>,
    /// `null` (absent) for the first digest of a chain.
    #[serde(default)]
    pub previous_digest_signature: Option<String>,
    #[serde(default)]
    pub log_files: Vec<LogFile>,
}

/// One log file a digest lists.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogFile {
    pub s3_bucket: String,
    pub s3_object: String,
    /// Hex SHA-256 of the uncompressed content.
    pub hash_value: String,
    #[serde(default)]
    pub hash_algorithm: Option<String>,
}

/// Why a digest cannot be trusted. Each names what is wrong, never the
/// digest's content (the attacker's).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestProblem {
    #[error("not a gzip'd JSON digest ({0})")]
    Format(String),
    #[error("no signature in its metadata (x-amz-meta-signature)")]
    NoSignature,
    #[error("signed with {0}, not SHA256withRSA")]
    Algorithm(String),
    #[error("names {bucket}/{key} inside: moved or copied from there")]
    Moved { bucket: String, key: String },
    #[error("no public key with fingerprint {0}")]
    UnknownKey(String),
    #[error("signature verification failed")]
    BadSignature,
}

/// Largest digest read (uncompressed). A real one lists an hour of log
/// files, a few hundred kilobytes at most.
pub const MAX_DIGEST_BYTES: u64 = 16 << 20;

/// Inflate a gzip'd digest (every member, at most [`MAX_DIGEST_BYTES`]) and
/// read its fields.
pub fn parse_digest(gz: &[u8]) -> Result<(Digest, Vec<u8>), DigestProblem> {
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .take(MAX_DIGEST_BYTES + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| DigestProblem::Format(e.to_string()))?;
    if inflated.len() as u64 > MAX_DIGEST_BYTES {
        return Err(DigestProblem::Format(format!(
            "over {MAX_DIGEST_BYTES} bytes uncompressed"
        )));
    }
    let digest = serde_json::from_slice(&inflated)
        .map_err(|e| DigestProblem::Format(format!("JSON: {e}")))?;
    Ok((digest, inflated))
}

/// What CloudTrail signs for a digest: its end time, where it was
/// delivered, the hash of its uncompressed content and the previous
/// digest's signature (`null` for none).
pub fn string_to_sign(d: &Digest, inflated: &[u8]) -> String {
    format!(
        "{}\n{}/{}\n{}\n{}",
        d.digest_end_time,
        d.digest_s3_bucket,
        d.digest_s3_object,
        sha256_hex(inflated),
        d.previous_digest_signature.as_deref().unwrap_or("null"),
    )
}

/// Check a digest found at `bucket`/`key`: it says it belongs there, its
/// signature (hex, from the object's metadata) verifies with the key its
/// fingerprint names, by the algorithm the metadata names.
pub fn check_digest(
    bucket: &str,
    key: &str,
    d: &Digest,
    inflated: &[u8],
    signature_hex: Option<&str>,
    algorithm: Option<&str>,
    keys: &keys::PublicKeys,
) -> Result<(), DigestProblem> {
    if d.digest_s3_bucket != bucket || d.digest_s3_object != key {
        return Err(DigestProblem::Moved {
            bucket: d.digest_s3_bucket.chars().take(100).collect(),
            key: d.digest_s3_object.chars().take(300).collect(),
        });
    }
    let signature = signature_hex.ok_or(DigestProblem::NoSignature)?;
    let algorithm = algorithm.unwrap_or("SHA256withRSA");
    if !algorithm.eq_ignore_ascii_case("SHA256withRSA") {
        return Err(DigestProblem::Algorithm(
            algorithm.chars().take(40).collect(),
        ));
    }
    let fingerprint = d.digest_public_key_fingerprint.to_ascii_lowercase();
    let key = keys
        .get(&fingerprint)
        .ok_or_else(|| DigestProblem::UnknownKey(fingerprint.chars().take(64).collect()))?;
    let signature = unhex(signature).ok_or(DigestProblem::BadSignature)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        key,
    )
    .verify(string_to_sign(d, inflated).as_bytes(), &signature)
    .map_err(|_| DigestProblem::BadSignature)
}

/// What a log file's content says against the hash its digest lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogCheck {
    Valid,
    /// Its content hashes to something else.
    Modified,
    /// Its first gzip member is what CloudTrail delivered; more data was
    /// appended after it (records a reader of every member would take as
    /// CloudTrail's, and a validator reading one member would never see).
    Appended,
    /// Not gzip (or damaged): what it holds cannot be what was delivered.
    Unreadable,
}

/// Hash `gz` (every member) and compare with `expected` (hex SHA-256 of the
/// uncompressed content, as the digest lists it).
pub fn check_log(gz: &[u8], expected: &str) -> LogCheck {
    let mut whole = LogHasher::whole();
    whole.update(gz);
    let whole = whole.finish();
    if matches(whole.as_deref(), expected) {
        return LogCheck::Valid;
    }
    let mut first = LogHasher::first_member();
    first.update(gz);
    classify(whole.as_deref(), first.finish().as_deref(), expected)
}

/// What a log is, from the hash of all its members (`None`: not gzip, or
/// cut) and of its first member alone, which is read only when the first
/// did not match: data appended after what CloudTrail delivered is told
/// apart from an edit, and the common case inflates once.
pub fn classify(whole: Option<&str>, first: Option<&str>, expected: &str) -> LogCheck {
    if matches(whole, expected) {
        LogCheck::Valid
    } else if matches(first, expected) {
        LogCheck::Appended
    } else if whole.is_none() {
        LogCheck::Unreadable
    } else {
        LogCheck::Modified
    }
}

fn matches(hash: Option<&str>, expected: &str) -> bool {
    hash.is_some_and(|h| h.eq_ignore_ascii_case(expected.trim()))
}

/// SHA-256 of a gzip'd log's content, a chunk at a time as the object
/// arrives: neither the compressed nor the uncompressed content is held,
/// so a log of any size (a bomb included) costs the decoder's state and
/// one chunk.
pub struct LogHasher {
    decoder: Decoder,
    failed: bool,
}

enum Decoder {
    /// Every member: what a reader of the whole file takes as CloudTrail's.
    Whole(flate2::write::MultiGzDecoder<Sha256Writer>),
    /// The first member only; what follows it is ignored.
    First(flate2::write::GzDecoder<Sha256Writer>),
}

impl LogHasher {
    pub fn whole() -> LogHasher {
        LogHasher {
            decoder: Decoder::Whole(flate2::write::MultiGzDecoder::new(Sha256Writer::new())),
            failed: false,
        }
    }

    pub fn first_member() -> LogHasher {
        LogHasher {
            decoder: Decoder::First(flate2::write::GzDecoder::new(Sha256Writer::new())),
            failed: false,
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        use std::io::Write;
        if self.failed {
            return;
        }
        match &mut self.decoder {
            Decoder::Whole(d) => self.failed = d.write_all(chunk).is_err(),
            Decoder::First(d) => {
                let mut rest = chunk;
                while !rest.is_empty() {
                    match d.write(rest) {
                        // The member is complete: what follows is not its.
                        Ok(0) | Err(_) => {
                            self.failed = true;
                            break;
                        }
                        Ok(n) => rest = &rest[n..],
                    }
                }
            }
        }
    }

    /// The hex SHA-256 of the content. For every member: `None` when the
    /// data is not gzip or is cut. For the first member: what it yielded.
    pub fn finish(self) -> Option<String> {
        match self.decoder {
            Decoder::Whole(mut d) => {
                if self.failed || d.try_finish().is_err() {
                    return None;
                }
                Some(d.get_ref().hex())
            }
            Decoder::First(mut d) => {
                let _ = d.try_finish();
                Some(d.get_ref().hex())
            }
        }
    }
}

/// A `Write` that hashes what it is given.
pub struct Sha256Writer(aws_lc_rs::digest::Context);

impl Sha256Writer {
    fn new() -> Sha256Writer {
        Sha256Writer(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }

    /// The hash so far, in hex.
    fn hex(&self) -> String {
        crate::alert::hex(self.0.clone().finish().as_ref())
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::alert::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Bytes of a hex string; `None` unless it is all hex digits in pairs.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The end time CloudTrail writes into a digest's key
/// (`…_20150817T150131Z.json.gz`), in ms: what a deleted digest's name
/// still tells.
pub fn key_end_ms(key: &str) -> Option<i64> {
    let stem = key.strip_suffix(".json.gz")?;
    let ts = stem.rsplit('_').next()?;
    let b = ts.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &ts[0..4],
        &ts[4..6],
        &ts[6..8],
        &ts[9..11],
        &ts[11..13],
        &ts[13..15]
    );
    crate::time::parse_event_time(&iso)
}

#[cfg(test)]
mod tests;
