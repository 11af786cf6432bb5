//! The forward structural walk: a document read value by value from a
//! point whose structure is known, with every cut between records taken
//! from the real JSON structure ([`super::scan`]).
//!
//! It serves three paths:
//! - **recovery**, after the fast path failed on a document held in memory
//!   (damage, several documents back to back, a record look-alike where a
//!   chunk was cut);
//! - **streaming**, for objects too large to hold decoded: the same walk
//!   over a window that is refilled from a reader and forgotten behind;
//! - **JSON lines** whose lines cannot all be trusted as records.
//!
//! Soundness, which is what makes a forged record impossible:
//! - the walk only starts where the structure is known: the start of a
//!   text, or an element start inside a `Records` array that a successful
//!   parse of everything before it established;
//! - a stretch of records cut heuristically (before `{"eventVersion"`, the
//!   fast way) is taken only when simd-json parses it as a whole: text
//!   that starts at an element boundary and parses as a sequence of
//!   complete values ends at an element boundary, so a cut inside a record
//!   can never be accepted;
//! - otherwise each element's end comes from [`scan::value_end`];
//! - after damage that breaks the structure, nothing is trusted until the
//!   next line that holds exactly one complete value, starting in its first
//!   column (a JSON-lines record, or the next pretty-printed document): the
//!   records in between cannot be delimited soundly, so they are skipped,
//!   counted and reported, never guessed.

use std::io::Read;

use memchr::memmem;

use super::scan::{self, End};
use super::{
    Layout, ParseError, ParseErrorKind, RECORD_START, Sink, State, count_starts, dispatch_at,
    end_before, is_record_start, json_error, parse_chunk, parse_element, with_parsed,
};

/// Text kept ahead of the current position while streaming: enough to
/// find the next heuristic cut.
fn window() -> usize {
    4 * super::chunk_bytes()
}

enum Buf<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

/// The text being walked: all of it (in memory), or a window over a reader
/// that is refilled ahead and forgotten behind. Positions are absolute
/// offsets in the document.
pub(super) struct Window<'a> {
    buf: Buf<'a>,
    /// Document offset of the first byte held.
    base: usize,
    reader: Option<&'a mut dyn Read>,
    eof: bool,
    /// Why reading stopped early (a damaged gzip stream).
    pub(super) read_err: Option<std::io::Error>,
    /// Bytes read from the reader.
    pub(super) total: u64,
    /// The byte just before `base`, once bytes have been forgotten (to
    /// tell whether a position starts a line).
    before: Option<u8>,
}

impl<'a> Window<'a> {
    /// All of `data`, whose first byte is at document offset `base`.
    pub(super) fn memory(data: &'a [u8], base: usize) -> Self {
        Window {
            buf: Buf::Borrowed(data),
            base,
            reader: None,
            eof: true,
            read_err: None,
            total: 0,
            before: None,
        }
    }

    /// What `reader` gives, read as the walk needs it.
    pub(super) fn reader(reader: &'a mut dyn Read) -> Self {
        Window {
            buf: Buf::Owned(Vec::with_capacity(2 * window())),
            base: 0,
            reader: Some(reader),
            eof: false,
            read_err: None,
            total: 0,
            before: None,
        }
    }

    fn held(&self) -> &[u8] {
        match &self.buf {
            Buf::Borrowed(d) => d,
            Buf::Owned(v) => v,
        }
    }

    /// One past the last byte held.
    fn end(&self) -> usize {
        self.base + self.held().len()
    }

    /// The bytes from `a` to what is held.
    fn from(&self, a: usize) -> &[u8] {
        &self.held()[a - self.base..]
    }

    fn bytes(&self, a: usize, b: usize) -> &[u8] {
        &self.held()[a - self.base..b - self.base]
    }

