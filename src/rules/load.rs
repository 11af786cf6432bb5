//! Reading rule files: the metadata each rule carries, where a problem is
//! in its file, and the rule directories (or the built-in pack).

use std::path::PathBuf;

use rsigma_parser::{CorrelationRule, SigmaRule};

use super::{Level, LoadError, RuleMeta, RuleSet};

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
