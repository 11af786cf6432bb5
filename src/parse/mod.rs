//! Parse stage: finds the records in a decoded document and hands them, as
//! zero-copy [`Record`] views over a simd-json tape, to a [`Sink`].
//!
//! A text is a sequence of JSON values (usually one); each value is:
//! - a CloudTrail document, an object with a `Records` array (first, as
//!   CloudTrail writes it, or anywhere): its records are the elements of
//!   its `Records` array, of every `Records` member if there are several
//!   (counted as a duplicate key: a later key must not hide records);
//! - an array: its elements are the records;
//! - a CloudTrail digest (an object with a top-level `digestStartTime`
//!   and no `Records` array): recognised and skipped, never read as records;
//! - any other object: one record.
//!
//! JSON lines, several documents back to back (`cat a.json.gz b.json.gz`),
//! pretty-printed files and a UTF-8 byte order mark are all read this way.
//!
//! **Fast paths** (what real CloudTrail files take):
//! - a document parsed whole into one tape in place (the decode stage
//!   leaves the padding simd-json needs);
//! - a large native document parsed a chunk of records at a time, in place:
//!   chunks are cut before `{"eventVersion"` after `},`, a guess that a
//!   successful parse of the chunk confirms (see [`walk`] for why that is
//!   sound: a guess that lands inside a record never parses);
//! - JSON lines parsed line by line in parallel, each line trusted as a
//!   record only when it and the line before it each hold a whole value.
//!
//! **Recovery** (anything the fast paths refuse): the forward structural
//! walk of [`walk`], on a pristine copy of the text. Records are delimited
//! from the real structure; a record that does not parse costs only
//! itself; after damage that breaks the structure, nothing is guessed.

mod chunked;
pub mod record;
pub(crate) mod scan;
mod walk;

pub use chunked::set_chunking;
use chunked::{
    RECORD_START, chunk_bytes, chunk_cuts, chunked_min_bytes, count_starts, end_before,
    is_record_start, parse_chunk, parse_native_chunked,
};

use std::cell::Cell;

use rayon::prelude::*;
use simd_json::{Buffers, Tape};
use thiserror::Error;

pub(crate) use record::{FieldPath, take_duplicate_keys};
pub use record::{Ident, Kind, Record, Top, Value, WrongType};

/// Records handed to the sink per call on the fast path: large enough to
/// amortise a rayon task, small enough to balance a 50 MB file across cores.
const CHUNK_RECORDS: usize = 2048;

/// How the records of a document were laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `{"Records":[...]}`
    Native,
    /// `[{...},{...}]`
    Array,
    /// One JSON object per line (or several documents one after another).
    JsonLines,
    /// A single record object.
    Single,
    /// A CloudTrail digest file: skipped.
    Digest,
    /// Nothing but white space.
    Empty,
}

/// Kinds of parse problems, a small fixed set (they become metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParseErrorKind {
    /// Not valid JSON (syntax, invalid UTF-8, unbalanced structure).
    InvalidJson,
    /// A record that is a string, number or array instead of an object.
    NotObject,
    /// A record with a well-known field of the wrong type.
    WrongType,
    /// The document ends inside a record or before the records array closes.
    Truncated,
}

impl ParseErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::InvalidJson => "invalid_json",
            ParseErrorKind::NotObject => "not_object",
            ParseErrorKind::WrongType => "wrong_type",
            ParseErrorKind::Truncated => "truncated",
        }
    }
}

/// One parse problem, located in the document.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{}{}: {message}", record.map(|r| format!("record {r}, ")).unwrap_or_default(), format_args!("byte offset {offset}"))]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// Index of the record in the document, when known.
    pub record: Option<usize>,
    /// Byte offset in the decoded document.
    pub offset: usize,
    pub message: String,
}

