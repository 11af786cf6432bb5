//! Structure without parsing: where a JSON value ends, found from its
//! strings (quotes and escapes) and its nesting, with the grammar checked
//! leniently.
//!
//! The recovery and streaming paths delimit records with this, never with a
//! text search: `{"eventVersion"` can open a nested object (anyone who makes
//! an API call chooses parts of `requestParameters`), so only the real
//! structure says which values are elements of the top-level `Records`
//! array.
//!
//! "Leniently" means the tree's shape is checked (objects hold `"key":
//! value` members separated by commas, arrays hold values, every bracket
//! closes with its own kind) but not the tokens inside it: a bad literal
//! (`tru`), a number out of range, a bad escape, a control character or
//! invalid UTF-8 in a string are left for simd-json to reject. So a value
//! this finds [`End::Complete`] has trustworthy boundaries even when
//! simd-json refuses it: the damage is inside the value, and what follows
//! it can still be read. A value whose shape is broken ([`End::Broken`])
//! gives no such guarantee: after it, the text cannot be delimited soundly.

/// Where a value that starts at a given offset ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The value ends here (exclusive), its shape intact.
    Complete(usize),
    /// The data ends inside the value.
    Incomplete,
    /// The shape is broken at this offset: a closer of the wrong kind, a
    /// missing separator, a raw line break inside a string, ...
    Broken(usize),
}

#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Bytes that end a bare token (a literal or number).
#[inline]
fn ends_bare(b: u8) -> bool {
    is_ws(b) || matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | b'"')
}

/// The end (exclusive) of the string whose opening quote is at `open`.
/// `Err(End::Incomplete)` when the data ends first. A raw control
/// character, a line break included, does not end the string: JSON
/// forbids it, but it breaks only its own record (which the record parse
/// then refuses), not the structure around it. A line cut short inside a
/// string, followed by whole JSON lines, still breaks within a few bytes:
/// the next line's first quote closes the string and a bare word follows.
#[inline]
pub(crate) fn string_end(data: &[u8], open: usize) -> Result<usize, End> {
    let mut i = open + 1;
    loop {
        match memchr::memchr2(b'"', b'\\', data.get(i..).unwrap_or_default()) {
            None => return Err(End::Incomplete),
            Some(p) if data[i + p] == b'"' => return Ok(i + p + 1),
            Some(p) => {
                // The escaped byte is skipped whatever it is (a quote or a
                // backslash); a backslash as the last byte ends the data
                // inside the string.
                i += p + 2;
                if i > data.len() {
                    return Err(End::Incomplete);
                }
            }
        }
    }
}

/// What the grammar expects next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    /// Just after `[`.
    ValueOrClose,
    /// Just after `{`.
    KeyOrClose,
    /// After a comma inside an object.
    Key,
    Colon,
    CommaOrClose,
}

/// Deepest nesting followed: past it the shape counts as broken. simd-json
/// refuses records past 1024 levels anyway; this bounds the stack (a byte
/// per level) whatever the input.
const MAX_DEPTH: usize = 1 << 20;

/// The end of the JSON value that starts at `pos` (after any whitespace),
/// by structure alone. `stack` is scratch space for the nesting (reused
/// between calls; nesting depth costs one byte per level). `last` says
/// `data` is all there is: otherwise a number or literal that reaches the
/// end of `data` may go on in what is still to be read (`12` then `34`),
/// and is [`End::Incomplete`].
pub(crate) fn value_end(data: &[u8], pos: usize, stack: &mut Vec<u8>, last: bool) -> End {
    stack.clear();
    let len = data.len();
    let mut i = pos;
    let mut expect = Expect::Value;
    loop {
        while i < len && is_ws(data[i]) {
            i += 1;
        }
        if i >= len {
            return End::Incomplete;
        }
        let b = data[i];
        match expect {
            Expect::Value | Expect::ValueOrClose => match b {
                b'{' | b'[' if stack.len() >= MAX_DEPTH => return End::Broken(i),
                b'{' => {
                    stack.push(b'{');
                    expect = Expect::KeyOrClose;
                    i += 1;
                    continue;
                }
                b'[' => {
                    stack.push(b'[');
                    expect = Expect::ValueOrClose;
                    i += 1;
                    continue;
                }
                b']' if expect == Expect::ValueOrClose => {
                    stack.pop();
                    i += 1;
                }
                b'"' => {
                    i = match string_end(data, i) {
                        Ok(e) => e,
                        Err(e) => return e,
                    };
                }
                b'}' | b']' | b':' | b',' => return End::Broken(i),
                _ => {
                    // A literal or number, checked by simd-json later.
                    while i < len && !ends_bare(data[i]) {
                        i += 1;
                    }
                    if i == len && !last {
                        return End::Incomplete;
                    }
                }
            },
            Expect::KeyOrClose | Expect::Key => match b {
                b'"' => {
                    i = match string_end(data, i) {
                        Ok(e) => e,
                        Err(e) => return e,
                    };
                    expect = Expect::Colon;
                    continue;
                }
                b'}' if expect == Expect::KeyOrClose => {
                    stack.pop();
                    i += 1;
                }
                _ => return End::Broken(i),
            },
            Expect::Colon => {
                if b != b':' {
                    return End::Broken(i);
                }
                i += 1;
                expect = Expect::Value;
                continue;
            }
            Expect::CommaOrClose => {
                let top = *stack.last().expect("inside a container");
                match (b, top) {
                    (b',', b'{') => {
                        expect = Expect::Key;
                        i += 1;
                        continue;
                    }
                    (b',', _) => {
                        expect = Expect::Value;
                        i += 1;
                        continue;
                    }
                    (b'}', b'{') | (b']', b'[') => {
                        stack.pop();
                        i += 1;
                    }
                    _ => return End::Broken(i),
                }
            }
        }
        // A value just ended.
        if stack.is_empty() {
            return End::Complete(i);
        }
        expect = Expect::CommaOrClose;
    }
}

