//! Parse stage: finds the records in a decoded document and hands them, as
//! zero-copy [`Record`] views over a simd-json tape, to a [`Sink`].
//!
//! Accepted layouts (detected from the content, never from the name):
//! - CloudTrail's native file `{"Records":[...]}`,
//! - a bare JSON array of records,
//! - JSON lines, one record per line (CloudWatch Logs, export tools),
//! - one record on its own,
//! - CloudTrail digest files (top-level `digestStartTime`): recognised and
//!   skipped, never read as records.
//!
//! **Fast path**: the whole document is parsed into one tape in place (the
//! decode stage leaves the padding simd-json needs), so a valid file costs
//! one `fill_tape_padded`. Records of a large file are then handed out in
//! chunks that the caller may evaluate in parallel.
//!
//! **Recovery path** (only when the whole-document parse fails): a
//! structural scanner finds each record's byte span and every record is
//! parsed on its own, so one bad record costs only itself and is reported
//! with its index and byte offset. After a record the scanner cannot
//! delimit, it resynchronises at the next `{"eventVersion"`.

pub mod record;

use std::cell::Cell;

use memchr::memmem;
use rayon::prelude::*;
use simd_json::{Buffers, Tape};
use thiserror::Error;

pub use record::{FieldPath, Ident, Kind, Record, Top, Value, WrongType};

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
    /// One JSON object per line.
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
}

/// Per-thread parser state: simd-json's scratch buffers and a tape whose
/// allocation is reused from document to document.
struct State {
    buffers: Buffers,
    tape: Tape<'static>,
    scratch: Vec<u8>,
}

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
        })
    });
    let r = f(&mut st);
    STATE.with(|s| s.set(Some(st)));
    r
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
    Whole(simd_json::Error),
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
    let start = skip_ws(buf, 0, len);
    if start == len {
        return Ok(Layout::Empty);
    }
    if looks_like_json_lines(&buf[..len], start) {
        return Ok(parse_lines(buf, len, sink));
    }
    if len >= CHUNKED_MIN_BYTES
        && let Some(outcome) = parse_native_chunked(buf, len, sink)
    {
        return outcome;
    }
    with_state(|st| {
        let mut tape = std::mem::replace(&mut st.tape, Tape::null().reset()).reset();
        let outcome = match simd_json::fill_tape_padded(buf, len, &mut st.buffers, &mut tape) {
            Ok(()) => Ok(dispatch(Value::new(&tape.0), sink)),
            Err(e) => Err(NeedsRecovery(Failed::Whole(e))),
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
        let ok = simd_json::fill_tape_padded(buf, len, &mut st.buffers, &mut tape).is_ok();
        st.tape = tape.reset();
        ok
    })
}

/// How a CloudTrail record opens; chunk cuts and the recovery path's
/// resynchronisation look for it.
const RECORD_START: &[u8] = b"{\"eventVersion\"";

/// Just after `{"Records":[` (whitespace allowed) at the start of `data`:
/// the index where the records begin.
fn native_records_open(data: &[u8]) -> Option<usize> {
    let len = data.len();
    let mut i = skip_ws(data, 0, len);
    for lit in [&b"{"[..], b"\"Records\"", b":", b"["] {
        if !data[i..].starts_with(lit) {
            return None;
        }
        i = skip_ws(data, i + lit.len(), len);
    }
    Some(i)
}

/// The index of the `]` closing the records array, when `data` ends with
/// `]}` (whitespace allowed) after `from`.
fn native_records_close(data: &[u8], from: usize) -> Option<usize> {
    let mut end = data.len();
    for close in [b'}', b']'] {
        while end > from && is_ws(data[end - 1]) {
            end -= 1;
        }
        if end <= from || data[end - 1] != close {
            return None;
        }
        end -= 1;
    }
    Some(end)
}

/// Documents at least this big are parsed in chunks when their layout
/// allows (see [`parse_native_chunked`]).
const CHUNKED_MIN_BYTES: usize = 2 << 20;
/// Text per chunk: its tape and records stay in the core's cache while
/// the rules read them.
const CHUNK_BYTES: usize = 256 << 10;
/// Chunks joined at most to heal cuts at nested look-alikes of a record.
const MAX_JOINED: usize = 8;

/// A native file `{"Records":[{"eventVersion"...},...]}` parsed a chunk of
/// records at a time instead of as one tape: the records are indexed and
/// matched while their text and tape are still in cache, and the tape
/// stays small whatever the file's size.
///
/// Chunks are cut before `{"eventVersion"` following a comma. That text
/// cannot occur inside a JSON string (the quote would be escaped), but it
/// can start a nested object; a cut there leaves both neighbouring chunks
/// unbalanced, so they fail to parse and are parsed again joined. `None`
/// (nothing handed to the sink) when the document does not have this
/// shape; the caller then parses it whole.
///
/// Each chunk is parsed where it lies (no copy: copying cost ~3% of the
/// pipeline). The first chunk that fails ends this pass with
/// [`Failed::Chunk`]: simd-json may have unescaped some of its strings in
/// place, so [`recover`] goes on from that chunk in a pristine copy.
fn parse_native_chunked(
    buf: &mut [u8],
    len: usize,
    sink: &dyn Sink,
) -> Option<Result<Layout, NeedsRecovery>> {
    let cuts = chunk_cuts(&buf[..len])?;
    Some(with_state(|st| {
        let mut next_index = 0usize;
        for k in 0..cuts.len() - 1 {
            let (a, e) = (cuts[k], chunk_end(&buf[..len], &cuts, k));
            match parse_chunk_in_place(st, buf, a, e, next_index, sink) {
                Some(n) => next_index += n,
                // Healing and recovery read the original text, which the
                // failed parse may have unescaped in place.
                None => {
                    return Err(NeedsRecovery(Failed::Chunk {
                        cuts,
                        chunk: k,
                        next_index,
                    }));
                }
            }
        }
        Ok(Layout::Native)
    }))
}