    /// Read one more piece; false at the end of the input.
    fn read_more(&mut self, at_least: usize) -> bool {
        let Some(r) = self.reader.as_mut() else {
            return false;
        };
        if self.eof {
            return false;
        }
        let Buf::Owned(v) = &mut self.buf else {
            return false;
        };
        let step = super::chunk_bytes().clamp(16, 64 << 10);
        let want = v.len() + at_least.max(step);
        let mut piece = vec![0u8; step];
        let start = v.len();
        while v.len() < want {
            match r.read(&mut piece) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    v.extend_from_slice(&piece[..n]);
                    self.total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.read_err = Some(e);
                    self.eof = true;
                    break;
                }
            }
        }
        v.len() > start
    }

    /// Hold bytes up to `abs` if the input has them; whether it does.
    fn ensure(&mut self, abs: usize) -> bool {
        while self.end() < abs {
            let need = abs - self.end();
            if !self.read_more(need) {
                return false;
            }
        }
        true
    }

    /// The byte at `abs`, reading on when needed; `None` at the end.
    fn byte(&mut self, abs: usize) -> Option<u8> {
        self.ensure(abs + 1);
        self.held().get(abs.checked_sub(self.base)?).copied()
    }

    /// Whether `abs` is the first column of a line (the text's start, or
    /// just after a LF or a lone CR, which some producers end lines with).
    /// A window over the middle of a text that has forgotten nothing
    /// cannot tell, and says no.
    fn line_start(&mut self, abs: usize) -> bool {
        if abs == 0 {
            return true;
        }
        let prev = if abs == self.base {
            self.before
        } else {
            self.byte(abs - 1)
        };
        matches!(prev, Some(b'\n' | b'\r'))
    }

    /// Read about as much again as is held (for a value longer than the
    /// window: geometric, so rescanning it costs linear time in all).
    fn grow(&mut self) -> bool {
        let more = self.held().len().max(window());
        self.read_more(more)
    }

    /// Forget what lies before `abs` (streaming only; cheap when called
    /// often, since it only moves memory once a window's worth is behind).
    fn release(&mut self, abs: usize) {
        if let Buf::Owned(v) = &mut self.buf {
            let drop = abs.saturating_sub(self.base).min(v.len());
            let window = window();
            if drop > window {
                self.before = Some(v[drop - 1]);
                v.drain(..drop);
                self.base += drop;
                if v.capacity() > 4 * window && v.len() < v.capacity() / 4 {
                    v.shrink_to(v.len().max(2 * window));
                }
            }
        }
    }
}

/// Structure broken or cut short at `at`, in the value (a record, a
/// document) that starts at `start`: what a walk reports, then skips.
#[derive(Debug)]
struct Damage {
    start: usize,
    at: usize,
    /// The data ended (truncated) rather than the shape breaking.
    ended: bool,
    message: String,
}

impl Damage {
    fn from_end(end: End, start: usize, what: &str) -> Damage {
        match end {
            End::Broken(at) => Damage {
                start,
                at,
                ended: false,
                message: format!("{what} is not well-formed JSON at byte {at}"),
            },
            _ => Damage {
                start,
                at: start,
                ended: true,
                message: format!("the document ends inside {what}"),
            },
        }
    }
}

/// The walk's state.
pub(super) struct Walk<'w, 's> {
    pub(super) win: Window<'w>,
    sink: &'s dyn Sink,
    /// Index of the next record in the document.
    pub(super) next_index: usize,
    /// Scratch for [`scan::value_end`].
    stack: Vec<u8>,
    /// Top-level values read, and their layouts merged.
    values: usize,
    layout: Option<Layout>,
    /// Reading resumed after damage: the closers ending the damaged
    /// document, met at the top level at the end of the text, are
    /// expected, not news.
    resynced: bool,
    /// Where reading last resumed after damage: never resumed at twice.
    resumed_at: Option<usize>,
}

impl<'w, 's> Walk<'w, 's> {
    pub(super) fn new(win: Window<'w>, sink: &'s dyn Sink, next_index: usize) -> Self {
        Walk {
            win,
            sink,
            next_index,
            stack: Vec::new(),
            values: 0,
            layout: None,
            resynced: false,
            resumed_at: None,
        }
    }

    /// The layout of what was walked: a lone document's own, else the most
    /// telling of several.
    pub(super) fn layout(&self) -> Layout {
        self.layout.unwrap_or(Layout::Empty)
    }

    /// One more top-level value read: several make a stream (JSON lines),
    /// unless one is a CloudTrail document or all are digests.
    fn seen(&mut self, l: Layout) {
        self.values += 1;
        self.layout = Some(match self.layout {
            None => l,
            Some(prev) => match (prev, l) {
                (Layout::Native, _) | (_, Layout::Native) => Layout::Native,
                (Layout::Digest, Layout::Digest) => Layout::Digest,
                _ => Layout::JsonLines,
            },
        });
    }

    fn byte(&mut self, abs: usize) -> Option<u8> {
        self.win.byte(abs)
    }

    fn skip_ws(&mut self, mut i: usize, bom: bool) -> usize {
        loop {
            match self.byte(i) {
                Some(b) if scan::is_ws(b) => i += 1,
                Some(0xEF) if bom => {
                    self.win.ensure(i + 3);
                    if self.win.from(i).starts_with(scan::BOM) {
                        i += 3;
                    } else {
                        return i;
                    }
                }
                _ => return i,
            }
        }
    }

