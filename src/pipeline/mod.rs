//! The pipeline: one object through decode → parse → rules, and the `scan`
//! driver that runs many objects in parallel and writes alerts in order.
//!
//! Parallelism is rayon's: objects run in parallel, and the records of a
//! large object are matched in parallel chunks (see [`crate::parse`]).
//! Output stays deterministic: alerts are written in input order (objects),
//! then record order, then rule order, whatever order the work finished in.
//!
//! Nothing is dropped silently: every problem becomes an [`InputError`] with
//! the object's name and a location, is logged, and is counted by kind in
//! the [`Summary`].

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde::Serialize;

use crate::alert::{Alert, Match};
use crate::correlate::{self, Correlator, Hit};
use crate::decode::{self, DecodeError};
use crate::parse::{self, Ident, Layout, ParseErrorKind, Record, Top};
use crate::rules::RuleSet;
use crate::source::SourceError;
use crate::source::files::Input;

/// Kinds of input problems: a small fixed set, so they can label metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The object could not be read.
    Read,
    /// Over the size cap (compressed or decompressed): gzip bombs land here.
    TooLarge,
    /// Corrupt or truncated gzip.
    Gzip,
    /// Bytes after the gzip data that are not gzip.
    TrailingGarbage,
    InvalidJson,
    NotObject,
    WrongType,
    /// The document ends inside a record.
    Truncated,
}

impl ErrorKind {
    /// Every kind: the metric series declared for each source at start.
    pub(crate) const ALL: [ErrorKind; 8] = [
        ErrorKind::Read,
        ErrorKind::TooLarge,
        ErrorKind::Gzip,
        ErrorKind::TrailingGarbage,
        ErrorKind::InvalidJson,
        ErrorKind::NotObject,
        ErrorKind::WrongType,
        ErrorKind::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Read => "read",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Gzip => "gzip",
            ErrorKind::TrailingGarbage => "trailing_garbage",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::NotObject => "not_object",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::Truncated => "truncated",
        }
    }
}

impl From<ParseErrorKind> for ErrorKind {
    fn from(k: ParseErrorKind) -> Self {
        match k {
            ParseErrorKind::InvalidJson => ErrorKind::InvalidJson,
            ParseErrorKind::NotObject => ErrorKind::NotObject,
            ParseErrorKind::WrongType => ErrorKind::WrongType,
            ParseErrorKind::Truncated => ErrorKind::Truncated,
        }
    }
}

/// One problem with one object, located as precisely as known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// The file or object.
    pub source: String,
    pub kind: ErrorKind,
    pub message: String,
}

/// Problems one object keeps with their messages; past these, only counts.
pub const KEPT_ERRORS_PER_OBJECT: usize = 100;

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// Everything one object produced.
#[derive(Debug, Default)]
pub struct ObjectReport {
    pub source: String,
    pub layout: Option<Layout>,
    /// Records handed to the rules.
    pub records: u64,
    /// Bytes as stored (compressed size for gzip).
    pub bytes_read: u64,
    /// Bytes of JSON after decoding.
    pub bytes_decoded: u64,
    /// Matches of rules that alert, in record order, then rule order
    /// (compact: see [`Match`]).
    pub alerts: Vec<Match>,
    /// Matches of rules that feed correlations, in record order.
    pub hits: Vec<Hit>,
    /// The object's first problems (by position), at most
    /// [`KEPT_ERRORS_PER_OBJECT`] of them: a crafted object can hold
    /// millions, and each kept one holds a message.
    pub errors: Vec<InputError>,
    /// Problems past those kept, counted by kind.
    pub errors_not_kept: BTreeMap<ErrorKind, u64>,
    /// Records that repeat a key (the last one counts, as everywhere).
    pub duplicate_keys: u64,
    /// Matches dropped as repeats of an earlier one in the same object
    /// (same rule, same event id), before their event was built.
    pub matches_deduplicated: u64,
    /// Alerts whose event was replaced by a note: the object's alerts
    /// reached [`Limits::max_event_bytes_per_object`].
    pub events_omitted: u64,
    /// eventTime of each record that has a readable one (ms since the
    /// epoch), for the ingest-lag histogram; any order.
    pub event_times_ms: Vec<i64>,
    /// Posture events and their account id, for dashboard counters.
    pub posture: Vec<(Posture, String)>,
    /// SHA-256 of every byte decoded, hashed before the parse touches them
    /// (simd-json parses in place), when [`Limits::sha256`] asked.
    pub sha256: Option<[u8; 32]>,
    /// Credential facts, when [`Limits::facts`] asked.
    pub facts: crate::posture::Facts,
}

