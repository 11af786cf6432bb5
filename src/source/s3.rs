//! S3 polling: CloudTrail files in a bucket, under CloudTrail's key layout
//! `PREFIX/AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/FILE`.
//!
//! CloudTrail delivers files late and out of order, so a single "start
//! after this key" marker loses files (Wazuh users report 10-40% missed).
//! Instead, every poll re-lists a trailing window of days (`lookback_days`)
//! for every account and region (one listing each, starting after the
//! window's first date), and skips the objects the store already has (same
//! key and ETag). Days older than the window are listed once (backfill
//! from `start_date`) and then left alone.

use aws_sdk_s3::Client;
use serde::Deserialize;

use super::{Body, Fetched, Item, Poll, Source, SourceError};
use crate::checkpoint::ObjectId;

/// `[[sources.s3]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The trail's bucket.
    pub bucket: String,
    /// Key prefix before `AWSLogs/` (the trail's S3 key prefix), if any.
    pub prefix: String,
    /// For an organization trail: its `o-...` id (keys then hold it).
    pub organization_id: Option<String>,
    /// Accounts to read (empty: every account found in the bucket).
    pub accounts: Vec<String>,
    /// Accounts never read.
    pub exclude_accounts: Vec<String>,
    /// Regions to read (empty: every region found).
    pub regions: Vec<String>,
    /// Regions never read.
    pub exclude_regions: Vec<String>,
    /// Backfill: read days from this date (`YYYY-MM-DD`); default: only the
    /// trailing window.
    pub start_date: Option<String>,
    /// Day prefixes re-listed on every poll, today included: late files
    /// land in them. 2 covers CloudTrail's delivery delay with margin.
    pub lookback_days: u32,
    /// How often to list, in seconds.
    pub poll_interval_secs: u64,
    /// The bucket's region (else the default chain's).
    pub region: Option<String>,
    /// An S3-compatible endpoint (tests, MinIO); path-style addressing is
    /// used with it.
    pub endpoint_url: Option<String>,
    /// Listing requests in flight at once during a poll. An organisation
    /// trail of 100 accounts in 17 regions is some 3,500 listings a poll;
    /// one after another they took 70–140 s at S3's latency, longer than
    /// the poll interval.
    pub list_concurrency: usize,
    /// Also list the `CloudTrail-Digest/` folders (set when `[integrity]`
    /// is on, not configured here).
    #[serde(skip)]
    pub digests: bool,
}

/// Default [`S3Config::list_concurrency`]: far below S3's request rate per
/// prefix (5,500 a second), enough to hide its latency.
pub(crate) const DEFAULT_LIST_CONCURRENCY: usize = 32;

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            organization_id: None,
            accounts: Vec::new(),
            exclude_accounts: Vec::new(),
            regions: Vec::new(),
            exclude_regions: Vec::new(),
            start_date: None,
            lookback_days: 2,
            poll_interval_secs: 60,
            region: None,
            endpoint_url: None,
            list_concurrency: DEFAULT_LIST_CONCURRENCY,
            digests: false,
        }
    }
}

/// One object to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Object {
    pub id: ObjectId,
    pub size: i64,
}

/// A configured S3 source with its client.
pub struct S3Source {
    pub config: S3Config,
    client: Client,
    /// Oldest day (days since epoch) still to be listed for backfill.
    backfill_from: Option<i64>,
}

/// Days since the epoch of `YYYY-MM-DD`.
pub(crate) fn parse_day(s: &str) -> Option<i64> {
    crate::time::parse_date(s)
}

/// `YYYY/MM/DD` of a day since the epoch.
pub fn day_path(days: i64) -> String {
    let (y, m, d) = crate::time::civil_from_days(days);
    format!("{y:04}/{m:02}/{d:02}")
}

