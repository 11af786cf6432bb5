//! Reading rule files: the metadata each rule carries, where a problem is
//! in its file, and the rule directories (or the built-in pack).

use std::collections::HashMap;
use std::path::PathBuf;

use rsigma_parser::{CorrelationRule, SigmaRule};

use super::{Level, LoadError, MAX_RUNBOOK_BYTES, RuleMeta, RuleSet};

pub(super) fn meta(rule: &SigmaRule, path: &str) -> RuleMeta {
    RuleMeta {
        id: rule.id.clone().unwrap_or_else(|| path.to_owned()),
        name: rule.name.clone(),
        title: rule.title.clone(),
        level: rule.level.map_or(Level::Medium, Level::of),
        status: rule
            .status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        description: rule.description.clone(),
        tags: rule.tags.clone().into(),
        references: rule.references.clone(),
        falsepositives: rule.falsepositives.clone(),
        author: rule.author.clone(),
        path: path.to_owned(),
        runbook: None,
        dry_run: false,
    }
}

pub(super) fn correlation_meta(c: &CorrelationRule, path: &str) -> RuleMeta {
    RuleMeta {
        id: c
            .id
            .clone()
            .unwrap_or_else(|| format!("{path}#{}", c.title)),
        name: c.name.clone(),
        title: c.title.clone(),
        level: c.level.map_or(Level::Medium, Level::of),
        status: c
            .status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        description: c.description.clone(),
        tags: c.tags.clone().into(),
        references: c.references.clone(),
        falsepositives: c.falsepositives.clone(),
        author: c.author.clone(),
        path: path.to_owned(),
        runbook: None,
        dry_run: false,
    }
}

/// The line of the first line that mentions `needle` as a YAML key or value.
pub(super) fn locate(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with(needle)
                || t.contains(&format!("{needle}:"))
                || t.contains(&format!("{needle}|"))
        })
        .map(|i| i + 1)
}

/// The line of a condition using the pre-correlation aggregation forms
/// (`sel | count() > 5`, `sel1 | near sel2`).
pub(super) fn retired_aggregation(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            (t.starts_with("condition:") || t.starts_with("- ")) && {
                let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
                compact.contains("|count(") || t.contains("| near ") || t.contains("|near ")
            }
        })
        .map(|i| i + 1)
}

/// rsigma-parser names the offending token in quotes (`Unknown modifier
/// 'bogus'`) without a position: find the line that holds it.
pub(super) fn locate_quoted(text: &str, message: &str) -> Option<usize> {
    message
        .split(['\'', '`'])
        .skip(1)
        .step_by(2)
        .filter(|t| !t.is_empty())
        .find_map(|token| text.lines().position(|l| l.contains(token)))
        .map(|i| i + 1)
}

/// Every rule file (`.yml`/`.yaml`) under the directories, sorted.
pub fn rule_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for root in dirs {
        for entry in walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|source| LoadError::Dir {
                path: root.clone(),
                source,
            })?;
            let p = entry.path();
            if entry.file_type().is_file()
                && matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
            {
                out.push(p.to_path_buf());
            }
        }
    }
    Ok(out)
}

/// YAML errors say "at line N column M"; pull N out.
pub(super) fn yaml_line(message: &str) -> Option<usize> {
    let rest = &message[message.find("line ")? + 5..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Load rules from directories, or the built-in pack when none are given.
pub fn load_or_builtin(dirs: &[PathBuf]) -> Result<RuleSet, LoadError> {
    if dirs.is_empty() {
        Ok(RuleSet::builtin())
    } else {
        RuleSet::load(dirs)
    }
}

/// trailwatch's own keys of one rule document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Extras {
    pub(super) runbook: Option<String>,
    pub(super) dry_run: bool,
}

/// The `runbook` and `dry_run` keys of every document in `text` (rules,
/// correlations, filters alike), by the document's `id`, else its `title`;
/// or the first problem (a wrong-typed key, with its line when found).
/// rsigma-parser keeps unknown keys of detection rules only, so the file
/// is read once more for them (at load time, never per event).
pub(super) fn extras(text: &str) -> Result<HashMap<String, Extras>, (Option<usize>, String)> {
    use serde::Deserialize;
    let mut out = HashMap::new();
    for doc in yaml_serde::Deserializer::from_str(text) {
        // A document that does not parse is rsigma-parser's to report;
        // the documents after it cannot be read (the iterator repeats the
        // error for ever: stop at the first).
        let Ok(v) = yaml_serde::Value::deserialize(doc) else {
            break;
        };
        let Some(key) = v
            .get("id")
            .and_then(|i| i.as_str())
            .or_else(|| v.get("title").and_then(|t| t.as_str()))
        else {
            continue;
        };
        let mut e = Extras::default();
        match v.get("runbook") {
            None => {}
            Some(r) => match r.as_str() {
                Some(runbook) => {
                    let runbook = runbook.trim();
                    // Refused, not cut: a runbook cut mid-step would tell
                    // the responder half of what to do.
                    if runbook.len() > MAX_RUNBOOK_BYTES {
                        return Err((
                            locate(text, "runbook"),
                            format!(
                                "`runbook` is {} bytes, at most {MAX_RUNBOOK_BYTES}: keep what \
                                 the responder does first, and link to the full runbook",
                                runbook.len()
                            ),
                        ));
                    }
                    e.runbook = Some(runbook.to_owned());
                }
                None => {
                    return Err((
                        locate(text, "runbook"),
                        "`runbook` must be text (what the responder does first)".into(),
                    ));
                }
            },
        }
        match v.get("dry_run") {
            None => {}
            Some(d) => match d.as_bool() {
                Some(b) => e.dry_run = b,
                None => {
                    return Err((
                        locate(text, "dry_run"),
                        "`dry_run` must be true or false".into(),
                    ));
                }
            },
        }
        if e != Extras::default() {
            out.insert(key.to_owned(), e);
        }
    }
    Ok(out)
}
