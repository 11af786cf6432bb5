//! Properties of record delimiting, over seeded random documents (this
//! binary shrinks the parser's chunks, so documents of tens of kilobytes
//! are cut hundreds of times, at every kind of place; one case runs at the
//! real sizes):
//!
//! 1. **Look-alikes never become records.** Any mix of records carrying
//!    nested record look-alikes (`{"eventVersion":...}` objects in arrays
//!    and objects, with escapes and whitespace around, and inside strings),
//!    in every layout (native compact and pretty, JSON lines, arrays,
//!    several documents), gives exactly the records serde_json gives, on
//!    the in-memory path (fast, chunked, recovery) and the streaming one.
//! 2. **Recovery after real damage never forges.** The same documents cut
//!    short and with bytes overwritten (what storage and transfer do; gzip
//!    turns any corruption into a cut): no look-alike ever comes out as a
//!    record (unless damage left it alone on a line of its own, where any
//!    JSON-lines reader would take it), no real record comes out twice, and
//!    every record wholly before the first damaged byte still comes out.
//! 3. **Edits keep what precedes them.** Ranges deleted, copied or
//!    inserted make a different document, whose records are read up to
//!    where its structure breaks (a deletion can remove the openers of a
//!    nested array and so make its objects elements of `Records`: no
//!    reader of the text alone can tell): every record before the first
//!    edit still comes out, the same on every path.
//!
//! `TRAILWATCH_FUZZ_ITERS` scales the rounds, `TRAILWATCH_FUZZ_SEED` the
//! seed (as in tests/fuzz.rs).

#[path = "../fuzz/checks.rs"]
mod checks;

use serde_json::{Value, json};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn seed() -> u64 {
    std::env::var("TRAILWATCH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x10_0c_a1)
}

fn scale() -> usize {
    std::env::var("TRAILWATCH_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A record look-alike, as an attacker would put in request parameters:
/// the first key `eventVersion`, a root console login, an id saying fake.
fn fake(rng: &mut Rng, n: &mut usize) -> Value {
    *n += 1;
    let mut v = json!({
        "eventVersion": "1.08",
        "eventID": format!("fake-{n}"),
        "eventName": "ConsoleLogin",
        "userIdentity": {"type": "Root", "arn": "arn:aws:iam::1:root"},
        "responseElements": {"ConsoleLogin": "Success"},
    });
    if rng.chance(30) {
        v["requestParameters"] = json!({"nested": [fake(rng, n), fake(rng, n)]});
    }
    if rng.chance(30) {
        v["note"] = json!("\"},{\\\"eventVersion\\\":\\\"1.0\\\"}\u{1}\n");
    }
    v
}

/// A real record, perhaps carrying look-alikes.
fn real(rng: &mut Rng, i: usize, fakes: &mut usize) -> Value {
    let mut v = json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::1:user/u{i}")},
        "eventTime": "2026-11-20T10:00:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "ListUsers",
        "eventID": format!("real-{i}"),
        "userAgent": "x".repeat(rng.below(300)),
    });
    match rng.below(6) {
        0 => {
            let k = 1 + rng.below(6);
            v["requestParameters"] =
                json!({"items": (0..k).map(|_| fake(rng, fakes)).collect::<Vec<_>>()});
        }
        1 => v["requestParameters"] = json!({"one": fake(rng, fakes), "s": "},{"}),
        2 => v["serviceEventDetails"] = json!([[fake(rng, fakes)], {"x": [fake(rng, fakes)]}]),
        _ => {}
    }
    v
}

/// serde_json writes keys sorted; CloudTrail (and look-alikes, to be
/// taken for records by a text search) put `eventVersion` first.
fn write(v: &Value, pretty: bool) -> String {
    fn go(v: &Value, out: &mut String, pretty: bool, depth: usize) {
        let nl = |out: &mut String, d: usize| {
            if pretty {
                out.push('\n');
                out.push_str(&"  ".repeat(d));
            }
        };
        match v {
            Value::Object(m) => {
                out.push('{');
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by_key(|k| (k.as_str() != "eventVersion", k.as_str()));
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    nl(out, depth + 1);
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    if pretty {
                        out.push(' ');
                    }
                    go(&m[*k], out, pretty, depth + 1);
                }
                if !m.is_empty() {
                    nl(out, depth);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, e) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    nl(out, depth + 1);
                    go(e, out, pretty, depth + 1);
                }
                if !a.is_empty() {
                    nl(out, depth);
                }
                out.push(']');
            }
            other => out.push_str(&serde_json::to_string(other).unwrap()),
        }
    }
    let mut out = String::new();
    go(v, &mut out, pretty, 0);
    out
}

