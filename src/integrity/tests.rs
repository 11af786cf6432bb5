use super::chain::{Checked, Finding, Found, walk};
use super::keys::PublicKeys;
use super::*;

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
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
    crate::alert::hex(&sig)
}

const BUCKET: &str = "trail";

fn key_at(hour: i64) -> String {
    format!(
        "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/20/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20261120T{hour:02}0131Z.json.gz"
    )
}

/// A digest for `hour` linked to `prev` (key, inflated, signature).
fn digest(hour: i64, prev: Option<(&str, &[u8], &str)>) -> serde_json::Value {
    let mut d = serde_json::json!({
        "awsAccountId": "111122223333",
        "digestStartTime": format!("2026-11-20T{:02}:01:31Z", hour - 1),
        "digestEndTime": format!("2026-11-20T{hour:02}:01:31Z"),
        "digestS3Bucket": BUCKET,
        "digestS3Object": key_at(hour),
        "digestPublicKeyFingerprint": "abc123",
        "digestSignatureAlgorithm": "SHA256withRSA",
        "logFiles": [],
    });
    if let Some((k, inflated, sig)) = prev {
        d["previousDigestS3Bucket"] = BUCKET.into();
        d["previousDigestS3Object"] = k.into();
        d["previousDigestHashValue"] = sha256_hex(inflated).into();
        d["previousDigestHashAlgorithm"] = "SHA-256".into();
        d["previousDigestSignature"] = sig.into();
    } else {
        d["previousDigestSignature"] = serde_json::Value::Null;
    }
    d
}

/// A chain of `n` hourly digests (hours 1..=n), each signed by `kp`:
/// (key, gzip'd bytes, signature).
fn chain(kp: &KeyPair, n: i64) -> Vec<(String, Vec<u8>, String)> {
    let mut out: Vec<(String, Vec<u8>, String)> = Vec::new();
    let mut prev: Option<(String, Vec<u8>, String)> = None;
    for hour in 1..=n {
        let d = digest(
            hour,
            prev.as_ref()
                .map(|(k, inflated, s)| (k.as_str(), inflated.as_slice(), s.as_str())),
        );
        let inflated = serde_json::to_vec(&d).unwrap();
        let parsed: Digest = serde_json::from_slice(&inflated).unwrap();
        let sig = sign(kp, string_to_sign(&parsed, &inflated).as_bytes());
        out.push((key_at(hour), gz(&inflated), sig.clone()));
        prev = Some((key_at(hour), inflated, sig));
    }
    out
}

fn keys(kp: &KeyPair) -> PublicKeys {
    PublicKeys::from_pairs([("ABC123".to_owned(), kp.public_key().as_ref().to_vec())])
}

fn check(
    key: &str,
    gz_bytes: &[u8],
    sig: Option<&str>,
    keys: &PublicKeys,
) -> Result<Checked, DigestProblem> {
    let (d, inflated) = parse_digest(gz_bytes)?;
    check_digest(BUCKET, key, &d, &inflated, sig, None, keys)?;
    Ok(Checked {
        hash: sha256_hex(&inflated),
        signature: sig.unwrap_or_default().to_owned(),
        digest: d,
    })
}

fn found(c: &[(String, Vec<u8>, String)], keys: &PublicKeys) -> Vec<Found> {
    c.iter()
        .map(|(k, g, s)| Found {
            key: k.clone(),
            end_ms: key_end_ms(k).unwrap(),
            checked: check(k, g, Some(s), keys),
        })
        .collect()
}

fn tampering(f: &[Finding]) -> Vec<&Finding> {
    f.iter().filter(|f| f.is_tampering()).collect()
}

