//! `trailwatch bench`: throughput on a corpus, against the hardware limit,
//! measured in one run so the ratios hold on a noisy shared machine.
//!
//! The files are read into memory first (the disk is not measured). Each
//! round runs, in turn:
//! - **limit, 1 thread**: gzip decode + simd-json tape fill, no rules: what
//!   the machine can do at best on this data;
//! - **pipeline, 1 thread**: decode → parse → records → rules → correlation
//!   hits, what `scan` and the daemon do per object. These two are timed
//!   object by object in turns, so both see the same moments of a noisy
//!   machine, and their ratio is the median of the rounds' ratios;
//! - the same two on all threads (files in parallel);
//! - **machine scaling**: two copies of the 1-thread limit side by side,
//!   which says how much a second thread can give on this machine at all.
//!
//! Medians over the rounds are reported in MB/s of decompressed JSON and
//! records/s, with the ratios the targets are stated in.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use trailwatch::correlate::Correlator;
use trailwatch::decode;
use trailwatch::pipeline::{self, Limits};
use trailwatch::rules::RuleSet;
use trailwatch::source::files::{self, Input};

/// Options of `trailwatch bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Corpus files or directories (e.g. written by `trailwatch gen`).
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// Rule directories (repeatable); without, the built-in pack. Give
    /// `rules/` too to keep the pack alongside others.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Threads for the "all threads" runs (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Only the limit, once, on one thread, each file read from disk as
    /// `scan` reads it: the other side of a whole-process comparison
    /// (`taskset -c 0 trailwatch bench --limit-only DIR` against
    /// `taskset -c 0 trailwatch scan --threads 1 DIR`, under hyperfine).
    #[arg(long)]
    pub limit_only: bool,
}

/// One loaded object.
struct Object {
    name: String,
    bytes: Vec<u8>,
}

