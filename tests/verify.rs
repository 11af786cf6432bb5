//! `trailwatch verify` against a real S3-compatible server (moto on
//! loopback): a trail's bucket in CloudTrail's layout, six hours of signed,
//! chained digests and the log files they list, written by the test with
//! its own key pair. An intact chain verifies (exit 0); each tampering an
//! attacker holding the bucket can do is detected and named (exit 1): a
//! log modified, deleted, appended to or added; a digest deleted, two in a
//! row deleted, forged; the wrong key. The keys come from a directory of
//! `FINGERPRINT.der` files, or from a loopback stand-in for CloudTrail's
//! `ListPublicKeys` (moto has none).

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";
const FINGERPRINT: &str = "0123456789abcdef0123456789abcdef";
const HOURS: u32 = 6;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(b: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

fn sign(kp: &KeyPair, msg: &[u8]) -> String {
    let mut sig = vec![0; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        msg,
        &mut sig,
    )
    .unwrap();
    hex(&sig)
}

fn digest_key(hour: u32) -> String {
    digest_key_of("trail", REGION, hour)
}

fn digest_key_of(name: &str, region: &str, hour: u32) -> String {
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail-Digest/{region}/2026/11/20/{ACCOUNT}_CloudTrail-Digest_{region}_{name}_{region}_20261120T{hour:02}0131Z.json.gz"
    )
}

fn log_key(hour: u32, n: u32) -> String {
    log_key_of("trail", REGION, hour, n)
}

fn log_key_of(name: &str, region: &str, hour: u32, n: u32) -> String {
    let tag = if name == "trail" {
        String::new()
    } else {
        name.to_owned()
    };
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{region}/2026/11/20/{ACCOUNT}_CloudTrail_{region}_20261120T{:02}30Z_{tag}log{n}.json.gz",
        hour - 1
    )
}

fn log_content(hour: u32, n: u32) -> Vec<u8> {
    format!(
        r#"{{"Records":[{{"eventVersion":"1.08","eventTime":"2026-11-20T{:02}:2{n}:00Z","eventName":"GetCallerIdentity","eventID":"h{hour}n{n}"}}]}}"#,
        hour - 1
    )
    .into_bytes()
}

/// An object to write: key, body, metadata.
type Put = (String, Vec<u8>, Vec<(&'static str, String)>);

/// The trail as CloudTrail would have delivered it: `HOURS` digests, each
/// listing two log files, chained and signed with `kp`.
fn trail(bucket: &str, kp: &KeyPair) -> Vec<Put> {
    trail_named(bucket, kp, "trail", REGION)
}

/// [`trail`] for the trail `name` in `region`.
fn trail_named(bucket: &str, kp: &KeyPair, name: &str, region: &str) -> Vec<Put> {
    trail_with(bucket, kp, name, region, None)
}

/// [`trail_named`], its chain starting again (no previous digest) at
/// `restart` (logging stopped and started).
fn trail_with(
    bucket: &str,
    kp: &KeyPair,
    name: &str,
    region: &str,
    restart: Option<u32>,
) -> Vec<Put> {
    let mut puts = Vec::new();
    let mut prev: Option<(String, Vec<u8>, String)> = None;
    for hour in 1..=HOURS {
        if Some(hour) == restart {
            prev = None;
        }
        let mut logs = Vec::new();
        for n in 0..2 {
            let content = log_content(hour, n);
            logs.push(serde_json::json!({
                "s3Bucket": bucket,
                "s3Object": log_key_of(name, region, hour, n),
                "hashValue": sha256(&content),
                "hashAlgorithm": "SHA-256",
            }));
            puts.push((
                log_key_of(name, region, hour, n),
                common::gzip(&content),
                Vec::new(),
            ));
        }
        let key = digest_key_of(name, region, hour);
        let mut d = serde_json::json!({
            "awsAccountId": ACCOUNT,
            "digestStartTime": format!("2026-11-20T{:02}:01:31Z", hour - 1),
            "digestEndTime": format!("2026-11-20T{hour:02}:01:31Z"),
            "digestS3Bucket": bucket,
            "digestS3Object": key,
            "digestPublicKeyFingerprint": FINGERPRINT,
            "digestSignatureAlgorithm": "SHA256withRSA",
            "logFiles": logs,
        });
        let prev_sig = match &prev {
            Some((k, inflated, sig)) => {
                d["previousDigestS3Bucket"] = bucket.into();
                d["previousDigestS3Object"] = k.clone().into();
                d["previousDigestHashValue"] = sha256(inflated).into();
                d["previousDigestHashAlgorithm"] = "SHA-256".into();
                d["previousDigestSignature"] = sig.clone().into();
                sig.clone()
            }
            None => {
                d["previousDigestSignature"] = serde_json::Value::Null;
                "null".to_owned()
            }
        };
        let inflated = serde_json::to_vec(&d).unwrap();
        let to_sign = format!(
            "2026-11-20T{hour:02}:01:31Z\n{bucket}/{key}\n{}\n{prev_sig}",
            sha256(&inflated)
        );
        let sig = sign(kp, to_sign.as_bytes());
        puts.push((
            key.clone(),
            common::gzip(&inflated),
            vec![
                ("signature", sig.clone()),
                ("signature-algorithm", "SHA256withRSA".to_owned()),
            ],
        ));
        prev = Some((key, inflated, sig));
    }
    puts
}

/// Create `bucket` and write `puts` into it.
fn upload(moto: &moto::Moto, bucket: &str, puts: &[Put]) {
    let s3 = moto.s3();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { s3.create_bucket().bucket(bucket).send().await.unwrap() });
    put_objects(moto, bucket, puts, None);
}

/// Write `puts` into `bucket`, in `class` (S3's default when `None`).
fn put_objects(moto: &moto::Moto, bucket: &str, puts: &[Put], class: Option<StorageClass>) {
    let s3 = moto.s3();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for (key, body, meta) in puts {
            let mut put = s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body.clone()))
                .set_storage_class(class.clone());
            for (k, v) in meta {
                put = put.metadata(*k, v);
            }
            put.send().await.unwrap();
        }
    });
}