/// Receives records and problems; shared by parallel chunk tasks.
pub trait Sink: Sync {
    /// Consecutive records; `first` is the document index of `records[0]`.
    /// Values that are not objects are reported to [`Sink::error`] instead.
    fn records(&self, first: usize, records: &[Record<'_, '_>]);
    /// A problem; parsing continues after it.
    fn error(&self, err: ParseError);
    /// A document repeated a key of its own (`Records`), `n` more times:
    /// read all the same, and counted with records' duplicate keys.
    fn duplicate_keys(&self, n: u64) {
        let _ = n;
    }
}

/// Per-thread parser state: simd-json's scratch buffers and a tape whose
/// allocation is reused from document to document.
struct State {
    buffers: Buffers,
    tape: Tape<'static>,
    scratch: Vec<u8>,
    /// A text above [`KEEP_BYTES`] went through `buffers` (simd-json sizes
    /// them to its input): drop them after, rather than pin that memory
    /// for the life of the thread.
    big: bool,
}

/// Buffers grown past this for one text are not kept for the next.
const KEEP_BYTES: usize = 64 << 20;

thread_local! {
    /// Taken while in use and put back after, so a rayon task that runs
    /// nested on the same thread simply builds its own.
    static STATE: Cell<Option<Box<State>>> = const { Cell::new(None) };
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut st = STATE.with(|s| s.take()).unwrap_or_else(|| {
        Box::new(State {
            buffers: Buffers::new(1 << 16),
            tape: Tape::null().reset(),
            scratch: Vec::new(),
            big: false,
        })
    });
    let r = f(&mut st);
    if st.big || st.scratch.capacity() > KEEP_BYTES {
        st.buffers = Buffers::new(1 << 16);
        st.tape = Tape::null().reset();
        st.scratch = Vec::new();
        st.big = false;
    }
    STATE.with(|s| s.set(Some(st)));
    r
}

/// simd-json's tape for `text[..len]` (padded), noting a big text.
fn fill<'d>(
    buffers: &mut Buffers,
    big: &mut bool,
    text: &'d mut [u8],
    len: usize,
    tape: &mut Tape<'d>,
) -> Result<(), simd_json::Error> {
    *big |= len > KEEP_BYTES;
    simd_json::fill_tape_padded(text, len, buffers, tape)
}

/// The fast path failed; call [`recover`] on a pristine copy of the data.
///
/// simd-json unescapes strings in place, so after a failed parse the buffer
/// no longer holds the original text and structural scanning of it would be
/// wrong. The caller still holds the object's input and decodes it again:
/// the cost falls on the (rare) damaged objects only.
#[derive(Debug)]
pub struct NeedsRecovery(Failed);

/// What failed on the fast path.
#[derive(Debug)]
enum Failed {
    /// The whole document did not parse.
    Whole,
    /// A chunk of a native document parsed in place did not. The records
    /// of the chunks before it were handed out; the rest resumes from
    /// chunk `chunk` of `cuts` (positions that hold in the pristine copy:
    /// the same bytes).
    Chunk {
        cuts: Vec<usize>,
        chunk: usize,
        next_index: usize,
    },
}

/// Parse a decoded document: `buf[..len]` is the data, and `buf` carries at
/// least `simd_json::INPUT_PADDING` bytes after it. The data is modified in
/// place (strings are unescaped where they lie).
pub fn parse(buf: &mut [u8], len: usize, sink: &dyn Sink) -> Result<Layout, NeedsRecovery> {
    debug_assert!(buf.len() >= len + simd_json::INPUT_PADDING);
    let start = scan::skip_ws_bom(&buf[..len], 0);
    if start == len {
        return Ok(Layout::Empty);
    }
    if let Some(spans) = json_lines(&buf[..len], start) {
        return Ok(parse_lines(&buf[..len], &spans, sink));
    }
    if len >= chunked_min_bytes()
        && let Some(outcome) = parse_native_chunked(buf, len, sink)
    {
        return outcome;
    }
    with_state(|st| {
        let mut tape = std::mem::replace(&mut st.tape, Tape::null().reset()).reset();
        let outcome = match fill(
            &mut st.buffers,
            &mut st.big,
            &mut buf[start..],
            len - start,
            &mut tape,
        ) {
            Ok(()) => Ok(dispatch(Value::new(&tape.0), sink)),
            Err(_) => Err(NeedsRecovery(Failed::Whole)),
        };
        st.tape = tape.reset();
        outcome
    })
}

