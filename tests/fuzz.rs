//! Mutation fuzzing on the stable toolchain (cargo-fuzz needs nightly,
//! which this project's machines do not have): seeded, bounded, and run in
//! every CI.
//!
//! - **decode → parse → match**: real CloudTrail files (the repo's fixtures
//!   and `../shared/data/cloudtrail/logs`) mutated by bit flips, structural
//!   bytes, cuts, splices, deep nesting, invalid UTF-8, duplicate keys and
//!   wrong-typed fields; small documents (the whole-tape path) and 2+ MB ones
//!   (the chunked parser). Each input must not panic, must name itself in
//!   every error, must give the same result twice (the chunked parser runs
//!   in parallel), and as plain JSON and as gzip.
//! - **the Sigma loader**: the built-in pack and SigmaHQ's rules mutated
//!   line by line and by modifier; each must load or be refused with an
//!   error naming the file, and what loads is run over events.
//!
//! A failing input is written to `$CARGO_TARGET_TMPDIR` and named in the
//! panic; it becomes a regression test in `tests/fixtures/fuzz/`, which is
//! replayed first. `TRAILWATCH_FUZZ_ITERS` scales the iteration counts
//! (default 1); `TRAILWATCH_FUZZ_SEED` changes the seed.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use trailwatch::pipeline::{Limits, ObjectReport, process_object};
use trailwatch::rules::RuleSet;

