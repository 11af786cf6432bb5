//! `trailwatch gen`: a deterministic synthetic CloudTrail corpus, for
//! benchmarks, the demo and tests, with attacks whose alerts are known.
//!
//! The records have CloudTrail's real shapes: nested `userIdentity` with
//! `sessionContext`, `requestParameters` and `responseElements` of the
//! services they claim (STS credentials, EC2 instance sets, KMS encryption
//! contexts, S3 data events with resources), `tlsDetails`, and about 30%
//! large records (RunInstances, CloudFormation stacks, bucket policies). A
//! background of ordinary activity (several accounts and regions, role
//! sessions, a small share of throttling, not-found and denied calls) is
//! laced with attack scenarios: a root sign-in without MFA, keys created
//! for another user, AdministratorAccess attached, CloudTrail and GuardDuty
//! tampering, a trust policy opened to everyone, a burst of denied calls,
//! password guessing, a user given a console password by someone else.
//!
//! Files are written as CloudTrail writes them: gzip JSON `{"Records":[...]}`
//! under `AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/`, one per account,
//! region and five minutes. `expected.jsonl` beside them lists every alert
//! the built-in rules must raise: `{"rule": "root/root_usage", "event_id":
//! ...}` per detection, and `{"rule": "bursts/...", "events": N}` per
//! correlation. The same seed and size give the same bytes.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use scenarios::{Expect, Injected, background, scenario};

mod scenarios;

/// What to generate.
#[derive(Clone, Debug)]
pub struct CorpusOptions {
    pub seed: u64,
    /// Total uncompressed JSON, in bytes (approximate: whole files).
    pub size_bytes: u64,
    /// Uncompressed size of each file is drawn between these.
    pub min_file_bytes: u64,
    pub max_file_bytes: u64,
    /// gzip level (CloudTrail's files compress like level 6).
    pub gzip_level: u32,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        CorpusOptions {
            seed: 1,
            size_bytes: 200 << 20,
            min_file_bytes: 5 << 20,
            max_file_bytes: 50 << 20,
            gzip_level: 6,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug, Default)]
pub struct CorpusSummary {
    pub files: Vec<PathBuf>,
    pub records: u64,
    pub json_bytes: u64,
    pub gzip_bytes: u64,
    pub expected_alerts: u64,
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(n);
        s
    }
    fn alnum_upper(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        (0..n)
            .map(|_| A[self.below(A.len() as u64) as usize] as char)
            .collect()
    }
    fn b64(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n).map(|_| A[self.below(64) as usize] as char).collect()
    }
}

const ACCOUNTS: [&str; 4] = [
    "111122223333",
    "444455556666",
    "777788889999",
    "123456789012",
];
const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"];
const ROLES: [&str; 8] = [
    "app-backend",
    "ci-deployer",
    "data-pipeline",
    "lambda-orders",
    "ecs-task-web",
    "AWSServiceRoleForECS",
    "observability",
    "batch-etl",
];
const AGENTS: [&str; 6] = [
    "aws-sdk-java/2.25.11 Linux/5.10.219-208.866.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.11+9-LTS Java/17.0.11 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/standard",
    "Boto3/1.34.84 md/Botocore#1.34.84 ua/2.0 os/linux#5.10.214-202.855.amzn2.x86_64 md/arch#x86_64 lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.84",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.6",
    "aws-cli/2.15.40 Python/3.11.8 Linux/6.1.84-99.169.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off command/s3.cp",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "terraform-provider-aws/5.46.0 (+https://registry.terraform.io) aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2",
];

/// Seconds since the epoch of 2026-11-20T00:00:00Z, where the corpus starts.
const START: i64 = 1_795_132_800;

fn iso(t: i64) -> String {
    crate::time::iso_time(t * 1000)
}

/// Who made a call.
struct Actor {
    /// The `userIdentity` object, as JSON.
    identity: String,
    ip: String,
    agent: &'static str,
}

fn role_session(rng: &mut Rng, account: &str, t: i64, role: &str, session: &str) -> Actor {
    let principal = format!("AROA{}", rng.alnum_upper(17));
    let identity = format!(
        r#"{{"type":"AssumedRole","principalId":"{principal}:{session}","arn":"arn:aws:sts::{account}:assumed-role/{role}/{session}","accountId":"{account}","accessKeyId":"ASIA{}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"{principal}","arn":"arn:aws:iam::{account}:role/{role}","accountId":"{account}","userName":"{role}"}},"webIdFederationData":{{}},"attributes":{{"creationDate":"{}","mfaAuthenticated":"false"}}}}}}"#,
        rng.alnum_upper(16),
        iso(t - 600 - rng.below(3000) as i64),
    );
    Actor {
        identity,
        ip: format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        ),
        agent: AGENTS[rng.below(4) as usize],
    }
}