/// Only fill simd-json's tape for `buf[..len]` (padded like [`parse`]):
/// the parsing part of the throughput limit `trailwatch bench` compares
/// the pipeline with. Returns whether the document was valid JSON.
pub fn fill_tape_only(buf: &mut [u8], len: usize) -> bool {
    with_state(|st| {
        let mut tape = std::mem::replace(&mut st.tape, Tape::null().reset()).reset();
        let ok = fill(&mut st.buffers, &mut st.big, buf, len, &mut tape).is_ok();
        st.tape = tape.reset();
        ok
    })
}

/// How [`parse_reader`] ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// The input was read to its end (problems in it went to the sink).
    Done(Layout),
    /// Reading failed (damaged gzip): what came before was read.
    Read(std::io::Error),
}

/// Parse a text read from `r` as it arrives, in memory bounded by a few
/// chunks whatever its size (a value larger than that is held whole): the
/// layouts, cuts and recovery of [`parse`] and [`recover`]. Returns how it
/// ended and the bytes read.
pub fn parse_reader(r: &mut dyn std::io::Read, sink: &dyn Sink) -> (StreamEnd, u64) {
    let win = walk::Window::reader(r);
    let mut w = walk::Walk::new(win, sink, 0);
    with_state(|st| w.values(st, 0));
    let layout = w.layout();
    let total = w.win.total;
    match w.win.read_err.take() {
        Some(e) => (StreamEnd::Read(e), total),
        None => (StreamEnd::Done(layout), total),
    }
}

/// Parse `text` (one JSON value) from a padded copy and give its tape's
/// root to `f`. A value that simd-json refuses only for a number beyond
/// f64's range (`1e309`: Python and jq keep such records) is parsed again
/// with those numbers replaced by their text as strings.
fn with_parsed<R>(
    st: &mut State,
    text: &[u8],
    f: impl FnOnce(Value<'_, '_>) -> R,
) -> Result<R, simd_json::Error> {
    let mut f = Some(f);
    let err = match parse_copy(st, text, &mut f) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    if matches!(err.error(), simd_json::ErrorType::InvalidNumber)
        && let Some(patched) = patch_numbers(text)
        && let Ok(r) = parse_copy(st, &patched, &mut f)
    {
        return Ok(r);
    }
    Err(err)
}

/// Parse a padded copy of `text` in `st.scratch`; on success call `f`
/// (taken from its option) with the root.
fn parse_copy<R, F: FnOnce(Value<'_, '_>) -> R>(
    st: &mut State,
    text: &[u8],
    f: &mut Option<F>,
) -> Result<R, simd_json::Error> {
    let mut scratch = std::mem::take(&mut st.scratch);
    scratch.clear();
    scratch.extend_from_slice(text);
    scratch.resize(text.len() + simd_json::INPUT_PADDING, b' ');
    let mut tape = std::mem::replace(&mut st.tape, Tape::null().reset()).reset();
    let out = match fill(
        &mut st.buffers,
        &mut st.big,
        &mut scratch,
        text.len(),
        &mut tape,
    ) {
        Ok(()) => Ok((f.take().expect("called once on success"))(Value::new(
            &tape.0,
        ))),
        Err(e) => Err(e),
    };
    st.tape = tape.reset();
    st.scratch = scratch;
    out
}