fn delete(moto: &moto::Moto, bucket: &str, key: &str) {
    let s3 = moto.s3();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    });
}

fn write_key(dir: &Path, kp: &KeyPair) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(format!("{FINGERPRINT}.der")),
        kp.public_key().as_ref(),
    )
    .unwrap();
}

/// `trailwatch verify s3://bucket` over the trail's hours; (exit code,
/// stdout).
fn verify(
    moto: &moto::Moto,
    bucket: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> (i32, String) {
    verify_range(
        moto,
        bucket,
        "2026-11-20T00:00:00Z",
        "2026-11-20T06:00:00Z",
        extra,
        env,
    )
}

/// `trailwatch verify s3://BUCKET` over log files delivered from `start` to
/// `end`, with `extra` arguments and `env`; (exit code, stdout and stderr).
fn verify_range(
    moto: &moto::Moto,
    bucket: &str,
    start: &str,
    end: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> (i32, String) {
    let out = common::trailwatch()
        .args([
            "verify",
            &format!("s3://{bucket}"),
            "--endpoint-url",
            &moto.endpoint,
        ])
        .args(["--start", start, "--end", end])
        .args(extra)
        .envs(moto.env())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!("{stdout}\n--- stderr:\n{stderr}"),
    )
}

/// The problem lines (tab-separated: kind, object, verdict).
fn problems(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains('\t') && !l.ends_with("\tvalid") && !l.contains("starts here"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_tampering_is_named_and_an_intact_trail_verifies() {
    let moto = moto::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let keys = dir.path().join("keys");
    write_key(&keys, &kp);
    let keys_arg = ["--public-keys", keys.to_str().unwrap()];
    let setup = |bucket: &str| upload(&moto, bucket, &trail(bucket, &kp));

    // Intact: every digest and log valid, exit 0.
    setup("intact");
    let (code, out) = verify(
        &moto,
        "intact",
        &[&keys_arg[..], &["--verbose"]].concat(),
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(problems(&out).is_empty(), "{out}");
    assert_eq!(
        out.matches("\tvalid").count(),
        (HOURS * 3) as usize,
        "{out}"
    );
    assert!(out.contains("6/6 digest files valid"), "{out}");
    assert!(out.contains("12/12 log files valid"), "{out}");

    // Each attack on its own bucket: (bucket, what is done, the lines
    // that must name it).
    let put = |bucket: &str, key: &str, body: Vec<u8>, meta: &[(&'static str, String)]| {
        put_objects(
            &moto,
            bucket,
            &[(key.to_owned(), body, meta.to_vec())],
            None,
        );
    };

    setup("modified");
    put(
        "modified",
        &log_key(3, 1),
        common::gzip(br#"{"Records":[]}"#),
        &[],
    );
    let (code, out) = verify(&moto, "modified", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        problems(&out),
        vec![format!(
            "Log file\ts3://modified/{}\tINVALID: hash value doesn't match (modified)",
            log_key(3, 1)
        )],
        "{out}"
    );

    setup("deleted-log");
    delete(&moto, "deleted-log", &log_key(2, 0));
    let (code, out) = verify(&moto, "deleted-log", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        problems(&out),
        vec![format!(
            "Log file\ts3://deleted-log/{}\tINVALID: not found (deleted)",
            log_key(2, 0)
        )],
        "{out}"
    );

    setup("appended");
    let mut body = common::gzip(&log_content(4, 0));
    body.extend(common::gzip(
        br#"{"Records":[{"eventName":"ConsoleLogin","eventID":"forged"}]}"#,
    ));
    put("appended", &log_key(4, 0), body, &[]);
    let (code, out) = verify(&moto, "appended", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        problems(&out),
        vec![format!(
            "Log file\ts3://appended/{}\tINVALID: data appended after the first gzip member",
            log_key(4, 0)
        )],
        "{out}"
    );

    setup("added");
    let forged = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/20/{ACCOUNT}_CloudTrail_{REGION}_20261120T0240Z_forged.json.gz"
    );
    put(
        "added",
        &forged,
        common::gzip(br#"{"Records":[{"eventName":"CreateUser"}]}"#),
        &[],
    );
    let (code, out) = verify(&moto, "added", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        problems(&out),
        vec![format!(
            "Log file\ts3://added/{forged}\tINVALID: listed by no digest (added after delivery)"
        )],
        "{out}"
    );

    setup("deleted-digest");
    delete(&moto, "deleted-digest", &digest_key(4));
    let (code, out) = verify(&moto, "deleted-digest", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    let p = problems(&out);
    assert!(
        p.contains(&format!(
            "Digest file\ts3://deleted-digest/{}\tINVALID: not found (deleted)",
            digest_key(4)
        )),
        "{out}"
    );
    // Its logs are no longer listed by a verified digest: named as such.
    for n in 0..2 {
        assert!(
            p.contains(&format!(
                "Log file\ts3://deleted-digest/{}\tNOT VERIFIED: no verified digest covers its hour",
                log_key(4, n)
            )),
            "{out}"
        );
    }
    assert!(
        !p.iter().any(|l| l.contains("Digest chain")),
        "one deletion is no gap: {out}"
    );

    setup("two-deleted");
    delete(&moto, "two-deleted", &digest_key(3));
    delete(&moto, "two-deleted", &digest_key(4));
    let (code, out) = verify(&moto, "two-deleted", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    let p = problems(&out);
    assert!(
        p.iter()
            .any(|l| l.contains(&digest_key(4)) && l.contains("not found (deleted)")),
        "{out}"
    );
    assert!(
        p.iter().any(|l| l.starts_with("Digest chain")
            && l.contains(&digest_key(2))
            && l.contains(&digest_key(4))
            && l.contains("about 1 more digest(s) deleted")),
        "the second deletion in a row is named by the gap it leaves: {out}"
    );

    setup("forged");
    let other = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let forged_trail = trail("forged", &other);
    let (k, body, meta) = forged_trail
        .iter()
        .find(|(k, _, _)| *k == digest_key(5))
        .unwrap();
    put("forged", k, body.clone(), meta);
    let (code, out) = verify(&moto, "forged", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    let p = problems(&out);
    assert!(
        p.contains(&format!(
            "Digest file\ts3://forged/{}\tINVALID: signature verification failed",
            digest_key(5)
        )),
        "{out}"
    );
    // Its logs are no longer vouched for.
    assert!(
        p.iter()
            .any(|l| l.contains(&log_key(5, 0)) && l.contains("NOT VERIFIED")),
        "{out}"
    );

    // The newest digest deleted (with --end in the past, so it is not
    // merely late): its hours are not covered, its logs not verifiable.
    setup("newest-deleted");
    delete(&moto, "newest-deleted", &digest_key(6));
    put(
        "newest-deleted",
        &log_key(6, 0),
        common::gzip(br#"{"Records":[]}"#),
        &[],
    );
    let (code, out) = verify(&moto, "newest-deleted", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    let p = problems(&out);
    assert!(
        p.iter().any(|l| l.starts_with("Digest chain")
            && l.contains("NOT COVERED: no digest for about 1 hour(s) after")
            && l.contains(&digest_key(5))),
        "{out}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains(&log_key(6, 0)) && l.contains("NOT VERIFIED")),
        "{out}"
    );

    // Two trails into one bucket, account and region: each its own chain.
    // Trail A's newest digest deleted is not covered for by trail B's.
    upload(
        &moto,
        "two-trails",
        &trail_named("two-trails", &kp, "a", REGION),
    );
    put_objects(
        &moto,
        "two-trails",
        &trail_named("two-trails", &kp, "b", REGION),
        None,
    );
    let (code, out) = verify(&moto, "two-trails", &keys_arg, &[]);
    assert_eq!(code, 0, "two intact trails verify: {out}");
    assert!(out.contains("12/12 digest files valid"), "{out}");
    delete(&moto, "two-trails", &digest_key_of("a", REGION, 6));
    let (code, out) = verify(&moto, "two-trails", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    let p = problems(&out);
    assert!(
        p.iter()
            .any(|l| l.contains("NOT COVERED") && l.contains(&digest_key_of("a", REGION, 5))),
        "{out}"
    );
    // Its logs are unverifiable, not "added": they were delivered.
    for n in 0..2 {
        let line = p
            .iter()
            .find(|l| l.contains(&log_key_of("a", REGION, 6, n)))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(line.contains("NOT VERIFIED"), "{line}");
    }

    // A region with log files and no digest at all (its digests deleted,
    // or validation off there) is not left out.
    setup("region-gone");
    put(
        "region-gone",
        &log_key_of("trail", "us-west-2", 3, 0),
        common::gzip(&log_content(3, 0)),
        &[],
    );
    let (code, out) = verify(&moto, "region-gone", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    let p = problems(&out);
    assert!(
        p.iter()
            .any(|l| l.contains("CloudTrail-Digest/us-west-2/") && l.contains("NO DIGESTS")),
        "{out}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains(&log_key_of("trail", "us-west-2", 3, 0))
                && l.contains("NOT VERIFIED")),
        "{out}"
    );

    // A key with a control character next to the tampering: the listing
    // still reads (URL-encoded), the tampering is still named, the key is
    // printed escaped.
    setup("control-char");
    put(
        "control-char",
        &format!("AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/20/x\u{1}\u{1b}[2Jy.json.gz"),
        common::gzip(br#"{"Records":[]}"#),
        &[],
    );
    put(
        "control-char",
        &log_key(2, 1),
        common::gzip(br#"{"Records":[]}"#),
        &[],
    );
    let (code, out) = verify(&moto, "control-char", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    let p = problems(&out);
    assert!(
        p.iter()
            .any(|l| l.contains(&log_key(2, 1)) && l.contains("modified")),
        "{out}"
    );
    // A name CloudTrail never writes (no delivery time): named, escaped,
    // judged by its day (not wholly covered here: not verifiable).
    assert!(
        p.iter()
            .any(|l| l.contains("/x\\u{1}\\u{1b}[2Jy.json.gz\tNOT VERIFIED")),
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "a raw escape reached the terminal: {out}"
    );

    // A chain that starts again at hour 4 (logging stopped), and the last
    // digest before the stop deleted with its logs: the hours between the
    // segments are named.
    upload(
        &moto,
        "restart",
        &trail_with("restart", &kp, "trail", REGION, Some(4)),
    );
    let (code, out) = verify(&moto, "restart", &keys_arg, &[]);
    assert_eq!(code, 0, "a restart alone is no tampering: {out}");
    delete(&moto, "restart", &digest_key(3));
    for n in 0..2 {
        delete(&moto, "restart", &log_key(3, n));
    }
    let (code, out) = verify(&moto, "restart", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        problems(&out)
            .iter()
            .any(|l| l.contains("NOT COVERED: about 1 hour(s) between")
                && l.contains(&digest_key(2))
                && l.contains(&digest_key(4))),
        "{out}"
    );

    // A trail that vanishes from the range: every digest and log from the
    // range's start deleted. The day before still names it.
    setup("vanished");
    for hour in 3..=HOURS {
        delete(&moto, "vanished", &digest_key(hour));
        for n in 0..2 {
            delete(&moto, "vanished", &log_key(hour, n));
        }
    }
    let (code, out) = verify_range(
        &moto,
        "vanished",
        "2026-11-20T03:00:00Z",
        "2026-11-20T06:00:00Z",
        &keys_arg,
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        problems(&out)
            .iter()
            .any(|l| l.contains("NOT COVERED") && l.contains(&digest_key(2))),
        "{out}"
    );

    // A file whose name is of another day than its folder is not
    // CloudTrail's, whatever the hour.
    setup("other-day");
    let odd = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/20/{ACCOUNT}_CloudTrail_{REGION}_20261119T0330Z_odd.json.gz"
    );
    put("other-day", &odd, common::gzip(br#"{"Records":[]}"#), &[]);
    let (code, out) = verify(&moto, "other-day", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        problems(&out)
            .iter()
            .any(|l| l.contains(&odd) && l.contains("listed by no digest")),
        "{out}"
    );

    // A digest that cannot be read (archived to Glacier) is not checked,
    // not tampered with: exit 3, no INVALID.
    setup("archived");
    let archived: Vec<Put> = trail("archived", &kp)
        .into_iter()
        .filter(|(k, _, _)| *k == digest_key(3))
        .collect();
    let key = archived[0].0.clone();
    put_objects(&moto, "archived", &archived, Some(StorageClass::Glacier));
    let (code, out) = verify(&moto, "archived", &keys_arg, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!(
            "Digest file\ts3://archived/{key}\tNOT CHECKED: could not be read"
        )),
        "{out}"
    );
    assert!(!out.contains("INVALID"), "{out}");

    // Files where CloudTrail never delivers (a doubled slash, a day that
    // does not exist, the region's root): a reader of the whole prefix
    // would take them, no digest vouches for them.
    setup("stray");
    let strays = [
        format!(
            "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11//20/{ACCOUNT}_CloudTrail_{REGION}_20261120T0330Z_x.json.gz"
        ),
        format!(
            "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/32/{ACCOUNT}_CloudTrail_{REGION}_20261132T0330Z_x.json.gz"
        ),
        format!("AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/stray.json.gz"),
        format!("AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/20./y.json.gz"),
    ];
    for k in &strays {
        put(
            "stray",
            k,
            common::gzip(br#"{"Records":[{"eventName":"CreateUser"}]}"#),
            &[],
        );
    }
    let (code, out) = verify(&moto, "stray", &keys_arg, &[]);
    assert_eq!(code, 1, "{out}");
    let p = problems(&out);
    for k in &strays {
        assert!(
            p.iter()
                .any(|l| l.contains(k.as_str()) && l.contains("not where CloudTrail delivers")),
            "{k}: {out}"
        );
    }

    // The wrong key under the right fingerprint: nothing verifies.
    let wrong = dir.path().join("wrong");
    write_key(&wrong, &other);
    let (code, out) = verify(
        &moto,
        "intact",
        &["--public-keys", wrong.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.matches("INVALID: signature verification failed")
            .count(),
        HOURS as usize,
        "{out}"
    );
}

/// A loopback stand-in for CloudTrail's ListPublicKeys (JSON protocol):
/// answers every request with `keys`; returns its port and the request
/// count.
fn list_public_keys(
    keys: Vec<(String, Vec<u8>)>,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use base64::Engine;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = std::sync::Arc::clone(&seen);
    let body = serde_json::json!({
        "PublicKeyList": keys.iter().map(|(f, der)| serde_json::json!({
            "Fingerprint": f,
            "Value": base64::engine::general_purpose::STANDARD.encode(der),
            "ValidityStartTime": 1.7e9,
            "ValidityEndTime": 1.9e9,
        })).collect::<Vec<_>>()
    })
    .to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut len, mut target) = (0usize, String::new());
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("x-amz-target:") {
                    target = v.trim().to_owned();
                }
            }
            let mut req = vec![0; len];
            let _ = reader.read_exact(&mut req);
            seen2.lock().unwrap().push(target);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

#[test]
fn keys_come_from_list_public_keys_when_no_directory_is_given() {
    let moto = moto::Moto::start();
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    upload(&moto, "listed", &trail("listed", &kp));
    let (port, seen) = list_public_keys(vec![(
        FINGERPRINT.to_owned(),
        kp.public_key().as_ref().to_vec(),
    )]);
    let env = [(
        "AWS_ENDPOINT_URL_CLOUDTRAIL",
        format!("http://127.0.0.1:{port}"),
    )];
    let (code, out) = verify(&moto, "listed", &[], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6/6 digest files valid"), "{out}");
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "ListPublicKeys was not called");
    assert!(
        seen.iter().all(|t| t.ends_with(".listpublickeys")),
        "{seen:?}"
    );

    // A key CloudTrail does not list is no key: every digest is refused.
    let (port, _) = list_public_keys(Vec::new());
    let env = [(
        "AWS_ENDPOINT_URL_CLOUDTRAIL",
        format!("http://127.0.0.1:{port}"),
    )];
    let (code, out) = verify(&moto, "listed", &[], &env);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.matches("INVALID: no public key with fingerprint")
            .count(),
        HOURS as usize,
        "{out}"
    );
}

#[test]
fn usage_errors_exit_2_and_an_empty_bucket_is_not_verified() {
    let moto = moto::Moto::start();
    upload(&moto, "empty", &[]);
    let dir = tempfile::tempdir().unwrap();
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    write_key(dir.path(), &kp);
    let keys = ["--public-keys", dir.path().to_str().unwrap()];
    let (code, out) = verify(&moto, "empty", &keys, &[]);
    assert_eq!(code, 3, "no digests is no proof: {out}");
    assert!(out.contains("No digest chains found"), "{out}");
    for bad in [
        vec!["verify", "bucket-without-scheme"],
        vec!["verify", "s3://b", "--start", "yesterday"],
        vec![
            "verify",
            "s3://b",
            "--start",
            "2026-11-20",
            "--end",
            "2026-11-19",
        ],
    ] {
        let out = common::trailwatch().args(&bad).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The integrity alerts a daemon wrote: (rule name, object).
fn findings(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = common::written(dir)
        .iter()
        .filter(|a| a["rule"]["path"] == "builtin:integrity")
        .map(|a| {
            (
                a["rule_name"].as_str().unwrap().to_owned(),
                a["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Online: the daemon, polling the bucket with `[integrity]` on, checks
/// each digest as it is read and reconciles the log files it lists with
/// what it processed, by the hash of the content it parsed. A modified log,
/// a deleted log, a deleted digest and a forged digest are each one alert
/// naming the object, written like a rule's; an account whose logs come
/// with no digest is reported once; the intact rest raises nothing. Run
/// again on the same state nothing is repeated, and a log replaced after
/// it was read (a new ETag, read again) is found altered.
#[test]
fn the_daemon_validates_digests_as_they_arrive() {
    let moto = moto::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let bucket = "online-trail";
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let forger = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let mut puts = trail(bucket, &kp);
    // Hour 6's digest re-signed by someone else, under the same fingerprint.
    let forged_key = digest_key(6);
    let forged = trail(bucket, &forger)
        .into_iter()
        .find(|(k, _, _)| *k == forged_key)
        .unwrap();
    puts.retain(|(k, _, _)| *k != forged_key);
    puts.push(forged);
    // Hour 2's first log edited before trailwatch reads it.
    let edited = log_key(2, 0);
    for p in &mut puts {
        if p.0 == edited {
            p.1 = common::gzip(br#"{"Records":[]}"#);
        }
    }
    // Junk under the digest folder (a flood of it is one alert an hour per
    // account and region: the forged digest above, first in the listing,
    // is that alert; the junk is counted).
    for n in 0..5 {
        puts.push((
            format!("AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/2026/11/20/junk{n}.json.gz"),
            vec![b'x'],
            Vec::new(),
        ));
    }
    // A log named for a time to come: not CloudTrail's, said at once.
    let future = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/20/{ACCOUNT}_CloudTrail_{REGION}_20991120T0240Z_x.json.gz"
    );
    puts.push((future.clone(), common::gzip(&log_content(2, 7)), Vec::new()));
    // Another account's logs, never with a digest.
    let lonely = "AWSLogs/999999999999/CloudTrail/eu-west-1/2026/11/20/999999999999_CloudTrail_eu-west-1_20261120T0130Z_x.json.gz";
    puts.push((
        lonely.to_owned(),
        common::gzip(&log_content(2, 0)),
        Vec::new(),
    ));
    upload(&moto, bucket, &puts);
    delete(&moto, bucket, &log_key(3, 1));
    delete(&moto, bucket, &digest_key(4));
    let keys = dir.path().join("keys");
    write_key(&keys, &kp);
    let cfg = moto.config(
        dir.path(),
        &format!("[[sources.s3]]\nbucket = {bucket:?}\nstart_date = \"2026-11-20\""),
        &format!(
            "[integrity]\nenabled = true\npublic_keys_dir = {keys:?}\ngrace_secs = 0\nno_digest_hours = 0\n"
        ),
    );
    let log = moto.run_config(&cfg);
    let s3 = |k: &str| format!("s3://{bucket}/{k}");
    let mut want = vec![
        ("integrity_digest_invalid".to_owned(), s3(&digest_key(6))),
        ("integrity_digest_missing".to_owned(), s3(&digest_key(4))),
        ("integrity_log_altered".to_owned(), s3(&edited)),
        ("integrity_log_missing".to_owned(), s3(&log_key(3, 1))),
        ("integrity_log_not_listed".to_owned(), s3(&future)),
        (
            "integrity_no_digests".to_owned(),
            format!("s3://{bucket}/AWSLogs/999999999999/CloudTrail/eu-west-1"),
        ),
    ];
    want.sort();
    assert_eq!(findings(dir.path()), want, "{log}");
    let alerts = common::written(dir.path());
    let altered = alerts
        .iter()
        .find(|a| a["rule_name"] == "integrity_log_altered")
        .unwrap();
    assert_eq!(altered["level"], "critical");
    assert_eq!(altered["account"], ACCOUNT);
    assert_eq!(altered["region"], REGION);
    let why = altered["rule"]["description"].as_str().unwrap();
    assert!(why.contains(&s3(&digest_key(2))), "{why}");
    assert!(log.contains("integrity_log_missing"), "{log}");

    // Again on the same state: nothing new.
    moto.run_config(&cfg);
    assert_eq!(findings(dir.path()), want);

    // A log replaced after it was read and verified.
    let replaced = log_key(1, 1);
    put_objects(
        &moto,
        bucket,
        &[(
            replaced.clone(),
            common::gzip(&log_content(1, 0)),
            Vec::new(),
        )],
        None,
    );
    moto.run_config(&cfg);
    want.push(("integrity_log_altered".to_owned(), s3(&replaced)));
    want.sort();
    assert_eq!(findings(dir.path()), want);
}

/// Online, the attacks that leave no digest to name them: two digests
/// deleted in a row (the later one is named missing by its successor, and
/// the log files both listed are then listed by no digest), the newest
/// digests deleted as they come (logs go on past the last digest: the
/// digests are reported stopped, once), and log files added by someone
/// else (processed, listed by no digest though digests now cover their
/// time), but not one delivered before validation began. The intact hours
/// raise nothing.
#[test]
fn the_daemon_reports_stopped_digests_and_logs_no_digest_lists() {
    let moto = moto::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let bucket = "online-stopped";
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let mut puts = trail(bucket, &kp);
    let deleted = [2, 3, 5, 6].map(digest_key);
    puts.retain(|(k, _, _)| !deleted.contains(k));
    let added = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/20/{ACCOUNT}_CloudTrail_{REGION}_20261120T0145Z_added.json.gz"
    );
    puts.push((added.clone(), common::gzip(&log_content(2, 5)), Vec::new()));
    // And one under a name CloudTrail never gives, in the day before the
    // trail's first digest: judged by its day folder, which is before
    // validation began (as files delivered before validation was turned
    // on are): not called unlisted.
    let renamed = format!("AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/19/evil.json.gz");
    puts.push((
        renamed.clone(),
        common::gzip(&log_content(2, 6)),
        Vec::new(),
    ));
    upload(&moto, bucket, &puts);
    let keys = dir.path().join("keys");
    write_key(&keys, &kp);
    let cfg = moto.config(
        dir.path(),
        &format!("[[sources.s3]]\nbucket = {bucket:?}\nstart_date = \"2026-11-19\""),
        &format!(
            "[integrity]\nenabled = true\npublic_keys_dir = {keys:?}\ngrace_secs = 0\nno_digest_hours = 0\ndigest_delay_secs = 0\n"
        ),
    );
    let log = moto.run_config(&cfg);
    let s3 = |k: &str| format!("s3://{bucket}/{k}");
    let mut want = vec![
        (
            "integrity_digests_stopped".to_owned(),
            format!("s3://{bucket}/AWSLogs/{ACCOUNT}/CloudTrail/{REGION}"),
        ),
        ("integrity_digest_missing".to_owned(), s3(&digest_key(3))),
        ("integrity_log_not_listed".to_owned(), s3(&added)),
    ];
    for hour in [2, 3] {
        for n in 0..2 {
            want.push(("integrity_log_not_listed".to_owned(), s3(&log_key(hour, n))));
        }
    }
    want.sort();
    assert_eq!(findings(dir.path()), want, "{log}");
    assert!(!findings(dir.path()).iter().any(|(_, o)| *o == s3(&renamed)));
    moto.run_config(&cfg);
    assert_eq!(findings(dir.path()), want, "reported once");
}

/// Online through notifications: the same checks when S3 event
/// notifications on a queue name the digests and the log files (digests
/// first, as a queue may deliver them): a log edited before it was read
/// is altered, a log whose notification never came (deleted first) is
/// missing, the rest verifies.
#[test]
fn digests_named_by_notifications_are_validated() {
    let moto = moto::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let bucket = "online-sqs";
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let mut puts = trail(bucket, &kp);
    let edited = log_key(2, 1);
    for p in &mut puts {
        if p.0 == edited {
            p.1 = common::gzip(&log_content(2, 0));
        }
    }
    upload(&moto, bucket, &puts);
    let gone = log_key(5, 0);
    delete(&moto, bucket, &gone);
    let sqs = moto.sqs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queue_url = rt.block_on(async {
        let q = sqs.create_queue().queue_name("trail-events").send().await.unwrap();
        let url = q.queue_url().unwrap().to_owned();
        let mut keys: Vec<&String> = puts.iter().map(|(k, _, _)| k).collect();
        // Digests before the logs they list.
        keys.sort_by_key(|k| !k.contains("CloudTrail-Digest"));
        for k in keys.into_iter().filter(|k| **k != gone) {
            let body = serde_json::json!({"Records":[{"eventVersion":"2.1","eventSource":"aws:s3",
                "eventName":"ObjectCreated:Put","s3":{"bucket":{"name":bucket},"object":{"key":k}}}]});
            sqs.send_message()
                .queue_url(&url)
                .message_body(body.to_string())
                .send()
                .await
                .unwrap();
        }
        url
    });
    let keys = dir.path().join("keys");
    write_key(&keys, &kp);
    let cfg = moto.config(
        dir.path(),
        &format!("[[sources.sqs]]\nqueue_url = {queue_url:?}\nwait_time_secs = 1"),
        &format!("[integrity]\nenabled = true\npublic_keys_dir = {keys:?}\ngrace_secs = 0\n"),
    );
    let log = moto.run_config(&cfg);
    let s3 = |k: &str| format!("s3://{bucket}/{k}");
    let mut want = vec![
        ("integrity_log_altered".to_owned(), s3(&edited)),
        ("integrity_log_missing".to_owned(), s3(&gone)),
    ];
    want.sort();
    assert_eq!(findings(dir.path()), want, "{log}");
}
