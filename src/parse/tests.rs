use super::chunked::CHUNKED_MIN_BYTES;
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
    let (end, read) = parse_reader(&mut Pieces(text.as_bytes()), &sink);
    assert_eq!(read, text.len() as u64);
    let mut ids = sink.ids.into_inner().unwrap();
    ids.sort();
    let mut errors = sink.errors.into_inner().unwrap();
    errors.sort_by_key(|e| e.offset);
    (end, ids, errors)
}

#[test]
fn streaming_gives_what_the_whole_document_gives() {
    for nested in [false, true] {
        let text = big(4000, nested, None);
        let (end, ids, errs) = stream(&text);
        assert!(matches!(end, StreamEnd::Done(Layout::Native)), "{end:?}");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(ids, run(&text).1);
    }
    // Cut short: the complete records, and an error that says so.
    let text = big(4000, false, None);
    let (_, ids, errs) = stream(&text[..text.len() / 2]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].kind, ParseErrorKind::Truncated);
    assert!(ids.len() > 1900 && ids.iter().all(|(i, id)| i.to_string() == *id));
    // Any layout streams: JSON lines, several documents.
    let lines = format!("{}\n{}\n", rec("a"), rec("b"));
    let (end, ids, _) = stream(&lines);
    assert!(matches!(end, StreamEnd::Done(Layout::JsonLines)), "{end:?}");
    assert_eq!(ids, [(0, "a".into()), (1, "b".into())]);
}