/// `text` with every number that overflows f64 (`1e309`, `-1e400`) turned
/// into a string holding its text; `None` when there is none.
fn patch_numbers(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut changed = false;
    let mut i = 0;
    let mut copied = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i = scan::string_end(text, i).ok()?;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &text[start..i];
                let overflows = std::str::from_utf8(token)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .is_some_and(f64::is_infinite);
                if overflows {
                    out.extend_from_slice(&text[copied..start]);
                    out.push(b'"');
                    out.extend_from_slice(token);
                    out.push(b'"');
                    copied = i;
                    changed = true;
                }
            }
            _ => i += 1,
        }
    }
    out.extend_from_slice(&text[copied..]);
    changed.then_some(out)
}

/// One element of a records array (delimited by the structural walk),
/// parsed alone: a record, or an error that costs only it.
fn parse_element(st: &mut State, text: &[u8], index: usize, offset: usize, sink: &dyn Sink) {
    let r = with_parsed(st, text, |v| match Record::new(v) {
        Some(r) => {
            check_types(&r, index, offset, sink);
            sink.records(index, &[r]);
        }
        None => sink.error(not_object(index, offset, v.kind())),
    });
    if let Err(e) = r {
        sink.error(json_error(index, offset, &e));
    }
}

/// Is this object a CloudTrail document: a `Records` array, under any key
/// position (JSON's key order means nothing)?
fn is_wrapper(root: &Value<'_, '_>) -> bool {
    root.entries()
        .any(|(k, v)| k == "Records" && v.kind() == Kind::Array)
}

/// The records of a wrapper: every `Records` array's elements, in order.
/// A repeated `Records` key is counted as a duplicate key and read, not
/// resolved last-wins as JSON parsers do: a later key must not hide the
/// records of an earlier one from a detector.
fn wrapper_records<'t, 'i>(root: Value<'t, 'i>, sink: &dyn Sink) -> Vec<Value<'t, 'i>> {
    let mut keys = 0u64;
    let mut out = Vec::new();
    for (k, v) in root.entries() {
        if k == "Records" {
            keys += 1;
            if v.kind() == Kind::Array {
                out.extend(v.elements());
            }
        }
    }
    if keys > 1 {
        sink.duplicate_keys(keys - 1);
    }
    out
}

/// Classify a parsed root value and hand out its records, the first
/// numbered 0.
fn dispatch(root: Value<'_, '_>, sink: &dyn Sink) -> Layout {
    match root.kind() {
        Kind::Array => {
            emit_values(root.elements().collect(), sink);
            Layout::Array
        }
        Kind::Object if is_wrapper(&root) => {
            emit_values(wrapper_records(root, sink), sink);
            Layout::Native
        }
        _ => dispatch_at(root, 0, 0, sink).0,
    }
}

/// [`dispatch`] for a value met at `offset` whose first record is numbered
/// `first`, sequentially (the walk's values are small or already chunked).
/// Returns the layout and the records numbered.
fn dispatch_at(
    root: Value<'_, '_>,
    first: usize,
    offset: usize,
    sink: &dyn Sink,
) -> (Layout, usize) {
    let mut n = 0;
    let mut emit = |v: Value<'_, '_>| {
        let index = first + n;
        n += 1;
        match Record::new(v) {
            Some(r) => {
                check_types(&r, index, offset, sink);
                sink.records(index, &[r]);
            }
            None => sink.error(not_object(index, offset, v.kind())),
        }
    };
    let layout = match root.kind() {
        Kind::Array => {
            root.elements().for_each(&mut emit);
            Layout::Array
        }
        Kind::Object if is_wrapper(&root) => {
            wrapper_records(root, sink).into_iter().for_each(&mut emit);
            Layout::Native
        }
        Kind::Object if root.entries().any(|(k, _)| k == "digestStartTime") => Layout::Digest,
        Kind::Object => {
            emit(root);
            Layout::Single
        }
        other => {
            sink.error(ParseError {
                kind: ParseErrorKind::NotObject,
                record: None,
                offset,
                message: format!("document is a {}, not CloudTrail records", other.as_str()),
            });
            Layout::Empty
        }
    };
    (layout, n)
}

