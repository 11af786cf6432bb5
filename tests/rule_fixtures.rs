//! Every rule in `rules/` against its sibling `NAME.tests.jsonl` fixtures:
//! each event must match its own rule exactly when `"match": true`, and each
//! rule must have at least one positive case and one near miss.

mod common;

use std::path::Path;

use trailwatch::pipeline::{Limits, process_object};
use trailwatch::rules::RuleSet;

#[test]
fn every_builtin_rule_matches_its_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let builtin = RuleSet::builtin();
    assert!(
        builtin.errors.is_empty(),
        "built-in pack must load cleanly: {:?}",
        builtin.errors
    );
    let mut checked = 0;
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let rules = RuleSet::load(&[path.to_path_buf()]).unwrap();
        assert!(
            rules.errors.is_empty(),
            "{}: {:?}",
            path.display(),
            rules.errors
        );
        assert_eq!(rules.len(), 1, "one rule per file: {}", path.display());
        let meta = &rules.rules()[0].meta;
        assert!(
            builtin.rules().iter().any(|r| r.meta.id == meta.id),
            "{} is embedded in the binary",
            path.display()
        );
        let fixtures = path.with_extension("tests.jsonl");
        let text = std::fs::read_to_string(&fixtures).unwrap_or_else(|e| {
            panic!(
                "{} needs fixtures {}: {e}",
                path.display(),
                fixtures.display()
            )
        });
        let (mut pos, mut neg) = (0, 0);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let want = case["match"].as_bool().unwrap();
            let event = case["event"].to_string();
            let report = process_object("fixture", event.as_bytes(), &rules, Limits::default());
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            assert_eq!(report.records, 1);
            assert_eq!(
                !report.alerts.is_empty(),
                want,
                "{}: case {:?}",
                path.display(),
                case["name"]
            );
            // The built-in pack as a whole agrees about this rule.
            let all = process_object("fixture", event.as_bytes(), &builtin, Limits::default());
            assert_eq!(all.alerts.iter().any(|a| a.rule_id == meta.id), want);
            if want { pos += 1 } else { neg += 1 }
        }
        assert!(
            pos >= 1 && neg >= 1,
            "{} needs a match and a near miss",
            fixtures.display()
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        builtin.len(),
        "every built-in rule has a file and fixtures"
    );
}