/// The UTF-8 byte order mark some producers write at the start of a file
/// (PowerShell, Notepad): skipped like whitespace between documents.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Skip whitespace and byte order marks from `i`.
pub(crate) fn skip_ws_bom(data: &[u8], mut i: usize) -> usize {
    loop {
        while i < data.len() && is_ws(data[i]) {
            i += 1;
        }
        if data[i.min(data.len())..].starts_with(BOM) {
            i += BOM.len();
        } else {
            return i;
        }
    }
}

/// `{"Records"` then `:` then `[` (whitespace allowed) at `pos`: the index
/// just after the `[` (CloudTrail writes `Records` as the first and only
/// key). `Err(true)` when the data ends before it can be told.
pub(crate) fn records_open(data: &[u8], pos: usize) -> Result<usize, bool> {
    let mut i = pos;
    for lit in [&b"{"[..], b"\"Records\"", b":", b"["] {
        while i < data.len() && is_ws(data[i]) {
            i += 1;
        }
        let have = &data[i.min(data.len())..];
        if have.len() < lit.len() {
            return Err(lit.starts_with(have));
        }
        if !have.starts_with(lit) {
            return Err(false);
        }
        i += lit.len();
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(s: &str) -> End {
        value_end(s.as_bytes(), 0, &mut Vec::new(), true)
    }

    #[test]
    fn values_end_where_their_structure_says() {
        assert_eq!(
            end(r#"{"a":[1,{"b":"}"}],"c":"x\"]"} tail"#),
            End::Complete(30)
        );
        assert_eq!(end(r#"  [] ,"#), End::Complete(4));
        assert_eq!(end(r#""a\\" x"#), End::Complete(5));
        assert_eq!(end(r#"{}"#), End::Complete(2));
        assert_eq!(end(r#"tru,"#), End::Complete(3));
        // Bad tokens are left to simd-json: the shape is intact.
        assert_eq!(end(r#"{"a":tru,"b":1e999,"c":"\x"}"#), End::Complete(28));
    }

    #[test]
    fn broken_shapes_and_cut_data_are_told_apart() {
        assert_eq!(end(r#"{"a":1]"#), End::Broken(6));
        assert_eq!(end(r#"{"a" 1}"#), End::Broken(5));
        assert_eq!(end(r#"{"a":1 "b":2}"#), End::Broken(7));
        assert_eq!(end(r#"{1:2}"#), End::Broken(1));
        assert_eq!(end(r#"[1,]"#), End::Broken(3));
        assert_eq!(end(r#"{"a":,}"#), End::Broken(5));
        // A raw line break inside a string breaks the record, not the
        // structure: it is delimited, and its parse refuses it.
        assert_eq!(end("{\"a\":\"x\ny\"}"), End::Complete(11));
        assert_eq!(end(r#"{"a":[1,2"#), End::Incomplete);
        assert_eq!(end(r#"{"a":"x\"#), End::Incomplete);
        assert_eq!(end(r#"  "#), End::Incomplete);
        // A number at the end of what was read so far may go on.
        assert_eq!(value_end(b"12", 0, &mut Vec::new(), false), End::Incomplete);
        assert_eq!(
            value_end(b"[12", 0, &mut Vec::new(), false),
            End::Incomplete
        );
        assert_eq!(
            value_end(b"12 ", 0, &mut Vec::new(), false),
            End::Complete(2)
        );
    }

    #[test]
    fn record_look_alikes_inside_strings_and_values_are_not_structure() {
        let s = r#"{"p":"},{\"eventVersion\":\"1.0\"}","q":[{"eventVersion":"1.0"}]},{"eventVersion":"1.0"}"#;
        let first = s.find(r#"},{"eventVersion":"1.0"}"#).unwrap() + 1;
        assert_eq!(end(s), End::Complete(first));
    }

    #[test]
    fn the_records_opening_is_recognised_across_whitespace() {
        assert_eq!(records_open(br#"{ "Records" : [ {"#, 0), Ok(15));
        assert_eq!(records_open(br#"{"Records":[]}"#, 0), Ok(12));
        assert_eq!(records_open(br#"{"Recs":[]}"#, 0), Err(false));
        assert_eq!(records_open(br#"{"Reco"#, 0), Err(true));
        assert_eq!(skip_ws_bom(b"\xEF\xBB\xBF \n{", 0), 5);
    }
}