/// The limit for one object: decode and fill a simd-json tape, nothing
/// else. Returns the decoded length.
fn limit_one(o: &Object, buf: &mut Vec<u8>) -> usize {
    let mut d = decode::decode(
        &o.bytes,
        decode::DEFAULT_MAX_OBJECT_BYTES,
        std::mem::take(buf),
    );
    let len = d.len;
    trailwatch::parse::fill_tape_only(&mut d.buf, len);
    *buf = d.buf;
    len
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Run the bench; prints the table (or JSON).
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.limit_only {
        let inputs = files::expand(&args.inputs)?;
        let (mut n, mut total) = (0u64, 0u64);
        let mut buf = Vec::new();
        for i in &inputs {
            if let Input::File(p) = i {
                let name = p.display().to_string();
                if pipeline::is_digest_name(&name) {
                    continue;
                }
                let o = Object {
                    bytes: std::fs::read(p)?,
                    name,
                };
                total += limit_one(&o, &mut buf) as u64;
                n += 1;
            }
        }
        eprintln!("limit: {n} files, {total} bytes decoded and parsed");
        return Ok(ExitCode::SUCCESS);
    }
    let ruleset = if args.rules.is_empty() {
        RuleSet::builtin()
    } else {
        RuleSet::load(&args.rules)?
    };
    if !ruleset.errors.is_empty() {
        eprintln!(
            "note: {} rule files not loaded (e.g. {}: {})",
            ruleset.errors.len(),
            ruleset.errors[0].path,
            ruleset.errors[0].message
        );
    }
    let inputs = files::expand(&args.inputs)?;
    let mut objects = Vec::new();
    for i in &inputs {
        if let Input::File(p) = i {
            let name = p.display().to_string();
            if pipeline::is_digest_name(&name)
                || !(name.ends_with(".json.gz") || name.ends_with(".json"))
            {
                continue;
            }
            objects.push(Object {
                bytes: std::fs::read(p)?,
                name,
            });
        }
    }
    anyhow::ensure!(!objects.is_empty(), "no CloudTrail files under the inputs");
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let all = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let stored: u64 = objects.iter().map(|o| o.bytes.len() as u64).sum();

    // Warm-up, and the totals the rates are computed from.
    let mut decoded = 0u64;
    let mut records = 0u64;
    let mut matches = 0u64;
    for o in &objects {
        let r = pipeline::process_object(&o.name, &o.bytes, &ruleset, Limits::default());
        decoded += r.bytes_decoded;
        records += r.records;
        matches += (r.alerts.len() + r.hits.len()) as u64;
    }

    let limit_pass = || {
        let mut buf = Vec::new();
        for o in &objects {
            std::hint::black_box(limit_one(o, &mut buf));
        }
    };
    // One object through the pipeline. Its alerts are dropped here, inside
    // the timing (scan writes them out and drops them); correlation hits
    // are kept for the ordered pass after.
    let hits_of =
        |o: &Object| pipeline::process_object(&o.name, &o.bytes, &ruleset, Limits::default()).hits;
    let correlate_all = |reports: &[Vec<trailwatch::correlate::Hit>]| {
        // Correlation runs in input order after the parallel part, as in
        // scan and the daemon.
        let mut c = Correlator::new(
            ruleset.correlations().to_vec(),
            trailwatch::correlate::DEFAULT_LATENESS_MS,
            trailwatch::correlate::DEFAULT_MAX_GROUPS,
        );
        for hits in reports {
            for h in hits {
                std::hint::black_box(c.push(h));
            }
        }
        std::hint::black_box(c.finish());
    };
    // The 1-thread limit and pipeline, object by object in turns (which of
    // the two goes first alternates), so both see the same moments of a
    // noisy machine: the ratio of their sums is far steadier than the
    // ratio of two separate passes.
    let paired_pass = || {
        let mut buf = Vec::new();
        let (mut limit, mut full) = (Duration::ZERO, Duration::ZERO);
        let mut hits = Vec::with_capacity(objects.len());
        for (n, o) in objects.iter().enumerate() {
            let mut run_limit = || {
                let t = Instant::now();
                std::hint::black_box(limit_one(o, &mut buf));
                limit += t.elapsed();
            };
            let mut run_full = || {
                let t = Instant::now();
                hits.push(hits_of(o));
                full += t.elapsed();
            };
            if n % 2 == 0 {
                run_limit();
                run_full();
            } else {
                run_full();
                run_limit();
            }
        }
        let t = Instant::now();
        correlate_all(&hits);
        (limit, full + t.elapsed())
    };
    let parallel_pass = || {
        let reports: Vec<_> = objects.par_iter().map(hits_of).collect();
        correlate_all(&reports);
    };
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let (mut l1, mut f1, mut ln, mut fnn, mut twin) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..args.rounds.max(1) {
        let (limit, full) = one.install(paired_pass);
        l1.push(limit);
        f1.push(full);
        ln.push(all.install(|| {
            time(&|| {
                objects.par_iter().for_each_init(Vec::new, |buf, o| {
                    std::hint::black_box(limit_one(o, buf));
                })
            })
        }));
        fnn.push(all.install(|| time(&parallel_pass)));
        // Two single-thread limit loops at once.
        twin.push(time(&|| {
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(1)
                            .build()
                            .expect("thread pool")
                            .install(limit_pass)
                    });
                }
            })
        }));
    }
    // Per round, the two 1-thread figures were taken side by side: the
    // median of their ratios is the steadiest figure of the lot.
    let mut ratios: Vec<f64> = l1
        .iter()
        .zip(&f1)
        .map(|(l, f)| l.as_secs_f64() / f.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio_1 = ratios[ratios.len() / 2];
    // Scaling against the machine's, per round too (its four timings were
    // taken within seconds of each other).
    let mut scaling_ratios: Vec<f64> = (0..l1.len())
        .map(|r| {
            let pipeline = f1[r].as_secs_f64() / fnn[r].as_secs_f64();
            let machine = 2.0 * l1[r].as_secs_f64() / twin[r].as_secs_f64();
            pipeline / machine
        })
        .collect();
    scaling_ratios.sort_by(f64::total_cmp);
    let scaling_vs_machine = scaling_ratios[scaling_ratios.len() / 2];
    let (l1, f1, ln, fnn, twin) = (
        median(l1),
        median(f1),
        median(ln),
        median(fnn),
        median(twin),
    );
    let mbs = |d: Duration| decoded as f64 / 1e6 / d.as_secs_f64();
    let rps = |d: Duration| records as f64 / d.as_secs_f64();
    let machine_scaling = 2.0 * l1.as_secs_f64() / twin.as_secs_f64();
    let pipeline_scaling = f1.as_secs_f64() / fnn.as_secs_f64();
    let results = serde_json::json!({
        "files": objects.len(),
        "records": records,
        "stored_bytes": stored,
        "json_bytes": decoded,
        "rules": ruleset.len(),
        "correlations": ruleset.correlations().len(),
        "matches": matches,
        "threads": threads,
        "rounds": args.rounds.max(1),
        "limit_1_thread_mb_s": mbs(l1),
        "pipeline_1_thread_mb_s": mbs(f1),
        "pipeline_1_thread_records_s": rps(f1),
        "limit_all_threads_mb_s": mbs(ln),
        "pipeline_all_threads_mb_s": mbs(fnn),
        "pipeline_all_threads_records_s": rps(fnn),
        "pipeline_vs_limit_1_thread": ratio_1,
        "pipeline_vs_limit_1_thread_rounds": ratios,
        "machine_scaling_2_copies": machine_scaling,
        "pipeline_scaling": pipeline_scaling,
        "pipeline_scaling_vs_machine": scaling_vs_machine,
        "pipeline_scaling_vs_machine_rounds": scaling_ratios,
        "peak_rss_bytes": trailwatch::daemon::peak_rss_bytes(),
    });
    if args.json {
        println!("{results}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} files, {} records, {:.1} MB JSON ({:.1} MB stored), {} rules + {} correlations, {} matches; medians of {} rounds",
        objects.len(),
        records,
        decoded as f64 / 1e6,
        stored as f64 / 1e6,
        ruleset.len(),
        ruleset.correlations().len(),
        matches,
        args.rounds.max(1)
    );
    println!("                         MB/s   records/s");
    println!("limit    1 thread   {:>9.0}", mbs(l1));
    println!("pipeline 1 thread   {:>9.0} {:>11.0}", mbs(f1), rps(f1));
    println!("limit    {threads} threads  {:>9.0}", mbs(ln));
    println!(
        "pipeline {threads} threads  {:>9.0} {:>11.0}",
        mbs(fnn),
        rps(fnn)
    );
    println!(
        "pipeline / limit, 1 thread: {ratio_1:.2} (target >= 0.85; the median of the rounds, which \
         ranged {:.2}-{:.2}; each round times the two object by object in turns)",
        ratios[0],
        ratios[ratios.len() - 1]
    );
    println!(
        "scaling: pipeline {pipeline_scaling:.2}x on {threads} threads; the machine gives \
         {machine_scaling:.2}x to two copies of the limit loop; ratio {scaling_vs_machine:.2} \
         (target >= 0.9; the median of the rounds, which ranged {:.2}-{:.2})",
        scaling_ratios[0],
        scaling_ratios[scaling_ratios.len() - 1]
    );
    if let Some(rss) = trailwatch::daemon::peak_rss_bytes() {
        println!(
            "peak RSS {:.0} MiB (all files held in memory)",
            rss as f64 / (1 << 20) as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}
