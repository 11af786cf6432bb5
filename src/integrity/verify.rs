//! `trailwatch verify`: every digest chain under a bucket (or prefix)
//! walked and checked, every log file a verified digest lists hashed, and
//! every log file no digest lists named, in parallel.
//!
//! What it reports, per object: a digest valid, invalid (its signature,
//! key or place), deleted (named by the next digest, gone), altered (not
//! what the next digest recorded), or missing without a name (a gap in the
//! chain's hours); a log valid, modified, with data appended after its
//! first gzip member, unreadable or deleted; a log no digest lists (added
//! to the bucket after the fact); and the hours at the end of the range no
//! digest covers yet (the last digests deleted, or logging stopped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::chain::{Checked, Finding, Found};
use super::keys::{KeyError, PublicKeys};
use super::{LogCheck, LogHasher, check_digest, key_end_ms, parse_digest};

/// What to verify, and how.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub bucket: String,
    /// Key prefix before `AWSLogs/` (the trail's S3 key prefix), or empty.
    pub prefix: String,
    /// An S3-compatible endpoint instead of AWS's (CloudTrail's endpoint,
    /// for `ListPublicKeys`, is AWS's or `AWS_ENDPOINT_URL_CLOUDTRAIL`).
    pub endpoint_url: Option<String>,
    /// `FINGERPRINT.der` files instead of `ListPublicKeys`.
    pub public_keys: Option<PathBuf>,
    /// Digests ending in this range (ms since the epoch).
    pub start_ms: i64,
    pub end_ms: i64,
    /// Only this account's and this region's chains.
    pub account: Option<String>,
    pub region: Option<String>,
    /// Objects fetched and hashed at once.
    pub concurrency: usize,
    /// Largest log file read (compressed bytes); a larger one is reported,
    /// not read.
    pub max_log_bytes: u64,
}

/// Why verification could not run (as opposed to what it found).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("s3://{bucket}/{prefix}: {message}")]
    List {
        bucket: String,
        prefix: String,
        message: String,
    },
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// One result, as the walk finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// About a digest (or a gap in a chain) in `bucket`.
    Digest { bucket: String, finding: Finding },
    Log {
        bucket: String,
        key: String,
        status: LogStatus,
    },
    /// A chain whose newest digest ends long before the range does: the
    /// hours after it are not covered by any digest.
    Uncovered {
        chain: String,
        last_key: String,
        hours: i64,
    },
}

/// What became of one log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogStatus {
    Valid,
    Modified,
    Appended,
    Unreadable,
    /// Listed by a verified digest, not in the bucket.
    Deleted,
    /// In the bucket within a verified digest's hours, listed by none.
    NotListed,
    /// In the bucket in an hour whose digest is deleted or invalid: what
    /// it holds can be neither confirmed nor refuted (the digest's own
    /// line is the tampering).
    Unverified,
    TooLarge(u64),
    /// It could not be read (not a verdict on its content).
    Error(String),
}

impl Event {
    /// Whether it is evidence of tampering.
    pub fn is_tampering(&self) -> bool {
        match self {
            Event::Digest { finding, .. } => finding.is_tampering(),
            Event::Log { status, .. } => !matches!(
                status,
                LogStatus::Valid
                    | LogStatus::Error(_)
                    | LogStatus::TooLarge(_)
                    | LogStatus::Unverified
            ),
            Event::Uncovered { .. } => false,
        }
    }
}

/// Counts for the closing summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub chains: u64,
    pub digests_valid: u64,
    pub digests_bad: u64,
    pub logs_valid: u64,
    pub logs_bad: u64,
    /// Logs that could not be read (errors, over the size cap).
    pub logs_unchecked: u64,
    pub bytes_hashed: u64,
    pub uncovered: u64,
}

