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
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::alert::{Alert, EventJson, Match, MatchBatch, bound, jsonl};
use crate::correlate::{self, Correlator, Hit, HitContext};
use crate::decode::{self, DecodeError};
use crate::parse::{self, Ident, Kind, Layout, ParseError, ParseErrorKind, Record, Sink, Top};
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
    pub const ALL: [ErrorKind; 8] = [
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
    pub const ALL: [Posture; 4] = [
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
    pub fn is_digest(&self) -> bool {
        self.layout == Some(Layout::Digest)
    }
    /// Every problem of the object, kept or only counted.
    pub fn error_count(&self) -> u64 {
        self.errors.len() as u64 + self.errors_not_kept.values().sum::<u64>()
    }

    /// Problems by kind, kept and counted alike.
    pub fn error_counts(&self) -> BTreeMap<ErrorKind, u64> {
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
}

/// Default [`Limits::max_event_bytes_per_object`]: 16 MiB, some ten
/// thousand typical events.
pub const DEFAULT_MAX_EVENT_BYTES_PER_OBJECT: usize = 16 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: decode::DEFAULT_MAX_OBJECT_BYTES,
            with_events: false,
            max_event_bytes_per_object: DEFAULT_MAX_EVENT_BYTES_PER_OBJECT,
            metrics: false,
            keep_decode_bytes: KEEP_BUF_BYTES,
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
pub const DAEMON_KEEP_DECODE_BYTES: usize = 16 << 20;

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

/// The report of an object that could not be read: one error, of kind
/// `TooLarge` or `Read` (perhaps transient: the daemon tries it again at
/// the next poll).
pub fn read_failed(name: &str, e: &SourceError) -> ObjectReport {
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
pub fn process_file(
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
pub fn release_large_buffers() {
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
    let reader = SmallReads {
        inner: reader,
        max: if gzip { 4 << 10 } else { usize::MAX },
    };
    let mut reader = io::Read::take(reader, cap.saturating_add(1));
    let (end, read) = parse::parse_reader(&mut reader, sink);
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

/// Collects one object's matches and problems from parallel chunk tasks.
struct ObjectSink<'a> {
    rules: &'a RuleSet,
    with_events: bool,
    source_arc: std::sync::Arc<str>,
    /// Collect event times and posture events (the daemon's metrics).
    metrics: bool,
    /// Per-object deduplication of matches by (rule, event id): those that
    /// carry an event (the daemon) or feed a correlation.
    seen: Mutex<std::collections::HashSet<(u32, u64)>>,
    /// The event-id hash of `seen`: SipHash with keys random per object,
    /// so no one can choose two ids that collide (a collision would drop
    /// an alert; by chance, at 2^-64 per pair, never).
    id_keys: std::hash::RandomState,
    deduplicated: AtomicU64,
    /// Event text this object's alerts may hold, and hold so far.
    event_budget: usize,
    event_bytes: std::sync::atomic::AtomicUsize,
    events_omitted: AtomicU64,
    /// What an alert past the budget carries instead of its event: one
    /// text shared by all of them (a flood past the budget allocated a
    /// copy per alert, 18 MB for 350,000 of them).
    omitted_note: EventJson,
    records: AtomicU64,
    /// Records with a duplicate key (at the top level, in `userIdentity`,
    /// or on a path a rule or the alert read).
    duplicate_keys: AtomicU64,
    /// One batch per `records` call: no giant vector regrown (and its pages
    /// faulted in again) as a noisy rule's alerts pile up.
    alerts: Mutex<Vec<Vec<Match>>>,
    /// One batch of hits per `records` call, as for alerts.
    hits: Mutex<Vec<Vec<Hit>>>,
    errors: Mutex<KeptErrors>,
    times: Mutex<Vec<i64>>,
    posture: Mutex<Vec<(Posture, String)>>,
}

impl<'a> ObjectSink<'a> {
    fn new(rules: &'a RuleSet, limits: Limits, source: &'a str) -> Self {
        ObjectSink {
            rules,
            with_events: limits.with_events,
            metrics: limits.metrics,
            source_arc: std::sync::Arc::from(source),
            seen: Mutex::new(std::collections::HashSet::new()),
            id_keys: std::hash::RandomState::new(),
            deduplicated: AtomicU64::new(0),
            event_budget: limits.max_event_bytes_per_object,
            omitted_note: EventJson::note(&format!(
                "[event omitted: this object's alerts already hold {} bytes of events \
                 (limits.max_event_bytes_per_object)]",
                limits.max_event_bytes_per_object
            )),
            event_bytes: std::sync::atomic::AtomicUsize::new(0),
            events_omitted: AtomicU64::new(0),
            records: AtomicU64::new(0),
            duplicate_keys: AtomicU64::new(0),
            alerts: Mutex::new(Vec::new()),
            hits: Mutex::new(Vec::new()),
            errors: Mutex::new(KeptErrors::default()),
            times: Mutex::new(Vec::new()),
            posture: Mutex::new(Vec::new()),
        }
    }

    /// The record's event for an alert, within the object's budget: past
    /// it, a note saying so (one object's alerts never hold more event
    /// text than configured, whatever it holds).
    fn event_of(&self, r: &Record<'_, '_>) -> EventJson {
        let event = EventJson::of(r);
        let used = self.event_bytes.fetch_add(event.len(), Ordering::Relaxed) + event.len();
        if used <= self.event_budget {
            return event;
        }
        self.event_bytes.fetch_sub(event.len(), Ordering::Relaxed);
        self.events_omitted.fetch_add(1, Ordering::Relaxed);
        self.omitted_note.clone()
    }

    /// What the object produced, in order, into `report`.
    fn finish(self, name: &str, layout: Layout, mut report: ObjectReport) -> ObjectReport {
        report.layout = Some(layout);
        report.matches_deduplicated = self.deduplicated.into_inner();
        report.events_omitted = self.events_omitted.into_inner();
        report.records = self.records.into_inner();
        report.duplicate_keys = self.duplicate_keys.into_inner();
        let mut batches = self.alerts.into_inner().unwrap_or_else(|p| p.into_inner());
        // Batches finish in any order (parallel chunks); each is in record
        // order, and within a record, in rule order.
        batches.sort_by_key(|b| b.first().map_or(0, |a| a.record));
        let mut alerts = Vec::with_capacity(batches.iter().map(Vec::len).sum());
        for b in batches {
            alerts.extend(b);
        }
        report.alerts = alerts;
        // Batches of hits moved into one vector sized to fit, each freed as
        // it is moved: a flood of hits never holds two copies.
        let mut batches = self.hits.into_inner().unwrap_or_else(|p| p.into_inner());
        batches.sort_by_key(|b| b.first().map_or(0, |h| h.ctx.record()));
        let mut hits = Vec::with_capacity(batches.iter().map(Vec::len).sum());
        for b in batches {
            hits.extend(b);
        }
        hits.sort_by_key(|h| h.ctx.record());
        report.hits = hits;
        let errors = self.errors.into_inner().unwrap_or_else(|p| p.into_inner());
        let room = KEPT_ERRORS_PER_OBJECT.saturating_sub(report.errors.len());
        let mut kept = errors.first.into_sorted_vec();
        for e in kept.drain(room.min(kept.len())..) {
            *report.errors_not_kept.entry(e.0.kind.into()).or_default() += 1;
        }
        report.errors.extend(kept.into_iter().map(|e| InputError {
            source: name.to_owned(),
            kind: e.0.kind.into(),
            message: e.0.to_string(),
        }));
        for (kind, n) in errors.counted {
            *report.errors_not_kept.entry(kind.into()).or_default() += n;
        }
        report.event_times_ms = self.times.into_inner().unwrap_or_else(|p| p.into_inner());
        report.posture = self.posture.into_inner().unwrap_or_else(|p| p.into_inner());
        report
    }
}

impl Sink for ObjectSink<'_> {
    fn records(&self, first: usize, records: &[Record<'_, '_>]) {
        self.records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let mut found = MatchBatch::default();
        let mut hits = Vec::new();
        let mut times = Vec::with_capacity(records.len());
        let mut posture = Vec::new();
        let mut duplicates = 0u64;
        parse::take_duplicate_keys(); // what an earlier record left
        for (i, r) in records.iter().enumerate() {
            // Parsed once per record when the daemon's metrics want it (the
            // lag histogram), else only for a correlation hit.
            let event_time = || {
                r.str(Top::EventTime)
                    .and_then(crate::time::parse_event_time)
            };
            let mut time_ms = None;
            if self.metrics {
                time_ms = event_time();
                times.extend(time_ms);
                Posture::of(r, |p| {
                    let account = r.str(Top::RecipientAccountId).unwrap_or_default();
                    posture.push((p, bound(account)));
                });
            }
            self.rules.for_each_match(r, |index, rule| {
                let with_event = self.with_events && !rule.hidden;
                // The same event matched twice in one object (a duplicate
                // delivery inside a file, a flood of one record) counts
                // once: skipped before its event is built (the expensive
                // part), and before it reaches a correlation window twice.
                // (Matches that neither carry an event nor feed a
                // correlation are left alone: checking each costs a lock.)
                if (with_event || !rule.feeds.is_empty())
                    && let Some(id) = r.str(Top::EventId)
                    && !self
                        .seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((index as u32, self.id_keys.hash_one(id)))
                {
                    self.deduplicated.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let event = with_event.then(|| self.event_of(r));
                let at = found.len();
                found.push_as(index as u32, r, first + i, event, rule.hidden);
                if !rule.feeds.is_empty() {
                    // Its fields are pointed at once the batch is done.
                    hits.push((
                        at,
                        index as u32,
                        if self.metrics { time_ms } else { event_time() },
                        rule.feeds
                            .iter()
                            .map(|f| {
                                (
                                    f.correlation,
                                    correlate::GroupKey::new(
                                        f.group_paths.iter().map(|p| text_at(r, p)),
                                    ),
                                    f.value_path.as_ref().map(|p| text_at(r, p)),
                                )
                            })
                            .collect::<Vec<_>>(),
                    ));
                }
            });
            // Duplicates met indexing the record, or on a path its rules
            // and alert fields read (the last value counted everywhere).
            duplicates += u64::from(parse::take_duplicate_keys() | r.duplicate_keys());
        }
        if duplicates > 0 {
            self.duplicate_keys.fetch_add(duplicates, Ordering::Relaxed);
        }
        if !found.is_empty() {
            let (alerts, all) = found.finish_split();
            if !alerts.is_empty() {
                self.alerts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(alerts);
            }
            if !hits.is_empty() {
                // Each hit's fields: its match, sharing the batch's text.
                let hits: Vec<Hit> = hits
                    .into_iter()
                    .map(|(at, rule, time_ms, keys)| Hit {
                        rule,
                        time_ms,
                        keys,
                        ctx: HitContext::Match(
                            all[at].clone(),
                            std::sync::Arc::clone(&self.source_arc),
                        ),
                    })
                    .collect();
                self.hits
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(hits);
            }
        }
        self.times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(times);
        if !posture.is_empty() {
            self.posture
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(posture);
        }
    }

    fn duplicate_keys(&self, n: u64) {
        self.duplicate_keys.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, err: ParseError) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(err);
    }
}

/// An object's first [`KEPT_ERRORS_PER_OBJECT`] problems by position (the
/// chunks report in any order), the rest counted by kind: an object of
/// millions of broken lines costs a hundred messages, not millions.
#[derive(Default)]
struct KeptErrors {
    /// A max-heap by position: the top is the one to give up first.
    first: std::collections::BinaryHeap<ByPosition>,
    counted: BTreeMap<ParseErrorKind, u64>,
}

impl KeptErrors {
    fn add(&mut self, err: ParseError) {
        let dropped = if self.first.len() < KEPT_ERRORS_PER_OBJECT {
            self.first.push(ByPosition(err));
            return;
        } else if self
            .first
            .peek()
            .is_some_and(|top| top.key() > (err.offset, err.record))
        {
            let top = self.first.pop().map(|t| t.0.kind);
            self.first.push(ByPosition(err));
            top
        } else {
            Some(err.kind)
        };
        if let Some(kind) = dropped {
            *self.counted.entry(kind).or_default() += 1;
        }
    }
}

/// A problem ordered by where it is in the object.
struct ByPosition(ParseError);

impl ByPosition {
    fn key(&self) -> (usize, Option<usize>) {
        (self.0.offset, self.0.record)
    }
}

impl PartialEq for ByPosition {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ByPosition {}

impl PartialOrd for ByPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
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
    for hit in &report.hits {
        alerts.extend(correlator.push(hit));
    }
    alerts.extend(correlator.finish());
    matched.extend(alerts.iter().map(|a| a.rule_id.clone()));
    matched.sort();
    matched.dedup();
    (alerts, matched)
}

/// A field as text for grouping (first value at the path; numbers and
/// booleans as written; "" when absent), bounded in length.
fn text_at(r: &Record<'_, '_>, path: &[Box<str>]) -> String {
    let mut out = String::new();
    r.any_at(path, &mut |v| {
        match v.kind() {
            Kind::String => out = bound(v.as_str().unwrap_or("")),
            Kind::Number | Kind::Bool => out = v.to_json().to_string(),
            _ => return false,
        }
        true
    });
    out
}

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
}

impl Summary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Decoded megabytes (10^6) per second.
    pub fn mb_per_sec(&self) -> f64 {
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
                for hit in &report.hits {
                    for a in correlator.push(hit) {
                        jsonl::write(out, &a, opts.format)?;
                        summary.add_match(&a.rule_title);
                    }
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
pub fn log_errors(report: &ObjectReport) {
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
