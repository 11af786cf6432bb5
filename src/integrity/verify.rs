//! `trailwatch verify`: every digest chain under a bucket (or prefix)
//! walked and checked, every log file a verified digest lists hashed, and
//! every log file no digest lists named, in parallel.
//!
//! What it reports, per object: a digest valid, invalid (its signature,
//! key or place), deleted (named by the next digest, gone), altered (not
//! what the next digest recorded), or missing without a name (a gap in the
//! chain's hours); a log valid, modified, with data appended after its
//! first gzip member, unreadable, a bomb, or deleted; a log no digest
//! lists in hours verified digests cover (added to the bucket after the
//! fact), or in hours none covers (not verifiable); and the hours of the
//! range no digest covers (the newest digests deleted, a whole region's or
//! account's digests deleted, logging stopped).
//!
//! Each account and region holds one chain per trail (the digest's name
//! carries the trail): two trails delivering to one bucket are walked
//! apart, so one's digests never cover for the other's deleted ones.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::EncodingType;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::chain::{Checked, Finding, Found};
use super::keys::{KeyError, PublicKeys};
use super::{LogCheck, LogHasher, check_digest, key_end_ms, parse_digest};
// S3 sends keys in this encoding in listings (`encoding-type=url`) as in
// event notifications.
use crate::source::notification::url_decode;

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
    /// Log files delivered in this range (ms since the epoch), and the
    /// digests that cover it.
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
    /// The time now (ms): what the newest digest can be expected to cover.
    pub now_ms: i64,
}

/// Why verification could not start (as opposed to what it found).
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
    /// Hours of the range no digest of `chain` covers: after `last_key`
    /// (the newest digests deleted, or logging stopped), between two
    /// segments of a chain (`last_key` then `next_key`), or at all (no
    /// digest in the range while log files are there).
    Uncovered {
        chain: String,
        last_key: String,
        next_key: String,
        hours: i64,
    },
    /// Part of the walk could not be done (a listing failed): what it
    /// would have checked is unverified.
    Error { what: String, message: String },
}

/// What became of one log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogStatus {
    Valid,
    Modified,
    Appended,
    Unreadable,
    /// Inflates past [`super::MAX_LOG_INFLATED`].
    Bomb,
    /// Listed by a verified digest, not in the bucket.
    Deleted,
    /// In the bucket within hours verified digests cover, listed by none.
    NotListed,
    /// Under the region's `CloudTrail/` folder but outside its
    /// `YYYY/MM/DD/` day folders (`2026/11//20/`, `2026/11/32/`, the
    /// region's root): CloudTrail never delivers there, and a reader of the
    /// whole prefix would take it as a log.
    Stray,
    /// In the bucket in hours no verified digest covers (its digest
    /// deleted or invalid, or none written): neither confirmed nor refuted.
    Unverified,
    /// Delivered after the newest digest of a trail still running: its
    /// digest is not written yet.
    Pending,
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
                    | LogStatus::Pending
                    | LogStatus::Error(_)
                    | LogStatus::TooLarge(_)
                    | LogStatus::Unverified
            ),
            Event::Uncovered { .. } => true,
            Event::Error { .. } => false,
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
    /// Logs that could not be read or verified.
    pub logs_unchecked: u64,
    /// Logs after the newest digest of a live trail: not digested yet.
    pub logs_pending: u64,
    /// Uncompressed bytes hashed.
    pub bytes_hashed: u64,
    pub uncovered: u64,
    pub errors: u64,
}

impl Summary {
    fn add(&mut self, e: &Event) {
        match e {
            Event::Digest { finding, .. } => match finding {
                Finding::Valid { .. } => self.digests_valid += 1,
                Finding::ChainStart { .. } => {}
                f if f.is_unchecked() => self.errors += 1,
                _ => self.digests_bad += 1,
            },
            Event::Log { status, .. } => match status {
                LogStatus::Valid => self.logs_valid += 1,
                LogStatus::Pending => self.logs_pending += 1,
                LogStatus::Error(_) | LogStatus::TooLarge(_) | LogStatus::Unverified => {
                    self.logs_unchecked += 1
                }
                _ => self.logs_bad += 1,
            },
            Event::Uncovered { .. } => self.uncovered += 1,
            Event::Error { .. } => self.errors += 1,
        }
    }

    /// Whether anything was found tampered with (or left uncovered).
    pub fn tampered(&self) -> bool {
        self.digests_bad + self.logs_bad + self.uncovered > 0
    }

