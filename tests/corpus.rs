//! `trailwatch gen` end to end: the synthetic corpus is CloudTrail-shaped
//! enough for every layer, and its `expected.jsonl` is exactly what the
//! built-in rules raise on it, through `scan` and through the daemon.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

/// (rule path under rules/, event id or correlation size) → count.
fn keyed(alerts: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for a in alerts {
        let path = a["rule"]["path"].as_str().unwrap();
        let rule = path
            .trim_start_matches("builtin:")
            .trim_end_matches(".yml")
            .to_owned();
        let what = match a["count"].as_u64() {
            Some(n) if a["correlation"].is_string() => format!("events={n}"),
            _ => a["event_id"].as_str().unwrap().to_owned(),
        };
        *out.entry((rule, what)).or_default() += 1;
    }
    out
}

fn expected(dir: &Path) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("expected.jsonl"))
        .unwrap()
        .lines()
    {
        let e: Value = serde_json::from_str(l).unwrap();
        let what = match e["events"].as_u64() {
            Some(n) => format!("events={n}"),
            None => e["event_id"].as_str().unwrap().to_owned(),
        };
        *out.entry((e["rule"].as_str().unwrap().to_owned(), what))
            .or_default() += 1;
    }
    out
}

/// A corpus written by the library (fast gzip level), sizes in bytes.
fn generate(
    dir: &Path,
    seed: u64,
    size: u64,
    min_file: u64,
    max_file: u64,
) -> trailwatch::corpus::CorpusSummary {
    let opts = trailwatch::corpus::CorpusOptions {
        seed,
        size_bytes: size,
        min_file_bytes: min_file,
        max_file_bytes: max_file,
        gzip_level: 1,
    };
    trailwatch::corpus::generate(&opts, dir).unwrap()
}

#[test]
fn the_corpus_raises_exactly_its_expected_alerts() {
    let dir = tempfile::tempdir().unwrap();
    succeeded(
        trailwatch()
            .args([
                "gen",
                "--seed",
                "11",
                "--size",
                "12MB",
                "--min-file",
                "1MB",
                "--max-file",
                "3MB",
                "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap(),
    );
    let want = expected(dir.path());
    // Every scenario kind is there, and the background's denied calls.
    for rule in [
        "root/root_console_login_without_mfa",
        "keys/access_key_created_for_other_user",
        "policy/admin_policy_attached",
        "tamper/cloudtrail_tampering",
        "tamper/guardduty_tampering",
        "trust/role_trusts_any_principal",
        "bursts/access_denied_burst",
        "bursts/failed_console_logins_per_user",
        "users/login_profile_for_other_user",
        "errors/access_denied",
    ] {
        assert!(
            want.keys().any(|(r, _)| r == rule),
            "no {rule} in expected.jsonl"
        );
    }
    // Files in CloudTrail's layout and naming.
    let files: Vec<_> = walkdir::WalkDir::new(dir.path().join("AWSLogs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(files.len() >= 4);
    for f in &files {
        let name = f.file_name().to_string_lossy();
        assert!(
            name.contains("_CloudTrail_") && name.ends_with(".json.gz"),
            "{name}"
        );
        let rel = f
            .path()
            .strip_prefix(dir.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!((parts[0], parts[2]), ("AWSLogs", "CloudTrail"), "{rel}");
        assert!(name.starts_with(parts[1]), "{rel}");
    }

    let scan = trailwatch()
        .arg("scan")
        .arg(dir.path().join("AWSLogs"))
        .output()
        .unwrap();
    assert!(scan.status.success());
    assert_eq!(keyed(&alerts(&scan.stdout)), want);

    // The daemon over the same files gives the same alerts.
    let cfg = dir.path().join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n[output]\njsonl_path = {:?}\n",
            dir.path().join("state"),
            dir.path().join("AWSLogs"),
            dir.path().join("alerts.jsonl")
        ),
    )
    .unwrap();
    run_once(&cfg, &[], &[]);
    assert_eq!(keyed(&written(dir.path())), want);
}

#[test]
fn objects_over_64_mb_stream_through_the_chunked_parser_with_the_same_alerts() {
    // One 70 MB file: over the streaming threshold.
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), 21, 70 << 20, 70 << 20, (70 << 20) + 1);
    assert_eq!(summary.files.len(), 1);
    assert!(summary.json_bytes > trailwatch::pipeline::STREAM_MIN_BYTES);
    let file = &summary.files[0];
    let scan = trailwatch().arg("scan").arg(file).output().unwrap();
    assert!(scan.status.success());
    let want = expected(dir.path());
    assert_eq!(keyed(&alerts(&scan.stdout)), want);

    // Cut in the middle: a clear error naming the file, and the alerts of
    // the records before the cut, no others.
    let gz = std::fs::read(file).unwrap();
    let cut = dir.path().join("cut.json.gz");
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let scan = trailwatch().arg("scan").arg(&cut).output().unwrap();
    let stderr = String::from_utf8_lossy(&scan.stderr);
    assert!(
        stderr.contains("cut.json.gz") && stderr.contains("gzip"),
        "{stderr}"
    );
    let got = keyed(&alerts(&scan.stdout));
    assert!(!got.is_empty());
    assert!(got.len() < want.len());
    for k in got.keys() {
        assert!(want.contains_key(k), "{k:?} not expected");
    }
}

/// `trailwatch bench` measures what it says on the corpus it is given: its
/// totals are the corpus's, every round gives a ratio, and the reported
/// one is their median. (Speeds are never asserted: see BENCHMARKS.md.)
#[test]
fn bench_reports_the_corpus_totals_and_a_median_of_paired_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), 5, 6 << 20, 1 << 20, 3 << 20);
    let out = succeeded(
        trailwatch()
            .args(["bench", "--json", "--rounds", "3", "--threads", "2"])
            .arg(dir.path().join("AWSLogs"))
            .output()
            .unwrap(),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"].as_u64(), Some(summary.files.len() as u64));
    assert_eq!(v["records"].as_u64(), Some(summary.records));
    assert_eq!(v["json_bytes"].as_u64(), Some(summary.json_bytes));
    // Every expected rule alert is a match (correlation hits add more).
    let rule_alerts: usize = expected(dir.path())
        .iter()
        .filter(|((_, what), _)| !what.starts_with("events="))
        .map(|(_, n)| n)
        .sum();
    assert!(rule_alerts > 0);
    assert!(v["matches"].as_u64().unwrap() >= rule_alerts as u64);
    let rounds: Vec<f64> = v["pipeline_vs_limit_1_thread_rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap())
        .collect();
    assert_eq!(rounds.len(), 3);
    assert!(
        rounds.iter().all(|r| r.is_finite() && *r > 0.0),
        "{rounds:?}"
    );
    assert!(
        rounds.windows(2).all(|w| w[0] <= w[1]),
        "sorted: {rounds:?}"
    );
    assert_eq!(v["pipeline_vs_limit_1_thread"].as_f64(), Some(rounds[1]));
    let scaling = v["pipeline_scaling_vs_machine_rounds"].as_array().unwrap();
    assert_eq!(scaling.len(), 3);
    assert_eq!(v["pipeline_scaling_vs_machine"], scaling[1]);
    for k in [
        "limit_1_thread_mb_s",
        "pipeline_1_thread_mb_s",
        "limit_all_threads_mb_s",
        "pipeline_all_threads_mb_s",
        "machine_scaling_2_copies",
    ] {
        let x = v[k].as_f64().unwrap_or(-1.0);
        assert!(x.is_finite() && x > 0.0, "{k}: {x}");
    }
}
