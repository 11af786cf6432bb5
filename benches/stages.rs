//! Each stage on its own, on a generated corpus file (`trailwatch gen`'s
//! generator, seed 5, one ~16 MB file; no ../shared needed), throughput in
//! bytes of JSON:
//!
//! - `decode`: libdeflate gzip decode into a reused buffer;
//! - `parse`: simd-json tape fill (the limit's parse half), then the same
//!   plus record indexing (what rules see);
//! - `match`: the built-in rules over the already-indexed records;
//! - `correlate`: the correlation hits of the file pushed through the
//!   correlator (bursts of the injected scenarios).
//!
//! Run: `cargo bench --bench stages`. End to end, with the limit and the
//! ratios, is `trailwatch bench` (see BENCHMARKS.md).

use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trailwatch::corpus::{CorpusOptions, generate};
use trailwatch::correlate::{self, Correlator};
use trailwatch::decode;
use trailwatch::parse::{self, ParseError, Record, Sink, Value};
use trailwatch::pipeline::{self, Limits};
use trailwatch::rules::RuleSet;

/// Counts records: the cost of handing them out, nothing more.
struct Count(AtomicUsize);

impl Sink for Count {
    fn records(&self, _first: usize, records: &[Record<'_, '_>]) {
        self.0.fetch_add(records.len(), Ordering::Relaxed);
    }
    fn error(&self, _err: ParseError) {}
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let opts = CorpusOptions {
        seed: 5,
        size_bytes: 16 << 20,
        min_file_bytes: 16 << 20,
        max_file_bytes: (16 << 20) + 1,
        gzip_level: 6,
    };
    let summary = generate(&opts, dir.path()).unwrap();
    let gz = std::fs::read(&summary.files[0]).unwrap();
    let json = decode::decode(&gz, u64::MAX, Vec::new());
    let len = json.len;
    let rules = RuleSet::builtin();

    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(len as u64));
    g.sample_size(20);

    let mut buf = Vec::new();
    g.bench_function("decode", |b| {
        b.iter(|| {
            let d = decode::decode(&gz, u64::MAX, std::mem::take(&mut buf));
            let n = d.len;
            buf = d.buf;
            n
        })
    });

    let mut work = json.buf.clone();
    g.bench_function("parse: tape only", |b| {
        b.iter(|| {
            work[..len].copy_from_slice(&json.buf[..len]);
            parse::fill_tape_only(&mut work, len)
        })
    });
    g.bench_function("parse: tape + records", |b| {
        b.iter(|| {
            work[..len].copy_from_slice(&json.buf[..len]);
            let sink = Count(AtomicUsize::new(0));
            parse::parse(&mut work, len, &sink).unwrap();
            sink.0.into_inner()
        })
    });

    // Matching alone: records indexed once, outside the loop.
    let mut doc = json.buf[..len].to_vec();
    let tape = simd_json::to_tape(&mut doc).unwrap();
    let records: Vec<Record<'_, '_>> = Value::new(&tape.0)
        .get("Records")
        .unwrap()
        .elements()
        .filter_map(Record::new)
        .collect();
    g.bench_function("match: built-in rules", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for r in &records {
                rules.for_each_match(r, |_, _| n += 1);
            }
            n
        })
    });

    let report = pipeline::process_object("bench", &gz, &rules, Limits::default());
    eprintln!(
        "{} records, {} alerts, {} correlation hits",
        report.records,
        report.alerts.len(),
        report.hits.len()
    );
    g.bench_function("correlate: the file's hits", |b| {
        b.iter(|| {
            let mut c = Correlator::new(
                rules.correlations().to_vec(),
                correlate::DEFAULT_LATENESS_MS,
                correlate::DEFAULT_MAX_GROUPS,
            );
            let mut fired = 0;
            for h in &report.hits {
                fired += c.push(h).len();
            }
            fired + c.finish().len()
        })
    });
    g.bench_function("pipeline: process_object", |b| {
        b.iter(|| pipeline::process_object("bench", &gz, &rules, Limits::default()).records)
    });
    // The same with the content hashed as it is parsed (`[integrity]` on):
    // what online digest validation costs the hot path.
    let hashed = Limits {
        sha256: true,
        ..Limits::default()
    };
    g.bench_function("pipeline: process_object + SHA-256", |b| {
        b.iter(|| pipeline::process_object("bench", &gz, &rules, hashed).records)
    });
    // `trailwatch verify`'s work per log file: inflate every member and
    // SHA-256 the content (the hash a digest lists), streaming.
    let expected = trailwatch::integrity::sha256_hex(&json.buf[..len]);
    g.bench_function("verify: inflate + SHA-256 (check_log)", |b| {
        b.iter(|| trailwatch::integrity::check_log(&gz, &expected))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