/// A document of `n` records in a random layout; the real ids in order.
fn document(rng: &mut Rng, n: usize) -> (String, Vec<String>) {
    let mut fakes = 0;
    let records: Vec<Value> = (0..n).map(|i| real(rng, i, &mut fakes)).collect();
    let ids = (0..n).map(|i| format!("real-{i}")).collect();
    let text = match rng.below(5) {
        0 => write(&json!({"Records": records}), false),
        1 => write(&json!({"Records": records}), true),
        2 => records
            .iter()
            .map(|r| write(r, false))
            .collect::<Vec<_>>()
            .join("\n"),
        3 => write(&Value::Array(records), rng.chance(50)),
        _ => {
            let half = n / 2;
            let sep = ["", "\n", " ", "\u{feff}"][rng.below(4)];
            format!(
                "{}{sep}{}",
                write(&json!({"Records": records[..half]}), false),
                write(&json!({"Records": records[half..]}), false)
            )
        }
    };
    (text, ids)
}

fn ids_of(records: &[(usize, checks::Fields)]) -> Vec<String> {
    records.iter().filter_map(|(_, f)| f.1.clone()).collect()
}

#[test]
fn look_alikes_never_become_records_on_any_path() {
    parse_chunking_small();
    let mut rng = Rng(seed());
    for round in 0..60 * scale() {
        let n = 1 + rng.below(80);
        let (text, ids) = document(&mut rng, n);
        let (want, _) = checks::oracle(text.as_bytes()).expect("generated JSON is valid");
        let mut want_ids: Vec<String> = want.iter().filter_map(|f| f.1.clone()).collect();
        want_ids.sort();
        let mut ids = ids;
        ids.sort();
        assert_eq!(want_ids, ids, "the oracle reads the generated records");
        for (path, (got, errors)) in [
            ("in memory", checks::in_memory(text.as_bytes())),
            (
                "streamed",
                checks::streamed(text.as_bytes(), 1 + rng.below(5000)),
            ),
        ] {
            let mut got_ids = ids_of(&got);
            got_ids.sort();
            assert!(errors.is_empty(), "round {round} {path}: {errors:?}");
            assert_eq!(got_ids, ids, "round {round} {path}:\n{text}");
        }
    }
}

/// The same at the real chunk sizes: a 3 MB document, chunked 256 KB at a
/// time, cut among look-alikes.
#[test]
fn look_alikes_never_become_records_at_real_sizes() {
    // Its own process's chunking is shrunk by the other tests of this
    // binary; run the real sizes through the pipeline in a child process.
    if std::env::var("TRAILWATCH_REAL_CHUNKS").is_err() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "look_alikes_never_become_records_at_real_sizes",
                "--nocapture",
            ])
            .env("TRAILWATCH_REAL_CHUNKS", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        return;
    }
    let mut rng = Rng(seed() ^ 0xb16);
    let mut fakes = 0;
    let mut records = Vec::new();
    let mut text_len = 0;
    while text_len < 3 << 20 {
        let r = real(&mut rng, records.len(), &mut fakes);
        text_len += write(&r, false).len();
        records.push(r);
    }
    let text = write(&json!({"Records": records}), false);
    let want: Vec<String> = (0..records.len()).map(|i| format!("real-{i}")).collect();
    let mut sorted = want.clone();
    sorted.sort();
    for (path, (got, errors)) in [
        ("in memory", checks::in_memory(text.as_bytes())),
        ("streamed", checks::streamed(text.as_bytes(), 64 << 10)),
    ] {
        assert!(errors.is_empty(), "{path}: {errors:?}");
        let mut ids = ids_of(&got);
        ids.sort();
        assert!(
            ids == sorted,
            "{path}: {} of {} records",
            ids.len(),
            sorted.len()
        );
    }
}