impl Summary {
    fn add(&mut self, e: &Event) {
        match e {
            Event::Digest { finding, .. } => match finding {
                Finding::Valid { .. } => self.digests_valid += 1,
                Finding::ChainStart { .. } => {}
                _ => self.digests_bad += 1,
            },
            Event::Log { status, .. } => match status {
                LogStatus::Valid => self.logs_valid += 1,
                LogStatus::Error(_) | LogStatus::TooLarge(_) | LogStatus::Unverified => {
                    self.logs_unchecked += 1
                }
                _ => self.logs_bad += 1,
            },
            Event::Uncovered { .. } => self.uncovered += 1,
        }
    }

    /// Whether anything was found tampered with.
    pub fn tampered(&self) -> bool {
        self.digests_bad + self.logs_bad > 0
    }
}

/// One chain's place: `…/AWSLogs/[ORG/]ACCOUNT/` and its region.
#[derive(Clone, Debug)]
struct Chain {
    /// Up to and including `ACCOUNT/`.
    base: String,
    region: String,
}

/// Verify everything the options select, calling `on_event` for each
/// result as it is known. Errors are for a walk that could not run (the
/// bucket unreadable, no keys); what it finds is in the events.
pub async fn verify(
    opts: &VerifyOptions,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary, VerifyError> {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let mut conf = aws_sdk_s3::config::Builder::from(&shared);
    conf.set_endpoint_url(opts.endpoint_url.clone());
    let s3 = Client::from_conf(conf.force_path_style(opts.endpoint_url.is_some()).build());
    let mut summary = Summary::default();
    let mut emit = |e: Event, summary: &mut Summary| {
        summary.add(&e);
        on_event(&e);
    };
    let chains = discover(&s3, opts).await?;
    summary.chains = chains.len() as u64;
    let dir_keys = match &opts.public_keys {
        Some(dir) => Some(PublicKeys::from_dir(dir)?),
        None => None,
    };
    let mut region_keys: HashMap<String, Arc<PublicKeys>> = HashMap::new();
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    for chain in chains {
        let keys = match &dir_keys {
            Some(k) => Arc::new(k.clone()),
            None => match region_keys.get(&chain.region) {
                Some(k) => Arc::clone(k),
                None => {
                    let ct = aws_sdk_cloudtrail::Client::from_conf(
                        aws_sdk_cloudtrail::config::Builder::from(&shared)
                            .region(aws_sdk_cloudtrail::config::Region::new(
                                chain.region.clone(),
                            ))
                            .build(),
                    );
                    let k = Arc::new(
                        PublicKeys::list(
                            &ct,
                            opts.start_ms.div_euclid(1000) - 86_400,
                            opts.end_ms.div_euclid(1000) + 86_400,
                        )
                        .await?,
                    );
                    region_keys.insert(chain.region.clone(), Arc::clone(&k));
                    k
                }
            },
        };
        let found = fetch_digests(&s3, opts, &chain, &keys, &limit).await?;
        let newest = found.iter().max_by_key(|f| f.end_ms).cloned();
        // The logs each verified digest lists, and the hours they cover.
        let mut listed: Vec<(String, String, String)> = Vec::new();
        let mut windows: Vec<(i64, i64)> = Vec::new();
        for f in &found {
            if let Ok(c) = &f.checked {
                for l in &c.digest.log_files {
                    listed.push((
                        l.s3_bucket.clone(),
                        l.s3_object.clone(),
                        l.hash_value.clone(),
                    ));
                }
                if let (Some(s), Some(e)) = (
                    crate::time::parse_event_time(&c.digest.digest_start_time),
                    crate::time::parse_event_time(&c.digest.digest_end_time),
                ) {
                    windows.push((s, e));
                }
            }
        }
        for finding in super::chain::walk(found, opts.start_ms) {
            emit(
                Event::Digest {
                    bucket: opts.bucket.clone(),
                    finding,
                },
                &mut summary,
            );
        }
        match newest {
            Some(n) if opts.end_ms - n.end_ms > 2 * 3_600_000 => emit(
                Event::Uncovered {
                    chain: format!(
                        "s3://{}/{}CloudTrail-Digest/{}/",
                        opts.bucket, chain.base, chain.region
                    ),
                    last_key: n.key,
                    hours: (opts.end_ms - n.end_ms) / 3_600_000,
                },
                &mut summary,
            ),
            None => emit(
                Event::Uncovered {
                    chain: format!(
                        "s3://{}/{}CloudTrail-Digest/{}/",
                        opts.bucket, chain.base, chain.region
                    ),
                    last_key: String::new(),
                    hours: (opts.end_ms - opts.start_ms) / 3_600_000,
                },
                &mut summary,
            ),
            Some(_) => {}
        }
        // Every listed log, hashed.
        let listed_keys: HashSet<(String, String)> = listed
            .iter()
            .map(|(b, k, _)| (b.clone(), k.clone()))
            .collect();
        let mut tasks = JoinSet::new();
        for (bucket, key, hash) in listed {
            let (s3, limit, cap) = (s3.clone(), Arc::clone(&limit), opts.max_log_bytes);
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("never closed");
                let (status, bytes) = check_one_log(&s3, &bucket, &key, &hash, cap).await;
                (
                    Event::Log {
                        bucket,
                        key,
                        status,
                    },
                    bytes,
                )
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (event, bytes) = done.expect("a log check panicked");
            summary.bytes_hashed += bytes;
            emit(event, &mut summary);
        }
        // Logs in the bucket, within a verified digest's hours, that no
        // digest lists: put there after the fact.
        for (key, status) in unlisted_logs(&s3, opts, &chain, &windows, &listed_keys).await? {
            emit(
                Event::Log {
                    bucket: opts.bucket.clone(),
                    key,
                    status,
                },
                &mut summary,
            );
        }
    }
    Ok(summary)
}

/// Keys under `prefix` one level down (their last segment), every page.
async fn children(s3: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, VerifyError> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| list_err(bucket, prefix, &e))?;
        for cp in page.common_prefixes() {
            if let Some(p) = cp.prefix().and_then(|p| p.strip_prefix(prefix)) {
                out.push(p.trim_end_matches('/').to_owned());
            }
        }
    }
    Ok(out)
}