/// xorshift64*: small, seeded, good enough to pick mutations.
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
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn seed() -> u64 {
    std::env::var("TRAILWATCH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7a11_3a7c)
}

fn scale() -> usize {
    std::env::var("TRAILWATCH_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Seed documents: the repo's fixtures and up to 12 small real logs.
fn seed_documents() -> Vec<Vec<u8>> {
    let mut docs = Vec::new();
    let fixtures = common::fixtures().join("cloudtrail");
    for e in std::fs::read_dir(&fixtures).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            docs.push(std::fs::read(&p).unwrap());
        }
    }
    let logs = common::shared_data().join("cloudtrail/logs");
    let mut real: Vec<PathBuf> = walk(&logs)
        .into_iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 256 << 10))
        .collect();
    real.sort();
    for p in real.iter().take(12) {
        let bytes = std::fs::read(p).unwrap();
        docs.push(if bytes.starts_with(&[0x1f, 0x8b]) {
            common::gunzip(&bytes)
        } else {
            bytes
        });
    }
    docs
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A native document of over 2 MB (the chunked parser's range) made of the
/// records of the seeds, as their text: the chunked parser cuts before
/// `{"eventVersion"`, so the records must keep CloudTrail's key order (a
/// re-serialized record would not: serde_json sorts keys).
fn big_document(seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bodies: Vec<&[u8]> = Vec::new();
    for s in seeds {
        let Some(key) = find(s, b"\"Records\"") else {
            continue;
        };
        let (Some(open), Some(close)) = (
            s[key..]
                .iter()
                .position(|b| *b == b'[')
                .map(|p| key + p + 1),
            s.iter().rposition(|b| *b == b']'),
        ) else {
            continue;
        };
        if open >= close {
            continue;
        }
        let body = s[open..close].trim_ascii();
        if body.starts_with(b"{\"eventVersion\"") {
            bodies.push(body);
        }
    }
    assert!(
        !bodies.is_empty(),
        "no seed with records in CloudTrail's key order"
    );
    let mut out = b"{\"Records\":[".to_vec();
    while out.len() < 2_500_000 {
        for b in &bodies {
            if out.len() > 12 {
                out.push(b',');
            }
            out.extend_from_slice(b);
        }
    }
    out.extend_from_slice(b"]}");
    assert!(
        serde_json::from_slice::<serde_json::Value>(&out).is_ok(),
        "the big document must start valid"
    );
    out
}

const STRUCTURAL: &[u8] = b"\"{}[],:\\0 \x00\xff\xc3-eE.";

fn mutate(doc: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut d = doc.to_vec();
    for _ in 0..1 + rng.below(4) {
        if d.is_empty() {
            d.extend_from_slice(b"{}");
        }
        let at = rng.below(d.len());
        match rng.below(11) {
            0 => d[at] ^= 1 << rng.below(8),
            1 => d[at] = *rng.pick(STRUCTURAL),
            2 => {
                let end = (at + 1 + rng.below(64)).min(d.len());
                d.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(256)).min(d.len());
                let copy = d[at..end].to_vec();
                let to = rng.below(d.len());
                d.splice(to..to, copy);
            }
            4 => d.truncate(at),
            5 => {
                let other = rng.pick(seeds);
                let from = rng.below(other.len());
                d.truncate(at);
                d.extend_from_slice(&other[from..]);
            }
            6 => {
                let depth = 1 + rng.below(20_000);
                let open = if rng.below(2) == 0 { b'[' } else { b'{' };
                let mut nest = vec![open; depth];
                if open == b'{' {
                    nest = b"{\"a\":".repeat(depth);
                }
                d.splice(at..at, nest);
            }
            7 => {
                // Invalid UTF-8 inside the next string.
                if let Some(q) = d[at..].iter().position(|b| *b == b'"') {
                    let bad = *rng.pick(&[&b"\xc3\x28"[..], b"\xff\xfe", b"\xed\xa0\x80"]);
                    d.splice(at + q + 1..at + q + 1, bad.iter().copied());
                }
            }
            8 => {
                // A duplicate key ahead of a real one.
                if let Some(k) = find(&d[at..], b"\"eventName\":") {
                    let name = *rng.pick(&[&b"DeleteTrail"[..], b"ConsoleLogin", b""]);
                    let mut dup = b"\"eventName\":\"".to_vec();
                    dup.extend_from_slice(name);
                    dup.extend_from_slice(b"\",");
                    d.splice(at + k..at + k, dup);
                }
            }
            9 => {
                // A number, array or object where a string is expected.
                let key = *rng.pick(&[
                    &b"\"eventName\":"[..],
                    b"\"userIdentity\":",
                    b"\"sourceIPAddress\":",
                    b"\"eventTime\":",
                    b"\"errorCode\":",
                    b"\"requestParameters\":",
                ]);
                if let Some(k) = find(&d[at..], key) {
                    let v = *rng.pick(&[
                        &b"12345,\"x\":"[..],
                        b"[1,{\"a\":null}],\"x\":",
                        b"{\"arn\":7},\"x\":",
                        b"null,\"x\":",
                        b"-1e999,\"x\":",
                    ]);
                    let p = at + k + key.len();
                    d.splice(p..p, v.iter().copied());
                }
            }
            _ => {
                // A long string value (tens of KB).
                if let Some(q) = d[at..].iter().position(|b| *b == b'"') {
                    let p = at + q + 1;
                    d.splice(p..p, std::iter::repeat_n(b'A', 1 + rng.below(100_000)));
                }
            }
        }
    }
    d
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What must be equal between two runs of the same document.
fn summary(r: &ObjectReport) -> (u64, Vec<(u32, usize)>, Vec<String>, usize) {
    (
        r.records,
        r.alerts.iter().map(|m| (m.rule, m.record)).collect(),
        r.errors
            .iter()
            .map(|e| e.kind.as_str().to_owned())
            .collect(),
        r.hits.len(),
    )
}

/// Run one input; on a panic or a broken invariant, save it and panic
/// naming the file.
fn check(name: &str, input: &[u8], rules: &RuleSet, what: &str) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let plain = process_object(name, input, rules, Limits::default());
        for e in &plain.errors {
            assert_eq!(e.source, name, "an error names another object: {e}");
            assert!(
                e.to_string().contains(name),
                "error without its object: {e}"
            );
        }
        let again = process_object(name, input, rules, Limits::default());
        assert_eq!(summary(&plain), summary(&again), "two runs differ");
        let gz_name = format!("{name}.gz");
        let gz = process_object(&gz_name, &common::gzip(input), rules, Limits::default());
        assert_eq!(summary(&plain), summary(&gz), "plain and gzip differ");
        plain.records
    }));
    if let Err(p) = outcome {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let file = dir.join(format!(
            "fuzz-crash-{:016x}.json",
            seed() ^ input.len() as u64
        ));
        std::fs::write(&file, input).unwrap();
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!(
            "{what}: {msg}\ninput saved to {} (add it to tests/fixtures/fuzz/)",
            file.display()
        );
    }
}

