//! What each fuzz target checks, for any input. Shared by the cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs`, nightly) and `tests/fuzz_corpus.rs`,
//! which replays `fuzz/corpus/*` through the same functions on stable in
//! every CI run. A property that fails panics with what differed.
//!
//! The parse targets shrink the chunking (chunks of 64 bytes from 256
//! bytes on) so that inputs of a few hundred bytes reach every path of the
//! chunked and streaming parsers, not only the whole-document one.

#![allow(dead_code)]

use std::sync::Mutex;

use serde::de::{MapAccess, SeqAccess, Visitor};
use trailwatch::parse::{self, Ident, Kind, ParseError, ParseErrorKind, Record, Sink, Top};
use trailwatch::pipeline::{Limits, process_object};
use trailwatch::rules::RuleSet;

/// Chunking small enough for fuzz inputs to be chunked and streamed.
pub fn small_chunks() {
    parse::set_chunking(256, 64);
}

/// The fields compared between parsers: `eventName`, `eventID`, and
/// `userIdentity.type` when `userIdentity` is an object. `None` for a
/// field that is absent or not a string.
pub type Fields = (Option<String>, Option<String>, Option<String>);

/// Records and errors a parse handed out.
#[derive(Default)]
pub struct Collect {
    records: Mutex<Vec<(usize, Fields)>>,
    errors: Mutex<Vec<ParseError>>,
}

impl Sink for Collect {
    fn records(&self, first: usize, records: &[Record<'_, '_>]) {
        let mut out = self.records.lock().unwrap();
        for (i, r) in records.iter().enumerate() {
            out.push((first + i, fields_of(r)));
        }
    }
    fn error(&self, err: ParseError) {
        self.errors.lock().unwrap().push(err);
    }
}

impl Collect {
    /// Records sorted (by index, then fields) and errors sorted.
    pub fn into_parts(self) -> (Vec<(usize, Fields)>, Vec<ParseError>) {
        let mut r = self.records.into_inner().unwrap();
        r.sort();
        let mut e = self.errors.into_inner().unwrap();
        e.sort_by(|a, b| (a.offset, a.record, &a.message).cmp(&(b.offset, b.record, &b.message)));
        (r, e)
    }
}

fn fields_of(r: &Record<'_, '_>) -> Fields {
    let s = |v: Option<&str>| v.map(str::to_owned);
    let kind = r
        .top(Top::UserIdentity)
        .filter(|u| u.kind() == Kind::Object)
        .and_then(|_| r.ident_str(Ident::Type));
    (s(r.str(Top::EventName)), s(r.str(Top::EventId)), s(kind))
}

/// `text` through the in-memory parser, as the pipeline runs it: the
/// fast paths, then recovery on a pristine copy if they fail.
pub fn in_memory(text: &[u8]) -> (Vec<(usize, Fields)>, Vec<ParseError>) {
    let mut buf = text.to_vec();
    buf.resize(text.len() + simd_json_padding(), b' ');
    let pristine = buf.clone();
    let sink = Collect::default();
    if let Err(failed) = parse::parse(&mut buf, text.len(), &sink) {
        parse::recover(&pristine, text.len(), &sink, &failed);
    }
    sink.into_parts()
}

fn simd_json_padding() -> usize {
    trailwatch::decode::PADDING
}

/// `text` through the streaming parser, read in pieces of `piece` bytes.
pub fn streamed(text: &[u8], piece: usize) -> (Vec<(usize, Fields)>, Vec<ParseError>) {
    struct Pieces<'a>(&'a [u8], usize);
    impl std::io::Read for Pieces<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(out.len()).min(self.1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let sink = Collect::default();
    let (_, read) = parse::parse_reader(&mut Pieces(text, piece.max(1)), &sink);
    assert_eq!(
        read,
        text.len() as u64,
        "the streaming parser stopped reading early"
    );
    sink.into_parts()
}

/// What serde_json says the records of `text` are, under trailwatch's
/// layout rules (see `parse`'s module docs), or `None` when serde_json
/// refuses the text as a sequence of JSON values. Records as a sorted
/// multiset of their compared fields; plus the number of elements that
/// are not objects.
pub fn oracle(text: &[u8]) -> Option<(Vec<Fields>, usize)> {
    // Byte order marks between values are whitespace to trailwatch.
    let mut rest = text;
    let mut records = Vec::new();
    let mut not_objects = 0;
    loop {
        loop {
            // JSON's whitespace (not Rust's ASCII whitespace: form feed is
            // not JSON's).
            let skip = rest
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
                .count();
            let t = &rest[skip..];
            match t.strip_prefix(b"\xEF\xBB\xBF") {
                Some(after) => rest = after,
                None => {
                    rest = t;
                    break;
                }
            }
        }
        if rest.is_empty() {
            break;
        }
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<OrderedValue>();
        let OrderedValue(value) = values.next()?.ok()?;
        rest = &rest[values.byte_offset()..];
        match value {
            O::Object(entries) => {
                // A wrapper has a `Records` array under any key position;
                // every `Records` array is read (union, not last-wins).
                let wrapper = entries
                    .iter()
                    .any(|(k, v)| k == "Records" && matches!(v, O::Array(_)));
                if wrapper {
                    for (k, v) in &entries {
                        if let (true, O::Array(elements)) = (k == "Records", v) {
                            for e in elements {
                                match record_of(e) {
                                    Some(f) => records.push(f),
                                    None => not_objects += 1,
                                }
                            }
                        }
                    }
                } else if entries.iter().any(|(k, _)| k == "digestStartTime") {
                } else {
                    records.push(record_of(&O::Object(entries)).expect("an object"));
                }
            }
            O::Array(elements) => {
                for e in &elements {
                    match record_of(e) {
                        Some(f) => records.push(f),
                        None => not_objects += 1,
                    }
                }
            }
            _ => not_objects += 1,
        }
    }
    records.sort();
    Some((records, not_objects))
}

