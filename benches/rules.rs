//! Matching cost against the number of rules: 20 rules vs 200 on the same
//! ~950 real CloudTrail events (../shared/data: the logs and the Panther
//! labeled events), parsed once so only matching is measured. The eventName
//! index should keep 200 rules well under 2x the cost of 20.
//!
//! The 20 are SigmaHQ CloudTrail rules; the 200 are the same 20 plus 180
//! synthetic rules of the usual shape (eventSource + eventName + identity
//! type + a filter), one in ten pinning no eventName (a userAgent
//! substring) as real packs have some. None of the synthetic rules matches
//! this data, so the difference is the cost of carrying more rules. A third
//! set, every real rule (SigmaHQ + the built-in pack), is for reference.
//!
//! Run: `cargo bench --bench rules` (needs ../shared beside the repository).

use std::io::Read;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use trailwatch::parse::{Record, Value};
use trailwatch::rules::RuleSet;

fn shared() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        p.is_dir(),
        "benchmark data missing: {} does not exist",
        p.display()
    );
    p
}

/// All events as one native CloudTrail document.
fn events() -> String {
    let mut out: Vec<serde_json::Value> = Vec::new();
    for e in walkdir::WalkDir::new(shared().join("cloudtrail/logs")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(e.path()).unwrap())
                .read_to_end(&mut text)
                .unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
            out.extend(doc["Records"].as_array().unwrap().iter().cloned());
        }
    }
    let labeled = std::fs::read_to_string(
        shared().join("cloudtrail/labeled/panther-analysis_rule-tests.jsonl"),
    )
    .unwrap();
    for l in labeled.lines() {
        let case: serde_json::Value = serde_json::from_str(l).unwrap();
        if case["event"].is_object() {
            out.push(case["event"].clone());
        }
    }
    serde_json::json!({ "Records": out }).to_string()
}

fn synthetic(i: usize) -> String {
    let selection = if i % 10 == 9 {
        format!("        userAgent|contains: 'synthetic-tool-{i}/'")
    } else {
        format!(
            "        eventSource: iam.amazonaws.com\n        eventName: SyntheticAction{i}\n        userIdentity.type: IAMUser"
        )
    };
    format!(
        "title: Synthetic {i}\nid: 00000000-0000-4000-8000-{i:012}\nlogsource: {{product: aws, service: cloudtrail}}\n\
         detection:\n    selection:\n{selection}\n    filter:\n        errorCode|exists: true\n    condition: selection and not filter\nlevel: low\n"
    )
}

/// Which rules a benchmark set holds.
#[derive(Clone, Copy)]
enum Set {
    /// The first `n` SigmaHQ rules, then synthetic rules up to `total`.
    Scaled { sigma: usize, total: usize },
    /// Every real rule: SigmaHQ's and the built-in pack.
    Real,
}

fn rule_dir(set: Set) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut sigma: Vec<PathBuf> = std::fs::read_dir(shared().join("sigma/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sigma.sort();
    let mut files: Vec<(String, String)> = Vec::new();
    let (n_sigma, total) = match set {
        Set::Scaled { sigma, total } => (sigma, total),
        Set::Real => (sigma.len(), usize::MAX),
    };
    for p in sigma.iter().take(n_sigma) {
        files.push((
            p.file_name().unwrap().to_string_lossy().into(),
            std::fs::read_to_string(p).unwrap(),
        ));
    }
    if let Set::Real = set {
        for e in walkdir::WalkDir::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")) {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".yml") {
                files.push((
                    format!("pack-{name}"),
                    std::fs::read_to_string(e.path()).unwrap(),
                ));
            }
        }
    } else {
        let mut i = 0;
        while files.len() < total {
            files.push((format!("synthetic-{i}.yml"), synthetic(i)));
            i += 1;
        }
    }
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The sets compared: 20 real rules, the same 20 plus 180 synthetic ones
/// (same shapes, none matching this data, so the difference is the cost of
/// carrying more rules), and every real rule for reference.
const SETS: [(&str, Set); 3] = [
    (
        "20 rules",
        Set::Scaled {
            sigma: 20,
            total: 20,
        },
    ),
    (
        "200 rules",
        Set::Scaled {
            sigma: 20,
            total: 200,
        },
    ),
    ("all real rules", Set::Real),
];

fn bench(c: &mut Criterion) {
    let text = events();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let mut doc = text.into_bytes();
    let tape = simd_json::to_tape(&mut doc).unwrap();
    let root = Value::new(&tape.0);
    let records: Vec<Record<'_, '_>> = root
        .get("Records")
        .unwrap()
        .elements()
        .filter_map(Record::new)
        .collect();
    let mut group = c.benchmark_group("match");
    for (label, set) in SETS {
        let dir = rule_dir(set);
        let rules = RuleSet::load(&[dir.path().to_path_buf()]).unwrap();
        assert!(rules.errors.is_empty(), "{:?}", rules.errors);
        let tested: usize = records.iter().map(|r| rules.candidates(r)).sum();
        let (per_field, always) = rules.index_stats();
        eprintln!(
            "index: {per_field:?}; {} unindexed: {always:?}",
            always.len()
        );
        eprintln!(
            "{label} ({} rules) over {} records: {:.2} rules tested per record",
            rules.len(),
            records.len(),
            tested as f64 / records.len() as f64
        );
        group.bench_function(label, |b| {
            b.iter(|| {
                let mut hits = 0usize;
                for r in &records {
                    rules.for_each_match(r, |_, _| hits += 1);
                }
                hits
            })
        });
    }
    group.finish();

    // The same events end to end: gzip decode, parse, match.
    let mut group = c.benchmark_group("pipeline");
    group.throughput(criterion::Throughput::Bytes(doc.len() as u64));
    for (label, set) in SETS {
        let dir = rule_dir(set);
        let rules = RuleSet::load(&[dir.path().to_path_buf()]).unwrap();
        group.bench_function(label, |b| {
            b.iter(|| {
                trailwatch::pipeline::process_object("bench", &gz, &rules, Default::default())
                    .alerts
                    .len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
