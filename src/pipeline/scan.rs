//! `trailwatch scan`: objects in parallel, output in input order, and the
//! summary.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::{
    ErrorKind, InputError, Limits, ObjectReport, ObjectSink, STREAM_MIN_BYTES, process_file,
    process_object, stream,
};
use crate::alert::jsonl;
use crate::correlate::{self, Correlator};
use crate::decode;
use crate::rules::RuleSet;
use crate::source::files::Input;

/// Totals of a scan, printed to stderr at the end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Objects read (digests included).
    pub files: u64,
    /// Digest files recognised and skipped.
    pub digests: u64,
    pub records: u64,
    /// Records that repeat a key (matched with the last value of each).
    pub duplicate_keys: u64,
    pub bytes_read: u64,
    pub bytes_decoded: u64,
    pub matches: u64,
    /// Matches per rule title.
    pub matches_by_rule: BTreeMap<String, u64>,
    /// Problems per kind.
    pub errors: BTreeMap<&'static str, u64>,
    pub seconds: f64,
    /// The scan stopped early at the first error (`--strict`).
    pub stopped_early: bool,
    /// Correlation state counters (late, untimed, evicted).
    pub correlation: correlate::CorrelationStats,
    /// Matches each Sigma filter removed (`(filter id, dry run, count)`;
    /// a filter in dry run removed nothing: the count is what it would
    /// have removed; `applies`: it names at least one loaded rule).
    pub filters: Vec<FilterCount>,
}

/// What one Sigma filter did in a scan.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FilterCount {
    pub id: String,
    pub dry_run: bool,
    /// Matches removed (in dry run: that it would have removed).
    pub removed: u64,
    /// It names at least one loaded rule: a filter naming none (a typo)
    /// is reported as such, not as "removed 0".
    pub applies: bool,
}

impl Summary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Decoded megabytes (10^6) per second.
    pub(crate) fn mb_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes_decoded as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }

    fn add(&mut self, r: &ObjectReport, rules: &RuleSet) {
        self.files += 1;
        self.digests += u64::from(r.is_digest());
        self.records += r.records;
        self.duplicate_keys += r.duplicate_keys;
        self.bytes_read += r.bytes_read;
        self.bytes_decoded += r.bytes_decoded;
        for m in &r.alerts {
            self.add_match(&rules.rule(m.rule).meta.title);
        }
        for (kind, n) in r.error_counts() {
            *self.errors.entry(kind.as_str()).or_default() += n;
        }
    }

    /// One match of the rule titled `title` (the title is copied only the
    /// first time: a noisy rule matches on every record).
    fn add_match(&mut self, title: &str) {
        self.matches += 1;
        if let Some(n) = self.matches_by_rule.get_mut(title) {
            *n += 1;
        } else {
            self.matches_by_rule.insert(title.to_owned(), 1);
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scanned {} files ({} digests skipped), {} records, {} bytes read, {} bytes decoded in {:.3} s ({:.1} MB/s)",
            self.files,
            self.digests,
            self.records,
            self.bytes_read,
            self.bytes_decoded,
            self.seconds,
            self.mb_per_sec()
        )?;
        writeln!(f, "matches: {}", self.matches)?;
        for (rule, n) in &self.matches_by_rule {
            writeln!(f, "  {n:>8}  {rule}")?;
        }
        if self.duplicate_keys > 0 {
            writeln!(
                f,
                "records with duplicate keys: {} (a record is matched on the last value of each \
                 repeated key; every array of a repeated `Records` is read)",
                self.duplicate_keys
            )?;
        }
        writeln!(f, "errors: {}", self.error_count())?;
        for (kind, n) in &self.errors {
            writeln!(f, "  {n:>8}  {kind}")?;
        }
        let c = &self.correlation;
        if *c != correlate::CorrelationStats::default() {
            writeln!(
                f,
                "correlation: {} late events dropped, {} dated in the future, {} without eventTime, {} counted before (same event id), {} groups and {} events evicted",
                c.late, c.future, c.untimed, c.duplicates, c.evicted_groups, c.evicted_events
            )?;
        }
        for FilterCount {
            id,
            dry_run,
            removed: n,
            applies,
        } in &self.filters
        {
            if !applies {
                writeln!(
                    f,
                    "filter {id}: names no loaded rule, so it removed nothing (see the rule problems above)"
                )?;
            } else if *dry_run {
                writeln!(f, "filter {id} (dry run): would have removed {n} matches")?;
            } else {
                writeln!(f, "filter {id}: removed {n} matches")?;
            }
        }
        if self.stopped_early {
            writeln!(f, "stopped at the first error (--strict)")?;
        }
        Ok(())
    }
}

/// How `scan` runs.
#[derive(Clone, Copy, Debug)]
pub struct ScanOptions {
    pub limits: Limits,
    /// Stop at the first input error.
    pub strict: bool,
    pub format: jsonl::Format,
    /// How late (event time behind the newest seen) an event may arrive and
    /// still count in correlation windows.
    pub lateness_ms: i64,
    /// Groups kept per correlation rule.
    pub max_groups: usize,
}

/// Alert lines gathered before `scan` writes them out.
const LINES_BYTES: usize = 1 << 20;

/// Errors logged per object before the rest are only counted, so a file of
/// garbage lines cannot flood the log.
const LOGGED_ERRORS_PER_OBJECT: usize = 20;