#[test]
fn a_signed_digest_verifies_and_every_change_breaks_it() {
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let keys = keys(&kp);
    let c = chain(&kp, 2);
    let (k, g, s) = &c[1];
    assert!(check(k, g, Some(s), &keys).is_ok());
    // One byte of content changed (re-compressed, so it still inflates).
    let (_, inflated) = parse_digest(g).unwrap();
    let edited = String::from_utf8(inflated)
        .unwrap()
        .replace("\"logFiles\":[]", "\"logFiles\":[ ]");
    assert_eq!(
        check(k, &gz(edited.as_bytes()), Some(s), &keys).unwrap_err(),
        DigestProblem::BadSignature
    );
    // Another key, the same fingerprint: a forged key.
    let other = KeyPair::generate(KeySize::Rsa2048).unwrap();
    assert_eq!(
        check(k, g, Some(s), &self::keys(&other)).unwrap_err(),
        DigestProblem::BadSignature
    );
    // Signed by another key: a forged digest.
    let forged = chain(&other, 2);
    assert_eq!(
        check(k, &forged[1].1, Some(&forged[1].2), &keys).unwrap_err(),
        DigestProblem::BadSignature
    );
    // No key with its fingerprint, no signature, a bad hex signature, a
    // digest copied to another key.
    assert!(matches!(
        check(k, g, Some(s), &PublicKeys::default()),
        Err(DigestProblem::UnknownKey(_))
    ));
    assert_eq!(
        check(k, g, None, &keys).unwrap_err(),
        DigestProblem::NoSignature
    );
    assert_eq!(
        check(k, g, Some("zz"), &keys).unwrap_err(),
        DigestProblem::BadSignature
    );
    assert!(matches!(
        check(&c[0].0, g, Some(s), &keys),
        Err(DigestProblem::Moved { .. })
    ));
    assert!(matches!(
        check(k, b"not gzip", Some(s), &keys),
        Err(DigestProblem::Format(_))
    ));
}

