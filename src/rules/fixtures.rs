//! Rule tests: each rule file `NAME.yml` may have a sibling
//! `NAME.tests.jsonl`, one case per line:
//!
//! ```json
//! {"name": "root signs in", "match": true, "event": {...}}
//! {"name": "ten denials", "match": true, "events": [{...}, ...]}
//! ```
//!
//! `event` cases test a detection rule on one event; `events` cases run a
//! sequence (in order) through the whole rule set, correlations included.
//! A case passes when the file's rule matches exactly when `match` says.
//! Rules are evaluated with every rule of the directories loaded, so
//! correlations find the rules they reference in other files.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use super::rule_files;
use super::{LoadError, RuleSet};
use crate::pipeline::evaluate_document;

/// One fixture line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(rename = "match")]
    expect: bool,
    event: Option<serde_json::Value>,
    events: Option<Vec<serde_json::Value>>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The fixture file.
    pub file: String,
    /// 1-based line in it.
    pub line: usize,
    pub name: String,
    pub expect: bool,
    pub got: bool,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.expect == self.got
    }
}

/// Everything a `rules test` run found.
#[derive(Debug, Default)]
pub struct TestReport {
    pub results: Vec<CaseResult>,
    /// Fixture files that could not be read or parsed, and rule files
    /// without fixtures: (file, problem).
    pub problems: Vec<(String, String)>,
    /// Rule files that have fixtures.
    pub files: usize,
}

impl TestReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed()).count()
    }
}

/// The fixture file of a rule file.
pub fn fixture_path(rule_file: &Path) -> PathBuf {
    rule_file.with_extension("tests.jsonl")
}

/// Run the fixtures of every rule file under `dirs`.
pub fn run(dirs: &[PathBuf]) -> Result<TestReport, LoadError> {
    let rules = RuleSet::load(dirs)?;
    let mut report = TestReport::default();
    for e in &rules.errors {
        report.problems.push((e.path.clone(), e.message.clone()));
    }
    for file in rule_files(dirs)? {
        let ids = ids_in(&file);
        let fixtures = fixture_path(&file);
        let Ok(text) = std::fs::read_to_string(&fixtures) else {
            report.problems.push((
                file.display().to_string(),
                "has no .tests.jsonl fixtures".into(),
            ));
            continue;
        };
        report.files += 1;
        let fname = fixtures.display().to_string();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let case: Case = match serde_json::from_str(line) {
                Ok(c) => c,
                Err(e) => {
                    report
                        .problems
                        .push((format!("{fname}:{}", i + 1), e.to_string()));
                    continue;
                }
            };
            let doc = match (&case.event, &case.events) {
                (Some(ev), None) => ev.to_string(),
                (None, Some(evs)) => serde_json::Value::from(evs.clone()).to_string(),
                _ => {
                    report.problems.push((
                        format!("{fname}:{}", i + 1),
                        "a case needs exactly one of `event` or `events`".into(),
                    ));
                    continue;
                }
            };
            let (_, matched) = evaluate_document(doc.as_bytes(), &rules);
            report.results.push(CaseResult {
                file: fname.clone(),
                line: i + 1,
                name: case.name,
                expect: case.expect,
                got: matched.iter().any(|m| ids.contains(m)),
            });
        }
    }
    Ok(report)
}

/// Ids (or, without one, what the loader uses instead) of the rules and
/// correlations a file defines.
fn ids_in(file: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let Ok(c) = rsigma_parser::parse_sigma_yaml(&text) else {
        return Vec::new();
    };
    let path = file.display().to_string();
    c.rules
        .iter()
        .map(|r| r.id.clone().unwrap_or_else(|| path.clone()))
        .chain(c.correlations.iter().map(|r| {
            r.id.clone()
                .unwrap_or_else(|| format!("{path}#{}", r.title))
        }))
        .collect()
}