impl S3Source {
    /// Build the client from the default chain plus this source's region
    /// and endpoint.
    pub async fn new(config: S3Config) -> S3Source {
        let shared =
            super::aws_config(config.region.as_deref(), config.endpoint_url.as_deref()).await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.endpoint_url.is_some())
            .build();
        let backfill_from = config.start_date.as_deref().and_then(parse_day);
        S3Source {
            client: Client::from_conf(s3),
            backfill_from,
            config,
        }
    }

    /// With a client built elsewhere (tests; a shared client).
    pub fn with_client(config: S3Config, client: Client) -> S3Source {
        S3Source {
            client,
            backfill_from: config.start_date.as_deref().and_then(parse_day),
            config,
        }
    }

    fn name(&self) -> String {
        format!("s3:{}", self.config.bucket)
    }

    fn base(&self) -> String {
        let mut p = self.config.prefix.clone();
        if !p.is_empty() && !p.ends_with('/') {
            p.push('/');
        }
        p.push_str("AWSLogs/");
        if let Some(org) = &self.config.organization_id {
            p.push_str(org);
            p.push('/');
        }
        p
    }

    fn lister(&self) -> Lister {
        Lister {
            client: self.client.clone(),
            bucket: self.config.bucket.clone(),
            source: self.name(),
        }
    }

    /// Every object under the day prefixes to look at now: the accounts,
    /// then every account's regions, then every (account, region, day)
    /// prefix, each level listed with up to `list_concurrency` requests in
    /// flight. Sorted by key. Any failed listing fails the poll (the next
    /// poll lists again; nothing is skipped).
    pub async fn list_objects(&mut self) -> Result<Vec<S3Object>, SourceError> {
        let base = self.base();
        let c = &self.config;
        let today = crate::time::today();
        let window_start = today - i64::from(c.lookback_days.max(1)) + 1;
        let first_day = self
            .backfill_from
            .map_or(window_start, |b| b.min(window_start));
        let lister = self.lister();
        let limit = c.list_concurrency.max(1);
        let trails: Vec<String> = lister
            .clone()
            .children(base.clone())
            .await?
            .into_iter()
            .filter(|account| {
                (c.accounts.is_empty() || c.accounts.contains(account))
                    && !c.exclude_accounts.contains(account)
                    && account.bytes().all(|b| b.is_ascii_digit())
            })
            .flat_map(|account| {
                let digests = c
                    .digests
                    .then(|| format!("{base}{account}/CloudTrail-Digest/"));
                std::iter::once(format!("{base}{account}/CloudTrail/")).chain(digests)
            })
            .collect();
        let regions = bounded(trails.clone(), limit, |trail| {
            lister.clone().children(trail)
        })
        .await?;
        // One listing per account and region covers the whole window: the
        // region's keys after the first day's date (`REGION/YYYY/MM/DD`
        // sorts before that day's keys and after the day before's), as many
        // pages as it takes. A day prefix each made twice the requests at
        // the default look-back (3,400 for 100 accounts in 17 regions).
        let mut regions_to_list = Vec::new();
        for (trail, regions) in trails.iter().zip(regions) {
            for region in regions {
                if !(c.regions.is_empty() || c.regions.contains(&region))
                    || c.exclude_regions.contains(&region)
                {
                    continue;
                }
                let from = format!("{trail}{region}/{}", day_path(first_day));
                regions_to_list.push((format!("{trail}{region}/"), from));
            }
        }
        let mut out: Vec<S3Object> = bounded(regions_to_list, limit, |(prefix, from)| {
            lister.clone().objects(prefix, Some(from))
        })
        .await?
        .into_iter()
        .flatten()
        .collect();
        // Backfill days before the window are listed once.
        self.backfill_from = None;
        out.sort_by(|a, b| a.id.key.cmp(&b.id.key));
        Ok(out)
    }
}

impl Source for S3Source {
    fn label(&self) -> String {
        self.name()
    }

    fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.config.poll_interval_secs)
    }

    fn list(&mut self, poll: &Poll<'_>) -> Result<Vec<Item>, SourceError> {
        let bucket = self.config.bucket.clone();
        Ok(poll
            .rt
            .block_on(self.list_objects())?
            .into_iter()
            .map(|o| o.item(&bucket, "s3_poll"))
            .collect())
    }

    fn fetch(
        &self,
        rt: &tokio::runtime::Runtime,
        items: &[&Item],
        cap: u64,
    ) -> Vec<Result<Fetched, SourceError>> {
        fetch_items(&self.client, rt, items, cap)
    }
}

impl S3Object {
    /// As the engine reads it, come `via` polling or a notification.
    pub fn item(self, bucket: &str, via: &'static str) -> Item {
        Item {
            via,
            name: format!("s3://{bucket}/{}", self.id.key),
            body: Body::Fetch {
                size: u64::try_from(self.size).unwrap_or(0),
            },
            id: self.id,
            cursor: None,
        }
    }
}

/// Read S3 items (identity `s3:BUCKET`, as S3 polling and notifications
/// name them) with `client`, all at once (a batch is `objects_in_flight`
/// long), in order.
pub(crate) fn fetch_items(
    client: &Client,
    rt: &tokio::runtime::Runtime,
    items: &[&Item],
    cap: u64,
) -> Vec<Result<Fetched, SourceError>> {
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, item) in items.iter().enumerate() {
            let bucket = item
                .id
                .source
                .strip_prefix("s3:")
                .unwrap_or(&item.id.source);
            let f = Fetcher::new(client.clone(), bucket.to_owned());
            let o = S3Object {
                id: item.id.clone(),
                size: match item.body {
                    Body::Fetch { size } => i64::try_from(size).unwrap_or(i64::MAX),
                    _ => 0,
                },
            };
            tasks.spawn(async move { (i, f.fetch(o, cap).await) });
        }
        let mut out: Vec<Option<Result<Fetched, SourceError>>> =
            (0..items.len()).map(|_| None).collect();
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, r)) = done {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .zip(items)
            .map(|(r, item)| {
                r.unwrap_or_else(|| {
                    Err(SourceError::Remote {
                        name: item.name.clone(),
                        message: "fetch task failed".into(),
                    })
                })
            })
            .collect()
    })
}

/// Lists one bucket (owned, so its requests run as tasks).
#[derive(Clone)]
struct Lister {
    client: Client,
    bucket: String,
    /// The source's name, for the objects' ids.
    source: String,
}