/// Every key under `prefix`, with its size, every page.
async fn objects(
    s3: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, i64)>, VerifyError> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| list_err(bucket, prefix, &e))?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.push((k.to_owned(), o.size().unwrap_or(0)));
            }
        }
    }
    Ok(out)
}

fn list_err<E>(
    bucket: &str,
    prefix: &str,
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> VerifyError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    VerifyError::List {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        message: crate::source::aws_error(e),
    }
}

/// The chains under the bucket: `AWSLogs/ACCOUNT/CloudTrail-Digest/REGION/`
/// (and `AWSLogs/o-ORG/ACCOUNT/…` for organisation trails), filtered by
/// account and region.
async fn discover(s3: &Client, opts: &VerifyOptions) -> Result<Vec<Chain>, VerifyError> {
    let root = if opts.prefix.is_empty() {
        "AWSLogs/".to_owned()
    } else {
        format!("{}/AWSLogs/", opts.prefix.trim_end_matches('/'))
    };
    let mut bases = Vec::new();
    for seg in children(s3, &opts.bucket, &root).await? {
        if seg.starts_with("o-") {
            for acct in children(s3, &opts.bucket, &format!("{root}{seg}/")).await? {
                bases.push((format!("{root}{seg}/{acct}/"), acct));
            }
        } else {
            bases.push((format!("{root}{seg}/"), seg));
        }
    }
    let mut chains = Vec::new();
    for (base, account) in bases {
        if opts.account.as_ref().is_some_and(|a| *a != account) {
            continue;
        }
        for region in children(s3, &opts.bucket, &format!("{base}CloudTrail-Digest/")).await? {
            if opts.region.as_ref().is_some_and(|r| *r != region) {
                continue;
            }
            chains.push(Chain {
                base: base.clone(),
                region,
            });
        }
    }
    Ok(chains)
}

/// The days (`YYYY/MM/DD`) a range touches, one more at each end (a
/// digest's key carries its end time; the first hour of a day is the
/// previous day's last).
fn days(start_ms: i64, end_ms: i64) -> Vec<String> {
    let first = start_ms.div_euclid(86_400_000) - 1;
    let last = end_ms.div_euclid(86_400_000) + 1;
    (first..=last).map(crate::source::s3::day_path).collect()
}