/// Events dashboards count whether or not a rule alerts on them: the
/// IAM-hygiene signals of AWS's security best practices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posture {
    /// A successful console sign-in as root.
    RootLogin,
    /// A successful console sign-in by an IAM user or root without MFA.
    ConsoleLoginWithoutMfa,
    /// `CreateAccessKey` succeeded.
    AccessKeyCreated,
    /// A call denied for lack of permission.
    AccessDenied,
}

impl Posture {
    pub(crate) const ALL: [Posture; 4] = [
        Posture::RootLogin,
        Posture::ConsoleLoginWithoutMfa,
        Posture::AccessKeyCreated,
        Posture::AccessDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Posture::RootLogin => "root_login",
            Posture::ConsoleLoginWithoutMfa => "console_login_without_mfa",
            Posture::AccessKeyCreated => "access_key_created",
            Posture::AccessDenied => "access_denied",
        }
    }

    /// The posture events one record is (at most two: a root login without
    /// MFA is both). Costs an eventName/errorCode look-up per record.
    fn of(r: &Record<'_, '_>, mut f: impl FnMut(Posture)) {
        if let Some(code) = r.str(Top::ErrorCode) {
            if matches!(
                code,
                "AccessDenied"
                    | "AccessDeniedException"
                    | "UnauthorizedOperation"
                    | "Client.UnauthorizedOperation"
                    | "UnauthorizedAccess"
            ) {
                f(Posture::AccessDenied);
            }
            return;
        }
        match r.str(Top::EventName) {
            Some("CreateAccessKey") => f(Posture::AccessKeyCreated),
            Some("ConsoleLogin") => {
                let ok = r.str_at(&["responseElements", "ConsoleLogin"]) == Some("Success");
                let kind = r.ident_str(Ident::Type);
                if ok && kind == Some("Root") {
                    f(Posture::RootLogin);
                }
                if ok
                    && matches!(kind, Some("Root" | "IAMUser"))
                    && r.str_at(&["additionalEventData", "MFAUsed"]) == Some("No")
                {
                    f(Posture::ConsoleLoginWithoutMfa);
                }
            }
            _ => {}
        }
    }
}

impl ObjectReport {
    pub(crate) fn is_digest(&self) -> bool {
        self.layout == Some(Layout::Digest)
    }
    /// Every problem of the object, kept or only counted.
    pub fn error_count(&self) -> u64 {
        self.errors.len() as u64 + self.errors_not_kept.values().sum::<u64>()
    }

    /// Problems by kind, kept and counted alike.
    pub(crate) fn error_counts(&self) -> BTreeMap<ErrorKind, u64> {
        let mut counts = self.errors_not_kept.clone();
        for e in &self.errors {
            *counts.entry(e.kind).or_default() += 1;
        }
        counts
    }
}

/// Limits for one object.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Cap on an object's size, stored and decompressed.
    pub max_object_bytes: u64,
    /// Attach the event to each alert ([`Alert::event`]). Building it is
    /// most of an alert's cost, which matters with noisy rules.
    pub with_events: bool,
    /// Event text one object's alerts may hold in all (past it, alerts
    /// carry a note instead): what bounds a flood of distinct alerts.
    pub max_event_bytes_per_object: usize,
    /// Collect what the daemon's metrics need per record (event times for
    /// the lag histogram, posture events); `scan` does without.
    pub metrics: bool,
    /// Largest decode buffer a worker keeps for its next object. `scan`
    /// keeps big ones (reuse is worth a fifth of its speed on files of
    /// tens of MB); the daemon keeps only small ones, so an object's buffer
    /// is freed as soon as it is parsed, not held beside the results of
    /// the objects still running (two 57 MB buffers were a quarter of the
    /// peak in a flood of AccessDenied).
    pub keep_decode_bytes: usize,
    /// Take the SHA-256 of the object's uncompressed content, as parsed
    /// ([`ObjectReport::sha256`]): what CloudTrail's digests vouch for.
    /// Off unless the daemon validates digests: it costs about as much as
    /// the inflate.
    pub sha256: bool,
    /// Gather credential facts ([`ObjectReport::facts`]) for the
    /// inventory.
    pub facts: bool,
}