fn fuzz_rules() -> RuleSet {
    let sigma = common::shared_data().join("sigma/rules");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    RuleSet::load(&[repo, sigma]).unwrap()
}

#[test]
fn mutated_cloudtrail_never_panics_and_stays_consistent() {
    let rules = fuzz_rules();
    let seeds = seed_documents();
    assert!(seeds.len() >= 4, "{} seeds", seeds.len());
    // Regressions first: inputs that once failed.
    let regress = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut replayed = 0;
    for p in walk(&regress) {
        check(
            &p.display().to_string(),
            &std::fs::read(&p).unwrap(),
            &rules,
            "regression",
        );
        replayed += 1;
    }
    let mut rng = Rng(seed());
    let small = 1000 * scale();
    for i in 0..small {
        let doc = rng.pick(&seeds).clone();
        let m = mutate(&doc, &seeds, &mut rng);
        check(&format!("fuzz-{i}.json"), &m, &rules, "small document");
    }
    let big = big_document(&seeds);
    let large = 20 * scale();
    for i in 0..large {
        let m = mutate(&big, &seeds, &mut rng);
        check(&format!("fuzz-big-{i}.json"), &m, &rules, "2.5 MB document");
    }
    eprintln!("{replayed} regressions, {small} small and {large} large mutated documents");
}

const MODIFIERS: &[&str] = &[
    "|re",
    "|contains",
    "|contains|all",
    "|startswith",
    "|endswith",
    "|base64offset|contains",
    "|cidr",
    "|windash",
    "|expand",
    "|fieldref",
    "|gt",
    "|exists",
    "|re|i",
    "|utf16le|base64",
    "|bogus",
];

const VALUES: &[&str] = &[
    "'*'",
    "'?'",
    "''",
    "null",
    "1e999",
    "'(a+)+$'",
    "'['",
    "'10.0.0.0/33'",
    "'%placeholder%'",
    "[]",
    "{}",
    "'\\\\*'",
    "'é*İ'",
];

fn mutate_rule(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for _ in 0..1 + rng.below(3) {
        if lines.is_empty() {
            lines.push("title: x".into());
        }
        let at = rng.below(lines.len());
        match rng.below(8) {
            0 => {
                lines.remove(at);
            }
            1 => {
                let l = lines[at].clone();
                lines.insert(at, l);
            }
            2 => {
                let other = rng.below(lines.len());
                lines.swap(at, other);
            }
            3 => {
                // A modifier on a field key.
                if let Some(c) = lines[at].find(':')
                    && lines[at].starts_with("        ")
                {
                    let m = *rng.pick(MODIFIERS);
                    lines[at].insert_str(c, m);
                }
            }
            4 => {
                // Another value.
                if let Some(c) = lines[at].find(": ") {
                    lines[at].truncate(c + 2);
                    let value = *rng.pick(VALUES);
                    lines[at].push_str(value);
                }
            }
            5 => {
                let conditions = [
                    "    condition: 1 of sel* and not (",
                    "    condition: all of them or",
                    "    condition: selection | count() > 5",
                    "    condition: nothere",
                    "    condition: not not not selection",
                ];
                lines.insert(at, rng.pick(&conditions).to_string());
            }
            6 => {
                let l = &mut lines[at];
                if !l.is_empty() {
                    let i = rng.below(l.len());
                    if l.is_char_boundary(i) {
                        l.insert(
                            i,
                            *rng.pick(&['\t', '"', '\'', '|', ':', '-', '{', '&', '*']),
                        );
                    }
                }
            }
            _ => {
                // Re-indent: YAML structure changes.
                let l = &mut lines[at];
                if l.starts_with("  ") {
                    l.drain(..2);
                } else {
                    l.insert_str(0, "  ");
                }
            }
        }
    }
    lines.join("\n")
}