    /// The end of the value at `pos`, reading on as far as it goes.
    fn value_end(&mut self, pos: usize) -> End {
        loop {
            let last = self.win.eof;
            match scan::value_end(self.win.from(pos), 0, &mut self.stack, last) {
                End::Complete(e) => return End::Complete(pos + e),
                End::Broken(at) => return End::Broken(pos + at),
                End::Incomplete if self.win.grow() => {}
                // The input just ended: once more, knowing it.
                End::Incomplete if !last => {}
                End::Incomplete => return End::Incomplete,
            }
        }
    }

    fn error(&self, kind: ParseErrorKind, record: Option<usize>, offset: usize, message: String) {
        self.sink.error(ParseError {
            kind,
            record,
            offset,
            message,
        });
    }

    /// Walk top-level values from `pos` to the end.
    pub(super) fn values(&mut self, st: &mut State, mut pos: usize) {
        loop {
            pos = self.skip_ws(pos, true);
            let Some(b) = self.byte(pos) else {
                return;
            };
            let step = match b {
                b']' | b'}' | b',' if self.resynced => {
                    // The closers that end a damaged document, read past
                    // after resuming inside it: expected, unless more
                    // follows them (then they were not its end).
                    let mut end = pos;
                    while let Some(b) = self.byte(end) {
                        if !(scan::is_ws(b) || matches!(b, b']' | b'}' | b',')) {
                            break;
                        }
                        end += 1;
                    }
                    if self.byte(end).is_none() {
                        return;
                    }
                    Err(Damage {
                        start: pos,
                        at: pos,
                        ended: false,
                        message: "unexpected closing brackets after a damaged document".into(),
                    })
                }
                b'{' => {
                    self.win.ensure(pos + 64);
                    match scan::records_open(self.win.from(pos), 0) {
                        Ok(open) => {
                            self.seen(Layout::Native);
                            self.wrapper_from(st, pos + open)
                        }
                        Err(_) => self.single(st, pos),
                    }
                }
                b'[' => {
                    self.seen(Layout::Array);
                    self.elements(st, pos + 1)
                }
                // Any other value: a scalar where a document should be
                // (reported as not an object, as a whole parse does), or a
                // bad token (an error of its own); only a broken shape is
                // damage.
                _ => self.single(st, pos),
            };
            match step {
                Ok(end) => {
                    self.win.release(end);
                    pos = end;
                }
                Err(d) => match self.damaged(d) {
                    Some(p) => pos = p,
                    None => return,
                },
            }
        }
    }

    /// Inside a document's `Records` array at element start `pos` (known
    /// from a successful parse of all before it): the rest of the array,
    /// of the document, and the values after it.
    pub(super) fn resume_records(&mut self, st: &mut State, pos: usize) {
        self.seen(Layout::Native);
        match self.wrapper_from(st, pos) {
            Ok(end) => self.values(st, end),
            Err(d) => {
                if let Some(p) = self.damaged(d) {
                    self.values(st, p);
                }
            }
        }
    }

    /// Report damage, then find where reading can resume soundly.
    fn damaged(&mut self, d: Damage) -> Option<usize> {
        let index = self.next_index;
        // A value cut short may be a cut line followed by whole ones (JSON
        // lines); in any other text no later line holds a whole value
        // from its first column, and this finds nothing.
        let resume = self.resync(d.start);
        let skipped_to = resume.unwrap_or_else(|| {
            // Drain the input so the bytes read say how far it went.
            while self.win.grow() {
                let end = self.win.end();
                self.win.release(end);
            }
            self.win.end()
        });
        let starts = match resume {
            Some(p) => count_starts(self.win.bytes(d.start.max(self.win.base), p)),
            None => 0,
        };
        let tail = match resume {
            Some(p) if p <= d.start => {
                format!("; reading resumes at byte {p}, a line that holds a whole value")
            }
            Some(p) => format!(
                "; {} bytes from its start cannot be delimited soundly and are skipped \
                 (up to {starts} more records); reading resumes at byte {p}",
                p - d.start
            ),
            None if d.ended => String::new(),
            None => format!(
                "; the rest of the document ({} bytes) cannot be delimited soundly and is skipped",
                skipped_to.saturating_sub(d.at)
            ),
        };
        self.error(
            if d.ended {
                ParseErrorKind::Truncated
            } else {
                ParseErrorKind::InvalidJson
            },
            Some(index),
            d.at,
            format!("{}{tail}", d.message),
        );
        self.next_index += 1 + starts;
        self.resynced |= resume.is_some();
        resume
    }

