//! Every rule in `rules/` against its sibling `NAME.tests.jsonl` fixtures
//! (through the same harness as `trailwatch rules test`), plus the checks
//! that keep the pack honest: each rule has a match and a near miss, ids are
//! unique, and the embedded pack is exactly the files.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::*;
use trailwatch::rules::{RuleSet, fixtures};

fn pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

#[test]
fn every_builtin_rule_passes_its_fixtures() {
    let report = fixtures::run(&[pack()]).unwrap();
    let failures: Vec<String> = report
        .results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}:{} {} (expected {})", r.file, r.line, r.name, r.expect))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let files = fixtures::rule_files(&[pack()]).unwrap();
    assert_eq!(report.files, files.len(), "every rule file has fixtures");
    for f in &files {
        let fx = fixtures::fixture_path(f).display().to_string();
        let cases: Vec<_> = report.results.iter().filter(|r| r.file == fx).collect();
        assert!(
            cases.iter().any(|c| c.expect) && cases.iter().any(|c| !c.expect),
            "{fx} needs a match and a near miss"
        );
    }
}

#[test]
fn embedded_pack_is_the_files_and_ids_are_unique() {
    let builtin = RuleSet::builtin();
    assert!(builtin.errors.is_empty(), "{:?}", builtin.errors);
    let from_files = RuleSet::load(&[pack()]).unwrap();
    let ids = |s: &RuleSet| -> Vec<String> {
        let mut v: Vec<String> = s
            .rules()
            .iter()
            .map(|r| r.meta.id.clone())
            .chain(s.correlations().iter().map(|c| c.meta.id.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&builtin), ids(&from_files));
    let unique: HashSet<_> = ids(&builtin).into_iter().collect();
    assert_eq!(unique.len(), ids(&builtin).len(), "duplicate ids");
    assert!(builtin.len() >= 25 && builtin.correlations().len() >= 5);
    for r in builtin.rules() {
        assert!(r.meta.name.is_some(), "{} needs a name", r.meta.path);
        assert!(
            r.meta.tags.iter().any(|t| t.starts_with("attack.t")),
            "{} needs an ATT&CK technique",
            r.meta.path
        );
    }
}

#[test]
fn rules_check_and_test_commands() {
    let out = trailwatch()
        .args(["rules", "check"])
        .arg(pack())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 errors, 0 warnings"), "{text}");
    let out = trailwatch()
        .args(["rules", "test"])
        .arg(pack())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 failed, 0 problems"), "{text}");

    // A wrong expectation, a broken rule and a rule without fixtures.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yml"),
        "title: A\nid: 5b0f1f0e-0000-4000-8000-0000000000aa\nlogsource: {product: aws}\ndetection:\n  s:\n    eventName: X\n  condition: s\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.tests.jsonl"),
        "{\"name\":\"right\",\"match\":true,\"event\":{\"eventName\":\"X\"}}\n{\"name\":\"wrong\",\"match\":true,\"event\":{\"eventName\":\"Y\"}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "title: B\nlogsource: {product: aws}\ndetection:\n  s:\n    eventName|bogus: X\n  condition: s\n",
    )
    .unwrap();
    let out = trailwatch()
        .args(["rules", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("a.tests.jsonl:2 \"wrong\": expected a match, got no match"),
        "{text}"
    );
    assert!(text.contains("1 cases passed, 1 failed"), "{text}");
    let out = trailwatch()
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("b.yml:5") && text.contains("bogus"), "{text}");
    assert!(text.contains("b.yml: no .tests.jsonl fixtures"), "{text}");
    // --strict-rules makes a bad rule fatal for scan.
    let f = dir.path().join("in.json");
    std::fs::write(&f, "{\"eventName\":\"X\"}").unwrap();
    let out = trailwatch()
        .args(["scan", "--strict-rules", "--rules"])
        .arg(dir.path())
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