impl Lister {
    /// Common prefixes one level below `prefix` (their last segment).
    async fn children(self, prefix: String) -> Result<Vec<String>, SourceError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .delimiter("/")
            // Keys URL-encoded: a key with a control character (anyone
            // with write access can make one) would otherwise break the
            // XML answer, and with it every listing of the source.
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| SourceError::aws(format!("s3://{}/{}", self.bucket, prefix), e))?;
            for cp in page.common_prefixes() {
                if let Some(p) = cp.prefix().map(super::notification::url_decode) {
                    let Some(seg) = p.get(prefix.len()..) else {
                        continue;
                    };
                    out.push(seg.trim_end_matches('/').to_owned());
                }
            }
        }
        Ok(out)
    }

    /// Every object under `prefix` (whose key sorts after `start_after`).
    async fn objects(
        self,
        prefix: String,
        start_after: Option<String>,
    ) -> Result<Vec<S3Object>, SourceError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .set_start_after(start_after)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| SourceError::aws(format!("s3://{}/{}", self.bucket, prefix), e))?;
            for o in page.contents() {
                let (Some(key), Some(etag)) = (o.key(), o.e_tag()) else {
                    continue;
                };
                out.push(S3Object {
                    id: ObjectId {
                        source: self.source.clone(),
                        key: super::notification::url_decode(key),
                        etag: etag.trim_matches('"').to_owned(),
                    },
                    size: o.size().unwrap_or(0),
                });
            }
        }
        Ok(out)
    }
}

/// Run `f` on every input with at most `limit` running at once; the
/// results in input order, or the first error (the rest are abandoned:
/// dropping the set cancels them).
async fn bounded<I, T, Fut>(
    inputs: Vec<I>,
    limit: usize,
    f: impl Fn(I) -> Fut,
) -> Result<Vec<T>, SourceError>
where
    Fut: std::future::Future<Output = Result<T, SourceError>> + Send + 'static,
    T: Send + 'static,
{
    let joined = |r: Result<(usize, Result<T, SourceError>), tokio::task::JoinError>| {
        r.unwrap_or_else(|e| {
            // A listing task panicked (a bug): the poll fails like any
            // failed listing instead of taking the daemon down.
            (
                usize::MAX,
                Err(SourceError::Remote {
                    name: "s3 listing".into(),
                    message: format!("listing task failed: {e}"),
                }),
            )
        })
    };
    let mut results: Vec<Option<T>> = Vec::with_capacity(inputs.len());
    results.resize_with(inputs.len(), || None);
    let mut set = tokio::task::JoinSet::new();
    for (i, input) in inputs.into_iter().enumerate() {
        if set.len() >= limit
            && let Some(r) = set.join_next().await
        {
            let (at, r) = joined(r);
            let v = r?;
            results[at] = Some(v);
        }
        let fut = f(input);
        set.spawn(async move { (i, fut.await) });
    }
    while let Some(r) = set.join_next().await {
        let (at, r) = joined(r);
        let v = r?;
        results[at] = Some(v);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every task joined"))
        .collect())
}

/// Reads objects of one bucket.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: Client,
    bucket: String,
}

impl Fetcher {
    pub fn new(client: Client, bucket: String) -> Fetcher {
        Fetcher { client, bucket }
    }

    /// Read one object whole, refusing one over `cap` bytes. `If-Match` on
    /// the listed ETag: a replaced object is read under its new ETag at the
    /// next poll, never mixed up with the old one. The signature metadata
    /// comes with it (a digest's; other objects have none).
    pub(crate) async fn fetch(self, o: S3Object, cap: u64) -> Result<Fetched, SourceError> {
        let name = format!("s3://{}/{}", self.bucket, o.id.key);
        if o.size as u64 > cap {
            return Err(SourceError::TooLarge {
                name,
                size: o.size as u64,
                cap,
            });
        }
        let remote = |message: String| SourceError::Remote {
            name: name.clone(),
            message,
        };
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&o.id.key)
            // Notifications without an ETag (CloudTrail's own) read whatever is there.
            .set_if_match((!o.id.etag.is_empty()).then(|| format!("\"{}\"", o.id.etag)))
            .send()
            .await
            .map_err(|e| SourceError::aws(name.clone(), e))?;
        let meta = |k: &str| {
            resp.metadata()
                .and_then(|m| m.get(k))
                // Bounded: metadata is whoever wrote the object's.
                .map(|v| v.trim().chars().take(4096).collect::<String>())
        };
        let (signature, signature_algorithm) = (meta("signature"), meta("signature-algorithm"));
        let body = resp
            .body
            .collect()
            .await
            .map_err(|e| remote(e.to_string()))?;
        Ok(Fetched {
            bytes: body.into_bytes().to_vec(),
            signature,
            signature_algorithm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(day_path(0), "1970/01/01");
        let d = parse_day("2024-02-29").unwrap();
        assert_eq!(day_path(d), "2024/02/29");
        assert_eq!(day_path(d + 1), "2024/03/01");
        assert_eq!(
            parse_day("2026-11-20").map(day_path).as_deref(),
            Some("2026/11/20")
        );
        assert_eq!(parse_day("nope"), None);
    }
}