/// Where a native document's chunks start: record starts after a comma,
/// about [`CHUNK_BYTES`] apart, then the end of the records array. `None`
/// when the document does not have the native shape.
fn chunk_cuts(data: &[u8]) -> Option<Vec<usize>> {
    let i = native_records_open(data)?;
    let body_end = native_records_close(data, i)?;
    if !data[i..body_end].starts_with(RECORD_START) {
        return None;
    }
    let mut cuts = vec![i];
    let finder = memmem::Finder::new(RECORD_START);
    let mut from = i + CHUNK_BYTES;
    while from < body_end {
        let Some(p) = finder.find(&data[from..body_end]).map(|p| from + p) else {
            break;
        };
        if is_record_start(data, i, p, true) {
            cuts.push(p);
            from = p + CHUNK_BYTES;
        } else {
            from = p + 1;
        }
    }
    cuts.push(body_end);
    Some(cuts)
}

/// The end of chunk `k` of `cuts`: `data[cuts[k]..chunk_end]` holds its
/// records without the comma that separates it from the next.
fn chunk_end(data: &[u8], cuts: &[usize], k: usize) -> usize {
    let mut e = cuts[k + 1];
    if k + 2 < cuts.len() {
        while is_ws(data[e - 1]) {
            e -= 1;
        }
        e -= 1; // the separating comma
    }
    e
}

/// The chunks of `data` from chunk `k` on, each parsed from a copy (so a
/// failed parse leaves the text intact): a wrong cut (at a nested
/// look-alike of a record) heals by joining the chunk with the next, and
/// damage inside a chunk goes to the record splitter of the recovery path.
fn parse_chunks_from(
    data: &[u8],
    cuts: &[usize],
    mut k: usize,
    mut next_index: usize,
    sink: &dyn Sink,
) {
    with_state(|st| {
        let chunks = cuts.len() - 1;
        while k < chunks {
            if let Some(n) = parse_chunk(
                st,
                data,
                cuts[k],
                chunk_end(data, cuts, k),
                next_index,
                sink,
            ) {
                next_index += n;
                k += 1;
                continue;
            }
            // A wrong cut heals when the chunk is joined with the next (a
            // few next, if look-alikes follow each other).
            let mut healed = None;
            for last in (k + 1..chunks).take(MAX_JOINED) {
                let e = chunk_end(data, cuts, last);
                if let Some(n) = parse_chunk(st, data, cuts[k], e, next_index, sink) {
                    healed = Some((n, last));
                    break;
                }
            }
            if let Some((n, last)) = healed {
                next_index += n;
                k = last + 1;
                continue;
            }
            // Damage inside this chunk: the recovery path's record splitter
            // on this chunk alone (a record it cannot close costs the rest
            // of the chunk, not of the file). Records after it are numbered
            // by counting record starts, as the cuts were found.
            let e = chunk_end(data, cuts, k);
            recover_region(data, cuts[k], e, next_index, sink);
            next_index += 1 + count_starts(&data[cuts[k]..e]);
            k += 1;
        }
    });
}

/// Is `data[p..]` (a `{"eventVersion"` found by search) a record start? A
/// record follows a record (`},`) and opens with a version number; anything
/// else is a nested look-alike, not worth a cut. `floor` bounds the look
/// back.
fn is_record_start(data: &[u8], floor: usize, p: usize, after_record: bool) -> bool {
    let back = |mut q: usize| {
        while q > floor && is_ws(data[q - 1]) {
            q -= 1;
        }
        q
    };
    let q = back(p);
    if q <= floor + 1 || data[q - 1] != b',' {
        return false;
    }
    let r = back(q - 1);
    let version = data.get(p + RECORD_START.len()..p + RECORD_START.len() + 3);
    r > floor
        && (!after_record || data[r - 1] == b'}')
        && version.is_some_and(|v| v[0] == b':' && v[1] == b'"' && v[2].is_ascii_digit())
}

/// Record starts after the first in `chunk` (by [`is_record_start`], the
/// record before may be the damaged one, so it need not end in `}`).
fn count_starts(chunk: &[u8]) -> usize {
    memmem::find_iter(chunk, RECORD_START)
        .filter(|&p| p > 0 && is_record_start(chunk, 0, p, false))
        .count()
}

/// Why [`parse_native_reader`] stopped.
#[derive(Debug)]
pub enum StreamEnd {
    /// The whole document was read and parsed.
    Done,
    /// Not a native file: nothing was handed to the sink; parse the whole
    /// document instead (the bytes read so far are returned).
    NotNative(Vec<u8>),
    /// Reading failed (damaged gzip): the records before were handed out.
    Read(std::io::Error),
    /// The document ended inside the records array; the complete records
    /// were handed out.
    Truncated { offset: u64 },
}

/// The text kept beyond the current chunk while streaming: enough to find
/// the next cut.
const STREAM_WINDOW: usize = 4 * CHUNK_BYTES;