    /// The start of the first line at or after `at` that holds exactly
    /// one complete object or array, from its first column to its end.
    /// The line starting at `at` itself counts when `at` is its first
    /// column (a document cut short at a line's end, followed by whole
    /// lines), except where reading last resumed: that line just failed.
    /// Lines end at LF or at a lone CR.
    fn resync(&mut self, at: usize) -> Option<usize> {
        let mut line = if self.win.line_start(at) && self.resumed_at != Some(at) {
            at
        } else {
            self.next_line(at)?
        };
        loop {
            if matches!(self.byte(line), Some(b'{' | b'[')) {
                // The line, alone.
                let line_end = loop {
                    match memchr::memchr2(b'\n', b'\r', self.win.from(line)) {
                        Some(p) => break line + p,
                        None if self.win.grow() => {}
                        None => break self.win.end(),
                    }
                };
                let text = self.win.bytes(line, line_end);
                if let End::Complete(e) = scan::value_end(text, 0, &mut self.stack, true)
                    && text[e..].iter().all(|b| scan::is_ws(*b))
                {
                    self.resumed_at = Some(line);
                    return Some(line);
                }
            }
            line = self.next_line(line)?;
        }
    }

    /// The start of the line after the one holding `from`, forgetting what
    /// is passed over; none when the text ends first.
    fn next_line(&mut self, mut from: usize) -> Option<usize> {
        loop {
            match memchr::memchr2(b'\n', b'\r', self.win.from(from)) {
                Some(p) => return Some(from + p + 1),
                None => {
                    let end = self.win.end();
                    self.win.release(end);
                    if !self.win.grow() {
                        return None;
                    }
                    from = end;
                }
            }
        }
    }

    /// A document that is not a `Records` wrapper, read whole: a record, a
    /// digest, an array, or something that is no record at all.
    fn single(&mut self, st: &mut State, pos: usize) -> Result<usize, Damage> {
        match self.value_end(pos) {
            End::Complete(e) => {
                let index = self.next_index;
                let sink = self.sink;
                let layout = with_parsed(st, self.win.bytes(pos, e), |root| {
                    dispatch_at(root, index, pos, sink)
                });
                match layout {
                    Ok((layout, n)) => {
                        self.seen(layout);
                        self.next_index += n;
                    }
                    // Not JSON at all where a document should start
                    // (garbage, a cut line): like a broken shape, what
                    // follows is found by resynchronising.
                    Err(_) if !matches!(self.win.from(pos)[0], b'{' | b'[' | b'"') => {
                        let shown: Vec<u8> = self.win.bytes(pos, e.min(pos + 16)).to_vec();
                        return Err(Damage {
                            start: pos,
                            at: pos,
                            ended: false,
                            message: format!(
                                "unexpected {:?} where a document should start",
                                String::from_utf8_lossy(&shown)
                            ),
                        });
                    }
                    Err(e_) => {
                        self.seen(Layout::Single);
                        self.next_index += 1;
                        self.sink.error(json_error(index, pos, &e_));
                    }
                }
                Ok(e)
            }
            other => Err(Damage::from_end(other, pos, "this document")),
        }
    }

    /// From `pos`, inside a `Records` array: its elements, then the rest of
    /// the wrapper object (more members: another `Records` array is read
    /// too); returns the end of the wrapper.
    fn wrapper_from(&mut self, st: &mut State, pos: usize) -> Result<usize, Damage> {
        let mut i = self.elements(st, pos)?;
        let sink = self.sink;
        loop {
            i = self.skip_ws(i, false);
            match self.byte(i) {
                Some(b'}') => return Ok(i + 1),
                Some(b',') => {}
                None => {
                    return Err(Damage {
                        start: i,
                        at: i,
                        ended: true,
                        message: "the document ends after its records array".into(),
                    });
                }
                Some(_) => {
                    return Err(Damage {
                        start: i,
                        at: i,
                        ended: false,
                        message: format!("unexpected byte after the records array at byte {i}"),
                    });
                }
            }
            // Another member: `"key": value`.
            let k = self.skip_ws(i + 1, false);
            if self.byte(k) != Some(b'"') {
                return Err(Damage {
                    start: k,
                    at: k,
                    ended: self.byte(k).is_none(),
                    message: format!("expected a key at byte {k}"),
                });
            }
            let key_end = match self.value_end(k) {
                End::Complete(e) => e,
                other => return Err(Damage::from_end(other, k, "a key")),
            };
            // The key as JSON means it: `"Rec\u006frds"` is `Records` too.
            let key = self.win.bytes(k, key_end);
            let is_records = key == b"\"Records\""
                || (key.contains(&b'\\')
                    && serde_json::from_slice::<String>(key).is_ok_and(|k| k == "Records"));
            if is_records {
                sink.duplicate_keys(1);
            }
            let c = self.skip_ws(key_end, false);
            if self.byte(c) != Some(b':') {
                return Err(Damage {
                    start: c,
                    at: c,
                    ended: self.byte(c).is_none(),
                    message: format!("expected ':' at byte {c}"),
                });
            }
            let v = self.skip_ws(c + 1, false);
            if is_records && self.byte(v) == Some(b'[') {
                i = self.elements(st, v + 1)?;
            } else {
                i = match self.value_end(v) {
                    End::Complete(e) => e,
                    other => return Err(Damage::from_end(other, v, "a member")),
                };
            }
        }
    }