fn iam_user(rng: &mut Rng, account: &str, user: &str) -> Actor {
    Actor {
        identity: format!(
            r#"{{"type":"IAMUser","principalId":"AIDA{}","arn":"arn:aws:iam::{account}:user/{user}","accountId":"{account}","accessKeyId":"AKIA{}","userName":"{user}"}}"#,
            rng.alnum_upper(17),
            rng.alnum_upper(16)
        ),
        ip: format!("203.0.113.{}", 1 + rng.below(254)),
        agent: AGENTS[3],
    }
}

/// One record's JSON. `extra` holds further top-level members (each with
/// a leading comma), e.g. `,"errorCode":"..."`.
#[allow(clippy::too_many_arguments)] // CloudTrail's fields, one argument each
fn record(
    rng: &mut Rng,
    out: &mut String,
    t: i64,
    account: &str,
    region: &str,
    actor: &Actor,
    source: &str,
    name: &str,
    read_only: bool,
    request: &str,
    response: &str,
    extra: &str,
) -> String {
    let id = rng.uuid();
    let _ = write!(
        out,
        r#"{{"eventVersion":"1.09","userIdentity":{},"eventTime":"{}","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{}","userAgent":"{}","requestParameters":{request},"responseElements":{response},"requestID":"{}","eventID":"{id}","readOnly":{read_only},"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{}.{region}.amazonaws.com"}}{extra}}}"#,
        actor.identity,
        iso(t),
        actor.ip,
        actor.agent,
        rng.uuid(),
        source.trim_end_matches(".amazonaws.com"),
    );
    id
}

/// Scenarios per this many bytes of JSON (each set holds all nine).
const BYTES_PER_SCENARIO: u64 = 20 << 20;

/// Write the corpus into `dir`.
pub fn generate(opts: &CorpusOptions, dir: &Path) -> io::Result<CorpusSummary> {
    // Plan the files first (sizes, account, region, time) from the seed, so
    // the output does not depend on thread scheduling.
    let mut rng = Rng::new(opts.seed);
    let mut plan = Vec::new();
    let mut total = 0u64;
    let span = opts
        .max_file_bytes
        .saturating_sub(opts.min_file_bytes)
        .max(1);
    while total < opts.size_bytes {
        let size = opts.min_file_bytes + rng.below(span);
        let slot = plan.len();
        let account = ACCOUNTS[slot % ACCOUNTS.len()];
        let region = REGIONS[(slot / ACCOUNTS.len()) % REGIONS.len()];
        plan.push((size, account, region, 0i64, rng.next()));
        total += size;
    }
    // Times follow the key order (account, region, then time), one file a
    // minute, each spanning five: processing in listing order then meets
    // events at most minutes late, as from one trail, and the bursts of
    // the scenarios are never dropped as too late.
    plan.sort_by_key(|p| (p.1, p.2));
    for (rank, p) in plan.iter_mut().enumerate() {
        p.3 = START + rank as i64 * 60;
    }
    let results: Vec<io::Result<FileOut>> = plan
        .par_iter()
        .enumerate()
        .map(|(i, &(size, account, region, t, seed))| {
            write_file(opts, dir, i as u64, size, account, region, t, seed)
        })
        .collect();
    let mut summary = CorpusSummary::default();
    let mut expected = String::new();
    for r in results {
        let (path, records, json, gz, exp) = r?;
        summary.files.push(path);
        summary.records += records;
        summary.json_bytes += json;
        summary.gzip_bytes += gz;
        summary.expected_alerts += exp.len() as u64;
        for e in exp {
            expected.push_str(&e);
            expected.push('\n');
        }
    }
    std::fs::write(dir.join("expected.jsonl"), expected)?;
    Ok(summary)
}

/// One written file: path, records, JSON bytes, gzip bytes, expected alerts
/// (as JSON lines).
type FileOut = (PathBuf, u64, u64, u64, Vec<String>);