/// Parse a native document read from `r`, a chunk of records at a time, in
/// memory bounded by a few chunks whatever the document's size (records
/// larger than that are read whole). The same cuts, healing and recovery
/// as [`parse_native_chunked`]. Returns how it ended and the bytes read.
pub fn parse_native_reader(r: &mut dyn std::io::Read, sink: &dyn Sink) -> (StreamEnd, u64) {
    let mut win: Vec<u8> = Vec::with_capacity(STREAM_WINDOW * 2);
    let mut total = 0u64;
    let mut eof = false;
    let mut read_err = None;
    // Read until `win` holds `want` bytes or the input ends.
    let mut fill = |win: &mut Vec<u8>, want: usize, eof: &mut bool, total: &mut u64| {
        let mut buf = [0u8; 64 << 10];
        while !*eof && win.len() < want {
            match r.read(&mut buf) {
                Ok(0) => *eof = true,
                Ok(n) => {
                    win.extend_from_slice(&buf[..n]);
                    *total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    *eof = true;
                    return Some(e);
                }
            }
        }
        None
    };
    if let Some(e) = fill(&mut win, 4096, &mut eof, &mut total) {
        read_err = Some(e);
    }
    let Some(i) = native_records_open(&win) else {
        return (StreamEnd::NotNative(win), total);
    };
    if read_err.is_some() || !win[i..].starts_with(RECORD_START) {
        return match read_err {
            Some(e) if win.len() < 4096 => (StreamEnd::Read(e), total),
            _ => (StreamEnd::NotNative(win), total),
        };
    }
    let mut pos = i; // start of the current chunk in `win`
    let mut base = 0u64; // offset of win[0] in the document
    let mut next_index = 0usize;
    let finder = memmem::Finder::new(RECORD_START);
    with_state(|st| {
        loop {
            if let Some(e) = fill(&mut win, pos + STREAM_WINDOW, &mut eof, &mut total) {
                read_err = Some(e);
            }
            // The next cuts after `pos` (at least a chunk apart).
            let cut_after = |win: &[u8], from: usize| -> Option<usize> {
                let mut from = from;
                while from < win.len() {
                    let p = finder.find(&win[from..]).map(|p| from + p)?;
                    if is_record_start(win, pos, p, true) {
                        return Some(p);
                    }
                    from = p + 1;
                }
                None
            };
            let end_before = |win: &[u8], cut: usize| {
                let mut e = cut;
                while is_ws(win[e - 1]) {
                    e -= 1;
                }
                e - 1 // the comma
            };
            let Some(cut) = cut_after(&win, pos + CHUNK_BYTES) else {
                if !eof {
                    // A long stretch without a cut (one huge record): read on.
                    let want = win.len() + STREAM_WINDOW;
                    if let Some(e) = fill(&mut win, want, &mut eof, &mut total) {
                        read_err = Some(e);
                    }
                    continue;
                }
                // The end: `...]}` after the last record.
                let closed = native_records_close(&win, pos);
                if let Some(body_end) = closed.filter(|_| read_err.is_none()) {
                    if parse_chunk(st, &win, pos, body_end, next_index, sink).is_none() {
                        recover_region(&win, pos, body_end, next_index, sink);
                    }
                    return (StreamEnd::Done, total);
                }
                // Truncated or unreadable: what is complete, via recovery.
                recover_region(&win, pos, win.len(), next_index, sink);
                return match read_err.take() {
                    Some(e) => (StreamEnd::Read(e), total),
                    None => (
                        StreamEnd::Truncated {
                            offset: base + win.len() as u64,
                        },
                        total,
                    ),
                };
            };
            let mut chunk_cut = cut;
            let mut parsed = parse_chunk(st, &win, pos, end_before(&win, cut), next_index, sink);
            let mut joins = 0;
            while parsed.is_none() && joins < MAX_JOINED {
                // Heal a wrong cut by joining with the next chunk.
                let Some(next) = cut_after(&win, chunk_cut + CHUNK_BYTES.min(win.len())) else {
                    break;
                };
                joins += 1;
                chunk_cut = next;
                parsed = parse_chunk(st, &win, pos, end_before(&win, next), next_index, sink);
            }
            match parsed {
                Some(n) => next_index += n,
                None => {
                    let e = end_before(&win, cut);
                    recover_region(&win, pos, e, next_index, sink);
                    next_index += 1 + count_starts(&win[pos..e]);
                    chunk_cut = cut;
                }
            }
            pos = chunk_cut;
            // Drop what is done, keeping the window small.
            if pos > STREAM_WINDOW {
                win.drain(..pos);
                base += pos as u64;
                pos = 0;
            }
        }
    })
}

/// Parse `data[a..b]` (whole records separated by commas) as one array and
/// hand its records to the sink, the first numbered `first`. `None`, with
/// nothing handed over, if it does not parse. `data` is left as it was.
fn parse_chunk(
    st: &mut State,
    data: &[u8],
    a: usize,
    b: usize,
    first: usize,
    sink: &dyn Sink,
) -> Option<usize> {
    let mut scratch = std::mem::take(&mut st.scratch);
    scratch.clear();
    scratch.push(b'[');
    scratch.extend_from_slice(&data[a..b]);
    scratch.push(b']');
    let n = scratch.len();
    scratch.resize(n + simd_json::INPUT_PADDING, b' ');
    let out = parse_records_array(st, &mut scratch, n, first, a, sink);
    st.scratch = scratch;
    out
}

/// [`parse_chunk`] without the copy: the byte before `a` (a comma, `[` or
/// whitespace) and the one at `b` (the comma or `]` after the chunk) become
/// the array's brackets for the parse and are put back after, and the
/// text that follows serves as simd-json's padding. Strings with escapes
/// may be left unescaped in place, even when the parse fails.
fn parse_chunk_in_place(
    st: &mut State,
    data: &mut [u8],
    a: usize,
    b: usize,
    first: usize,
    sink: &dyn Sink,
) -> Option<usize> {
    debug_assert!(a >= 1 && b + 1 + simd_json::INPUT_PADDING <= data.len());
    let open = std::mem::replace(&mut data[a - 1], b'[');
    let close = std::mem::replace(&mut data[b], b']');
    let out = parse_records_array(st, &mut data[a - 1..], b + 2 - a, first, a, sink);
    data[a - 1] = open;
    data[b] = close;
    out
}