/// Fetch and check every digest of `chain` ending in the range.
async fn fetch_digests(
    s3: &Client,
    opts: &VerifyOptions,
    chain: &Chain,
    keys: &Arc<PublicKeys>,
    limit: &Arc<Semaphore>,
) -> Result<Vec<Found>, VerifyError> {
    let mut tasks = JoinSet::new();
    for day in days(opts.start_ms, opts.end_ms) {
        let prefix = format!("{}CloudTrail-Digest/{}/{day}/", chain.base, chain.region);
        for (key, _) in objects(s3, &opts.bucket, &prefix).await? {
            let Some(end_ms) = key_end_ms(&key) else {
                continue; // not a digest's name
            };
            if end_ms < opts.start_ms || end_ms > opts.end_ms {
                continue;
            }
            let (s3, bucket, keys, limit) = (
                s3.clone(),
                opts.bucket.clone(),
                Arc::clone(keys),
                Arc::clone(limit),
            );
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("never closed");
                let checked = fetch_digest(&s3, &bucket, &key, &keys).await;
                Found {
                    key,
                    end_ms,
                    checked,
                }
            });
        }
    }
    let mut found = Vec::new();
    while let Some(f) = tasks.join_next().await {
        found.push(f.expect("a digest check panicked"));
    }
    Ok(found)
}

/// Read one digest with its signature metadata and check it.
async fn fetch_digest(
    s3: &Client,
    bucket: &str,
    key: &str,
    keys: &PublicKeys,
) -> Result<Checked, super::DigestProblem> {
    use super::DigestProblem;
    let resp = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            DigestProblem::Format(format!("unreadable: {}", crate::source::aws_error(&e)))
        })?;
    let meta = resp.metadata().cloned().unwrap_or_default();
    let body = read_capped(resp.body, super::MAX_DIGEST_BYTES)
        .await
        .map_err(DigestProblem::Format)?;
    let (digest, inflated) = parse_digest(&body)?;
    let signature = meta.get("signature").map(|s| s.trim().to_ascii_lowercase());
    check_digest(
        bucket,
        key,
        &digest,
        &inflated,
        signature.as_deref(),
        meta.get("signature-algorithm").map(String::as_str),
        keys,
    )?;
    Ok(Checked {
        hash: super::sha256_hex(&inflated),
        signature: signature.unwrap_or_default(),
        digest,
    })
}