/// Every line of `text` that holds one whole value from its first
/// column: where recovery may resume, as a JSON-lines reader would.
fn whole_line_ids(text: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let starts_value = matches!(line.trim_ascii_start().first(), Some(b'{' | b'['));
        if let Some((records, _)) = starts_value.then(|| checks::oracle(line)).flatten() {
            out.extend(records.into_iter().filter_map(|f| f.1));
        }
    }
    out
}

/// Damage `bytes` in place: `edits` splices ranges (delete, copy,
/// insert) besides overwriting bytes and cutting. Returns the offset of the
/// first damaged byte.
fn damage(rng: &mut Rng, bytes: &mut Vec<u8>, edits: bool) -> usize {
    let structural = b"{}[],:\"\\\n ";
    let mut first = bytes.len();
    for _ in 0..1 + rng.below(3) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        first = first.min(at);
        match rng.below(if edits { 6 } else { 3 }) {
            0 => bytes[at] = structural[rng.below(structural.len())],
            1 => bytes[at] = rng.below(256) as u8,
            2 => bytes.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(200)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let end = (at + 1 + rng.below(200)).min(bytes.len());
                let copy: Vec<u8> = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {
                let junk: &[u8] = [&b"garbage"[..], b"\xff\xfe", b"]}", b"{\"a\":"][rng.below(4)];
                bytes.splice(at..at, junk.iter().copied());
            }
        }
    }
    first
}

/// The real ids whose record text lies wholly before `first` (the last id
/// before it may belong to a record the damage cut: left out).
fn intact_before(bytes: &[u8], first: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(&bytes[..first.min(bytes.len())]);
    let mut v = Vec::new();
    let mut from = 0;
    while let Some(p) = text[from..].find("\"eventID\":\"real-") {
        let at = from + p + 11;
        if let Some(end) = text[at..].find('"') {
            v.push(text[at..at + end].to_owned());
        }
        from = at;
    }
    v.pop();
    v
}

#[test]
fn recovery_after_damage_never_forges_a_record() {
    parse_chunking_small();
    let mut rng = Rng(seed() ^ 0xda_3a9e);
    for round in 0..200 * scale() {
        let n = 1 + rng.below(40);
        let (text, _) = document(&mut rng, n);
        let mut bytes = text.into_bytes();
        let first = damage(&mut rng, &mut bytes, false);
        let intact = intact_before(&bytes, first);
        let lines = whole_line_ids(&bytes);
        for (path, (got, _)) in [
            ("in memory", checks::in_memory(&bytes)),
            ("streamed", checks::streamed(&bytes, 1 + rng.below(3000))),
        ] {
            let ids = ids_of(&got);
            let shown = || String::from_utf8_lossy(&bytes).into_owned();
            for id in &ids {
                assert!(
                    !id.starts_with("fake-") || lines.contains(id),
                    "round {round} {path}: the look-alike {id} came out as a record:\n{}",
                    shown()
                );
            }
            let mut real: Vec<&String> = ids.iter().filter(|i| i.starts_with("real-")).collect();
            let before = real.len();
            real.sort();
            real.dedup();
            assert_eq!(
                before,
                real.len(),
                "round {round} {path}: a real record came out twice:\n{}",
                shown()
            );
            for id in &intact {
                assert!(
                    ids.contains(id),
                    "round {round} {path}: {id}, before the damage, was lost:\n{}",
                    shown()
                );
            }
        }
    }
}

#[test]
fn edits_keep_every_record_before_them() {
    parse_chunking_small();
    let mut rng = Rng(seed() ^ 0xed_175);
    for round in 0..200 * scale() {
        let n = 1 + rng.below(40);
        let (text, _) = document(&mut rng, n);
        let mut bytes = text.into_bytes();
        let first = damage(&mut rng, &mut bytes, true);
        let intact = intact_before(&bytes, first);
        let (mem, _) = checks::in_memory(&bytes);
        let (streamed, _) = checks::streamed(&bytes, 1 + rng.below(3000));
        let (mem, streamed) = (ids_of(&mem), ids_of(&streamed));
        for id in &intact {
            assert!(
                mem.contains(id) && streamed.contains(id),
                "round {round}: {id}, before the edit, was lost:\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

fn parse_chunking_small() {
    trailwatch::parse::set_chunking(4096, 512);
}