/// Fill the tape for `text[..n]`, an array of records, and hand them to the
/// sink numbered from `first` (`offset`: where the chunk's text starts in
/// the document, for messages). `None` if it does not parse.
fn parse_records_array(
    st: &mut State,
    text: &mut [u8],
    n: usize,
    first: usize,
    offset: usize,
    sink: &dyn Sink,
) -> Option<usize> {
    let mut tape = std::mem::replace(&mut st.tape, Tape::null().reset()).reset();
    let out = match simd_json::fill_tape_padded(text, n, &mut st.buffers, &mut tape) {
        Ok(()) => {
            let root = Value::new(&tape.0);
            if root.kind() == Kind::Array {
                let mut batch = Vec::with_capacity(root.elements().size_hint().0);
                let mut count = 0;
                for (j, v) in root.elements().enumerate() {
                    count += 1;
                    match Record::new(v) {
                        Some(r) => {
                            check_types(&r, first + j, offset, sink);
                            batch.push(r);
                        }
                        None => sink.error(not_object(first + j, offset, v.kind())),
                    }
                }
                // Records are consecutive unless a non-object sat between.
                if batch.len() == count {
                    sink.records(first, &batch);
                } else {
                    for (idx, v) in (first..).zip(root.elements()) {
                        if let Some(r) = Record::new(v) {
                            sink.records(idx, std::slice::from_ref(&r));
                        }
                    }
                }
                Some(count)
            } else {
                None
            }
        }
        Err(_) => None,
    };
    st.tape = tape.reset();
    out
}

/// The last resort inside a chunked document: the record splitter of the
/// recovery path over `data[a..b]`. Returns the records it numbered.
fn recover_region(data: &[u8], a: usize, b: usize, first: usize, sink: &dyn Sink) -> usize {
    struct Offset<'s> {
        sink: &'s dyn Sink,
        first: usize,
        seen: std::sync::atomic::AtomicUsize,
    }
    impl Sink for Offset<'_> {
        fn records(&self, f: usize, records: &[Record<'_, '_>]) {
            self.seen
                .fetch_max(f + records.len(), std::sync::atomic::Ordering::Relaxed);
            self.sink.records(self.first + f, records);
        }
        fn error(&self, mut err: ParseError) {
            if let Some(r) = err.record.as_mut() {
                self.seen
                    .fetch_max(*r + 1, std::sync::atomic::Ordering::Relaxed);
                *r += self.first;
            }
            self.sink.error(err);
        }
    }
    // Shaped as a native document: the splitter resynchronises after a
    // damaged record the way it does for a whole file.
    let mut text = Vec::with_capacity(b - a + 16 + simd_json::INPUT_PADDING);
    text.extend_from_slice(b"{\"Records\":[");
    text.extend_from_slice(&data[a..b]);
    text.extend_from_slice(b"]}");
    let n = text.len();
    text.resize(n + simd_json::INPUT_PADDING, b' ');
    let off = Offset {
        sink,
        first,
        seen: std::sync::atomic::AtomicUsize::new(0),
    };
    let failed = match parse_inner_err(&mut text.clone(), n) {
        Some(e) => e,
        None => return 0,
    };
    recover(&text, n, &off, &failed);
    off.seen.into_inner()
}

/// The error a whole-array parse of `buf[..len]` gives, if any.
fn parse_inner_err(buf: &mut [u8], len: usize) -> Option<NeedsRecovery> {
    with_state(|st| {
        let mut tape = std::mem::replace(&mut st.tape, Tape::null().reset()).reset();
        let r = simd_json::fill_tape_padded(buf, len, &mut st.buffers, &mut tape).err();
        st.tape = tape.reset();
        r.map(|e| NeedsRecovery(Failed::Whole(e)))
    })
}