#[allow(clippy::too_many_arguments)] // one file's whole plan, spelled out
fn write_file(
    opts: &CorpusOptions,
    dir: &Path,
    index: u64,
    size: u64,
    account: &str,
    region: &str,
    t0: i64,
    seed: u64,
) -> io::Result<FileOut> {
    let mut rng = Rng::new(seed);
    let mut json = String::with_capacity(size as usize + (64 << 10));
    json.push_str("{\"Records\":[");
    let mut expect = Vec::new();
    let mut records = 0u64;
    // Scenario sets in this file, at random points.
    let sets = (size / BYTES_PER_SCENARIO).max(u64::from(index.is_multiple_of(2)));
    let mut injected: Vec<(u64, u64)> = (0..sets * 9).map(|k| (rng.below(size), k)).collect();
    injected.sort_unstable();
    let mut next_injection = 0;
    let mut serial = 0u64;
    while (json.len() as u64) < size {
        // Time advances over the five minutes of the file.
        let t = t0 + (json.len() as u64 * 299 / size.max(1)) as i64;
        let mut one = String::new();
        if next_injection < injected.len() && injected[next_injection].0 <= json.len() as u64 {
            let k = injected[next_injection].1;
            next_injection += 1;
            let mut inj = Injected::default();
            scenario(&mut rng, k, index * 1000 + k, t, account, region, &mut inj);
            let (recs, exp) = (inj.records, inj.expect);
            for r in recs {
                if records > 0 {
                    json.push(',');
                }
                json.push_str(&r);
                records += 1;
            }
            expect.extend(exp);
            continue;
        }
        serial += 1;
        if let Some(id) = background(&mut rng, &mut one, t, account, region, index << 32 | serial) {
            expect.push(Expect::Event("errors/access_denied", id));
        }
        if records > 0 {
            json.push(',');
        }
        json.push_str(&one);
        records += 1;
    }
    json.push_str("]}");
    let day = &iso(t0)[..10];
    let (y, m, d) = (&day[..4], &day[5..7], &day[8..10]);
    let stamp = iso(t0).replace(['-', ':'], "");
    let sub = dir
        .join("AWSLogs")
        .join(account)
        .join("CloudTrail")
        .join(region)
        .join(y)
        .join(m)
        .join(d);
    std::fs::create_dir_all(&sub)?;
    let path = sub.join(format!(
        "{account}_CloudTrail_{region}_{}Z_{:016x}.json.gz",
        &stamp[..13],
        seed
    ));
    let file = std::fs::File::create(&path)?;
    let mut gz = flate2::write::GzEncoder::new(
        io::BufWriter::new(file),
        flate2::Compression::new(opts.gzip_level),
    );
    gz.write_all(json.as_bytes())?;
    gz.finish()?.flush()?;
    let gz_len = std::fs::metadata(&path)?.len();
    let expected = expect
        .into_iter()
        .map(|e| match e {
            Expect::Event(rule, id) => format!(r#"{{"rule":"{rule}","event_id":"{id}"}}"#),
            Expect::Correlation(rule, n) => format!(r#"{{"rule":"{rule}","events":{n}}}"#),
        })
        .collect();
    Ok((path, records, json.len() as u64, gz_len, expected))
}

/// A native document of `records` ~1 KB records, one in seven carrying, in
/// an array of `requestParameters`, an object that starts like a record
/// (`},{"eventVersion":"1…`): chunk cuts land there, and chunks parsed in
/// place fail after unescaping their strings (every record has escapes:
/// its `eventID` `N\/e` reads `N/e`). Every record is a `CreateUser` by
/// IAM. For the parser's healing tests.
pub fn nested_look_alikes(records: usize) -> String {
    let pad = "z".repeat(900);
    let body: Vec<String> = (0..records)
        .map(|i| {
            let items = if i % 7 == 3 {
                r#"[{"a":1},{"eventVersion":"1.0","x":"\\"}]"#
            } else {
                "[]"
            };
            format!(
                r#"{{"eventVersion":"1.08","eventID":"{i}\/e","eventName":"CreateUser","eventSource":"iam.amazonaws.com","userAgent":"ua\"{pad}","requestParameters":{{"items":{items}}}}}"#
            )
        })
        .collect();
    format!("{{\"Records\":[{}]}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_utc() {
        assert_eq!(iso(START), "2026-11-20T00:00:00Z");
        assert_eq!(iso(START + 86_399), "2026-11-20T23:59:59Z");
        assert_eq!(iso(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let opts = CorpusOptions {
            seed: 7,
            size_bytes: 600 << 10,
            min_file_bytes: 200 << 10,
            max_file_bytes: 300 << 10,
            gzip_level: 1,
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sa = generate(&opts, a.path()).unwrap();
        let sb = generate(&opts, b.path()).unwrap();
        assert_eq!(sa.files.len(), sb.files.len());
        for (x, y) in sa.files.iter().zip(&sb.files) {
            assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        }
        assert_eq!(
            std::fs::read(a.path().join("expected.jsonl")).unwrap(),
            std::fs::read(b.path().join("expected.jsonl")).unwrap()
        );
    }
}