#[test]
fn a_log_is_hashed_whole_and_appended_data_is_named() {
    let content = br#"{"Records":[{"eventName":"DeleteTrail"}]}"#;
    let expected = sha256_hex(content);
    let g = gz(content);
    assert_eq!(check_log(&g, &expected), LogCheck::Valid);
    assert_eq!(check_log(&g, &expected.to_uppercase()), LogCheck::Valid);
    assert_eq!(
        check_log(&gz(br#"{"Records":[]}"#), &expected),
        LogCheck::Modified
    );
    let mut appended = g.clone();
    appended.extend(gz(br#"{"Records":[{"eventName":"Forged"}]}"#));
    assert_eq!(check_log(&appended, &expected), LogCheck::Appended);
    let mut garbage = g.clone();
    garbage.extend(b"trailing bytes that are not gzip");
    assert_eq!(check_log(&garbage, &expected), LogCheck::Appended);
    assert_eq!(check_log(b"plain", &expected), LogCheck::Unreadable);
    // Streamed in chunks of any size (a member's end inside a chunk, a
    // chunk of one byte), the verdicts are the same.
    for size in [1, 7, 4096] {
        let stream = |gz: &[u8], mut h: LogHasher| {
            for c in gz.chunks(size) {
                h.update(c);
            }
            h.finish()
        };
        let whole = stream(&appended, LogHasher::whole());
        let first = stream(&appended, LogHasher::first_member());
        assert_eq!(classify(&whole, &first, &expected), LogCheck::Appended);
        let whole = stream(&g, LogHasher::whole());
        assert_eq!(whole.hash.as_deref(), Some(expected.as_str()));
        assert_eq!(whole.bytes, content.len() as u64);
    }
    // A damaged checksum is damage, not an append: the first member's
    // content matches, its trailer does not.
    let mut bad_crc = g.clone();
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    assert_eq!(check_log(&bad_crc, &expected), LogCheck::Unreadable);
    // Past the inflated cap the hashing stops: a bomb, refused.
    use std::io::Write;
    let mut w = Sha256Writer::new();
    w.bytes = MAX_LOG_INFLATED - 10;
    assert!(w.write(&[0; 20]).is_err());
    assert!(w.bomb);
    let bomb = Hashed {
        hash: None,
        bytes: MAX_LOG_INFLATED,
        bomb: true,
    };
    assert_eq!(
        classify(&bomb, &Hashed::default(), &expected),
        LogCheck::Bomb
    );
}

#[test]
fn an_intact_chain_is_all_valid_with_one_start() {
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let keys = keys(&kp);
    let c = chain(&kp, 5);
    let f = walk(found(&c, &keys), 0);
    assert!(tampering(&f).is_empty(), "{f:?}");
    assert_eq!(
        f.iter()
            .filter(|x| matches!(x, Finding::Valid { .. }))
            .count(),
        5
    );
    assert_eq!(
        f.iter()
            .filter(|x| matches!(x, Finding::ChainStart { .. }))
            .count(),
        1
    );
}

#[test]
fn deleted_digests_are_named_and_two_in_a_row_leave_a_gap() {
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let keys = keys(&kp);
    let c = chain(&kp, 6);
    // One deleted: named by its successor.
    let mut one = c.clone();
    one.remove(3);
    let f = walk(found(&one, &keys), 0);
    assert_eq!(tampering(&f), vec![&Finding::Deleted { key: key_at(4) }]);
    // Two in a row (hours 3 and 4): the second is named, the first only
    // shows as an hour no digest covers.
    let mut two = c.clone();
    two.drain(2..4);
    let f = walk(found(&two, &keys), 0);
    assert_eq!(
        tampering(&f),
        vec![
            &Finding::Deleted { key: key_at(4) },
            &Finding::Gap {
                after: key_at(2),
                before: key_at(4),
                hours: 1
            }
        ]
    );
    // A link to a digest before the range is not a deletion.
    let f = walk(found(&c[3..], &keys), key_end_ms(&key_at(4)).unwrap());
    assert!(tampering(&f).is_empty(), "{f:?}");
}

#[test]
fn a_digest_replaced_or_forged_is_invalid_and_altered() {
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let keys = keys(&kp);
    let mut c = chain(&kp, 4);
    // Hour 2 re-signed by another key (the attacker's): its own check
    // fails, and hour 3 recorded another signature for it.
    let other = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let (_, inflated) = parse_digest(&c[1].1).unwrap();
    let d: Digest = serde_json::from_slice(&inflated).unwrap();
    c[1].2 = sign(&other, string_to_sign(&d, &inflated).as_bytes());
    let f = walk(found(&c, &keys), 0);
    assert_eq!(
        tampering(&f),
        vec![&Finding::Invalid {
            key: key_at(2),
            problem: DigestProblem::BadSignature
        }]
    );
    // A digest of the same place with other content, validly signed (an
    // older version restored, or a key that leaked): its own check
    // passes, and the next digest's record of it does not.
    let mut swapped = chain(&kp, 4);
    let (_, inflated) = parse_digest(&swapped[1].1).unwrap();
    let mut d: serde_json::Value = serde_json::from_slice(&inflated).unwrap();
    d["logFiles"] =
        serde_json::json!([{"s3Bucket": BUCKET, "s3Object": "x.json.gz", "hashValue": "00"}]);
    let inflated = serde_json::to_vec(&d).unwrap();
    let parsed: Digest = serde_json::from_slice(&inflated).unwrap();
    swapped[1].2 = sign(&kp, string_to_sign(&parsed, &inflated).as_bytes());
    swapped[1].1 = gz(&inflated);
    let f = walk(found(&swapped, &keys), 0);
    assert_eq!(tampering(&f), vec![&Finding::Altered { key: key_at(2) }]);
}

#[test]
fn a_digest_key_gives_its_end_time() {
    assert_eq!(
        key_end_ms(&key_at(15))
            .map(crate::time::iso_time)
            .as_deref(),
        Some("2026-11-20T15:01:31Z")
    );
    assert_eq!(key_end_ms("AWSLogs/x/y.json.gz"), None);
    assert_eq!(unhex("0aFf"), Some(vec![0x0a, 0xff]));
    assert_eq!(unhex("0a0"), None);
    assert_eq!(unhex("zz"), None);
}