/// Default [`Limits::max_event_bytes_per_object`]: 16 MiB, some ten
/// thousand typical events.
pub(crate) const DEFAULT_MAX_EVENT_BYTES_PER_OBJECT: usize = 16 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: decode::DEFAULT_MAX_OBJECT_BYTES,
            with_events: false,
            max_event_bytes_per_object: DEFAULT_MAX_EVENT_BYTES_PER_OBJECT,
            metrics: false,
            keep_decode_bytes: KEEP_BUF_BYTES,
            sha256: false,
            facts: false,
        }
    }
}

thread_local! {
    /// The decode buffer of the last object on this thread, reused so each
    /// object does not page-fault fresh memory. Taken while in use.
    static DECODE_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Buffers larger than this are not kept for reuse (one huge object should
/// not pin its memory for the life of the thread).
const KEEP_BUF_BYTES: usize = 256 << 20;

/// The daemon's [`Limits::keep_decode_bytes`].
pub(crate) const DAEMON_KEEP_DECODE_BYTES: usize = 16 << 20;

/// True for CloudTrail digest files by their name, which CloudTrail gives
/// them as `{account}_CloudTrail-Digest_{region}_{trail}_{region}_{YYYYMMDDTHHMMSSZ}.json.gz`
/// (the last path segment; any directory). Only that pattern: a file that
/// merely has `CloudTrail-Digest` somewhere in its path is read (and a
/// digest under another name is still recognised by its content).
pub fn is_digest_name(name: &str) -> bool {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let Some(stem) = base.strip_suffix(".json.gz") else {
        return false;
    };
    let parts: Vec<&str> = stem.split('_').collect();
    let region = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let stamp = |s: &str| {
        let b = s.as_bytes();
        b.len() == 16
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'Z'
    };
    parts.len() >= 6
        && parts[0].len() == 12
        && parts[0].bytes().all(|b| b.is_ascii_digit())
        && parts[1] == "CloudTrail-Digest"
        && region(parts[2])
        && region(parts[parts.len() - 2])
        && stamp(parts[parts.len() - 1])
}

/// Run one object (its stored bytes) through decode → parse → rules.
///
/// Memory is bounded by [`STREAM_MIN_BYTES`], not by the object: gzip is
/// decoded whole (libdeflate, the fast way) only while its output fits
/// that; a larger object, whatever its trailer claims, and plain text past
/// it, are parsed as a stream in a window of a few chunks.
pub fn process_object(name: &str, input: &[u8], rules: &RuleSet, limits: Limits) -> ObjectReport {
    process(name, Stored::Memory(input), rules, limits)
}

/// The report of a digest (its bytes go to the integrity stage, not the
/// parser).
pub(crate) fn digest_report(name: &str, bytes_read: u64) -> ObjectReport {
    ObjectReport {
        source: name.to_owned(),
        bytes_read,
        layout: Some(Layout::Digest),
        ..Default::default()
    }
}

/// The report of an object that could not be read: one error, of kind
/// `TooLarge` or `Read` (perhaps transient: the daemon tries it again at
/// the next poll).
pub(crate) fn read_failed(name: &str, e: &SourceError) -> ObjectReport {
    ObjectReport {
        source: name.to_owned(),
        errors: vec![InputError {
            source: name.to_owned(),
            kind: match e {
                SourceError::TooLarge { .. } => ErrorKind::TooLarge,
                _ => ErrorKind::Read,
            },
            message: e.to_string(),
        }],
        ..Default::default()
    }
}

/// [`process_object`] for a local file, read as it is parsed when it is
/// larger than [`STREAM_MIN_BYTES`] (so two 1 GB files never sit in memory).
pub(crate) fn process_file(
    name: &str,
    path: &std::path::Path,
    rules: &RuleSet,
    limits: Limits,
) -> ObjectReport {
    let failed = |e: SourceError| read_failed(name, &e);
    let io = |source| SourceError::Io {
        name: name.to_owned(),
        source,
    };
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return failed(io(e)),
    };
    if size > limits.max_object_bytes {
        return failed(SourceError::TooLarge {
            name: name.to_owned(),
            size,
            cap: limits.max_object_bytes,
        });
    }
    if size < STREAM_MIN_BYTES {
        return match Input::File(path.to_path_buf()).read(limits.max_object_bytes) {
            Ok(bytes) => process_object(name, &bytes, rules, limits),
            Err(e) => failed(e),
        };
    }
    match std::fs::File::open(path) {
        Ok(f) => process(name, Stored::File(f, size), rules, limits),
        Err(e) => failed(io(e)),
    }
}

/// Where an object's stored bytes are.
enum Stored<'a> {
    Memory(&'a [u8]),
    /// An open file and its size.
    File(std::fs::File, u64),
}

fn process(name: &str, stored: Stored<'_>, rules: &RuleSet, limits: Limits) -> ObjectReport {
    let mut report = ObjectReport {
        source: name.to_owned(),
        bytes_read: match &stored {
            Stored::Memory(b) => b.len() as u64,
            Stored::File(_, size) => *size,
        },
        ..Default::default()
    };
    if is_digest_name(name) {
        report.layout = Some(Layout::Digest);
        return report;
    }
    let sink = ObjectSink::new(rules, limits, name);
    let layout = match stored {
        Stored::File(mut f, _) => {
            let mut head = [0u8; 2];
            let gzip =
                std::io::Read::read_exact(&mut f, &mut head).is_ok() && decode::is_gzip(&head);
            let file = io::Read::chain(
                io::Cursor::new(head),
                io::BufReader::with_capacity(1 << 20, f),
            );
            if gzip {
                stream(
                    name,
                    flate2::bufread::MultiGzDecoder::new(io::BufReader::new(file)),
                    true,
                    limits,
                    &sink,
                    &mut report,
                )
            } else {
                stream(name, file, false, limits, &sink, &mut report)
            }
        }
        Stored::Memory(input) => {
            let whole_cap = limits.max_object_bytes.min(STREAM_MIN_BYTES);
            let gzip = decode::is_gzip(input);
            if (gzip && decode::gzip_size_hint(input) >= STREAM_MIN_BYTES)
                || (!gzip && input.len() as u64 >= STREAM_MIN_BYTES)
            {
                stream_memory(name, input, gzip, limits, &sink, &mut report)
            } else {
                let buf = DECODE_BUF.with(Cell::take);
                let mut decoded = decode::decode(input, whole_cap, buf);
                if gzip
                    && whole_cap < limits.max_object_bytes
                    && matches!(decoded.error, Some(DecodeError::TooLarge { .. }))
                {
                    // More than the whole-buffer budget, whatever the
                    // trailer said: start again as a stream (nothing was
                    // parsed yet).
                    keep_buf(decoded.buf, limits.keep_decode_bytes);
                    stream_memory(name, input, gzip, limits, &sink, &mut report)
                } else {
                    if limits.sha256 {
                        report.sha256 = Some(sha256(&decoded.buf[..decoded.len]));
                    }
                    let layout = whole(name, input, &mut decoded, whole_cap, &sink, &mut report);
                    keep_buf(decoded.buf, limits.keep_decode_bytes);
                    layout
                }
            }
        }
    };
    sink.finish(name, layout, report)
}

/// Drop this thread's kept decode buffer if it is large: the daemon calls
/// it on every worker between a group's processing and its delivery, so
/// the buffers of big objects do not add to the memory delivery needs
/// (`scan` keeps them: reusing them is worth a fifth of its speed on
/// files of tens of MB).
pub(crate) fn release_large_buffers() {
    DECODE_BUF.with(|c| {
        let buf = c.take();
        if buf.capacity() <= DAEMON_KEEP_DECODE_BYTES {
            c.set(buf);
        }
    });
}

/// Keep a decode buffer for the next object on this thread, unless it is
/// larger than `max` (one huge object should not pin its memory).
fn keep_buf(buf: Vec<u8>, max: usize) {
    if buf.capacity() <= max {
        DECODE_BUF.with(|c| c.set(buf));
    }
}

/// The decoded object in `decoded`, parsed whole (fast paths, then the
/// recovery walk on a pristine copy if they fail).
fn whole(
    name: &str,
    input: &[u8],
    decoded: &mut decode::Decoded,
    cap: u64,
    sink: &ObjectSink<'_>,
    report: &mut ObjectReport,
) -> Layout {
    if let Some(e) = &decoded.error {
        report.errors.push(decode_error(name, e));
    }
    report.bytes_decoded = decoded.len as u64;
    match parse::parse(&mut decoded.buf, decoded.len, sink) {
        Ok(layout) => layout,
        Err(failed) => {
            // The fast path unescaped strings in place before failing; the
            // recovery path needs the original text: decode it again, into
            // the same buffer (what failed is described by `failed`, not
            // by the bytes), so a damaged object never costs two buffers.
            let buf = std::mem::take(&mut decoded.buf);
            *decoded = decode::decode(input, cap, buf);
            parse::recover(&decoded.buf, decoded.len, sink, &failed)
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A reader that hashes what passes through it (streamed objects).
struct HashRead<R> {
    inner: R,
    ctx: Option<aws_lc_rs::digest::Context>,
}

impl<R: io::Read> io::Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &mut self.ctx {
            c.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R> HashRead<R> {
    fn new(inner: R, on: bool) -> HashRead<R> {
        HashRead {
            inner,
            ctx: on.then(|| aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256)),
        }
    }

    fn finish(self) -> Option<[u8; 32]> {
        self.ctx.map(|c| {
            let mut out = [0u8; 32];
            out.copy_from_slice(c.finish().as_ref());
            out
        })
    }
}

/// Gzip objects whose output passes this, and plain ones this large, are
/// parsed as a stream: memory stays a few chunks whatever their size
/// (whole-buffer decode is faster, so smaller objects keep it).
pub const STREAM_MIN_BYTES: u64 = 64 << 20;

/// An object held in memory, decoded (if gzip) and parsed as a stream.
fn stream_memory(
    name: &str,
    input: &[u8],
    gzip: bool,
    limits: Limits,
    sink: &ObjectSink<'_>,
    report: &mut ObjectReport,
) -> Layout {
    if gzip {
        stream(
            name,
            flate2::bufread::MultiGzDecoder::new(input),
            true,
            limits,
            sink,
            report,
        )
    } else {
        stream(name, input, false, limits, sink, report)
    }
}

/// Parse what `reader` gives (decoded text) as a stream, up to the cap.
fn stream(
    name: &str,
    reader: impl io::Read,
    gzip: bool,
    limits: Limits,
    sink: &ObjectSink<'_>,
    report: &mut ObjectReport,
) -> Layout {
    let cap = limits.max_object_bytes;
    // A gzip read that fails returns none of what it decoded before the
    // damage: small reads bound what a damaged member costs to under 4 KiB
    // of the text before it (whole-buffer decoding keeps every byte, see
    // `decode`; a stream cannot go back).
    let mut hashing = HashRead::new(reader, limits.sha256);
    let reader = SmallReads {
        inner: &mut hashing,
        max: if gzip { 4 << 10 } else { usize::MAX },
    };
    let mut reader = io::Read::take(reader, cap.saturating_add(1));
    let (end, read) = parse::parse_reader(&mut reader, sink);
    if limits.sha256 {
        // The hash is of the whole content, not of what the parse needed.
        let _ = io::copy(&mut reader, &mut io::sink());
        report.sha256 = hashing.finish();
    }
    report.bytes_decoded = read.min(cap);
    if read > cap {
        report
            .errors
            .push(decode_error(name, &DecodeError::TooLarge { cap }));
    }
    match end {
        parse::StreamEnd::Done(layout) => layout,
        parse::StreamEnd::Read(e) => {
            report.errors.push(InputError {
                source: name.to_owned(),
                kind: if gzip {
                    ErrorKind::Gzip
                } else {
                    ErrorKind::Read
                },
                message: format!(
                    "{name}: {} ({read} bytes decoded before it): {e}",
                    if gzip {
                        "corrupt or truncated gzip"
                    } else {
                        "read failed"
                    }
                ),
            });
            Layout::Native
        }
    }
}

/// A reader that hands out at most `max` bytes per read.
struct SmallReads<R> {
    inner: R,
    max: usize,
}

impl<R: io::Read> io::Read for SmallReads<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max);
        self.inner.read(&mut buf[..n])
    }
}

fn decode_error(name: &str, e: &DecodeError) -> InputError {
    InputError {
        source: name.to_owned(),
        kind: match e {
            DecodeError::TooLarge { .. } => ErrorKind::TooLarge,
            DecodeError::Corrupt { .. } => ErrorKind::Gzip,
            DecodeError::TrailingGarbage { .. } => ErrorKind::TrailingGarbage,
        },
        message: e.to_string(),
    }
}

/// An object's rule hits through the correlations, in input order: the one
/// step `scan`, the daemon and [`evaluate_document`] share, so the same
/// events raise the same correlation alerts on every path.
pub fn correlate(report: &ObjectReport, correlator: &mut Correlator) -> Vec<Alert> {
    report
        .hits
        .iter()
        .flat_map(|h| correlator.push(h))
        .collect()
}

/// Run events (JSON text of one document: native file, array, lines or a
/// single record) through the rules and correlations, as a scan of one
/// object would. Returns the alerts (correlations included, with their end
/// of input decided) and the ids of every rule that matched, hidden ones
/// included. For rule tests and tools, not for bulk input.
pub fn evaluate_document(text: &[u8], rules: &RuleSet) -> (Vec<Alert>, Vec<String>) {
    let report = process_object("<events>", text, rules, Limits::default());
    let mut alerts: Vec<Alert> = report
        .alerts
        .iter()
        .map(|m| m.to_alert(&rules.rule(m.rule).meta, &report.source))
        .collect();
    let mut matched: Vec<String> = alerts.iter().map(|a| a.rule_id.clone()).collect();
    matched.extend(
        report
            .hits
            .iter()
            .map(|h| rules.rule(h.rule).meta.id.clone()),
    );
    let mut correlator = Correlator::new(
        rules.correlations().to_vec(),
        correlate::DEFAULT_LATENESS_MS,
        correlate::DEFAULT_MAX_GROUPS,
    );
    alerts.extend(correlate(&report, &mut correlator));
    alerts.extend(correlator.finish());
    matched.extend(alerts.iter().map(|a| a.rule_id.clone()));
    matched.sort();
    matched.dedup();
    (alerts, matched)
}

mod scan;
mod sink;

pub(crate) use scan::log_errors;
pub use scan::{ScanOptions, Summary, scan};
use sink::ObjectSink;

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut e, p).unwrap();
            out.extend(e.finish().unwrap());
        }
        out
    }

    /// The hash digests compare against is of every byte decoded, taken
    /// before the parse rewrites them in place; the same whole or
    /// streamed, and none unless asked.
    #[test]
    fn the_content_hash_is_of_the_bytes_decoded_before_the_parse() {
        let a = br#"{"Records":[{"eventName":"A\u0041","eventID":"1"}]}"#;
        let b = br#"{"Records":[{"eventName":"B","eventID":"2"}]}"#;
        let rules = RuleSet::builtin();
        let on = Limits {
            sha256: true,
            ..Limits::default()
        };
        let whole = [&a[..], &b[..]].concat();
        let want = sha256(&whole);
        let r = process_object("x.json.gz", &gz(&[a, b]), &rules, on);
        assert_eq!(r.records, 2);
        assert_eq!(r.sha256, Some(want));
        assert_eq!(
            process_object("x.json.gz", &gz(&[a, b]), &rules, Limits::default()).sha256,
            None
        );
        let plain = process_object("x.json", a, &rules, on);
        assert_eq!(plain.sha256, Some(sha256(a)));
        // Streamed (large objects): the same hash, the parse's early end
        // notwithstanding.
        let input = gz(&[a, b]);
        let sink = ObjectSink::new(&rules, on, "x.json.gz");
        let mut report = ObjectReport::default();
        stream(
            "x.json.gz",
            flate2::bufread::MultiGzDecoder::new(&input[..]),
            true,
            on,
            &sink,
            &mut report,
        );
        assert_eq!(report.sha256, Some(want));
    }
}