/// A record whose structure is broken (cut short mid-document) cannot
/// be delimited, and nothing after it can be soundly: the records
/// before it are all kept and numbered right, the error says what was
/// skipped, and nothing after it is guessed into a record. (The
/// document's last record sits alone on its line, and the walk resumes
/// at such a line: it is a real record, numbered where it is.)
#[test]
fn broken_structure_keeps_what_came_before_and_guesses_nothing() {
    for nested in [false, true] {
        for bad in [3000, 10] {
            let text = big(4000, nested, Some(bad));
            let (_, ids, errs) = run(&text);
            let (_, s_ids, s_errs) = stream(&text);
            for (ids, errs) in [(ids, errs), (s_ids, s_errs)] {
                let mut want: Vec<(usize, String)> = (0..bad).map(|i| (i, i.to_string())).collect();
                want.push((3999, "3999".into()));
                assert!(
                    ids == want,
                    "nested {nested} bad {bad}: {} ids, {:?}..",
                    ids.len(),
                    ids.iter().rev().take(3).collect::<Vec<_>>()
                );
                assert_eq!(errs.len(), 1, "{errs:?}");
                assert_eq!(errs[0].record, Some(bad));
                assert!(errs[0].message.contains("skipped"), "{errs:?}");
            }
        }
    }
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
    let end = |s: &[u8]| scan::value_end(s, 0, &mut Vec::new(), true);
    assert_eq!(end(br#"{"x":"\"#), scan::End::Incomplete);
    assert_eq!(end(br#""\"#), scan::End::Incomplete);
    assert_eq!(end(br#""a\"b""#), scan::End::Complete(6));
    assert_eq!(run(r#"{"Records":[{"x":"\"#).1, []);
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
fn broken_quote_keeps_what_came_before() {
    // A flipped quote makes the rest of record b one long string: its
    // end cannot be found, so neither can any record after it.
    let b = r#"{"eventVersion":"1.08","eventID":"b,"eventName":"X"}"#;
    let text = format!(
        r#"{{"Records":[{},{b},{},{}]}}"#,
        rec("a"),
        rec("c"),
        rec("d")
    );
    let (_, ids, errs) = run(&text);
    assert_eq!(ids, [(0, "a".into())]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].record, Some(1));
    // On their own lines (JSON lines), the damage costs only its line.
    let text = format!("{}\n{b}\n{}\n{}\n", rec("a"), rec("c"), rec("d"));
    let (l, ids, errs) = run(&text);
    assert_eq!(l, Layout::JsonLines);
    assert_eq!(ids, [(0, "a".into()), (2, "c".into()), (3, "d".into())]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].record, Some(1));
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
/// their strings where they lie; recovery must read the original text:
/// every id (each with an escape) comes out whole, numbered right.
#[test]
#[cfg(feature = "corpus")] // its input comes from the corpus generator
fn recovery_after_an_in_place_parse_reads_the_original_text() {
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
    assert_eq!(stream(&text).1, want);

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

/// A record whose nested array holds thousands of record look-alikes,
/// more than a chunk and far more than any number of joined chunks:
/// whatever cut lands among them, no look-alike ever becomes a record
/// (each says "forged" in its id), and every real record is read, on
/// every path.
#[test]
fn nested_look_alikes_never_become_records_at_any_size() {
    let fake = |i: usize| {
        format!(
            r#"{{"eventVersion":"1.08","eventID":"forged-{i}","eventName":"ConsoleLogin","userIdentity":{{"type":"Root"}},"p":"{}"}}"#,
            "y".repeat(150)
        )
    };
    // (look-alikes per carrier, records, every how many records one
    // carries them): small; one 4 MB array of them among records (the
    // chunked path, cut many times inside it); many small ones.
    for (looks, reals, every) in [(3usize, 5usize, 1usize), (20_000, 30, 15), (3, 20_000, 7)] {
        let mut records = Vec::new();
        for i in 0..reals {
            if i % every == every / 2 {
                let inner: Vec<String> = (0..looks).map(fake).collect();
                records.push(format!(
                    r#"{{"eventVersion":"1.08","eventID":"{i}","requestParameters":{{"items":[{}]}}}}"#,
                    inner.join(",")
                ));
            } else {
                records.push(rec(&i.to_string()));
            }
        }
        let text = format!("{{\"Records\":[{}]}}", records.join(","));
        let want: Vec<(usize, String)> = (0..reals).map(|i| (i, i.to_string())).collect();
        let (_, ids, errs) = run(&text);
        assert!(errs.is_empty(), "{errs:?}");
        assert!(
            ids == want,
            "{looks} look-alikes, {reals} records: {} ids",
            ids.len()
        );
        let (_, ids, errs) = stream(&text);
        assert!(errs.is_empty(), "{errs:?}");
        assert!(ids == want, "streamed: {looks}, {reals}: {} ids", ids.len());
    }
}

/// `cat a.json b.json`, `cat a.json.gz b.json.gz` (decoded: the same),
/// with or without a line break or byte order mark between: every
/// document's records, numbered in order, on every path.
#[test]
fn several_documents_back_to_back_are_all_read() {
    let doc = |from: usize, n: usize| {
        let r: Vec<String> = (from..from + n).map(|i| rec(&i.to_string())).collect();
        format!(r#"{{"Records":[{}]}}"#, r.join(","))
    };
    for n in [2, 20_000] {
        for sep in ["", "\n", " \r\n", "\u{feff}", "\n\u{feff}"] {
            let text = format!("{}{sep}{}{sep}{}", doc(0, n), doc(n, n), doc(2 * n, 1));
            let want: Vec<(usize, String)> = (0..2 * n + 1).map(|i| (i, i.to_string())).collect();
            let (l, ids, errs) = run(&text);
            assert!(errs.is_empty(), "{errs:?}");
            assert_eq!(l, Layout::Native);
            assert_eq!(ids, want, "n {n} sep {sep:?}");
            let (_, ids, errs) = stream(&text);
            assert!(errs.is_empty(), "{errs:?}");
            assert_eq!(ids, want, "streamed: n {n} sep {sep:?}");
        }
    }
    // Singles and arrays mixed in.
    let text = format!("{} [{}] {}", rec("a"), rec("b"), doc(7, 1));
    let (_, ids, errs) = run(&text);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(ids, [(0, "a".into()), (1, "b".into()), (2, "7".into())]);
}

/// JSON lines whose first line is garbage, cut short, or preceded by a
/// byte order mark: only that line is lost, wherever it is.
#[test]
fn a_bad_line_costs_only_itself_wherever_it_is() {
    let good: Vec<String> = (0..6).map(|i| rec(&i.to_string())).collect();
    let cut = &rec("cut")[..30];
    for bad in ["garbage", cut, "{\"a\":", "]", "\u{0}\u{1}"] {
        for at in [0, 3, 6] {
            let mut lines = good.clone();
            lines.insert(at, bad.to_string());
            let text = lines.join("\n");
            let (_, ids, errs) = run(&text);
            let got: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
            assert_eq!(
                got,
                ["0", "1", "2", "3", "4", "5"],
                "{bad:?} at {at}: {errs:?}"
            );
            assert_eq!(errs.len(), 1, "{bad:?} at {at}: {errs:?}");
            assert_eq!(errs[0].record, Some(at), "{bad:?} at {at}");
            let (_, ids, _) = stream(&text);
            let got: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
            assert_eq!(
                got,
                ["0", "1", "2", "3", "4", "5"],
                "streamed {bad:?} at {at}"
            );
        }
    }
    let bom = format!("\u{feff}{}\n{}\n", good[0], good[1]);
    assert_eq!(run(&bom).1.len(), 2);
    let bom = format!("\u{feff}{{\"Records\":[{}]}}", good[0]);
    assert_eq!(run(&bom), (Layout::Native, vec![(0, "0".into())], vec![]));
}

/// A document cut short right at a line's end, followed by whole
/// lines: the line right after the damage is read (it was skipped,
/// with a root login on it), whatever ends the lines.
#[test]
fn the_line_right_after_damage_is_read() {
    let next: Vec<String> = (1..=3).map(|i| rec(&format!("N{i}"))).collect();
    let a = rec("A");
    let firsts = [
        format!("{{\"Records\":[{a}"),
        format!("{{\"Records\":[{a},"),
        "{\"Records\":[".to_string(),
        format!("[{a}"),
        "[[]".to_string(),
        "{\"broken\": [1,2".to_string(),
    ];
    for first in &firsts {
        for eol in ["\n", "\r\n", "\r"] {
            let text = format!("{first}{eol}{}{eol}", next.join(eol));
            for (how, ids, errs) in [
                {
                    let (_, ids, errs) = run(&text);
                    ("whole", ids, errs)
                },
                {
                    let (_, ids, errs) = stream(&text);
                    ("streamed", ids, errs)
                },
            ] {
                let got: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
                for want in ["N1", "N2", "N3"] {
                    assert!(
                        got.contains(&want),
                        "{how} {first:?} {eol:?}: {want} lost; got {got:?}, {errs:?}"
                    );
                }
                assert!(
                    !errs.is_empty(),
                    "{how} {first:?} {eol:?}: damage not reported"
                );
            }
        }
    }
}

/// A raw control character inside a string, a line break included,
/// costs its record only, in a one-line document too.
#[test]
fn a_raw_line_break_in_a_string_costs_only_its_record() {
    for ctrl in ["\u{1}", "\n", "\r", "\t"] {
        let mut recs: Vec<String> = (0..6).map(|i| rec(&i.to_string())).collect();
        recs[1] = recs[1].replace("\"X\"", &format!("\"bad{ctrl}name\""));
        let text = format!("{{\"Records\":[{}]}}", recs.join(","));
        let (_, ids, errs) = run(&text);
        let got: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(got, ["0", "2", "3", "4", "5"], "{ctrl:?}: {errs:?}");
        assert_eq!(errs.len(), 1, "{ctrl:?}: {errs:?}");
        assert_eq!(errs[0].record, Some(1), "{ctrl:?}");
    }
}

/// JSON's key order means nothing: an object with a `Records` array
/// anywhere is a CloudTrail document; a repeated `Records` is read in
/// full (no record hidden by a later key) and counted; a digest key
/// does not make a document with records a digest.
#[test]
fn a_records_array_under_any_key_position_is_a_document() {
    #[derive(Default)]
    struct Dups(Collect, std::sync::atomic::AtomicU64);
    impl Sink for Dups {
        fn records(&self, first: usize, records: &[Record<'_, '_>]) {
            self.0.records(first, records)
        }
        fn error(&self, err: ParseError) {
            self.0.error(err)
        }
        fn duplicate_keys(&self, n: u64) {
            self.1.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let (a, b) = (rec("A"), rec("B"));
    let digest = r#""digestStartTime":"2026-11-20T10:00:00Z""#;
    for (text, want, dups) in [
        (format!(r#"{{"Meta":"x","Records":[{a}]}}"#), vec!["A"], 0),
        (format!(r#"{{"Records":[{a}],{digest}}}"#), vec!["A"], 0),
        (format!(r#"{{{digest},"Records":[{a}]}}"#), vec!["A"], 0),
        (
            format!(r#"{{"Records":[{a}],"Records":[{b}]}}"#),
            vec!["A", "B"],
            1,
        ),
        (format!(r#"{{"Records":[{a}],"Records":[]}}"#), vec!["A"], 1),
        (
            format!(r#"{{"Records":[{a}],"Rec\u006frds":[{b}]}}"#),
            vec!["A", "B"],
            1,
        ),
        (format!(r#"{{"Rec\u006frds":[{a}]}}"#), vec!["A"], 0),
        (
            format!(r#"{{"x":1,"Records":[{a}],"Records":[{b}]}}"#),
            vec!["A", "B"],
            1,
        ),
    ] {
        for streamed in [false, true] {
            let sink = Dups::default();
            let layout = if streamed {
                match parse_reader(&mut text.as_bytes(), &sink).0 {
                    StreamEnd::Done(l) => l,
                    StreamEnd::Read(e) => panic!("{e}"),
                }
            } else {
                let mut buf = text.as_bytes().to_vec();
                let len = buf.len();
                buf.resize(len + simd_json::INPUT_PADDING, b' ');
                let pristine = buf.clone();
                match parse(&mut buf, len, &sink) {
                    Ok(l) => l,
                    Err(failed) => recover(&pristine, len, &sink, &failed),
                }
            };
            let mut ids: Vec<String> = sink
                .0
                .ids
                .lock()
                .unwrap()
                .iter()
                .map(|(_, id)| id.clone())
                .collect();
            ids.sort();
            assert_eq!(ids, want, "{text} (streamed: {streamed})");
            assert_eq!(layout, Layout::Native, "{text}");
            assert!(sink.0.errors.lock().unwrap().is_empty(), "{text}");
            assert_eq!(sink.1.into_inner(), dups, "{text} (streamed: {streamed})");
        }
    }
}

/// A value spread over lines is one record even in a text of lines, and
/// a whole object on one of its lines is not one of its own.
#[test]
fn a_value_spread_over_lines_among_json_lines_is_one_record() {
    let text = format!(
        "{}\n{}\n{{\"eventID\":\"multi\",\"x\":[\n{}\n]}}\n{}\n",
        rec("a"),
        rec("b"),
        rec("nested"),
        rec("c")
    );
    let (_, ids, errs) = run(&text);
    assert!(errs.is_empty(), "{errs:?}");
    let got: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(got, ["a", "b", "multi", "c"]);
}

/// Numbers valid in JSON but beyond i64/u64/f64 keep their record, as
/// in jq and Python: big integers as floats, overflowing floats as
/// their text.
#[test]
fn numbers_beyond_range_keep_the_record() {
    let n = |v: &str| {
        format!(r#"{{"eventVersion":"1.08","eventID":"{v}","eventName":"X","n":{v},"m":[{v}]}}"#)
    };
    let vals = [
        "18446744073709551616",
        "-9223372036854775809",
        "1e309",
        "-1e400",
        "123456789012345678901234567890123",
        "1.0e-400",
    ];
    let docs: Vec<String> = vals.iter().map(|v| n(v)).collect();
    let native = format!(r#"{{"Records":[{}]}}"#, docs.join(","));
    let lines = docs.join("\n");
    for text in [native, lines] {
        let (_, ids, errs) = run(&text);
        assert!(errs.is_empty(), "{errs:?}");
        let got: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(got, vals);
    }
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
