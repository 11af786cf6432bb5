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
pub mod online;
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
    /// It could not be read (an error, a throttle, archived to Glacier):
    /// nothing is known about it, which is not evidence of tampering.
    #[error("could not be read: {0}")]
    Unreadable(String),
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
    /// Its first gzip member is exactly what CloudTrail delivered (the
    /// member whole, its checksum right); more data was appended after it
    /// (records a reader of every member would take as CloudTrail's, and a
    /// validator reading one member would never see).
    Appended,
    /// Not gzip, or damaged: what it holds cannot be what was delivered.
    Unreadable,
    /// It inflates past [`MAX_LOG_INFLATED`]: a bomb, not a log file.
    Bomb,
}

/// Largest uncompressed log hashed. CloudTrail's files are tens of
/// megabytes; past this a file is a bomb, refused after the time it took
/// to inflate this much (seconds), not the hour a terabyte would take.
pub const MAX_LOG_INFLATED: u64 = 4 << 30;

/// Hash `gz` (every member) and compare with `expected` (hex SHA-256 of the
/// uncompressed content, as the digest lists it).
pub fn check_log(gz: &[u8], expected: &str) -> LogCheck {
    let mut whole = LogHasher::whole();
    whole.update(gz);
    let whole = whole.finish();
    if matches(whole.hash.as_deref(), expected) {
        return LogCheck::Valid;
    }
    let mut first = LogHasher::first_member();
    first.update(gz);
    classify(&whole, &first.finish(), expected)
}

/// What a log is, from the hash of all its members and of its first member
/// alone (read only when the first did not match: the common case inflates
/// once).
pub fn classify(whole: &Hashed, first: &Hashed, expected: &str) -> LogCheck {
    if matches(whole.hash.as_deref(), expected) {
        LogCheck::Valid
    } else if whole.bomb {
        LogCheck::Bomb
    } else if matches(first.hash.as_deref(), expected) {
        LogCheck::Appended
    } else if whole.hash.is_none() {
        LogCheck::Unreadable
    } else {
        LogCheck::Modified
    }
}

fn matches(hash: Option<&str>, expected: &str) -> bool {
    hash.is_some_and(|h| h.eq_ignore_ascii_case(expected.trim()))
}

/// What hashing a log gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hashed {
    /// Hex SHA-256 of the content; `None` when it is not gzip, is cut or
    /// damaged (a wrong checksum), or is a bomb.
    pub hash: Option<String>,
    /// Uncompressed bytes hashed.
    pub bytes: u64,
    /// It inflated past [`MAX_LOG_INFLATED`].
    pub bomb: bool,
}

/// SHA-256 of a gzip'd log's content, a chunk at a time as the object
/// arrives: neither the compressed nor the uncompressed content is held,
/// so a log of any size costs the decoder's state and one chunk, and a
/// bomb stops at [`MAX_LOG_INFLATED`].
pub struct LogHasher {
    decoder: Decoder,
    failed: bool,
    /// The first member is complete (what follows is not its).
    done: bool,
}

enum Decoder {
    /// Every member: what a reader of the whole file takes as CloudTrail's.
    Whole(flate2::write::MultiGzDecoder<Sha256Writer>),
    /// The first member only.
    First(flate2::write::GzDecoder<Sha256Writer>),
}

impl LogHasher {
    pub fn whole() -> LogHasher {
        LogHasher {
            decoder: Decoder::Whole(flate2::write::MultiGzDecoder::new(Sha256Writer::new())),
            failed: false,
            done: false,
        }
    }

    pub fn first_member() -> LogHasher {
        LogHasher {
            decoder: Decoder::First(flate2::write::GzDecoder::new(Sha256Writer::new())),
            failed: false,
            done: false,
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        use std::io::Write;
        if self.failed || self.done {
            return;
        }
        match &mut self.decoder {
            Decoder::Whole(d) => self.failed = d.write_all(chunk).is_err(),
            Decoder::First(d) => {
                let mut rest = chunk;
                while !rest.is_empty() {
                    match d.write(rest) {
                        Ok(0) => {
                            self.done = true;
                            break;
                        }
                        Ok(n) => rest = &rest[n..],
                        Err(_) => {
                            self.failed = true;
                            break;
                        }
                    }
                }
            }
        }
    }

    pub fn finish(self) -> Hashed {
        let (writer, ok) = match self.decoder {
            Decoder::Whole(mut d) => {
                let ok = !self.failed && d.try_finish().is_ok();
                (d.get_ref().clone_state(), ok)
            }
            Decoder::First(mut d) => {
                // A checksum or a trailer that is wrong is damage, not
                // an append.
                let ok = !self.failed && d.try_finish().is_ok();
                (d.get_ref().clone_state(), ok)
            }
        };
        Hashed {
            hash: (ok && !writer.1).then_some(writer.0),
            bytes: writer.2,
            bomb: writer.1,
        }
    }
}

/// A `Write` that hashes what it is given, refusing past
/// [`MAX_LOG_INFLATED`].
pub struct Sha256Writer {
    ctx: aws_lc_rs::digest::Context,
    bytes: u64,
    bomb: bool,
}

impl Sha256Writer {
    fn new() -> Sha256Writer {
        Sha256Writer {
            ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            bytes: 0,
            bomb: false,
        }
    }

    /// (hex hash so far, bomb, bytes).
    fn clone_state(&self) -> (String, bool, u64) {
        (
            crate::alert::hex(self.ctx.clone().finish().as_ref()),
            self.bomb,
            self.bytes,
        )
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes + buf.len() as u64 > MAX_LOG_INFLATED {
            self.bomb = true;
            return Err(std::io::Error::other("inflates past the cap"));
        }
        self.bytes += buf.len() as u64;
        self.ctx.update(buf);
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