/// Classify a parsed root value and hand out its records.
fn dispatch(root: Value<'_, '_>, sink: &dyn Sink) -> Layout {
    match root.kind() {
        Kind::Array => {
            emit_values(root.elements().collect(), sink);
            Layout::Array
        }
        Kind::Object => {
            if let Some(records) = root.get("Records").filter(|v| v.kind() == Kind::Array) {
                emit_values(records.elements().collect(), sink);
                Layout::Native
            } else if root.get("digestStartTime").is_some() {
                Layout::Digest
            } else {
                emit_values(vec![root], sink);
                Layout::Single
            }
        }
        other => {
            sink.error(ParseError {
                kind: ParseErrorKind::NotObject,
                record: None,
                offset: 0,
                message: format!("document is a {}, not CloudTrail records", other.as_str()),
            });
            Layout::Empty
        }
    }
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

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn skip_ws(buf: &[u8], mut i: usize, len: usize) -> usize {
    while i < len && is_ws(buf[i]) {
        i += 1;
    }
    i
}

/// JSON lines: the first line is a whole object that is not a `Records`
/// wrapper, and more text follows it. (A native file on one line has
/// nothing after it; a pretty-printed one has no `}` closing its first line.)
fn looks_like_json_lines(data: &[u8], start: usize) -> bool {
    if data[start] != b'{' {
        return false;
    }
    // A native file opens with "Records" and is often one long line:
    // decide before searching it for a newline.
    if data[start + 1..]
        .trim_ascii_start()
        .starts_with(b"\"Records\"")
    {
        return false;
    }
    let Some(nl) = memchr::memchr(b'\n', &data[start..]).map(|p| start + p) else {
        return false;
    };
    let line = data[start..nl].trim_ascii_end();
    if line.last() != Some(&b'}') {
        return false;
    }
    skip_ws(data, nl, data.len()) < data.len()
}

/// Parse one JSON value at `buf[span]` on its own (copied into a padded
/// scratch buffer, since the bytes after it belong to the next record).
fn parse_span(st: &mut State, buf: &[u8], span: (usize, usize), index: usize, sink: &dyn Sink) {
    let (a, b) = span;
    st.scratch.clear();
    st.scratch.extend_from_slice(&buf[a..b]);
    st.scratch.resize(b - a + simd_json::INPUT_PADDING, b' ');
    let mut tape = std::mem::replace(&mut st.tape, Tape::null().reset()).reset();
    match simd_json::fill_tape_padded(&mut st.scratch, b - a, &mut st.buffers, &mut tape) {
        Ok(()) => {
            let v = Value::new(&tape.0);
            match Record::new(v) {
                Some(r) => {
                    check_types(&r, index, a, sink);
                    sink.records(index, &[r]);
                }
                None => sink.error(not_object(index, a, v.kind())),
            }
        }
        Err(e) => sink.error(json_error(index, a, &e)),
    }
    st.tape = tape.reset();
}

fn json_error(index: usize, base: usize, e: &simd_json::Error) -> ParseError {
    ParseError {
        kind: ParseErrorKind::InvalidJson,
        record: Some(index),
        offset: base + e.index(),
        message: format!("invalid JSON: {:?}", e.error()),
    }
}

/// JSON lines: every non-blank line is a record; chunks of lines are parsed
/// in parallel.
fn parse_lines(buf: &[u8], len: usize, sink: &dyn Sink) -> Layout {
    let data = &buf[..len];
    let mut spans = Vec::new();
    let mut at = 0;
    for nl in memchr::memchr_iter(b'\n', data).chain(std::iter::once(len)) {
        let line = &data[at..nl];
        let a = at + line.iter().take_while(|b| is_ws(**b)).count();
        let b = at + line.trim_ascii_end().len();
        if a < b {
            spans.push((a, b));
        }
        at = nl + 1;
        if at > len {
            break;
        }
    }
    parse_spans(buf, &spans, sink);
    Layout::JsonLines
}

fn parse_spans(buf: &[u8], spans: &[(usize, usize)], sink: &dyn Sink) {
    spans
        .par_chunks(CHUNK_RECORDS / 4)
        .enumerate()
        .for_each(|(n, chunk)| {
            with_state(|st| {
                for (i, span) in chunk.iter().enumerate() {
                    parse_span(st, buf, *span, n * (CHUNK_RECORDS / 4) + i, sink);
                }
            })
        });
}

/// The recovery path, on the original bytes of a document whose fast parse
/// failed: delimit records with a structural scan and parse each one alone.
pub fn recover(buf: &[u8], len: usize, sink: &dyn Sink, failed: &NeedsRecovery) -> Layout {
    let data = &buf[..len];
    let whole = match &failed.0 {
        Failed::Whole(e) => e,
        Failed::Chunk {
            cuts,
            chunk,
            next_index,
        } => {
            // The copy is the same bytes, so the same cuts; checked rather
            // than assumed (a mismatch would misnumber records).
            if chunk_cuts(data).as_deref() == Some(cuts.as_slice()) {
                parse_chunks_from(data, cuts, *chunk, *next_index, sink);
            } else {
                sink.error(ParseError {
                    kind: ParseErrorKind::InvalidJson,
                    record: Some(*next_index),
                    offset: cuts[*chunk],
                    message: "the document read again for recovery differs from the first \
                              read; records from here on are skipped"
                        .to_owned(),
                });
            }
            return Layout::Native;
        }
    };
    let start = skip_ws(buf, 0, len);
    if start == len {
        return Layout::Empty;
    }
    let (layout, body) = match data[start] {
        b'[' => (Layout::Array, Some(start + 1)),
        b'{' => (Layout::Native, find_records_array(data, start)),
        _ => (Layout::Single, None),
    };
    let Some(body) = body else {
        // Not a container of records we can split: one error for the whole.
        sink.error(ParseError {
            kind: ParseErrorKind::InvalidJson,
            record: None,
            offset: whole.index(),
            message: format!("invalid JSON: {:?}", whole.error()),
        });
        return layout;
    };
    let mut spans = Vec::new();
    let mut problems = Vec::new();
    split_records(data, body, &mut spans, &mut problems);
    // Parse spans first (they carry their own indexes), then report the
    // structural problems in document order.
    parse_spans(buf, &spans, sink);
    for p in problems {
        sink.error(p);
    }
    layout
}

/// Find the `[` that opens the value of the top-level "Records" key.
fn find_records_array(data: &[u8], start: usize) -> Option<usize> {
    let key = memmem::find(&data[start..], b"\"Records\"")? + start + 9;
    let colon = skip_ws(data, key, data.len());
    if data.get(colon) != Some(&b':') {
        return None;
    }
    let open = skip_ws(data, colon + 1, data.len());
    (data.get(open) == Some(&b'[')).then_some(open + 1)
}

/// Walk the elements of a records array from `pos` (just after its `[`),
/// recording each element's span. Unparseable stretches become problems;
/// scanning resumes at the next `{"eventVersion"`.
fn split_records(
    data: &[u8],
    mut pos: usize,
    spans: &mut Vec<(usize, usize)>,
    problems: &mut Vec<ParseError>,
) {
    let len = data.len();
    let resync = memmem::Finder::new(RECORD_START);
    loop {
        pos = skip_ws(data, pos, len);
        if pos >= len {
            problems.push(ParseError {
                kind: ParseErrorKind::Truncated,
                record: Some(spans.len() + problems.len()),
                offset: pos,
                message: "document ends before the records array is closed".into(),
            });
            return;
        }
        if data[pos] == b']' {
            return;
        }
        match scan_value(data, pos) {
            Ok(end) => {
                spans.push((pos, end));
                pos = skip_ws(data, end, len);
                match data.get(pos) {
                    Some(b',') => pos += 1,
                    Some(b']') => return,
                    None => continue, // reported as truncated above
                    Some(_) => {
                        // Garbage between records: skip to the next record.
                        let bad = pos;
                        match resync.find(&data[pos..]) {
                            Some(p) => pos += p,
                            None => pos = len,
                        }
                        problems.push(ParseError {
                            kind: ParseErrorKind::InvalidJson,
                            record: None,
                            offset: bad,
                            message: format!(
                                "unexpected {:?} between records; skipped {} bytes",
                                data[bad] as char,
                                pos - bad
                            ),
                        });
                        if pos >= len {
                            return;
                        }
                    }
                }
            }
            Err(end) => {
                // Unterminated string or container: what follows cannot be
                // delimited reliably, except at a recognisable record start.
                let next = resync
                    .find(&data[pos + 1..end.min(len)])
                    .map(|p| pos + 1 + p);
                let index = spans.len() + problems.len();
                problems.push(ParseError {
                    kind: if next.is_none() {
                        ParseErrorKind::Truncated
                    } else {
                        ParseErrorKind::InvalidJson
                    },
                    record: Some(index),
                    offset: pos,
                    message: match next {
                        None => "document ends inside this record".into(),
                        Some(n) => format!("record cannot be delimited; skipped {} bytes", n - pos),
                    },
                });
                match next {
                    Some(n) => pos = n,
                    None => return,
                }
            }
        }
    }
}

/// End (exclusive) of the JSON value starting at `pos`, by structure only:
/// strings with escapes, nesting of `{}`/`[]`, scalars up to a delimiter.
/// `Err(len)` when the data ends first.
fn scan_value(data: &[u8], pos: usize) -> Result<usize, usize> {
    let len = data.len();
    let mut i = pos;
    let mut depth = 0usize;
    loop {
        if i >= len {
            return Err(len);
        }
        match data[i] {
            b'"' => {
                i += 1;
                loop {
                    // A backslash as the last byte steps past the end.
                    if i >= len {
                        return Err(len);
                    }
                    match memchr::memchr2(b'"', b'\\', &data[i..]) {
                        None => return Err(len),
                        Some(p) if data[i + p] == b'\\' => i += p + 2,
                        Some(p) => {
                            i += p + 1;
                            break;
                        }
                    }
                }
                if depth == 0 {
                    return Ok(i);
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                if depth == 0 {
                    return Ok(i); // end of a scalar before a closer
                }
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            b',' if depth == 0 => return Ok(i),
            b if depth == 0 && is_ws(b) => return Ok(i),
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Collects what the parser hands out: (index, eventID) and errors.
    #[derive(Default)]
    struct Collect {
        ids: Mutex<Vec<(usize, String)>>,
        errors: Mutex<Vec<ParseError>>,
    }

    impl Sink for Collect {
        fn records(&self, first: usize, records: &[Record<'_, '_>]) {
            let mut ids = self.ids.lock().unwrap();
            for (i, r) in records.iter().enumerate() {
                ids.push((first + i, r.str(Top::EventId).unwrap_or("?").to_string()));
            }
        }
        fn error(&self, err: ParseError) {
            self.errors.lock().unwrap().push(err);
        }
    }

    fn run(text: &str) -> (Layout, Vec<(usize, String)>, Vec<ParseError>) {
        let mut buf = text.as_bytes().to_vec();
        let len = buf.len();
        buf.resize(len + simd_json::INPUT_PADDING, b' ');
        let pristine = buf.clone();
        let sink = Collect::default();
        let layout = match parse(&mut buf, len, &sink) {
            Ok(layout) => layout,
            Err(failed) => recover(&pristine, len, &sink, &failed),
        };
        let mut ids = sink.ids.into_inner().unwrap();
        ids.sort();
        let mut errors = sink.errors.into_inner().unwrap();
        errors.sort_by_key(|e| e.offset);
        (layout, ids, errors)
    }

    fn rec(id: &str) -> String {
        format!(r#"{{"eventVersion":"1.08","eventID":"{id}","eventName":"X"}}"#)
    }

    /// A native document over the chunking threshold: `n` records, each
    /// padded to ~1 KB; `nested` puts, in every record, an array of objects
    /// that start like records (the text chunk cuts look for).
    fn big(n: usize, nested: bool, bad: Option<usize>) -> String {
        let pad = "x".repeat(900);
        let records: Vec<String> = (0..n)
            .map(|i| {
                if Some(i) == bad {
                    return format!(r#"{{"eventVersion":"1.08","eventID":"{i}","eventName":"#);
                }
                let inner = if nested {
                    r#","requestParameters":{"items":[{"a":1},{"eventVersion":"fake","eventID":"no"},{"eventVersion":"fake2"}]}"#
                } else {
                    ""
                };
                format!(r#"{{"eventVersion":"1.08","eventID":"{i}","eventName":"X","p":"{pad}"{inner}}}"#)
            })
            .collect();
        format!("{{\"Records\": [\n{}\n]}}\n", records.join(",\n"))
    }

    #[test]
    fn chunked_parsing_numbers_every_record_like_a_whole_parse() {
        for nested in [false, true] {
            let text = big(4000, nested, None);
            assert!(text.len() > CHUNKED_MIN_BYTES);
            let (l, ids, errs) = run(&text);
            assert_eq!(l, Layout::Native);
            assert!(errs.is_empty(), "{errs:?}");
            let want: Vec<(usize, String)> = (0..4000).map(|i| (i, i.to_string())).collect();
            assert_eq!(ids, want, "nested: {nested}");
        }
    }

    /// The streaming path over `text`, read in uneven pieces.
    fn stream(text: &str) -> (StreamEnd, Vec<(usize, String)>, Vec<ParseError>) {
        /// Hands out 1000 bytes per read, like a decompressor's pieces.
        struct Pieces<'a>(&'a [u8]);
        impl std::io::Read for Pieces<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(out.len()).min(1000);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let sink = Collect::default();
        let (end, read) = parse_native_reader(&mut Pieces(text.as_bytes()), &sink);
        if matches!(end, StreamEnd::Done) {
            assert_eq!(read, text.len() as u64);
        }
        let mut ids = sink.ids.into_inner().unwrap();
        ids.sort();
        (end, ids, sink.errors.into_inner().unwrap())
    }

    #[test]
    fn streaming_gives_what_the_whole_document_gives() {
        for nested in [false, true] {
            let text = big(4000, nested, None);
            let (end, ids, errs) = stream(&text);
            assert!(matches!(end, StreamEnd::Done), "{end:?}");
            assert!(errs.is_empty(), "{errs:?}");
            assert_eq!(ids, run(&text).1);
        }
        // Damage costs at most its chunk; later records keep their numbers.
        let (_, ids, errs) = stream(&big(4000, false, Some(3000)));
        assert_eq!(errs[0].record, Some(3000));
        assert!((0..3000).all(|i| ids.contains(&(i, i.to_string()))));
        assert!(ids.iter().all(|(i, id)| i.to_string() == *id));
        assert!(ids.len() >= 3999 - 300);
        // Cut short: the complete records, and the end says so.
        let text = big(4000, false, None);
        let (end, ids, _) = stream(&text[..text.len() / 2]);
        assert!(matches!(end, StreamEnd::Truncated { .. }), "{end:?}");
        assert!(ids.len() > 1900 && ids.iter().all(|(i, id)| i.to_string() == *id));
        // Not a native file: nothing handed out, the caller parses it whole.
        let lines = format!("{}\n{}\n", rec("a"), rec("b"));
        let (end, ids, _) = stream(&lines);
        assert!(matches!(end, StreamEnd::NotNative(_)));
        assert!(ids.is_empty());
    }

    #[test]
    fn a_broken_record_past_the_first_chunk_costs_only_itself() {
        for nested in [false, true] {
            let text = big(4000, nested, Some(3000));
            let (_, ids, errs) = run(&text);
            assert_eq!(errs[0].record, Some(3000), "{errs:?}");
            assert!(ids.iter().all(|(i, _)| *i != 3000));
            // Every record before the damaged one, and every record of the
            // chunks after it, numbered right; at worst the rest of the
            // damaged chunk (a quarter MB) is lost with it.
            assert!((0..3000).all(|i| ids.contains(&(i, i.to_string()))));
            let after: Vec<_> = ids.iter().filter(|(i, _)| *i > 3000).collect();
            assert!(after.len() >= 3999 - 3000 - 300, "{}", after.len());
            assert!(after.iter().all(|(i, id)| i.to_string() == *id));
        }
        // In the first chunk: the same, from the start.
        let text = big(4000, false, Some(10));
        let (_, ids, errs) = run(&text);
        assert!(ids.len() >= 3999 - 300, "{}", ids.len());
        assert!(ids.iter().all(|(i, id)| i.to_string() == *id));
        assert_eq!(errs[0].record, Some(10));
    }

    #[test]
    fn native_array_lines_single_digest() {
        let native = format!(r#"{{"Records":[{},{}]}}"#, rec("a"), rec("b"));
        let (l, ids, errs) = run(&native);
        assert_eq!(l, Layout::Native);
        assert_eq!(ids, [(0, "a".into()), (1, "b".into())]);
        assert!(errs.is_empty());

        let (l, ids, _) = run(&format!("[{}, {}]", rec("a"), rec("b")));
        assert_eq!((l, ids.len()), (Layout::Array, 2));

        let (l, ids, _) = run(&format!("{}\n{}\n\n{}\n", rec("a"), rec("b"), rec("c")));
        assert_eq!(l, Layout::JsonLines);
        assert_eq!(ids[2], (2, "c".into()));

        let (l, ids, _) = run(&format!("  {}  ", rec("a")));
        assert_eq!((l, ids.len()), (Layout::Single, 1));

        let (l, ids, _) = run(r#"{"awsAccountId":"1","digestStartTime":"2024-01-01T00:00:00Z"}"#);
        assert_eq!((l, ids.len()), (Layout::Digest, 0));

        assert_eq!(run(" \n ").0, Layout::Empty);
    }

    #[test]
    fn pretty_printed_native_file_is_not_json_lines() {
        let text = format!(
            "{{\n  \"Records\": [\n    {},\n    {}\n  ]\n}}\n",
            rec("a"),
            rec("b")
        );
        let (l, ids, errs) = run(&text);
        assert_eq!((l, ids.len(), errs.len()), (Layout::Native, 2, 0));
    }

    #[test]
    fn one_bad_record_costs_only_itself() {
        let bad = r#"{"eventVersion":"1.08","eventID":"bad","eventName":tru}"#;
        let text = format!(r#"{{"Records":[{},{bad},{}]}}"#, rec("a"), rec("c"));
        let (l, ids, errs) = run(&text);
        assert_eq!(l, Layout::Native);
        assert_eq!(ids, [(0, "a".into()), (2, "c".into())]);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].kind, ParseErrorKind::InvalidJson);
        assert_eq!(errs[0].record, Some(1));
        assert_eq!(
            errs[0].offset,
            text.find(bad).unwrap() + bad.find("tru").unwrap()
        );
    }

    #[test]
    fn non_object_and_wrong_type_records_are_reported() {
        let wrong = r#"{"eventVersion":"1.08","eventID":"w","userIdentity":"root"}"#;
        let text = format!(r#"{{"Records":[{},"text",{wrong}]}}"#, rec("a"));
        let (_, ids, errs) = run(&text);
        // The wrong-typed record is still evaluated; the string is not.
        assert_eq!(ids, [(0, "a".into()), (2, "w".into())]);
        let kinds: Vec<_> = errs.iter().map(|e| (e.kind, e.record)).collect();
        assert!(kinds.contains(&(ParseErrorKind::NotObject, Some(1))));
        assert!(kinds.contains(&(ParseErrorKind::WrongType, Some(2))));
    }

    #[test]
    fn a_backslash_as_the_last_byte_ends_the_scan() {
        // Found by tests/fuzz.rs: the escape skip stepped past the end and
        // the recovery path panicked on the slice.
        assert_eq!(scan_value(br#"{"x":"\"#, 0), Err(7));
        assert_eq!(scan_value(br#""\"#, 0), Err(2));
        assert_eq!(scan_value(br#""a\"b""#, 0), Ok(6));
    }

    #[test]
    fn truncated_document_keeps_complete_records() {
        let full = format!(r#"{{"Records":[{},{},{}]}}"#, rec("a"), rec("b"), rec("c"));
        let cut = &full[..full.find(r#""eventID":"c""#).unwrap()];
        let (_, ids, errs) = run(cut);
        assert_eq!(ids, [(0, "a".into()), (1, "b".into())]);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].kind, ParseErrorKind::Truncated);
    }

    #[test]
    fn broken_quote_resynchronises_at_next_record() {
        // A flipped quote makes the rest of record b one long string.
        let b = r#"{"eventVersion":"1.08","eventID":"b,"eventName":"X"}"#;
        let text = format!(
            r#"{{"Records":[{},{b},{},{}]}}"#,
            rec("a"),
            rec("c"),
            rec("d")
        );
        let (_, ids, errs) = run(&text);
        let got: Vec<_> = ids.iter().map(|(_, id)| id.as_str()).collect();
        assert!(got.contains(&"a") && got.contains(&"d"), "{got:?} {errs:?}");
        assert!(!errs.is_empty());
    }

    #[test]
    fn json_lines_errors_have_line_records() {
        let text = format!("{}\nnot json\n{}\n[1]\n", rec("a"), rec("c"));
        let (l, ids, errs) = run(&text);
        assert_eq!(l, Layout::JsonLines);
        assert_eq!(ids, [(0, "a".into()), (2, "c".into())]);
        let kinds: Vec<_> = errs.iter().map(|e| (e.kind, e.record)).collect();
        assert_eq!(
            kinds,
            [
                (ParseErrorKind::InvalidJson, Some(1)),
                (ParseErrorKind::NotObject, Some(3))
            ]
        );
    }

    /// Some cuts land on nested look-alikes of a record (`},{"eventVersion":"1…`
    /// inside an array), so chunks parsed in place fail after unescaping
    /// their strings where they lie; healing must read the original text:
    /// every id (each with an escape) comes out whole, numbered right.
    #[test]
    fn healing_after_an_in_place_parse_reads_the_original_text() {
        let text = crate::corpus::nested_look_alikes(4000);
        assert!(text.len() > CHUNKED_MIN_BYTES);
        let mut buf = text.as_bytes().to_vec();
        buf.resize(text.len() + simd_json::INPUT_PADDING, b' ');
        assert!(
            parse(&mut buf, text.len(), &Collect::default()).is_err(),
            "the look-alike cuts must make the in-place pass fail"
        );
        let (l, ids, errs) = run(&text);
        assert_eq!(l, Layout::Native);
        assert!(errs.is_empty(), "{errs:?}");
        let want: Vec<(usize, String)> = (0..4000).map(|i| (i, format!("{i}/e"))).collect();
        assert_eq!(ids, want);

        // A second read that differs (it cannot, from the same object; this
        // is the guard) is reported, not trusted and not a panic.
        let failed = parse(&mut buf, text.len(), &Collect::default()).unwrap_err();
        let other = br#"{"Records":[]}"#;
        let mut short = other.to_vec();
        short.resize(other.len() + simd_json::INPUT_PADDING, b' ');
        let sink = Collect::default();
        assert_eq!(recover(&short, other.len(), &sink, &failed), Layout::Native);
        let errs = sink.errors.into_inner().unwrap();
        assert!(errs[0].message.contains("differs"), "{errs:?}");
        assert!(sink.ids.into_inner().unwrap().is_empty());
    }

    #[test]
    fn large_files_are_chunked_in_order() {
        let n = CHUNK_RECORDS * 3 + 7;
        let body: Vec<String> = (0..n).map(|i| rec(&i.to_string())).collect();
        let text = format!(r#"{{"Records":[{}]}}"#, body.join(","));
        let (_, ids, errs) = run(&text);
        assert!(errs.is_empty());
        assert_eq!(ids.len(), n);
        assert!(ids.iter().all(|(i, id)| *id == i.to_string()));
    }
}
