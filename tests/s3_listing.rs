//! An organisation trail's bucket on a real S3-compatible server (moto on
//! loopback): 100 accounts in 17 regions, so a poll is 1 + 100 + 3,400
//! listings. The poll fans out (`list_concurrency`) and finds exactly what
//! a one-at-a-time poll finds: the window's objects of the accounts and
//! regions it reads, nothing older, nothing excluded. Both polls are timed
//! and printed (`cargo test --test s3_listing -- --nocapture`): the figures
//! in BENCHMARKS.md come from here; the test asserts no time.

#[path = "common/moto.rs"]
mod moto;

use std::time::Instant;

use trailwatch::source::SourceError;
use trailwatch::source::s3::{S3Config, S3Source, day_path};

const ACCOUNTS: usize = 100;
const REGIONS: [&str; 17] = [
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

fn account(i: usize) -> String {
    format!("{:012}", 100_000_000_000 + i)
}

#[test]
fn an_organisation_trail_poll_fans_out_and_finds_exactly_the_window() {
    let moto = moto::Moto::start();
    let s3 = moto.s3();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "org-trail";
    let org = "o-abc123";
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 86_400;
    let key = |a: usize, region: &str, day: i64, n: usize| {
        format!(
            "AWSLogs/{org}/{acct}/CloudTrail/{region}/{}/{acct}_CloudTrail_{region}_{n}.json.gz",
            day_path(day),
            acct = account(a)
        )
    };
    // Every account and region has an old file (so the listing finds them
    // all, and must not read it); a few have files in the window.
    let mut keys: Vec<String> = Vec::new();
    for a in 0..ACCOUNTS {
        for r in REGIONS {
            keys.push(key(a, r, today - 400, 0));
        }
    }
    let mut want: Vec<String> = vec![
        key(0, "us-east-1", today, 1),
        key(0, "us-east-1", today - 1, 2),
        key(57, "eu-west-1", today, 3),
        key(99, "sa-east-1", today - 1, 4),
    ];
    // In the window, but excluded: an account, a region.
    let excluded = [
        key(13, "us-east-1", today, 5),
        key(14, "us-west-2", today, 6),
    ];
    // Outside the window (lookback_days = 2: today and yesterday).
    let old = key(1, "eu-west-1", today - 2, 7);
    keys.extend(want.iter().cloned());
    keys.extend(excluded.iter().cloned());
    keys.push(old);
    rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        let mut set = tokio::task::JoinSet::new();
        for k in keys {
            if set.len() >= 32 {
                set.join_next().await.unwrap().unwrap();
            }
            let s3 = s3.clone();
            set.spawn(async move {
                s3.put_object()
                    .bucket(bucket)
                    .key(&k)
                    .body(b"{\"Records\":[]}".to_vec().into())
                    .send()
                    .await
                    .unwrap();
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    want.sort();
    let poll = |concurrency: usize| {
        let config = S3Config {
            bucket: bucket.into(),
            organization_id: Some(org.into()),
            exclude_accounts: vec![account(13)],
            exclude_regions: vec!["us-west-2".into()],
            lookback_days: 2,
            list_concurrency: concurrency,
            ..S3Config::default()
        };
        let mut source = S3Source::with_client(config, s3.clone());
        let started = Instant::now();
        let cpu0 = cpu_secs();
        let listed = rt.block_on(source.list_objects()).unwrap();
        let took = started.elapsed();
        eprintln!(
            "concurrency {concurrency}: {:.2} s, this process's CPU {:.2} s",
            took.as_secs_f64(),
            cpu_secs() - cpu0
        );
        let keys: Vec<String> = listed.into_iter().map(|o| o.id.key).collect();
        (keys, took)
    };
    let (fanned, fanned_took) = poll(32);
    assert_eq!(fanned, want, "the window's objects, sorted, nothing else");
    let (sequential, sequential_took) = poll(1);
    assert_eq!(sequential, want);
    eprintln!(
        "poll of {ACCOUNTS} accounts x {} regions (lookback 2 days): {:.2} s with 32 \
         listings in flight, {:.2} s one at a time ({:.1}x)",
        REGIONS.len(),
        fanned_took.as_secs_f64(),
        sequential_took.as_secs_f64(),
        sequential_took.as_secs_f64() / fanned_took.as_secs_f64()
    );

    // A bucket that is not there: one short line naming it and the
    // service's code, with the SDK's error kept as the cause.
    let mut missing = S3Source::with_client(
        S3Config {
            bucket: "no-such-bucket".into(),
            ..S3Config::default()
        },
        s3.clone(),
    );
    let e = rt.block_on(missing.list_objects()).unwrap_err();
    assert!(matches!(e, SourceError::Aws { .. }), "{e:?}");
    let line = e.to_string();
    assert!(
        line.contains("s3://no-such-bucket/") && line.contains("NoSuchBucket (404)"),
        "{line}"
    );
    let cause = std::error::Error::source(&e).expect("the SDK error is kept");
    assert!(
        cause
            .downcast_ref::<aws_sdk_s3::error::SdkError<
                aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error,
                aws_sdk_s3::config::http::HttpResponse,
            >>()
            .is_some_and(|e| e.raw_response().is_some()),
        "{cause:?}"
    );
}

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}
