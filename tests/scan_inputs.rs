//! `trailwatch scan` on the repository's own fixtures and on damaged copies
//! made at test time: every input layout, every error kind, exit codes.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

const NATIVE: &str = "cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json";

fn native_text() -> String {
    std::fs::read_to_string(fixtures().join(NATIVE)).unwrap()
}

fn event_ids(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["event_id"].as_str().unwrap_or("").to_string())
        .collect()
}

fn scan(args: &[&std::ffi::OsStr]) -> (i32, Vec<Value>, String) {
    let out = trailwatch().arg("scan").args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        alerts(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &std::ffi::OsStr {
    path.as_os_str()
}

/// A record in CloudTrail's shape.
fn record(id: &str, name: &str, extra: Value) -> Value {
    let mut r = json!({
        "eventVersion": "1.09",
        "eventTime": "2026-11-20T10:00:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "aws-cli/2",
        "eventID": id,
        "recipientAccountId": "123456789012",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/u"}
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn native(records: &[Value]) -> String {
    json!({ "Records": records }).to_string()
}

#[test]
fn fixtures_give_the_documented_alerts() {
    let (code, all, stderr) = scan(&[p(&fixtures().join("cloudtrail"))]);
    assert_eq!(code, 0);
    let (burst, alerts): (Vec<Value>, Vec<Value>) = all
        .into_iter()
        .partition(|a| a["source"].as_str().unwrap().ends_with("_burst.json"));
    // The burst file: ten denied calls from one role within a minute, and
    // five failed console logins for five users from one address.
    let singles = burst
        .iter()
        .filter(|a| a["rule_name"] == "access_denied")
        .count();
    assert_eq!(singles, 10);
    let bursts: Vec<_> = burst
        .iter()
        .filter(|a| a["correlation"].is_string())
        .collect();
    assert_eq!(bursts.len(), 2, "{bursts:?}");
    assert_eq!(bursts[0]["rule_name"], "access_denied_burst");
    assert_eq!(bursts[0]["count"], 10);
    assert_eq!(bursts[1]["rule_name"], "failed_console_logins_per_ip");
    assert_eq!(bursts[1]["count"], 5);
    assert_eq!(bursts[1]["group"]["sourceIPAddress"], "198.51.100.99");
    assert!(
        burst
            .iter()
            .all(|a| a["rule_name"] != "console_login_failed"),
        "the per-login rule only feeds the bursts"
    );
    let got: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule_name"].as_str().unwrap().to_string(),
                a["event_id"].as_str().unwrap()[28..].to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("root_console_login", "00000002"),
        ("root_console_login_without_mfa", "00000002"),
        ("root_usage", "00000002"),
        ("access_key_created", "00000003"),
        ("access_key_created_for_other_user", "00000003"),
        ("iam_change_without_mfa", "00000003"),
        ("access_denied", "00000004"),
        ("access_denied", "00000005"),
        ("access_denied", "00000006"),
        ("access_key_created", "00000009"),
        ("iam_change_without_mfa", "00000009"),
        ("access_denied", "00000010"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    assert!(
        stderr.contains("4 files (1 digests skipped), 25 records"),
        "{stderr}"
    );
}

#[test]
fn gzip_is_detected_by_content_and_multi_member_works() {
    let dir = tempfile::tempdir().unwrap();
    let text = native_text();
    let (_, plain, _) = scan(&[p(&fixtures().join(NATIVE))]);
    assert_eq!(plain.len(), 9);

    // Compressed, under a name that says nothing about gzip.
    let misnamed = dir.path().join("log.txt");
    std::fs::write(&misnamed, gzip(text.as_bytes())).unwrap();
    let (code, alerts, _) = scan(&[p(&misnamed)]);
    assert_eq!(code, 0);
    assert_eq!(event_ids(&alerts), event_ids(&plain));

    // The same text split across two gzip members.
    let mut multi = gzip(&text.as_bytes()[..text.len() / 2]);
    multi.extend(gzip(&text.as_bytes()[text.len() / 2..]));
    let multi_path = dir.path().join("multi.json.gz");
    std::fs::write(&multi_path, multi).unwrap();
    let (_, alerts, stderr) = scan(&[p(&multi_path)]);
    assert_eq!(event_ids(&alerts), event_ids(&plain), "{stderr}");
}

#[test]
fn stdin_arrays_and_json_lines() {
    let out = trailwatch()
        .args(["scan", "-"])
        .write_stdin(gzip(native_text().as_bytes()))
        .output()
        .unwrap();
    let from_stdin = alerts(&out.stdout);
    assert_eq!(from_stdin.len(), 9);
    assert!(from_stdin.iter().all(|a| a["source"] == "<stdin>"));

    let dir = tempfile::tempdir().unwrap();
    let recs = [
        record("a", "CreateAccessKey", json!({})),
        record("b", "ListUsers", json!({})),
    ];
    let arr = dir.path().join("array.json");
    std::fs::write(&arr, Value::from(recs.to_vec()).to_string()).unwrap();
    let lines = dir.path().join("lines.jsonl");
    std::fs::write(&lines, format!("{}\n{}\n", recs[1], recs[0])).unwrap();
    let (_, a, _) = scan(&[p(&arr)]);
    assert_eq!(event_ids(&a), ["a"]);
    let (_, a, _) = scan(&[p(&lines)]);
    assert_eq!(event_ids(&a), ["a"]);
    assert_eq!(a[0]["record"], 1);
}

/// A file whose records all match the access-key rule, ids r0..rN.
fn key_records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| record(&format!("r{i}"), "CreateAccessKey", json!({})))
        .collect()
}

#[test]
fn truncated_gzip_keeps_what_came_before_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let z = gzip(native(&key_records(3000)).as_bytes());
    let cut = dir.path().join("cut.json.gz");
    std::fs::write(&cut, &z[..z.len() * 2 / 3]).unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, native(&[record("ok", "CreateAccessKey", json!({}))])).unwrap();
    let (code, alerts, stderr) = scan(&[p(&cut), p(&good)]);
    assert_eq!(code, 0, "errors are not fatal without --strict");
    let from_cut = alerts
        .iter()
        .filter(|a| a["source"].as_str().unwrap().ends_with("cut.json.gz"));
    let n = from_cut.count();
    assert!(n > 1000 && n < 3000, "recovered {n} of 3000 records");
    assert_eq!(alerts.last().unwrap()["event_id"], "ok");
    assert!(
        stderr.contains("cut.json.gz") && stderr.contains("corrupt or truncated gzip"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gzip") && stderr.contains("truncated"),
        "{stderr}"
    );
}

/// A flipped byte inside a value (here an invalid UTF-8 byte in a string)
/// costs only its record. One that breaks the structure (here the colon
/// after a key) costs its record and everything after it in the
/// document: past a broken structure, no record can be delimited soundly
/// (a guess could take a nested object for a record), so nothing is
/// guessed, and the error says how much was skipped.
#[test]
fn a_flipped_byte_costs_its_record_or_the_rest_of_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let text = native(&key_records(5));
    let key = text.find(r#""eventID":"r2""#).unwrap();
    for (name, at, byte, want) in [
        (
            "in-value.json",
            key + 11,
            0xFF,
            &["r0", "r1", "r3", "r4"][..],
        ),
        ("structure.json", key + 9, b'#', &["r0", "r1"][..]),
    ] {
        let mut bytes = text.clone().into_bytes();
        bytes[at] = byte;
        let f = dir.path().join(name);
        std::fs::write(&f, &bytes).unwrap();
        let (code, alerts, stderr) = scan(&[p(&f)]);
        assert_eq!(code, 0);
        let ids = event_ids(&alerts);
        assert_eq!(ids, want, "{name}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains("record 2"),
            "{stderr}"
        );
        assert!(stderr.contains("invalid_json"), "{stderr}");
        if name == "structure.json" {
            assert!(stderr.contains("skipped"), "{stderr}");
        }
    }
}

#[test]
fn non_object_and_wrong_typed_records_are_reported_and_skipped_or_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = record("w", "GetObject", json!({"errorCode": "AccessDenied"}));
    wrong["userIdentity"] = json!("not-an-object");
    let text = json!({"Records": [
        record("a", "CreateAccessKey", json!({})),
        "just a string",
        42,
        wrong,
    ]})
    .to_string();
    let f = dir.path().join("odd.json");
    std::fs::write(&f, text).unwrap();
    let (code, alerts, stderr) = scan(&[p(&f)]);
    assert_eq!(code, 0);
    // The wrong-typed record is still matched on its other fields.
    assert_eq!(event_ids(&alerts), ["a", "w"]);
    assert!(
        stderr.contains("record 1") && stderr.contains("not an object"),
        "{stderr}"
    );
    assert!(
        stderr.contains("record 3") && stderr.contains("field userIdentity is a string"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2  not_object") && stderr.contains("1  wrong_type"),
        "{stderr}"
    );
}

#[test]
fn a_100_mb_record_is_matched_with_bounded_output() {
    // Over 64 MB decompressed: the file takes the streaming path, where one
    // record is far larger than the 256 KB chunks.
    let dir = tempfile::tempdir().unwrap();
    let huge = "A".repeat(100 << 20);
    let recs = [
        record("before", "CreateAccessKey", json!({})),
        record("huge", "CreateAccessKey", json!({"userAgent": huge})),
        record("after", "CreateAccessKey", json!({})),
    ];
    let f = dir.path().join("big.json.gz");
    std::fs::write(&f, gzip(native(&recs).as_bytes())).unwrap();
    let (code, alerts, _) = scan(&[p(&f)]);
    assert_eq!(code, 0);
    assert_eq!(event_ids(&alerts), ["before", "huge", "after"]);
    let ua = alerts[1]["user_agent"].as_str().unwrap();
    assert!(ua.len() < 1100, "user_agent kept {} bytes", ua.len());
    assert!(ua.ends_with("bytes truncated]"));
}

#[test]
fn gzip_bomb_is_refused_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.json.gz");
    std::fs::write(&bomb, gzip(&vec![b' '; 64 << 20])).unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, native(&key_records(1))).unwrap();
    let (code, alerts, stderr) = scan(&[
        "--max-object-bytes".as_ref(),
        "8388608".as_ref(),
        p(&bomb),
        p(&good),
    ]);
    assert_eq!(code, 0);
    assert_eq!(event_ids(&alerts), ["r0"]);
    assert!(
        stderr.contains("bomb.json.gz") && stderr.contains("exceeds the cap of 8388608"),
        "{stderr}"
    );
    assert!(stderr.contains("1  too_large"), "{stderr}");
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("a-bad.json");
    std::fs::write(&bad, "this is not json").unwrap();
    let good = dir.path().join("b-good.json");
    std::fs::write(&good, native(&key_records(1))).unwrap();
    let quiet = dir.path().join("quiet.json");
    std::fs::write(&quiet, native(&[record("q", "ListUsers", json!({}))])).unwrap();

    // Errors are reported but not fatal by default.
    assert_eq!(scan(&[p(&bad), p(&good)]).0, 0);
    // --strict: fatal, exit 3, and the scan stops at the first bad object.
    let (code, alerts, stderr) = scan(&["--strict".as_ref(), p(&bad), p(&good)]);
    assert_eq!(code, 3, "{stderr}");
    assert!(alerts.is_empty());
    assert!(stderr.contains("stopped at the first error"));
    // --fail-on-match
    assert_eq!(scan(&["--fail-on-match".as_ref(), p(&good)]).0, 1);
    assert_eq!(scan(&["--fail-on-match".as_ref(), p(&quiet)]).0, 0);
    // Usage errors.
    let (code, _, stderr) = scan(&[p(&dir.path().join("missing"))]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing"), "{stderr}");
    assert_eq!(
        trailwatch().args(["scan"]).output().unwrap().status.code(),
        Some(2)
    );
    assert_eq!(
        trailwatch()
            .args(["scan", "--bogus", "x"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn custom_rules_replace_the_pack_and_bad_rules_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("list_users.yml"),
        "title: ListUsers seen\nid: 0b0e8a9e-3f0c-4d7e-9a55-1f4f0c6a2b11\nlogsource: {product: aws, service: cloudtrail}\n\
         detection:\n  sel:\n    eventName: ListUsers\n  condition: sel\nlevel: low\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("broken.yml"),
        "title: Broken\nlogsource: {product: aws}\ndetection:\n  sel:\n    eventName|nosuchmodifier: X\n  condition: sel\n",
    )
    .unwrap();
    let f = dir.path().join("in.json");
    std::fs::write(
        &f,
        native(&[
            record("l", "ListUsers", json!({})),
            record("k", "CreateAccessKey", json!({})),
        ]),
    )
    .unwrap();
    let (code, alerts, stderr) = scan(&["--rules".as_ref(), p(&rules), p(&f)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(event_ids(&alerts), ["l"], "only the custom rule runs");
    assert_eq!(alerts[0]["rule_title"], "ListUsers seen");
    assert!(
        stderr.contains("broken.yml") && stderr.contains("nosuchmodifier"),
        "{stderr}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, stderr) = scan(&["--rules".as_ref(), p(&empty), p(&f)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no rules found"), "{stderr}");
}

#[test]
fn output_file_and_text_format_escape_event_text() {
    let dir = tempfile::tempdir().unwrap();
    let evil = record(
        "evil",
        "CreateAccessKey",
        json!({"userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/x\u{1b}[2J\nFAKE ALERT"}}),
    );
    let f = dir.path().join("evil.json");
    std::fs::write(&f, native(&[evil])).unwrap();
    let out_file: PathBuf = dir.path().join("alerts.jsonl");
    let (code, stdout_alerts, _) = scan(&["-o".as_ref(), p(&out_file), p(&f)]);
    assert_eq!(code, 0);
    assert!(stdout_alerts.is_empty());
    let written = alerts(&std::fs::read(&out_file).unwrap());
    assert_eq!(written.len(), 1);
    assert_eq!(
        written[0]["principal"],
        "arn:aws:iam::1:user/x\u{1b}[2J\nFAKE ALERT"
    );

    let out = trailwatch()
        .args(["scan", "--format", "text"])
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    assert!(!text.contains('\u{1b}'));
    // Escaped, and quoted (it holds a space), its backslashes doubled.
    assert!(
        text.contains(r#"principal="arn:aws:iam::1:user/x\\u{1b}[2J\\nFAKE ALERT""#),
        "{text}"
    );
}

#[test]
fn retired_count_aggregation_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("old.yml"),
        "title: Old\nlogsource: {product: aws}\ndetection:\n  sel:\n    eventName: X\n  timeframe: 5m\n  condition: sel | count() > 10\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ok.yml"),
        "title: Ok\nlogsource: {product: aws}\ndetection:\n  sel:\n    eventName: X\n  condition: sel\n",
    )
    .unwrap();
    let f = dir.path().join("in.json");
    std::fs::write(&f, native(&[record("x", "X", json!({}))])).unwrap();
    let (code, alerts, stderr) = scan(&["--rules".as_ref(), p(dir.path()), p(&f)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(alerts.len(), 1, "the other rule still runs");
    assert!(
        stderr.contains("old.yml:7") && stderr.contains("correlation rule"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );
}

#[test]
fn prefiltered_rules_still_see_unicode_folded_text() {
    // A substring rule (prefiltered by Aho-Corasick on ASCII) must still
    // match text that only folds to its needle under Unicode lowercasing.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kali.yml"),
        "title: Kali\nid: 0b0e8a9e-3f0c-4d7e-9a55-1f4f0c6a2b99\nlogsource: {product: aws}\n\
         detection:\n  sel:\n    userAgent|contains: kali\n  condition: sel\n",
    )
    .unwrap();
    let f = dir.path().join("in.json");
    let kelvin = record(
        "k",
        "ListUsers",
        json!({"userAgent": "aws-cli \u{212A}ali-linux"}),
    );
    let plain = record("p", "ListUsers", json!({"userAgent": "aws-cli KALI-linux"}));
    let none = record("n", "ListUsers", json!({"userAgent": "aws-cli"}));
    std::fs::write(&f, native(&[kelvin, plain, none])).unwrap();
    let (_, alerts, stderr) = scan(&["--rules".as_ref(), p(dir.path()), p(&f)]);
    assert_eq!(event_ids(&alerts), ["k", "p"], "{stderr}");
}

#[test]
fn alerts_carry_the_rules_sigma_metadata() {
    let (_, alerts, _) = scan(&[p(&fixtures().join(NATIVE))]);
    let root = alerts
        .iter()
        .find(|a| a["rule_name"] == "root_console_login")
        .unwrap();
    let rule = &root["rule"];
    assert_eq!(rule["id"], root["rule_id"]);
    assert_eq!(rule["status"], "stable");
    assert_eq!(rule["author"], "trailwatch");
    assert!(rule["description"].as_str().unwrap().contains("root user"));
    assert!(
        rule["references"][0]
            .as_str()
            .unwrap()
            .starts_with("https://docs.aws.amazon.com/")
    );
    assert!(!rule["falsepositives"].as_array().unwrap().is_empty());
    assert!(
        rule["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "attack.t1078.004")
    );
    assert_eq!(rule["path"], "builtin:root/root_console_login.yml");
}

/// A big native file whose chunk cuts land on nested look-alikes of a
/// record, with escaped strings everywhere: the in-place chunk parse fails
/// after unescaping, the object is decoded again into the same buffer and
/// parsing resumes there. Every record is read once, with its text intact,
/// gzip or not.
#[test]
#[cfg(feature = "corpus")] // its input comes from the corpus generator
fn chunks_that_fail_in_place_resume_from_the_original_text() {
    let text = trailwatch::corpus::nested_look_alikes(4000);
    let rules = trailwatch::rules::RuleSet::from_texts([(
        "t.yml",
        "title: t\nid: t\nlogsource: {product: aws, service: cloudtrail}\n\
         detection:\n  s:\n    eventName: CreateUser\n  condition: s\nlevel: low\n",
    )]);
    assert!(rules.errors.is_empty(), "{:?}", rules.errors);
    for input in [text.as_bytes().to_vec(), gzip(text.as_bytes())] {
        let report = trailwatch::pipeline::process_object(
            "o.json.gz",
            &input,
            &rules,
            trailwatch::pipeline::Limits::default(),
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.records, 4000);
        let ids: Vec<String> = report
            .alerts
            .iter()
            .map(|m| m.event_id().unwrap().to_owned())
            .collect();
        let want: Vec<String> = (0..4000).map(|i| format!("{i}/e")).collect();
        assert_eq!(ids, want);
    }
}

/// Only CloudTrail's digest naming marks a file as a digest: a file that
/// merely has `CloudTrail-Digest` in its path is read (an attacker who can
/// write to the bucket cannot hide records behind the word); a file named
/// as CloudTrail names digests is skipped; a digest by content is skipped
/// whatever its name.
#[test]
fn digests_are_known_by_their_real_name_or_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let key = native(&key_records(1));
    let digest_dir = dir
        .path()
        .join("AWSLogs/123456789012/CloudTrail-Digest/us-east-1");
    std::fs::create_dir_all(&digest_dir).unwrap();
    let lookalike = digest_dir.join("x-CloudTrail-Digest-y.json");
    std::fs::write(&lookalike, &key).unwrap();
    let real = digest_dir.join(
        "123456789012_CloudTrail-Digest_us-east-1_my-trail_us-east-1_20261120T110000Z.json.gz",
    );
    std::fs::write(&real, gzip(key.as_bytes())).unwrap();
    let by_content = dir.path().join("digest.json");
    std::fs::write(
        &by_content,
        r#"{"awsAccountId":"123456789012","digestStartTime":"2026-11-20T10:00:00Z","logFiles":[]}"#,
    )
    .unwrap();
    let (code, alerts, stderr) = scan(&[p(dir.path())]);
    assert_eq!(code, 0, "{stderr}");
    let sources: Vec<&str> = alerts
        .iter()
        .map(|a| a["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 1, "{alerts:?}");
    assert!(
        sources[0].ends_with("x-CloudTrail-Digest-y.json"),
        "{sources:?}"
    );
    assert!(stderr.contains("(2 digests skipped)"), "{stderr}");
}

/// `cat a.json.gz b.json.gz`: every document's records, every member's.
#[test]
fn concatenated_documents_are_all_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = native(&[record("a1", "CreateAccessKey", json!({}))]);
    let b = native(&[record("b1", "CreateAccessKey", json!({}))]);
    let mut gz = gzip(a.as_bytes());
    gz.extend(gzip(b.as_bytes()));
    std::fs::write(dir.path().join("two.json.gz"), &gz).unwrap();
    std::fs::write(dir.path().join("two.json"), format!("{a}{b}")).unwrap();
    let (code, alerts, stderr) = scan(&[p(dir.path())]);
    assert_eq!(code, 0, "{stderr}");
    let ids = event_ids(&alerts);
    assert_eq!(ids, ["a1", "b1", "a1", "b1"], "{stderr}");
    assert!(stderr.contains("errors: 0"), "{stderr}");
}

/// A plain (uncompressed) file is read as it is parsed once it is larger
/// than the streaming threshold: scanning a 200 MB one keeps the process
/// far below the file's size (it used to hold the file and a copy). A
/// bound on structure, not a speed or memory target (those are in
/// BENCHMARKS.md).
#[test]
fn a_large_plain_file_is_streamed_not_held() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.json");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&f).unwrap());
    let pad = "p".repeat(1900);
    w.write_all(b"{\"Records\":[").unwrap();
    let n = 100_000;
    for i in 0..n {
        let sep = if i == 0 { "" } else { "," };
        let name = if i == n - 1 {
            "CreateAccessKey"
        } else {
            "ListUsers"
        };
        let r = record(&format!("r{i}"), name, json!({"p": pad}));
        write!(w, "{sep}{r}").unwrap();
    }
    w.write_all(b"]}").unwrap();
    drop(w);
    let size = std::fs::metadata(&f).unwrap().len();
    assert!(size > 200 << 20, "{size}");
    let (code, alerts, stderr) = scan(&[p(&f)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(event_ids(&alerts), [format!("r{}", n - 1)], "{stderr}");
    assert!(stderr.contains(&format!("{n} records")), "{stderr}");
    let peak: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak resident memory: "))
        .and_then(|l| l.trim_end_matches(" MiB").parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line: {stderr}"));
    assert!(peak < 120, "peak {peak} MiB for a {} MiB file", size >> 20);
}

/// A file name (or S3 key) is the attacker's text too: a newline or a
/// Unicode line separator in it cannot start a forged line in the logs,
/// text or JSON.
#[test]
fn a_hostile_file_name_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let name = "x.json\nFAKE ERROR all alerts disabled\u{2028}FAKE2";
    std::fs::write(dir.path().join(name), b"{\"Records\":[{\"eventVersion\":").unwrap();
    for format in ["text", "json"] {
        let out = trailwatch()
            .args(["--log-format", format, "scan"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("FAKE ERROR"),
            "{format}: the error names the file: {stderr}"
        );
        assert!(
            !stderr.lines().any(|l| l.starts_with("FAKE")),
            "{format}: {stderr}"
        );
        assert!(!stderr.contains('\u{2028}'), "{format}: {stderr}");
        if format == "json" {
            for l in stderr.lines().filter(|l| l.starts_with('{')) {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
    }
}

/// `scan --dry-run` and `--filters`: the dry-run rule's alerts still come
/// out, marked in JSON and in text; a filter in dry run removes nothing and
/// the summary says what it would have removed; an enforced one removes;
/// one naming no loaded rule is named as such.
/// In text, time and level open every line in fixed columns, bursts too.
#[test]
fn dry_run_and_filters_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let filter = |dry: bool| {
        format!(
            "title: Lab root\nid: f-lab\nname: lab_root\ndry_run: {dry}\nlogsource: {{product: aws, service: cloudtrail}}\n\
             filter:\n  rules: [root_usage]\n  selection:\n    recipientAccountId: '123456789012'\n  condition: selection\n"
        )
    };
    let fixtures = fixtures().join("cloudtrail");
    let run = |args: &[&str]| {
        let out = trailwatch()
            .arg("scan")
            .args(args)
            .arg(&fixtures)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let count = |json: &str, name: &str| {
        alerts(json.as_bytes())
            .iter()
            .filter(|a| a["rule"]["name"] == name)
            .count()
    };
    let (plain, _) = run(&[]);
    let root_usage = count(&plain, "root_usage");
    assert!(root_usage > 0);

    let (json, _) = run(&["--dry-run", "root_console_login_without_mfa"]);
    let marked: Vec<Value> = alerts(json.as_bytes())
        .into_iter()
        .filter(|a| a["rule"]["dry_run"] == true)
        .collect();
    assert!(!marked.is_empty());
    assert!(
        marked
            .iter()
            .all(|a| a["rule"]["name"] == "root_console_login_without_mfa")
    );
    let (text, _) = run(&[
        "--format",
        "text",
        "--dry-run",
        "root_console_login_without_mfa",
    ]);
    assert!(
        text.contains("critical      [dry run] Root User Console Login Without MFA"),
        "{text}"
    );
    for line in text.lines() {
        // `2026-11-20T10:01:15Z ` then the level padded to 13.
        assert_eq!(&line[20..21], " ", "{line}");
        assert_eq!(&line[34..35], " ", "{line}");
        assert!(!line.starts_with('['), "{line}");
    }

    let f = dir.path().join("lab.yml");
    std::fs::write(&f, filter(true)).unwrap();
    let (json, summary) = run(&["--filters", f.to_str().unwrap()]);
    assert_eq!(
        count(&json, "root_usage"),
        root_usage,
        "dry run removes nothing"
    );
    assert!(
        summary.contains(&format!(
            "filter f-lab (dry run): would have removed {root_usage} matches"
        )),
        "{summary}"
    );
    std::fs::write(&f, filter(false)).unwrap();
    let (json, summary) = run(&["--filters", f.to_str().unwrap()]);
    assert_eq!(count(&json, "root_usage"), 0);
    assert!(
        summary.contains(&format!("filter f-lab: removed {root_usage} matches")),
        "{summary}"
    );
    // A typo in the rule it names: the filter applies to nothing, and the
    // summary says so instead of "removed 0".
    std::fs::write(&f, filter(false).replace("[root_usage]", "[root_usaeg]")).unwrap();
    let (json, summary) = run(&["--filters", f.to_str().unwrap()]);
    assert_eq!(count(&json, "root_usage"), root_usage);
    assert!(summary.contains("root_usaeg"), "{summary}");
    assert!(
        summary.contains("filter f-lab: names no loaded rule, so it removed nothing"),
        "{summary}"
    );
    assert!(!summary.contains("filter f-lab: removed"), "{summary}");
    let out = trailwatch()
        .args(["scan", "--dry-run", "no_such_rule"])
        .arg(&fixtures)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_rule"));
}