/// A JSON value with object members in order, duplicates kept (serde's
/// own `Value` sorts keys and keeps the last of duplicates).
#[derive(Debug)]
enum O {
    Object(Vec<(String, O)>),
    Array(Vec<O>),
    Str(String),
    Other,
}

impl O {
    /// The member `key`: the last of duplicates, as JSON.parse, jq and
    /// Python read it.
    fn get(&self, key: &str) -> Option<&O> {
        match self {
            O::Object(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<String> {
        match self {
            O::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

fn record_of(v: &O) -> Option<Fields> {
    if !matches!(v, O::Object(_)) {
        return None;
    }
    let kind = match v.get("userIdentity") {
        Some(u @ O::Object(_)) => u.get("type").and_then(O::str),
        _ => None,
    };
    Some((
        v.get("eventName").and_then(O::str),
        v.get("eventID").and_then(O::str),
        kind,
    ))
}

struct Ordered;

struct OrderedValue(O);

impl<'de> serde::Deserialize<'de> for OrderedValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OrderedValue, D::Error> {
        d.deserialize_any(Ordered).map(OrderedValue)
    }
}

impl<'de> Visitor<'de> for Ordered {
    type Value = O;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<O, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = m.next_key::<String>()? {
            out.push((k, m.next_value_seed(OrderedSeed)?));
        }
        Ok(O::Object(out))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<O, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = s.next_element_seed(OrderedSeed)? {
            out.push(v);
        }
        Ok(O::Array(out))
    }
    fn visit_str<E>(self, v: &str) -> Result<O, E> {
        Ok(O::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<O, E> {
        Ok(O::Str(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<O, E> {
        Ok(O::Str(v.to_owned()))
    }
    fn visit_bool<E>(self, _: bool) -> Result<O, E> {
        Ok(O::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<O, E> {
        Ok(O::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<O, E> {
        Ok(O::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<O, E> {
        Ok(O::Other)
    }
    fn visit_unit<E>(self) -> Result<O, E> {
        Ok(O::Other)
    }
}

struct OrderedSeed;

impl<'de> serde::de::DeserializeSeed<'de> for OrderedSeed {
    type Value = O;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<O, D::Error> {
        d.deserialize_any(Ordered)
    }
}

fn only_fields(records: &[(usize, Fields)]) -> Vec<Fields> {
    let mut v: Vec<Fields> = records.iter().map(|(_, f)| f.clone()).collect();
    v.sort();
    v
}

fn structural(errors: &[ParseError]) -> Vec<&ParseError> {
    errors
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                ParseErrorKind::InvalidJson | ParseErrorKind::Truncated
            )
        })
        .collect()
}

/// **differential**: over any bytes serde_json reads as a sequence of JSON
/// values, trailwatch's in-memory and streaming parsers hand out exactly
/// the records serde_json finds (compared by `eventName`, `eventID` and
/// `userIdentity.type`, the last of duplicate keys), report no damage,
/// and report each non-object element. Whatever the bytes, both parsers
/// agree with themselves run twice.
pub fn differential(data: &[u8]) {
    small_chunks();
    let (mem, mem_errors) = in_memory(data);
    let (again, _) = in_memory(data);
    assert_eq!(mem, again, "two in-memory parses differ");
    let (streamed_records, stream_errors) = streamed(data, 7);
    let Some((want, not_objects)) = oracle(data) else {
        return;
    };
    assert!(
        structural(&mem_errors).is_empty(),
        "valid JSON reported as damaged: {mem_errors:?}"
    );
    assert!(
        structural(&stream_errors).is_empty(),
        "valid JSON reported as damaged when streamed: {stream_errors:?}"
    );
    assert_eq!(
        only_fields(&mem),
        want,
        "in-memory records differ from serde_json's"
    );
    assert_eq!(
        only_fields(&streamed_records),
        want,
        "streamed records differ from serde_json's"
    );
    let count = |e: &[ParseError]| {
        e.iter()
            .filter(|e| e.kind == ParseErrorKind::NotObject)
            .count()
    };
    assert_eq!(count(&mem_errors), not_objects, "{mem_errors:?}");
    assert_eq!(count(&stream_errors), not_objects, "{stream_errors:?}");
}

/// **parse**: any bytes, plain and as gzip, through the whole pipeline
/// (decode, parse, the built-in rules): no panic, every problem names the
/// object, the same result twice, plain and gzip agree, and the streaming
/// parser never invents a record the in-memory one does not read when the
/// input is valid JSON (`differential` checks that in depth).
pub fn parse(data: &[u8]) {
    small_chunks();
    let rules = builtin();
    let name = "fuzz/object.json";
    let a = process_object(name, data, rules, Limits::default());
    let b = process_object(name, data, rules, Limits::default());
    assert_eq!(a.records, b.records);
    assert_eq!(a.alerts, b.alerts);
    assert_eq!(a.errors, b.errors);
    for e in &a.errors {
        assert_eq!(e.source, name, "an error for another object: {e}");
        assert!(!e.message.is_empty());
    }
    // Gzipped, the same text gives the same records (unless the text
    // itself starts like gzip: then the plain run decoded it as gzip).
    let gz = gzip(data);
    let z = process_object("fuzz/object.json.gz", &gz, rules, Limits::default());
    if !trailwatch::decode::is_gzip(data) {
        assert_eq!(z.records, a.records, "gzip and plain differ");
        assert_eq!(z.alerts.len(), a.alerts.len(), "gzip and plain differ");
    }
    let _ = streamed(data, 13);
}

/// **decode**: any bytes: no panic; the output never passes the cap; the
/// buffer allocated stays within what the input can expand to; and where
/// flate2 decodes the same gzip completely, libdeflate's output is the
/// same bytes.
pub fn decode(data: &[u8]) {
    use std::io::Read;
    use trailwatch::decode;
    let cap = 1 << 20;
    let d = decode::decode(data, cap, Vec::new());
    assert!(d.len as u64 <= cap);
    assert!(d.buf.len() >= d.len + decode::PADDING);
    if decode::is_gzip(data) {
        assert!(
            d.buf.capacity()
                <= 2 * (decode::plausible_size(data.len()).min(cap as usize) + (64 << 10))
                    + decode::PADDING,
            "{} bytes allocated for {} bytes of gzip",
            d.buf.capacity(),
            data.len()
        );
        let mut want = Vec::new();
        let ok = flate2::read::MultiGzDecoder::new(data)
            .take(cap + 1)
            .read_to_end(&mut want)
            .is_ok();
        if ok && d.error.is_none() && want.len() as u64 <= cap {
            assert_eq!(d.data(), &want[..], "libdeflate and flate2 disagree");
        }
    } else {
        assert_eq!(d.data(), &data[..d.len]);
    }
}

/// **sigma**: any text as a rule file: it loads or is refused with an
/// error naming the file; what loads runs over a few events.
pub fn sigma(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = RuleSet::from_texts([("fuzz.yml", text)]);
    for e in &set.errors {
        assert_eq!(
            e.path, "fuzz.yml",
            "an error for another file: {}",
            e.message
        );
        assert!(!e.message.is_empty());
    }
    if !set.is_empty() {
        for doc in EVENTS {
            process_object("events.json", doc.as_bytes(), &set, Limits::default());
        }
    }
}

/// **notification**: any text as an SQS message body (S3 events, SNS
/// wrapping, EventBridge, CloudTrail's own SNS notices): no panic, an
/// object it names has a bucket and a key (S3 has no object without), and
/// an EventBridge CloudTrail event's record is a whole JSON object.
pub fn notification(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use trailwatch::source::notification::{Parsed, parse};
    match parse(text) {
        Ok(Parsed::Objects(objects)) => {
            for o in objects {
                assert!(!o.bucket.is_empty() && !o.key.is_empty(), "{o:?}");
            }
        }
        // A record is a JSON object, whole.
        Ok(Parsed::Event(e)) => {
            assert!(e.record.starts_with('{') && e.record.len() <= text.len());
            assert!(serde_json::from_str::<serde_json::Value>(&e.record).is_ok());
        }
        _ => {}
    }
}

/// **config**: any text as a configuration file: parsed and validated, or
/// refused with an error naming it; never a panic, never a secret's value.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match trailwatch::config::Config::parse(text, "fuzz.toml") {
        Ok(c) => {
            assert!(c.limits.objects_in_flight > 0);
            assert!(c.correlation.max_groups > 0);
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
}

fn builtin() -> &'static RuleSet {
    static RULES: std::sync::OnceLock<RuleSet> = std::sync::OnceLock::new();
    RULES.get_or_init(RuleSet::builtin)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const EVENTS: [&str; 2] = [
    r#"{"Records":[{"eventVersion":"1.08","eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com","userIdentity":{"type":"Root","arn":"arn:aws:iam::1:root"},"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"MFAUsed":"No"},"eventID":"a"}]}"#,
    r#"{"eventVersion":"1.08","eventName":"CreateAccessKey","eventSource":"iam.amazonaws.com","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/a"},"requestParameters":{"userName":"b"},"errorCode":"AccessDenied","eventID":"b"}"#,
];