/// An object's body, refusing more than `cap` bytes.
async fn read_capped(
    mut body: aws_sdk_s3::primitives::ByteStream,
    cap: u64,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = body.try_next().await.map_err(|e| e.to_string())? {
        if (out.len() + chunk.len()) as u64 > cap {
            return Err(format!("over {cap} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Fetch one listed log and compare its hash. Returns the status and the
/// compressed bytes hashed.
async fn check_one_log(
    s3: &Client,
    bucket: &str,
    key: &str,
    expected: &str,
    cap: u64,
) -> (LogStatus, u64) {
    let (whole, n) = match hash_object(s3, bucket, key, cap, LogHasher::whole()).await {
        Ok(done) => done,
        Err(status) => return (status, 0),
    };
    if super::classify(whole.as_deref(), None, expected) == LogCheck::Valid {
        return (LogStatus::Valid, n);
    }
    // Not what was listed: read it again for its first member alone (only
    // for files that failed, so the common case inflates once).
    let first = match hash_object(s3, bucket, key, cap, LogHasher::first_member()).await {
        Ok((first, _)) => first,
        Err(status) => return (status, n),
    };
    let status = match super::classify(whole.as_deref(), first.as_deref(), expected) {
        LogCheck::Valid => LogStatus::Valid,
        LogCheck::Modified => LogStatus::Modified,
        LogCheck::Appended => LogStatus::Appended,
        LogCheck::Unreadable => LogStatus::Unreadable,
    };
    (status, n)
}

/// Stream one object through `hasher`: its hash and the compressed bytes
/// read, or the status that says why it could not be.
async fn hash_object(
    s3: &Client,
    bucket: &str,
    key: &str,
    cap: u64,
    mut hasher: LogHasher,
) -> Result<(Option<String>, u64), LogStatus> {
    let resp = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(r) => r,
        Err(e) => {
            let missing = e
                .as_service_error()
                .is_some_and(aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key);
            return Err(if missing {
                LogStatus::Deleted
            } else {
                LogStatus::Error(crate::source::aws_error(&e))
            });
        }
    };
    if let Some(len) = resp.content_length().filter(|n| *n as u64 > cap) {
        return Err(LogStatus::TooLarge(len as u64));
    }
    let mut body = resp.body;
    let mut n = 0u64;
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => {
                n += chunk.len() as u64;
                if n > cap {
                    return Err(LogStatus::TooLarge(n));
                }
                hasher.update(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(LogStatus::Error(e.to_string())),
        }
    }
    Ok((hasher.finish(), n))
}

/// Margin around a digest's hours within which a log's delivery time (the
/// minute in its name) is not judged: a log at the edge may be listed by
/// the neighbouring digest.
const EDGE_MS: i64 = 10 * 60_000;

/// Log files of `chain` in the bucket that no verified digest lists: those
/// delivered (the time in their name) well inside a verified digest's
/// hours were added after the fact; those in an hour between verified
/// digests (its digest deleted or invalid) cannot be verified. Logs after
/// the newest digest are not judged: their digest is not written yet.
async fn unlisted_logs(
    s3: &Client,
    opts: &VerifyOptions,
    chain: &Chain,
    windows: &[(i64, i64)],
    listed: &HashSet<(String, String)>,
) -> Result<Vec<(String, LogStatus)>, VerifyError> {
    let (Some(first), Some(last)) = (
        windows.iter().map(|w| w.0).min(),
        windows.iter().map(|w| w.1).max(),
    ) else {
        return Ok(Vec::new());
    };
    let mut by_day: BTreeMap<String, ()> = BTreeMap::new();
    for (s, e) in windows {
        for d in days(*s, *e) {
            by_day.insert(d, ());
        }
    }
    let mut out = Vec::new();
    for day in by_day.keys() {
        let prefix = format!("{}CloudTrail/{}/{day}/", chain.base, chain.region);
        for (key, _) in objects(s3, &opts.bucket, &prefix).await? {
            let Some(at) = log_key_ms(&key) else { continue };
            if at < first + EDGE_MS
                || at > last - EDGE_MS
                || listed.contains(&(opts.bucket.clone(), key.clone()))
            {
                continue;
            }
            let inside = windows
                .iter()
                .any(|(s, e)| at >= s + EDGE_MS && at <= e - EDGE_MS);
            let near_edge = windows
                .iter()
                .any(|(s, e)| (at - s).abs() < EDGE_MS || (at - e).abs() < EDGE_MS);
            if inside {
                out.push((key, LogStatus::NotListed));
            } else if !near_edge {
                out.push((key, LogStatus::Unverified));
            }
        }
    }
    Ok(out)
}

/// The delivery time in a log file's name
/// (`ACCOUNT_CloudTrail_REGION_20150817T1455Z_abc.json.gz`), in ms.
fn log_key_ms(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    let ts = name.split('_').find(|p| {
        let b = p.as_bytes();
        b.len() == 14 && b[8] == b'T' && b[13] == b'Z' && b[..8].iter().all(u8::is_ascii_digit)
    })?;
    crate::time::parse_event_time(&format!(
        "{}-{}-{}T{}:{}:00Z",
        &ts[0..4],
        &ts[4..6],
        &ts[6..8],
        &ts[9..11],
        &ts[11..13]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_name_gives_its_delivery_minute() {
        let ms = log_key_ms(
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1455Z_abcDEF.json.gz",
        )
        .unwrap();
        assert_eq!(crate::time::iso_time(ms), "2015-08-17T14:55:00Z");
        assert_eq!(log_key_ms("AWSLogs/x/notalog.json.gz"), None);
    }
}