/// Scan inputs in parallel, writing alerts to `out` in input order.
pub fn scan(
    inputs: &[Input],
    rules: &RuleSet,
    opts: &ScanOptions,
    out: &mut dyn Write,
) -> io::Result<Summary> {
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let mut summary = Summary::default();
    let mut correlator = Correlator::new(
        rules.correlations().to_vec(),
        opts.lateness_ms,
        opts.max_groups,
    );
    // The rule parts of each alert line, rendered once.
    let rule_json: Vec<jsonl::RuleJson> = rules
        .rules()
        .iter()
        .map(|r| jsonl::RuleJson::new(&r.meta))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, ObjectReport)>();
    let result = std::thread::scope(|s| -> io::Result<()> {
        let stop = &stop;
        s.spawn(move || {
            inputs
                .par_iter()
                .enumerate()
                .for_each_with(tx, |tx, (i, input)| {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let report = read_and_process(input, rules, opts.limits);
                    let _ = tx.send((i, report)); // receiver gone: stopping
                });
        });
        // Reorder: hold reports that finished early until their turn.
        let mut pending: HashMap<usize, ObjectReport> = HashMap::new();
        // Match lines are appended here and written out a batch at a time.
        let mut lines: Vec<u8> = Vec::with_capacity(LINES_BYTES + (64 << 10));
        let mut next = 0usize;
        for (i, report) in rx.iter() {
            pending.insert(i, report);
            while let Some(report) = pending.remove(&next) {
                next += 1;
                let source_json = serde_json::to_string(&report.source)?;
                for m in &report.alerts {
                    jsonl::write_match(
                        &mut lines,
                        m,
                        &rule_json[m.rule as usize],
                        &report.source,
                        &source_json,
                        opts.format,
                    )?;
                    if lines.len() >= LINES_BYTES {
                        out.write_all(&lines)?;
                        lines.clear();
                    }
                }
                out.write_all(&lines)?;
                lines.clear();
                // Correlations see hits in input order: deterministic.
                for a in super::correlate(&report, &mut correlator) {
                    jsonl::write(out, &a, opts.format)?;
                    summary.add_match(&a.rule_title);
                }
                log_errors(&report);
                summary.add(&report, rules);
                if opts.strict && !report.errors.is_empty() {
                    stop.store(true, Ordering::Relaxed);
                    summary.stopped_early = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    });
    result?;
    if !summary.stopped_early {
        for a in correlator.finish() {
            jsonl::write(out, &a, opts.format)?;
            summary.add_match(&a.rule_title);
        }
    }
    summary.correlation = correlator.stats.clone();
    summary.filters = rules
        .filters()
        .iter()
        .enumerate()
        .map(|(fi, f)| FilterCount {
            id: f.id.clone(),
            dry_run: f.dry_run,
            removed: f.take_removed(),
            applies: rules
                .rules()
                .iter()
                .any(|r| r.filters.contains(&(fi as u32))),
        })
        .collect();
    out.flush()?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn read_and_process(input: &Input, rules: &RuleSet, limits: Limits) -> ObjectReport {
    let name = input.name();
    match input {
        Input::File(path) => process_file(&name, path, rules, limits),
        Input::Stdin => process_stdin(&name, rules, limits),
        Input::Unreadable { message, .. } => ObjectReport {
            source: name.clone(),
            errors: vec![InputError {
                source: name.clone(),
                kind: ErrorKind::Read,
                message: format!("cannot read {name}: {message}"),
            }],
            ..Default::default()
        },
    }
}

/// Standard input: held whole when it is small, else parsed as it arrives
/// (after the part already read).
fn process_stdin(name: &str, rules: &RuleSet, limits: Limits) -> ObjectReport {
    let mut head = Vec::new();
    let mut stdin = io::stdin().lock();
    if let Err(e) = io::Read::read_to_end(
        &mut io::Read::take(&mut stdin, STREAM_MIN_BYTES + 1),
        &mut head,
    ) {
        return ObjectReport {
            source: name.to_owned(),
            errors: vec![InputError {
                source: name.to_owned(),
                kind: ErrorKind::Read,
                message: format!("cannot read {name}: {e}"),
            }],
            ..Default::default()
        };
    }
    if (head.len() as u64) <= STREAM_MIN_BYTES {
        return process_object(name, &head, rules, limits);
    }
    let gzip = decode::is_gzip(&head);
    let rest = io::Read::chain(io::Cursor::new(head), stdin);
    let mut report = ObjectReport {
        source: name.to_owned(),
        ..Default::default()
    };
    let sink = ObjectSink::new(rules, limits, name);
    let layout = if gzip {
        stream(
            name,
            flate2::read::MultiGzDecoder::new(rest),
            true,
            limits,
            &sink,
            &mut report,
        )
    } else {
        stream(name, rest, false, limits, &sink, &mut report)
    };
    sink.finish(name, layout, report)
}

/// The object's first problems, one line each, then one line for the rest
/// (all of them are counted in metrics and the summary).
pub(crate) fn log_errors(report: &ObjectReport) {
    for e in report.errors.iter().take(LOGGED_ERRORS_PER_OBJECT) {
        // Object names can be attacker-chosen (S3 keys): escape controls.
        tracing::warn!(source = %jsonl::clean(Some(&e.source)), kind = e.kind.as_str(), "{}", e.message);
    }
    let total = report.error_count();
    if total > LOGGED_ERRORS_PER_OBJECT as u64 {
        tracing::warn!(
            source = %jsonl::clean(Some(&report.source)),
            "{} more errors in this object (counted, not logged)",
            total - LOGGED_ERRORS_PER_OBJECT as u64
        );
    }
}