    /// The elements of an array from `pos` (just after its `[`), each one a
    /// record; returns the index after the closing `]`.
    fn elements(&mut self, st: &mut State, mut p: usize) -> Result<usize, Damage> {
        // Heuristic cuts are tried only from here on: after a failed one,
        // the structure is scanned past it first.
        let mut heuristic_from = p;
        let mut first = true;
        loop {
            if p >= heuristic_from
                && !first
                && let Some(cut) = self.next_cut(p)
            {
                let e = end_before(self.win.held(), cut - self.win.base) + self.win.base;
                let held = self.win.held();
                let base = self.win.base;
                if let Some(n) =
                    parse_chunk(st, held, p - base, e - base, self.next_index, p, self.sink)
                {
                    self.next_index += n;
                    p = cut;
                    self.win.release(p);
                    continue;
                }
                heuristic_from = cut;
            }
            // Structural: elements until a chunk's worth past both `p` and
            // the failed cut, or the array's end.
            let mut group: Vec<(usize, usize)> = Vec::new();
            let mut q = p;
            let closed = loop {
                q = self.skip_ws(q, false);
                match self.byte(q) {
                    None => {
                        self.flush(st, &group);
                        return Err(Damage {
                            start: q,
                            at: q,
                            ended: true,
                            message: "the document ends inside its records array".into(),
                        });
                    }
                    Some(b']') if first && group.is_empty() => break true,
                    Some(_) => {}
                }
                match self.value_end(q) {
                    End::Complete(e) => {
                        group.push((q, e));
                        first = false;
                        q = self.skip_ws(e, false);
                        match self.byte(q) {
                            Some(b',') => q += 1,
                            Some(b']') => break true,
                            None => {
                                self.flush(st, &group);
                                return Err(Damage {
                                    start: q,
                                    at: q,
                                    ended: true,
                                    message: "the document ends inside its records array".into(),
                                });
                            }
                            Some(_) => {
                                self.flush(st, &group);
                                return Err(Damage {
                                    start: q,
                                    at: q,
                                    ended: false,
                                    message: format!(
                                        "expected ',' or ']' after a record, at byte {q}"
                                    ),
                                });
                            }
                        }
                        if q >= heuristic_from && q - p >= super::chunk_bytes() {
                            break false;
                        }
                    }
                    other => {
                        self.flush(st, &group);
                        return Err(Damage::from_end(other, q, "this record"));
                    }
                }
            };
            self.flush(st, &group);
            if closed {
                return Ok(q + 1);
            }
            p = q;
            self.win.release(p);
        }
    }

    /// A heuristic cut at least a chunk past `p`: a record start after a
    /// comma, with more text after it (the last stretch of an array is
    /// always scanned, since the array's end is not known from the text's).
    fn next_cut(&mut self, p: usize) -> Option<usize> {
        self.win.ensure(p + window());
        let finder = memmem::Finder::new(RECORD_START);
        let mut from = p + super::chunk_bytes();
        loop {
            let held = self.win.from(p);
            let rel = from - p;
            if rel >= held.len() {
                return None;
            }
            let c = p + rel + finder.find(&held[rel..])?;
            if is_record_start(self.win.held(), p - self.win.base, c - self.win.base, true) {
                return Some(c);
            }
            from = c + 1;
        }
    }

    /// Parse delimited elements as records: together when they parse, else
    /// one by one (a bad one costs only itself: its bounds are sound).
    fn flush(&mut self, st: &mut State, group: &[(usize, usize)]) {
        let (Some(&(a, _)), Some(&(_, b))) = (group.first(), group.last()) else {
            return;
        };
        let held = self.win.held();
        let base = self.win.base;
        if group.len() > 1
            && let Some(n) =
                parse_chunk(st, held, a - base, b - base, self.next_index, a, self.sink)
        {
            self.next_index += n;
            return;
        }
        for &(x, y) in group {
            parse_element(st, self.win.bytes(x, y), self.next_index, x, self.sink);
            self.next_index += 1;
        }
    }
}
