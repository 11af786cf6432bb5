//! Large native documents parsed a chunk of records at a time, in place
//! and in parallel: cuts found from the real JSON structure, each chunk's
//! tape kept in the core's cache.

use memchr::memmem;
use simd_json::Tape;

use super::{
    Failed, Kind, Layout, NeedsRecovery, Record, Sink, State, Value, check_types, fill, not_object,
    scan, with_state,
};

/// How a CloudTrail record opens; heuristic chunk cuts look for it.
pub(super) const RECORD_START: &[u8] = b"{\"eventVersion\"";

/// The index of the `]` closing the records array, when `data` ends with
/// `]}` (whitespace allowed) after `from`.
fn native_records_close(data: &[u8], from: usize) -> Option<usize> {
    let mut end = data.len();
    for close in [b'}', b']'] {
        while end > from && scan::is_ws(data[end - 1]) {
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
pub(super) const CHUNKED_MIN_BYTES: usize = 2 << 20;
/// Text per chunk: its tape and records stay in the core's cache while
/// the rules read them.
const CHUNK_BYTES: usize = 256 << 10;

/// The chunking in force: [`CHUNKED_MIN_BYTES`] and [`CHUNK_BYTES`],
/// unless a test or fuzz target shrank them ([`set_chunking`]) so small
/// inputs reach every cut and window of the chunked and streaming paths.
static CHUNKING: [std::sync::atomic::AtomicUsize; 2] = [
    std::sync::atomic::AtomicUsize::new(CHUNKED_MIN_BYTES),
    std::sync::atomic::AtomicUsize::new(CHUNK_BYTES),
];

pub(super) fn chunked_min_bytes() -> usize {
    CHUNKING[0].load(std::sync::atomic::Ordering::Relaxed)
}

pub(super) fn chunk_bytes() -> usize {
    CHUNKING[1].load(std::sync::atomic::Ordering::Relaxed)
}

/// Chunk documents from `min_bytes` in chunks of `chunk_bytes` (process
/// wide; for tests and fuzz targets: the defaults are 2 MiB and 256 KiB).
#[doc(hidden)]
pub fn set_chunking(min_bytes: usize, chunk_bytes: usize) {
    CHUNKING[0].store(min_bytes.max(1), std::sync::atomic::Ordering::Relaxed);
    CHUNKING[1].store(chunk_bytes.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// A native file `{"Records":[{"eventVersion"...},...]}` parsed a chunk of
/// records at a time instead of as one tape: the records are indexed and
/// matched while their text and tape are still in cache, and the tape
/// stays small whatever the file's size.
///
/// Chunks are cut before `{"eventVersion"` following `},`. That text cannot
/// occur inside a JSON string (the quote would be escaped), but it can
/// open a nested object. The chunks are parsed in order from the array's
/// first element, and a chunk that starts at an element boundary and
/// parses as a whole ends at one: a cut at a nested look-alike leaves its
/// chunk unbalanced, so it fails, and nothing of it is handed out. `None`
/// (nothing handed to the sink) when the document does not have this
/// shape; the caller then parses it whole.
///
/// Each chunk is parsed where it lies (no copy: copying cost ~3% of the
/// pipeline). The first chunk that fails ends this pass with
/// [`Failed::Chunk`]: simd-json may have unescaped some of its strings in
/// place, so [`recover`] goes on from that chunk in a pristine copy.
pub(super) fn parse_native_chunked(
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
                // The rest goes to the structural walk, which reads the
                // original text (the failed parse may have unescaped some
                // of it in place).
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

/// Where a native document's chunks start: record starts after `},`,
/// about [`CHUNK_BYTES`] apart, then the end of the records array. `None`
/// when the document does not have the native shape.
pub(super) fn chunk_cuts(data: &[u8]) -> Option<Vec<usize>> {
    let i = scan::records_open(data, scan::skip_ws_bom(data, 0)).ok()?;
    let body_end = native_records_close(data, i)?;
    if !data[i..body_end].starts_with(RECORD_START) {
        return None;
    }
    let mut cuts = vec![i];
    let finder = memmem::Finder::new(RECORD_START);
    let chunk = chunk_bytes();
    let mut from = i + chunk;
    while from < body_end {
        let Some(p) = finder.find(&data[from..body_end]).map(|p| from + p) else {
            break;
        };
        if is_record_start(data, i, p, true) {
            cuts.push(p);
            from = p + chunk;
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
    if k + 2 < cuts.len() {
        end_before(data, cuts[k + 1])
    } else {
        cuts[k + 1]
    }
}

/// The position of the comma before the record start at `cut`.
pub(super) fn end_before(data: &[u8], cut: usize) -> usize {
    let mut e = cut;
    while scan::is_ws(data[e - 1]) {
        e -= 1;
    }
    e - 1
}

/// Is `data[p..]` (a `{"eventVersion"` found by search) worth a cut? A
/// record follows a record (`},`) and opens with a version number. This is
/// only a guess, which a parse confirms. `floor` bounds the look back.
pub(super) fn is_record_start(data: &[u8], floor: usize, p: usize, after_record: bool) -> bool {
    let back = |mut q: usize| {
        while q > floor && scan::is_ws(data[q - 1]) {
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

/// Record starts in `text` (to estimate the records a skipped stretch of
/// damaged text held; never used to delimit one).
pub(super) fn count_starts(text: &[u8]) -> usize {
    memmem::find_iter(text, RECORD_START)
        .filter(|&p| p > 0 && is_record_start(text, 0, p, false))
        .count()
}

/// Parse `data[a..b]` (whole records separated by commas) as one array and
/// hand its records to the sink, the first numbered `first` (`offset`:
/// where `a` is in the document, for messages). `None`, with nothing
/// handed over, if it does not parse. `data` is left as it was.
pub(super) fn parse_chunk(
    st: &mut State,
    data: &[u8],
    a: usize,
    b: usize,
    first: usize,
    offset: usize,
    sink: &dyn Sink,
) -> Option<usize> {
    let mut scratch = std::mem::take(&mut st.scratch);
    scratch.clear();
    scratch.push(b'[');
    scratch.extend_from_slice(&data[a..b]);
    scratch.push(b']');
    let n = scratch.len();
    scratch.resize(n + simd_json::INPUT_PADDING, b' ');
    let out = parse_records_array(st, &mut scratch, n, first, offset, sink);
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
    let out = match fill(&mut st.buffers, &mut st.big, text, n, &mut tape) {
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