/// Index the values as records and hand them to the sink, in parallel
/// chunks when there are many.
fn emit_values(values: Vec<Value<'_, '_>>, sink: &dyn Sink) {
    let run = |(chunk_no, chunk): (usize, &[Value<'_, '_>])| {
        let first = chunk_no * CHUNK_RECORDS;
        let mut batch = Vec::with_capacity(chunk.len());
        let mut batch_first = first;
        for (i, v) in chunk.iter().enumerate() {
            match Record::new(*v) {
                Some(r) => {
                    check_types(&r, first + i, 0, sink);
                    batch.push(r)
                }
                None => {
                    // Hand over what came before so indexes stay consecutive.
                    if !batch.is_empty() {
                        sink.records(batch_first, &batch);
                        batch.clear();
                    }
                    batch_first = first + i + 1;
                    sink.error(not_object(first + i, 0, v.kind()));
                }
            }
        }
        if !batch.is_empty() {
            sink.records(batch_first, &batch);
        }
    };
    if values.len() > CHUNK_RECORDS {
        values.par_chunks(CHUNK_RECORDS).enumerate().for_each(run);
    } else {
        run((0, &values));
    }
}

fn check_types(r: &Record<'_, '_>, index: usize, offset: usize, sink: &dyn Sink) {
    if let Some(w) = r.wrong_type() {
        sink.error(ParseError {
            kind: ParseErrorKind::WrongType,
            record: Some(index),
            offset,
            message: format!(
                "field {} is a {}, expected {}",
                w.field.name(),
                w.found.as_str(),
                expected_kind(w.field)
            ),
        });
    }
}

fn expected_kind(t: Top) -> &'static str {
    match t {
        Top::UserIdentity | Top::RequestParameters | Top::AdditionalEventData => "object",
        Top::ResponseElements => "object or string",
        Top::Resources => "array",
        Top::ReadOnly => "boolean",
        _ => "string",
    }
}

fn not_object(index: usize, offset: usize, kind: Kind) -> ParseError {
    ParseError {
        kind: ParseErrorKind::NotObject,
        record: Some(index),
        offset,
        message: format!("record is a {}, not an object", kind.as_str()),
    }
}

fn json_error(index: usize, base: usize, e: &simd_json::Error) -> ParseError {
    ParseError {
        kind: ParseErrorKind::InvalidJson,
        record: Some(index),
        offset: base + e.index(),
        message: format!("invalid JSON: {:?}", e.error()),
    }
}

/// The non-blank lines of a JSON-lines text, or `None` when it is not one.
///
/// JSON lines: two non-blank lines or more, and one of the first two looks
/// like a whole record on its own (`{` ... `}`), so a bad first line (a cut
/// one, garbage) does not hide the format. A first or second line that
/// opens a CloudTrail document or an array says the text is something else
/// (several documents, one per line, are read by the walk, which numbers
/// their records in order).
fn json_lines(data: &[u8], start: usize) -> Option<Vec<(usize, usize)>> {
    // CloudTrail's own files, often one long line: decided before any
    // search for a line break (a 50 MB line would cost a pass).
    if data[start] == b'[' || scan::records_open(data, start).is_ok() {
        return None;
    }
    let line_at = |from: usize| -> Option<(usize, usize, usize)> {
        // (start, end, next) of the first non-blank line from `from`.
        let mut at = from;
        while at < data.len() {
            let nl = memchr::memchr(b'\n', &data[at..]).map_or(data.len(), |p| at + p);
            let a = scan::skip_ws_bom(&data[..nl], at);
            let b = at + data[at..nl].trim_ascii_end().len();
            if a < b {
                return Some((a, b, nl + 1));
            }
            at = nl + 1;
        }
        None
    };
    let (a1, b1, next) = line_at(start)?;
    let (a2, b2, _) = line_at(next)?;
    let opens_other =
        |a: usize, b: usize| data[a] == b'[' || scan::records_open(&data[a..b], 0).is_ok();
    let whole = |a: usize, b: usize| data[a] == b'{' && data[b - 1] == b'}';
    if opens_other(a1, b1) || opens_other(a2, b2) || !(whole(a1, b1) || whole(a2, b2)) {
        return None;
    }
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some((a, b, next)) = line_at(at) {
        spans.push((a, b));
        at = next;
    }
    Some(spans)
}