#[test]
fn mutated_sigma_rules_load_or_are_refused_by_name() {
    let mut texts = Vec::new();
    let dirs = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"),
        common::shared_data().join("sigma/rules"),
    ];
    for d in &dirs {
        for p in walk(d) {
            if p.extension().is_some_and(|e| e == "yml") {
                texts.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    assert!(texts.len() > 80, "{} rule files", texts.len());
    let events = seed_documents();
    let mut rng = Rng(seed() ^ 0x51_94a);
    let (mut loaded, mut refused) = (0, 0);
    for i in 0..400 * scale() {
        let source = rng.below(texts.len());
        let text = mutate_rule(&texts[source], &mut rng);
        let name = format!("fuzz-{i}.yml");
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let set = RuleSet::from_texts([(name.as_str(), text.as_str())]);
            for e in &set.errors {
                assert_eq!(e.path, name, "error for another file: {}", e.message);
                assert!(!e.message.is_empty());
            }
            if !set.is_empty() {
                let doc = &events[i % events.len()];
                process_object("events.json", doc, &set, Limits::default());
            }
            (set.len(), set.errors.len())
        }));
        match outcome {
            Ok((n, errors)) => {
                loaded += usize::from(n > 0);
                refused += usize::from(errors > 0);
            }
            Err(p) => {
                let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&name);
                std::fs::write(&file, &text).unwrap();
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("rule loader: {msg}\nrule saved to {}", file.display());
            }
        }
    }
    eprintln!("mutated rules: {loaded} loaded, {refused} refused with a named error");
    assert!(
        loaded > 0 && refused > 0,
        "{loaded} loaded, {refused} refused"
    );
}

/// Valid look-alikes: records that carry, nested, an object that starts
/// like a record (`},{"eventVersion":"1…`), with escaped strings around it.
/// The document stays valid and means the same to the rules, so the chunked
/// parser (which may cut there, fail in place after unescaping, and heal
/// from the original text) must give exactly what the plain document gives.
#[test]
fn nested_record_look_alikes_change_nothing() {
    const LOOK_ALIKE: &[u8] = br#""zz":[{"a":"x\"y"},{"eventVersion":"1.05","s":"q\"\\\u0041"}],"#;
    let rules = fuzz_rules();
    let big = big_document(&seed_documents());
    let base = process_object("base.json", &big, &rules, Limits::default());
    assert!(base.errors.is_empty(), "{:?}", base.errors);
    assert!(base.records > 1000);
    let ids = |r: &ObjectReport| -> Vec<Option<String>> {
        r.alerts
            .iter()
            .map(|m| m.event_id().map(str::to_owned))
            .collect()
    };
    let starts: Vec<usize> = big
        .windows(15)
        .enumerate()
        .filter(|(_, w)| *w == b"{\"eventVersion\"")
        .map(|(i, _)| i)
        .collect();
    let mut rng = Rng(seed());
    for round in 0..5 * scale() {
        let mut d = big.clone();
        let mut inserted = 0;
        for &p in starts.iter().rev() {
            if rng.below(4) == 0 {
                d.splice(p + 1..p + 1, LOOK_ALIKE.iter().copied());
                inserted += 1;
            }
        }
        assert!(inserted > 0);
        let name = format!("look-alikes-{round}.json");
        let plain = process_object(&name, &d, &rules, Limits::default());
        assert!(plain.errors.is_empty(), "{name}: {:?}", plain.errors);
        assert_eq!(summary(&plain), summary(&base), "{name}");
        assert_eq!(ids(&plain), ids(&base), "{name}");
        let gz = process_object(&name, &common::gzip(&d), &rules, Limits::default());
        assert_eq!(summary(&gz), summary(&base), "{name} (gzip)");
    }
}