    /// Whether some of the range could not be verified (logs pending
    /// their digest included: the newest hours are not proven yet).
    pub fn incomplete(&self) -> bool {
        self.chains == 0 || self.logs_unchecked + self.logs_pending + self.errors > 0
    }
}

/// One account and region: `…/AWSLogs/[ORG/]ACCOUNT/` and the region.
#[derive(Clone, Debug)]
struct Place {
    /// Up to and including `ACCOUNT/`.
    base: String,
    region: String,
}

/// A digest delivered this much after the hour it covers is still on time;
/// past it (and for `--end` this far before now), the hour is uncovered.
const LATE_MS: i64 = 75 * 60_000;
/// How far before the range digest names are read: a trail with digests
/// there and none in the range had its digests deleted, or stopped.
const LOOK_BACK_MS: i64 = 24 * 3_600_000;
const HOUR_MS: i64 = 3_600_000;

/// Verify everything the options select, calling `on_event` for each
/// result as it is known. An error is a walk that could not start (the
/// bucket unreadable, no keys); what it finds, failures on the way
/// included, is in the events.
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
    let places = discover(&s3, opts).await?;
    let dir_keys = match &opts.public_keys {
        Some(dir) => Some(Arc::new(PublicKeys::from_dir(dir)?)),
        None => None,
    };
    let mut region_keys: HashMap<String, Arc<PublicKeys>> = HashMap::new();
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    for place in places {
        let keys = match &dir_keys {
            Some(k) => Arc::clone(k),
            None => match region_keys.get(&place.region) {
                Some(k) => Arc::clone(k),
                None => {
                    let ct = aws_sdk_cloudtrail::Client::from_conf(
                        aws_sdk_cloudtrail::config::Builder::from(&shared)
                            .region(aws_sdk_cloudtrail::config::Region::new(
                                place.region.clone(),
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
                    region_keys.insert(place.region.clone(), Arc::clone(&k));
                    k
                }
            },
        };
        let mut events = Vec::new();
        let (n, bytes) =
            verify_place(&s3, opts, &place, &keys, &limit, &mut |e| events.push(e)).await;
        summary.chains += n;
        summary.bytes_hashed += bytes;
        for e in events {
            emit(e, &mut summary);
        }
    }
    Ok(summary)
}

/// One trail's digests in one place, walked.
struct Trail {
    found: Vec<Found>,
    /// Hours its verified digests cover, merged where they touch.
    covered: Vec<(i64, i64)>,
}

/// Verify one account and region: its trails' chains, their logs, the
/// logs none lists. Returns the number of chains and the bytes hashed.
async fn verify_place(
    s3: &Client,
    opts: &VerifyOptions,
    place: &Place,
    keys: &Arc<PublicKeys>,
    limit: &Arc<Semaphore>,
    emit: &mut dyn FnMut(Event),
) -> (u64, u64) {
    let chain_name = |trail: &str| {
        format!(
            "s3://{}/{}CloudTrail-Digest/{}/ ({})",
            opts.bucket,
            place.base,
            place.region,
            if trail.is_empty() { "-" } else { trail }
        )
    };
    let live = opts.end_ms + LATE_MS > opts.now_ms;
    let fetch_end = opts.end_ms + LATE_MS;
    let (found, before) = match fetch_digests(s3, opts, place, keys, limit, fetch_end).await {
        Ok(f) => f,
        Err((what, message)) => {
            emit(Event::Error { what, message });
            return (0, 0);
        }
    };
    // One chain per trail (and home region), from the digest's name.
    let mut trails: BTreeMap<String, Trail> = BTreeMap::new();
    for f in found {
        trails
            .entry(trail_of(&f.key))
            .or_insert_with(|| Trail {
                found: Vec::new(),
                covered: Vec::new(),
            })
            .found
            .push(f);
    }
    // A trail with digests the day before the range and none in it: its
    // hours in the range are covered by nothing.
    let mut vanished: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (key, end) in before {
        let t = trail_of(&key);
        if trails.contains_key(&t) {
            continue;
        }
        let e = vanished.entry(t).or_insert((key.clone(), end));
        if end > e.1 {
            *e = (key, end);
        }
    }
    let expected = if live {
        opts.now_ms - 2 * HOUR_MS
    } else {
        opts.end_ms
    };
    for (name, (key, end)) in &vanished {
        emit(Event::Uncovered {
            chain: chain_name(name),
            last_key: key.clone(),
            next_key: String::new(),
            hours: ((expected - end) as f64 / HOUR_MS as f64).ceil().max(1.0) as i64,
        });
    }
    let mut listed: Vec<(String, String, String)> = Vec::new();
    for (name, trail) in &mut trails {
        let mut windows = Vec::new();
        for f in &trail.found {
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
        trail.covered = merge(windows);
        for finding in super::chain::walk(trail.found.clone(), opts.start_ms) {
            emit(Event::Digest {
                bucket: opts.bucket.clone(),
                finding,
            });
        }
        // Hours of the range the chain leaves uncovered: between segments
        // (a chain that starts again: logging or validation was stopped)
        // and after its newest digest.
        let mut by_end: Vec<&Found> = trail.found.iter().collect();
        by_end.sort_by_key(|f| f.end_ms);
        for pair in by_end.windows(2) {
            let (older, newer) = (pair[0], pair[1]);
            let start = match &newer.checked {
                Ok(c) if c.digest.previous_digest_s3_object.is_none() => {
                    crate::time::parse_event_time(&c.digest.digest_start_time)
                }
                _ => None,
            };
            // A chain's windows abut to the second: a restart that leaves
            // more than a few minutes between them left hours unlogged.
            if let Some(start) = start
                && start - older.end_ms > EDGE_MS
            {
                emit(Event::Uncovered {
                    chain: chain_name(name),
                    last_key: older.key.clone(),
                    next_key: newer.key.clone(),
                    hours: ((start - older.end_ms) as f64 / HOUR_MS as f64)
                        .round()
                        .max(1.0) as i64,
                });
            }
        }
        if let Some(newest) = by_end.last()
            && newest.end_ms < expected
        {
            emit(Event::Uncovered {
                chain: chain_name(name),
                last_key: newest.key.clone(),
                next_key: String::new(),
                hours: ((expected - newest.end_ms) as f64 / HOUR_MS as f64).ceil() as i64,
            });
        }
    }
    // Every listed log, hashed.
    let listed_keys: HashSet<(String, String)> = listed
        .iter()
        .map(|(b, k, _)| (b.clone(), k.clone()))
        .collect();
    let mut tasks = JoinSet::new();
    for (bucket, key, hash) in listed {
        let (s3, limit, cap) = (s3.clone(), Arc::clone(limit), opts.max_log_bytes);
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
    let mut hashed = 0;
    while let Some(done) = tasks.join_next().await {
        let (event, bytes) = done.expect("a log check panicked");
        hashed += bytes;
        emit(event);
    }
    // The logs no verified digest lists.
    match judge_unlisted(s3, opts, place, &trails, &listed_keys, live).await {
        Ok(judged) => {
            if trails.is_empty() && vanished.is_empty() && !judged.is_empty() {
                // Log files and not one digest: validation is off for this
                // account and region, or its digests were deleted.
                emit(Event::Uncovered {
                    chain: chain_name(""),
                    last_key: String::new(),
                    next_key: String::new(),
                    hours: (opts.end_ms - opts.start_ms).div_euclid(HOUR_MS).max(1),
                });
            }
            for (key, status) in judged {
                emit(Event::Log {
                    bucket: opts.bucket.clone(),
                    key,
                    status,
                });
            }
        }
        Err((what, message)) => emit(Event::Error { what, message }),
    }
    // Objects outside CloudTrail's day folders: no digest ever lists one.
    match stray_objects(s3, opts, place).await {
        Ok(stray) => {
            for key in stray {
                if !listed_keys.contains(&(opts.bucket.clone(), key.clone())) {
                    emit(Event::Log {
                        bucket: opts.bucket.clone(),
                        key,
                        status: LogStatus::Stray,
                    });
                }
            }
        }
        Err(e) => emit(Event::Error {
            what: format!(
                "s3://{}/{}CloudTrail/{}/",
                opts.bucket, place.base, place.region
            ),
            message: e.to_string(),
        }),
    }
    ((trails.len() + vanished.len()) as u64, hashed)
}

/// The trail a digest belongs to: its name without the end time
/// (`ACCOUNT_CloudTrail-Digest_REGION_TRAIL_HOMEREGION`).
pub(crate) fn trail_of(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.strip_suffix(".json.gz").unwrap_or(name);
    stem.rsplit_once('_').map_or(stem, |(t, _)| t).to_owned()
}

/// Intervals merged where they touch (within a few minutes: digests'
/// windows abut to the second).
fn merge(mut w: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    w.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (s, e) in w {
        match out.last_mut() {
            Some(last) if s <= last.1 + 5 * 60_000 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// A log delivered within this much of the edge of the hours verified
/// digests cover may belong to the digest beyond the edge (the minute in
/// its name is not the second its digest window uses): not judged as
/// added, only as not verifiable.
const EDGE_MS: i64 = 10 * 60_000;

/// Every log object of `place` in the range that no verified digest lists:
/// added after delivery when the hours around it are covered by every
/// trail that was delivering then; not verifiable otherwise; skipped when
/// it is newer than a live trail's newest digest (not digested yet).
async fn judge_unlisted(
    s3: &Client,
    opts: &VerifyOptions,
    place: &Place,
    trails: &BTreeMap<String, Trail>,
    listed: &HashSet<(String, String)>,
    live: bool,
) -> Result<Vec<(String, LogStatus)>, (String, String)> {
    let newest = trails
        .values()
        .filter_map(|t| t.covered.last().map(|c| c.1))
        .min();
    // Covered at `at` by every trail that had started by then (one whose
    // newest digests are gone may still have been delivering: its hours
    // after them are reported uncovered, and cannot vouch for a file), and
    // by at least one.
    let covered_at = |at: i64| {
        let mut any = false;
        for t in trails.values() {
            let Some(first) = t.covered.first() else {
                continue;
            };
            if at < first.0 {
                continue;
            }
            if !t
                .covered
                .iter()
                .any(|(s, e)| at >= s + EDGE_MS && at <= e - EDGE_MS)
            {
                return false;
            }
            any = true;
        }
        any
    };
    let mut out = Vec::new();
    for day in days(opts.start_ms, opts.end_ms) {
        let prefix = format!("{}CloudTrail/{}/{day}/", place.base, place.region);
        let objects = objects(s3, &opts.bucket, &prefix)
            .await
            .map_err(|e| (format!("s3://{}/{prefix}", opts.bucket), e.to_string()))?;
        let day_start =
            crate::time::parse_event_time(&format!("{}T00:00:00Z", day.replace('/', "-")))
                .unwrap_or(i64::MIN);
        for (key, _) in objects {
            if listed.contains(&(opts.bucket.clone(), key.clone())) {
                continue;
            }
            let status = match log_key_ms(&key) {
                // CloudTrail names a file by its delivery time and files it
                // under that day: a name of another day, or of a time not
                // come yet, is not CloudTrail's.
                Some(at) if at.div_euclid(86_400_000) != day_start.div_euclid(86_400_000) => {
                    LogStatus::NotListed
                }
                Some(at) if at > opts.now_ms + EDGE_MS => LogStatus::NotListed,
                Some(at) if at < opts.start_ms || at > opts.end_ms => {
                    // Outside the range by its name; in the range's
                    // folders all the same: judged by its folder's day.
                    if day_start >= opts.start_ms && day_start + 86_400_000 <= opts.end_ms {
                        day_status(&covered_at, day_start)
                    } else {
                        continue;
                    }
                }
                Some(at) if live && newest.is_some_and(|n| at > n - EDGE_MS) => {
                    LogStatus::Pending // its digest is not written yet
                }
                Some(at) if covered_at(at) => LogStatus::NotListed,
                Some(_) => LogStatus::Unverified,
                // A name CloudTrail never writes: judged by its day.
                None => day_status(&covered_at, day_start),
            };
            out.push((key, status));
        }
    }
    Ok(out)
}

/// For an object whose name gives no usable time: added if its whole day
/// is covered, else not verifiable.
fn day_status(covered_at: &dyn Fn(i64) -> bool, day_start: i64) -> LogStatus {
    let whole_day = (0..24 * 6).all(|i| covered_at(day_start + i * 10 * 60_000 + 5 * 60_000));
    if whole_day {
        LogStatus::NotListed
    } else {
        LogStatus::Unverified
    }
}

/// Objects of `place`'s `CloudTrail/REGION/` tree, for the years and
/// months of the range, that are not in a `YYYY/MM/DD/` folder of a real
/// date: at the region's, a year's or a month's level, or under any folder
/// there that is not a year, a month or a day. Listed level by level (a few
/// listings, not the region's history); a stray folder is listed whole.
async fn stray_objects(
    s3: &Client,
    opts: &VerifyOptions,
    place: &Place,
) -> Result<Vec<String>, VerifyError> {
    let root = format!("{}CloudTrail/{}/", place.base, place.region);
    let bucket = &opts.bucket;
    let range = days(opts.start_ms, opts.end_ms);
    let years: BTreeSet<&str> = range.iter().map(|d| &d[..4]).collect();
    let months: BTreeSet<&str> = range.iter().map(|d| &d[..7]).collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let mut out = Vec::new();
    let visit = |dirs: Vec<String>, ok: &dyn Fn(&str) -> bool, at: &str| {
        dirs.into_iter()
            .filter(|d| !ok(d))
            .map(|d| format!("{at}{d}/"))
            .collect::<Vec<_>>()
    };
    let mut stray_dirs = Vec::new();
    let (dirs, files) = level(s3, bucket, &root).await?;
    out.extend(files);
    stray_dirs.extend(visit(dirs, &|d| digits(d, 4), &root));
    for y in years {
        let at = format!("{root}{y}/");
        let (dirs, files) = level(s3, bucket, &at).await?;
        out.extend(files);
        stray_dirs.extend(visit(
            dirs,
            &|d| digits(d, 2) && (1..=12).contains(&d.parse::<u32>().unwrap_or(0)),
            &at,
        ));
    }
    for m in months {
        let at = format!("{root}{m}/");
        let (dirs, files) = level(s3, bucket, &at).await?;
        out.extend(files);
        stray_dirs.extend(visit(
            dirs,
            &|d| {
                digits(d, 2)
                    && crate::time::parse_event_time(&format!(
                        "{}-{d}T00:00:00Z",
                        m.replace('/', "-")
                    ))
                    .is_some_and(|ms| {
                        crate::source::s3::day_path(ms.div_euclid(86_400_000)) == format!("{m}/{d}")
                    })
            },
            &at,
        ));
    }
    for d in stray_dirs {
        out.extend(objects(s3, bucket, &d).await?.into_iter().map(|(k, _)| k));
    }
    Ok(out)
}

/// One level under `prefix`: its folders (last segment) and its objects.
async fn level(
    s3: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<(Vec<String>, Vec<String>), VerifyError> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .delimiter("/")
        // Keys with control characters break an XML listing: asked for
        // URL-encoded, they arrive whole.
        .encoding_type(EncodingType::Url)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| list_err(bucket, prefix, &e))?;
        for cp in page.common_prefixes() {
            if let Some(p) = cp.prefix().map(url_decode)
                && let Some(rest) = p.strip_prefix(prefix)
            {
                dirs.push(rest.strip_suffix('/').unwrap_or(rest).to_owned());
            }
        }
        for o in page.contents() {
            if let Some(k) = o.key() {
                files.push(url_decode(k));
            }
        }
    }
    Ok((dirs, files))
}

/// Keys under `prefix` one level down (their last segment), every page.
async fn children(s3: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, VerifyError> {
    Ok(level(s3, bucket, prefix).await?.0)
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
        .encoding_type(EncodingType::Url)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| list_err(bucket, prefix, &e))?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.push((url_decode(k), o.size().unwrap_or(0)));
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

/// Every account and region under the bucket, with digests or with log
/// files: `AWSLogs/ACCOUNT/` (and `AWSLogs/o-ORG/ACCOUNT/` for
/// organisation trails), filtered by account and region. A region with
/// logs and no digests is verified too: it shows as uncovered.
async fn discover(s3: &Client, opts: &VerifyOptions) -> Result<Vec<Place>, VerifyError> {
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
    let mut places = Vec::new();
    for (base, account) in bases {
        if opts.account.as_ref().is_some_and(|a| *a != account) {
            continue;
        }
        let mut regions = BTreeSet::new();
        for kind in ["CloudTrail-Digest", "CloudTrail"] {
            regions.extend(children(s3, &opts.bucket, &format!("{base}{kind}/")).await?);
        }
        for region in regions {
            if opts.region.as_ref().is_some_and(|r| *r != region) {
                continue;
            }
            places.push(Place {
                base: base.clone(),
                region,
            });
        }
    }
    Ok(places)
}

/// The days (`YYYY/MM/DD`) from `start_ms` to `end_ms`, one more before
/// (a digest's key carries its end time; the first hour of a day is the
/// previous day's last).
fn days(start_ms: i64, end_ms: i64) -> Vec<String> {
    let first = start_ms.div_euclid(86_400_000);
    let last = end_ms.div_euclid(86_400_000);
    (first..=last).map(crate::source::s3::day_path).collect()
}

/// Fetch and check every digest of `place` ending from the range's start
/// to `fetch_end` (the digests covering the range's last hour end after
/// it); and name the digests of the day before the range (not fetched):
/// a trail that has them and none in the range vanished from it.
async fn fetch_digests(
    s3: &Client,
    opts: &VerifyOptions,
    place: &Place,
    keys: &Arc<PublicKeys>,
    limit: &Arc<Semaphore>,
    fetch_end: i64,
) -> Result<(Vec<Found>, Vec<(String, i64)>), (String, String)> {
    let mut tasks = JoinSet::new();
    let mut before = Vec::new();
    for day in days(opts.start_ms - LOOK_BACK_MS, fetch_end) {
        let prefix = format!("{}CloudTrail-Digest/{}/{day}/", place.base, place.region);
        let listed = objects(s3, &opts.bucket, &prefix)
            .await
            .map_err(|e| (format!("s3://{}/{prefix}", opts.bucket), e.to_string()))?;
        for (key, _) in listed {
            let Some(end_ms) = key_end_ms(&key) else {
                continue; // not a digest's name
            };
            if end_ms < opts.start_ms && end_ms >= opts.start_ms - LOOK_BACK_MS {
                before.push((key, end_ms));
                continue;
            }
            if end_ms < opts.start_ms || end_ms > fetch_end {
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
    Ok((found, before))
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
        .map_err(|e| DigestProblem::Unreadable(crate::source::aws_error(&e)))?;
    let meta = resp.metadata().cloned().unwrap_or_default();
    let body = read_capped(resp.body, super::MAX_DIGEST_BYTES)
        .await
        .map_err(|e| {
            if e.starts_with("over ") {
                DigestProblem::Format(e)
            } else {
                DigestProblem::Unreadable(e)
            }
        })?;
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
/// uncompressed bytes hashed.
async fn check_one_log(
    s3: &Client,
    bucket: &str,
    key: &str,
    expected: &str,
    cap: u64,
) -> (LogStatus, u64) {
    let whole = match hash_object(s3, bucket, key, cap, LogHasher::whole()).await {
        Ok(h) => h,
        Err(status) => return (status, 0),
    };
    let empty = super::Hashed::default();
    if super::classify(&whole, &empty, expected) == LogCheck::Valid {
        return (LogStatus::Valid, whole.bytes);
    }
    // Not what was listed: read it again for its first member alone (only
    // for files that failed, so the common case inflates once).
    let first = match hash_object(s3, bucket, key, cap, LogHasher::first_member()).await {
        Ok(h) => h,
        Err(status) => return (status, whole.bytes),
    };
    let status = match super::classify(&whole, &first, expected) {
        LogCheck::Valid => LogStatus::Valid,
        LogCheck::Modified => LogStatus::Modified,
        LogCheck::Appended => LogStatus::Appended,
        LogCheck::Unreadable => LogStatus::Unreadable,
        LogCheck::Bomb => LogStatus::Bomb,
    };
    (status, whole.bytes)
}

/// Stream one object through `hasher`, or say why it could not be read.
async fn hash_object(
    s3: &Client,
    bucket: &str,
    key: &str,
    cap: u64,
    mut hasher: LogHasher,
) -> Result<super::Hashed, LogStatus> {
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
    Ok(hasher.finish())
}

/// The delivery time in a log file's name
/// (`ACCOUNT_CloudTrail_REGION_20150817T1455Z_abc.json.gz`), in ms.
pub(crate) fn log_key_ms(key: &str) -> Option<i64> {
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

    #[test]
    fn keys_are_url_decoded_and_trails_told_apart() {
        assert_eq!(url_decode("a%01b+c%2Fd%zz%"), "a\u{1}b c/d%zz%");
        assert_eq!(
            trail_of(
                "AWSLogs/1/CloudTrail-Digest/r/2026/11/20/1_CloudTrail-Digest_r_my_trail_r_20261120T010131Z.json.gz"
            ),
            "1_CloudTrail-Digest_r_my_trail_r"
        );
        let h = HOUR_MS;
        assert_eq!(
            merge(vec![(h, 2 * h), (0, h), (3 * h, 4 * h)]),
            vec![(0, 2 * h), (3 * h, 4 * h)]
        );
    }
}