/// JSON lines: each line is parsed alone, chunks of lines in parallel, and
/// numbered by its place among the non-blank lines.
///
/// A line is taken as a record when it and the line before it each parse
/// as a whole value: in a valid text, a value followed by another value on
/// the next line is at the top level (inside a container, a comma or a
/// closer would have to come between), so it cannot be a nested object of
/// a value spread over lines. The other lines (one that does not parse,
/// and those after it until two whole lines meet) are read by the
/// structural walk, in order, run by run: a value spread over lines is
/// read as one, and damage costs only its own line when the next one holds
/// a whole record.
fn parse_lines(data: &[u8], spans: &[(usize, usize)], sink: &dyn Sink) -> Layout {
    const PER_TASK: usize = CHUNK_RECORDS / 4;
    let untrusted = std::sync::Mutex::new(Vec::new());
    spans
        .par_chunks(PER_TASK)
        .enumerate()
        .for_each(|(n, chunk)| {
            with_state(|st| {
                let first = n * PER_TASK;
                let mut prev_ok = first == 0 || {
                    let (a, b) = spans[first - 1];
                    with_parsed(st, &data[a..b], |_| ()).is_ok()
                };
                let mut mine = Vec::new();
                for (i, &(a, b)) in chunk.iter().enumerate() {
                    let index = first + i;
                    let ok = if prev_ok {
                        with_parsed(st, &data[a..b], |root| {
                            dispatch_at(root, index, a, sink);
                        })
                        .is_ok()
                    } else {
                        with_parsed(st, &data[a..b], |_| ()).is_ok()
                    };
                    if !(ok && prev_ok) {
                        mine.push(index);
                    }
                    prev_ok = ok;
                }
                if !mine.is_empty() {
                    untrusted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(mine);
                }
            })
        });
    let mut untrusted = untrusted.into_inner().unwrap_or_else(|p| p.into_inner());
    untrusted.sort_unstable();
    let mut i = 0;
    while i < untrusted.len() {
        let mut j = i;
        while j + 1 < untrusted.len() && untrusted[j + 1] == untrusted[j] + 1 {
            j += 1;
        }
        let (k, last) = (untrusted[i], untrusted[j]);
        let start = spans[k].0;
        let end = spans.get(last + 1).map_or(data.len(), |s| s.0);
        let mut w = walk::Walk::new(walk::Window::memory(&data[start..end], start), sink, k);
        with_state(|st| w.values(st, start));
        i = j + 1;
    }
    Layout::JsonLines
}

/// The recovery path, on the original bytes of a document whose fast parse
/// failed: the structural walk (see [`walk`]).
pub fn recover(buf: &[u8], len: usize, sink: &dyn Sink, failed: &NeedsRecovery) -> Layout {
    let data = &buf[..len];
    let mut w = walk::Walk::new(walk::Window::memory(data, 0), sink, 0);
    match &failed.0 {
        Failed::Whole => with_state(|st| w.values(st, 0)),
        Failed::Chunk {
            cuts,
            chunk,
            next_index,
        } => {
            // The copy is the same bytes, so the same cuts; checked rather
            // than assumed (a mismatch would misnumber records).
            if chunk_cuts(data).as_deref() != Some(cuts.as_slice()) {
                sink.error(ParseError {
                    kind: ParseErrorKind::InvalidJson,
                    record: Some(*next_index),
                    offset: cuts[*chunk],
                    message: "the document read again for recovery differs from the first \
                              read; records from here on are skipped"
                        .to_owned(),
                });
                return Layout::Native;
            }
            w.next_index = *next_index;
            with_state(|st| w.resume_records(st, cuts[*chunk]));
        }
    }
    w.layout()
}

#[cfg(test)]
mod tests;
