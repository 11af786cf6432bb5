//! Replays the coverage-guided fuzzers' corpus (`fuzz/corpus/TARGET/`)
//! through the very checks the fuzz targets run (`fuzz/checks.rs`), on the
//! stable toolchain, in every CI run: what the fuzzers once found (crashes
//! turned into corpus entries) and the inputs that reach each path stay
//! tested without nightly. (`tests/fuzz.rs` adds seeded mutation on top.)

#[path = "../fuzz/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Run `check` over every file of the target's corpus; a failure names the
/// file.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            panic!("fuzz check {target} fails on {}", f.display());
        }
    }
}

#[test]
fn decode_corpus() {
    replay("decode", checks::decode);
}

#[test]
fn parse_corpus() {
    replay("parse", checks::parse);
}

#[test]
fn differential_corpus() {
    replay("differential", checks::differential);
    // The parse corpus too: every valid input there is a differential case.
    replay("parse", checks::differential);
}

#[test]
fn sigma_corpus() {
    replay("sigma", checks::sigma);
}

#[test]
fn notification_corpus() {
    replay("notification", checks::notification);
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}

/// The oracle itself: serde_json's reading under trailwatch's layout rules
/// (so a differential failure is about the parser, not the oracle).
#[test]
fn the_oracle_reads_layouts_as_documented() {
    let (r, n) = checks::oracle(
        br#"{"Records":[{"eventName":"A","eventName":"B"},1]} [{"eventID":"x"}]
           {"digestStartTime":"t"} {"x":1,"Records":[{"eventName":"N"}]}"#,
    )
    .unwrap();
    assert_eq!(n, 1);
    let names: Vec<_> = r.iter().map(|f| (f.0.as_deref(), f.1.as_deref())).collect();
    assert_eq!(
        names,
        // `Records` need not be the first key: the last document is a
        // wrapper whose record is N.
        [(None, Some("x")), (Some("B"), None), (Some("N"), None)],
        "{r:?}"
    );
    assert!(checks::oracle(b"{} x").is_none());
    assert!(checks::oracle(b"\xEF\xBB\xBF{}").is_some());
}
