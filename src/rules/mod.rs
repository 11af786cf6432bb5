//! Rules stage: loads Sigma rules (rsigma-parser reads the YAML), compiles
//! them into matchers over [`Record`] views, and finds which rules a record
//! matches.
//!
//! Rules are indexed by the `eventName` values they require, so a record is
//! only tested against the rules that could match it plus the few that do
//! not pin an event name: the cost grows with matches, not with rule count.

mod compile;
pub mod filter;
pub mod fixtures;
mod load;
mod pattern;

use load::{correlation_meta, locate, locate_quoted, meta, retired_aggregation, yaml_line};
pub use load::{load_or_builtin, rule_files};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rsigma_parser::{
    ConditionExpr, ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType,
    Level as SigmaLevel,
};
use serde::Serialize;
use thiserror::Error;

use crate::parse::{Ident, Record, Top};
pub use compile::Matcher;

/// The built-in pack: every file under `rules/`, embedded at build time
/// (see `build.rs`) so the installed binary works anywhere.
const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

/// A rule's Sigma level, lowest first: ordered, so "at or above" is a
/// comparison (it replaces the string ranks each sink kept). Written and
/// read as Sigma's lowercase names.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    /// Every level, lowest first.
    pub(crate) const ALL: [Level; 5] = [
        Level::Informational,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    /// From its Sigma name (configuration values: `min_level`, routes).
    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == name)
    }

    fn of(level: SigmaLevel) -> Level {
        match level {
            SigmaLevel::Informational => Level::Informational,
            SigmaLevel::Low => Level::Low,
            SigmaLevel::Medium => Level::Medium,
            SigmaLevel::High => Level::High,
            SigmaLevel::Critical => Level::Critical,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What travels with every match of a rule: its Sigma metadata.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RuleMeta {
    /// Sigma `id` (a UUID), else the file path.
    pub id: String,
    /// Sigma `name`, a short stable identifier, when the rule has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub title: String,
    pub level: Level,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tags: Arc<[String]>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// File the rule came from (`builtin:` prefix for the embedded pack).
    pub path: String,
    /// What the responder does first (the rule's `runbook` key, at most
    /// [`MAX_RUNBOOK_BYTES`]): shown in the mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// Counted and written to the JSON lines, never mailed or sent to a
    /// webhook: a rule being tried on real traffic (the rule's `dry_run:
    /// true`, or `rules.dry_run` in the configuration).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// What a finding of a built-in stage (integrity, inventory) says about
/// itself: its kind, and the one-line detail of this finding.
pub(crate) struct StageRule<'a> {
    /// The stage (`integrity`, `inventory`): the rule's path is
    /// `builtin:STAGE`.
    pub stage: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    pub level: Level,
    pub tags: [&'static str; 2],
    pub reference: &'static str,
    pub runbook: &'static str,
    /// The finding itself; event text, so cleaned of line breaks and bidi
    /// controls before it reaches a mail's text.
    pub detail: &'a str,
}

impl RuleMeta {
    /// The metadata of a built-in stage's finding, as a rule's.
    pub(crate) fn of_stage(r: StageRule<'_>) -> RuleMeta {
        RuleMeta {
            id: format!("trailwatch-{}", r.name.replace('_', "-")),
            name: Some(r.name.to_owned()),
            title: r.title.to_owned(),
            level: r.level,
            status: Some("stable".into()),
            description: Some(crate::alert::bound(&crate::alert::jsonl::clean(Some(
                r.detail,
            )))),
            tags: r.tags.iter().map(|t| (*t).to_owned()).collect(),
            references: vec![r.reference.to_owned()],
            falsepositives: vec![],
            author: Some("trailwatch".into()),
            path: format!("builtin:{}", r.stage),
            runbook: Some(r.runbook.to_owned()),
            dry_run: false,
        }
    }
}

/// A runbook longer than this is refused (it is read in a mail, not a
/// wiki).
pub(crate) const MAX_RUNBOOK_BYTES: usize = 2048;

/// One compiled correlation rule: what the rules stage builds and the
/// [`crate::correlate`] stage runs.
#[derive(Debug, Clone)]
pub struct Correlation {
    pub meta: Arc<RuleMeta>,
    pub kind: CorrelationType,
    /// Referenced base rules, in the order written (temporal_ordered uses it).
    pub rules: Vec<u32>,
    /// Group-by names as written (aliases or field paths), for the alert.
    pub group_names: Vec<String>,
    pub timespan_ms: i64,
    pub predicates: Vec<(ConditionOperator, u64)>,
    /// temporal: an expression over the referenced rules' names/ids.
    pub expr: Option<ConditionExpr>,
    /// The name and id each referenced rule answers to in `expr`.
    pub rule_names: Vec<Vec<String>>,
}

#[cfg(test)]
impl RuleMeta {
    /// A minimal rule for unit tests of later stages.
    pub(crate) fn example(id: &str) -> RuleMeta {
        RuleMeta {
            id: id.into(),
            name: None,
            title: id.to_uppercase(),
            level: Level::High,
            status: None,
            description: None,
            tags: Arc::from([]),
            references: vec![],
            falsepositives: vec![],
            author: None,
            path: "test".into(),
            runbook: None,
            dry_run: false,
        }
    }
}

/// A loaded rule: metadata plus its compiled matcher.
#[derive(Debug, Clone)]
pub struct Rule {
    pub meta: Arc<RuleMeta>,
    pub matcher: Matcher,
    /// Referenced by a correlation rule and not `generate: true`: its matches
    /// feed correlations only and do not alert on their own (Sigma's default).
    pub hidden: bool,
    /// What each correlation that references this rule needs from its events.
    pub feeds: Vec<Feed>,
    /// The filters that apply to it (indexes in the set's filters).
    pub filters: Vec<u32>,
}

/// Fields a correlation reads from the events of one referenced rule
/// (aliases already resolved for that rule).
#[derive(Debug, Clone)]
pub struct Feed {
    /// Index of the correlation in [`RuleSet::correlations`].
    pub correlation: usize,
    pub group_paths: Vec<Vec<Box<str>>>,
    /// value_count's field.
    pub value_path: Option<Vec<Box<str>>>,
}

/// A rule file or rule that could not be loaded.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct RuleError {
    pub path: String,
    /// 1-based line the problem is on, when it can be located.
    pub line: Option<usize>,
    pub message: String,
}

/// `rules.dry_run` names something not loaded.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("no rule, correlation rule or filter has the id or name `{0}`")]
pub struct NoSuchRule(pub String);

/// Why a correlation's threshold cannot be set.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ThresholdError {
    #[error("no correlation rule named `{0}`")]
    NoSuchCorrelation(String),
    #[error("`{rule}` is a {kind} correlation; only event_count and value_count have a threshold")]
    NoThreshold { rule: String, kind: &'static str },
}

/// Failure to read the rule directories themselves.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read rule directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("cannot read rule file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no rules found in {0}")]
    Empty(String),
}

/// Fields rules are indexed on, most selective first: a rule goes in the
/// first one it requires exact values of. Each costs one lookup per record.
const INDEXED: [&str; 4] = ["eventName", "errorCode", "userIdentity.type", "eventSource"];

/// The substring prefilter of one field.
#[derive(Debug)]
struct SubstrIndex {
    path: crate::parse::FieldPath,
    /// ASCII case-insensitive, overlapping matches.
    ac: aho_corasick::AhoCorasick,
    /// Rule of each pattern.
    rules: Vec<u32>,
}

/// Shortest literal worth prefiltering on: shorter ones match most values.
const MIN_PREFILTER_LEN: usize = 3;

/// A compiled, indexed set of rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Per indexed field (see [`INDEXED`]): lowercased value → indexes of
    /// the rules that require it. Each rule is in at most one of them.
    by_field: Vec<rustc_hash::FxHashMap<Box<[u8]>, Vec<u32>>>,
    /// Rules no exact index covers but that require a substring in one
    /// field: one Aho-Corasick pass over that field finds the candidates.
    substr: Vec<SubstrIndex>,
    /// Rules neither index covers: tested on every record.
    always: Vec<u32>,
    /// Correlation rules, resolved against `rules`.
    correlations: Vec<Correlation>,
    /// Correlation rules read but not yet resolved (references may point
    /// to rules in files read later).
    pending: Vec<(String, Option<usize>, CorrelationRule, load::Extras)>,
    /// Sigma filters ([`filter`]), resolved against `rules`.
    filters: Vec<filter::Filter>,
    /// Problems met while loading (bad rules are skipped, not fatal).
    pub errors: Vec<RuleError>,
    /// Unique per built set: keys the per-thread substring-miss cache.
    id: u64,
}

impl RuleSet {
    /// The built-in pack.
    pub fn builtin() -> RuleSet {
        let named: Vec<(String, &str)> = BUILTIN
            .iter()
            .map(|(path, text)| (format!("builtin:{path}"), *text))
            .collect();
        RuleSet::from_texts(named.iter().map(|(p, t)| (p.as_str(), *t)))
    }

    /// Rules from (name, YAML text) pairs, as if read from files of those
    /// names: for tools and tests that hold rules in memory (fuzzing the
    /// loader, for one). Bad rules land in [`RuleSet::errors`].
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = (&'a str, &'a str)>) -> RuleSet {
        let mut set = RuleSet::default();
        for (path, text) in texts {
            set.add_source(path, text);
        }
        set.build_index();
        set
    }

    /// Every `.yml`/`.yaml` file under the given directories (or files).
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, LoadError> {
        let mut set = RuleSet::default();
        for root in paths {
            let files = rule_files(std::slice::from_ref(root))?;
            if files.is_empty() {
                return Err(LoadError::Empty(root.display().to_string()));
            }
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(|source| LoadError::File {
                    path: f.clone(),
                    source,
                })?;
                set.add_source(&f.display().to_string(), &text);
            }
        }
        set.build_index();
        Ok(set)
    }

    /// Parse one file's text and add the rules it holds.
    fn add_source(&mut self, path: &str, text: &str) {
        self.add_text(path, text, false);
    }

    /// Add the filters of `paths` (files or directories) on top of the
    /// rules in use (`rules.filters`): files there hold filters only.
    pub fn add_filters(&mut self, paths: &[PathBuf]) -> Result<(), LoadError> {
        for f in rule_files(paths)? {
            let text = std::fs::read_to_string(&f).map_err(|source| LoadError::File {
                path: f.clone(),
                source,
            })?;
            self.add_text(&f.display().to_string(), &text, true);
        }
        self.resolve_filters();
        Ok(())
    }

    /// The filters, in load order.
    pub fn filters(&self) -> &[filter::Filter] {
        &self.filters
    }

    /// Point each rule at the filters that name it; a filter naming no
    /// loaded rule is a problem (a typo would otherwise silently filter
    /// nothing).
    fn resolve_filters(&mut self) {
        for r in &mut self.rules {
            r.filters.clear();
        }
        for (fi, f) in self.filters.iter().enumerate() {
            let Some(targets) = &f.targets else {
                for r in &mut self.rules {
                    r.filters.push(fi as u32);
                }
                continue;
            };
            for t in targets {
                let mut found = false;
                for r in &mut self.rules {
                    let m = &r.meta;
                    if m.id == *t || m.name.as_deref() == Some(t.as_str()) || m.title == *t {
                        if !r.filters.contains(&(fi as u32)) {
                            r.filters.push(fi as u32);
                        }
                        found = true;
                    }
                }
                if !found {
                    let e = RuleError {
                        path: f.path.clone(),
                        line: None,
                        message: format!(
                            "filter `{}` names rule `{t}`, which is not loaded (filters apply \
                             to detection rules, by id, name or title)",
                            f.title
                        ),
                    };
                    if !self.errors.contains(&e) {
                        self.errors.push(e);
                    }
                }
            }
        }
    }

    fn add_text(&mut self, path: &str, text: &str, filters_only: bool) {
        if let Some(line) = retired_aggregation(text) {
            // rsigma-parser reports this as a condition syntax error; say
            // what it is and how to write it today.
            self.errors.push(RuleError {
                path: path.to_owned(),
                line: Some(line),
                message: "uses the retired aggregation syntax (`| count() > N` or `| near ...` \
                          with `timeframe`); Sigma now expresses this as a correlation rule \
                          (`correlation: {type: event_count | temporal, rules, group-by, \
                          timespan, condition}`)"
                    .into(),
            });
            return;
        }
        let collection = match rsigma_parser::parse_sigma_yaml(text) {
            Ok(c) => c,
            Err(e) => {
                self.errors.push(RuleError {
                    path: path.to_owned(),
                    line: e
                        .location()
                        .map(|l| l.line as usize)
                        .or_else(|| yaml_line(&e.to_string())),
                    message: e.to_string(),
                });
                return;
            }
        };
        for message in &collection.errors {
            self.errors.push(RuleError {
                path: path.to_owned(),
                line: yaml_line(message).or_else(|| locate_quoted(text, message)),
                message: message.clone(),
            });
        }
        let extras = match load::extras(text) {
            Ok(e) => e,
            Err((line, message)) => {
                self.errors.push(RuleError {
                    path: path.to_owned(),
                    line,
                    message,
                });
                return;
            }
        };
        let extras_of = |id: &Option<String>, title: &str| {
            extras
                .get(id.as_deref().unwrap_or(title))
                .cloned()
                .unwrap_or_default()
        };
        for f in &collection.filters {
            match compile::compile_detections(&f.detection) {
                Ok(matcher) => {
                    let mut filter = filter::Filter::new(f, matcher, path);
                    filter.dry_run = extras_of(&f.id, &f.title).dry_run;
                    self.filters.push(filter);
                }
                Err(e) => self.errors.push(RuleError {
                    path: path.to_owned(),
                    line: e.near.as_deref().and_then(|n| locate(text, n)),
                    message: format!("filter `{}`: {}", f.title, e.message),
                }),
            }
        }
        if filters_only && (!collection.rules.is_empty() || !collection.correlations.is_empty()) {
            self.errors.push(RuleError {
                path: path.to_owned(),
                line: None,
                message: "holds rules, not only filters: rules.filters adds filters on top of \
                          the rules in use; put rules in rules.dirs"
                    .into(),
            });
            return;
        }
        for c in collection.correlations {
            let line = locate(text, "correlation");
            let extras = extras_of(&c.id, &c.title);
            self.pending.push((path.to_owned(), line, c, extras));
        }
        for rule in collection.rules {
            match compile::compile(&rule) {
                Ok(matcher) => self.rules.push(Rule {
                    meta: Arc::new({
                        let e = extras_of(&rule.id, &rule.title);
                        RuleMeta {
                            runbook: e.runbook,
                            dry_run: e.dry_run,
                            ..meta(&rule, path)
                        }
                    }),
                    matcher,
                    hidden: false,
                    feeds: Vec::new(),
                    filters: Vec::new(),
                }),
                Err(e) => self.errors.push(RuleError {
                    path: path.to_owned(),
                    line: e.near.as_deref().and_then(|n| locate(text, n)),
                    message: format!("rule `{}`: {}", rule.title, e.message),
                }),
            }
        }
    }

    fn build_index(&mut self) {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.resolve_correlations();
        self.resolve_filters();
        self.by_field = vec![rustc_hash::FxHashMap::default(); INDEXED.len()];
        self.always.clear();
        let mut substr: HashMap<String, Vec<(String, u32)>> = HashMap::new();
        for (i, r) in self.rules.iter().enumerate() {
            let slot = INDEXED
                .iter()
                .enumerate()
                .find_map(|(f, path)| r.matcher.required(path).map(|values| (f, values)));
            match slot {
                Some((f, values)) => {
                    for v in values {
                        self.by_field[f]
                            .entry(v.into_bytes().into_boxed_slice())
                            .or_default()
                            .push(i as u32);
                    }
                }
                None => {
                    // The field whose required literals are most selective.
                    let best = r
                        .matcher
                        .paths()
                        .into_iter()
                        .filter_map(|p| {
                            let lits = r.matcher.required_substrings(&p)?;
                            let shortest = lits.iter().map(String::len).min()?;
                            (shortest >= MIN_PREFILTER_LEN).then_some((shortest, p, lits))
                        })
                        .max_by_key(|(shortest, _, _)| *shortest);
                    match best {
                        Some((_, path, lits)) => substr
                            .entry(path)
                            .or_default()
                            .extend(lits.into_iter().map(|l| (l, i as u32))),
                        None => self.always.push(i as u32),
                    }
                }
            }
        }
        let mut substr: Vec<_> = substr.into_iter().collect();
        substr.sort();
        self.substr = substr
            .into_iter()
            .map(|(path, pats)| SubstrIndex {
                path: crate::parse::FieldPath::new(&path),
                ac: aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    // A handful of short literals: the DFA is small and the
                    // fastest to run over every record's value.
                    .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                    .build(pats.iter().map(|(l, _)| l))
                    .expect("literal patterns always build"),
                rules: pats.iter().map(|(_, r)| *r).collect(),
            })
            .collect();
    }

    /// The candidate lists for a record: one per indexed field, plus the
    /// rules tested on every record. Each list is sorted.
    fn candidate_lists<'s>(&'s self, r: &Record<'_, '_>) -> [&'s [u32]; INDEXED.len() + 1] {
        // (Substring candidates are computed separately: they are owned.)
        let value = |f: usize| match f {
            0 => r.str(Top::EventName),
            1 => r.str(Top::ErrorCode),
            2 => r.ident_str(Ident::Type),
            _ => r.str(Top::EventSource),
        };
        let mut lists: [&[u32]; INDEXED.len() + 1] = [&[]; INDEXED.len() + 1];
        for (f, map) in self.by_field.iter().enumerate() {
            if !map.is_empty()
                && let Some(v) = value(f)
            {
                lists[f] = lookup(map, v);
            }
        }
        lists[INDEXED.len()] = &self.always;
        lists
    }

    /// Turn the correlation rules read into [`Correlation`]s: find the
    /// rules they reference (by `id` or `name`), resolve aliases, and mark
    /// referenced rules hidden unless a correlation asks to `generate` them.
    fn resolve_correlations(&mut self) {
        let mut generate = vec![false; self.rules.len()];
        for (path, line, c, extras) in std::mem::take(&mut self.pending) {
            let fail = |message: String| RuleError {
                path: path.clone(),
                line,
                message: format!("correlation `{}`: {message}", c.title),
            };
            let mut refs = Vec::new();
            let mut missing = Vec::new();
            for r in &c.rules {
                match self
                    .rules
                    .iter()
                    .position(|x| x.meta.id == *r || x.meta.name.as_deref() == Some(r.as_str()))
                {
                    Some(i) => refs.push(i as u32),
                    None => missing.push(r.clone()),
                }
            }
            if !missing.is_empty() {
                self.errors.push(fail(format!(
                    "references {} which no loaded detection rule has as id or name \
                     (chaining correlations is not supported)",
                    missing.join(", ")
                )));
                continue;
            }
            let (predicates, value_field, expr) = match &c.condition {
                CorrelationCondition::Threshold {
                    predicates, field, ..
                } => (predicates.clone(), field.clone(), None),
                CorrelationCondition::Extended(e) => (Vec::new(), None, Some(e.clone())),
            };
            match c.correlation_type {
                CorrelationType::EventCount
                | CorrelationType::ValueCount
                | CorrelationType::Temporal
                | CorrelationType::TemporalOrdered => {}
                other => {
                    self.errors.push(fail(format!(
                        "type {} is not supported (event_count, value_count, temporal, \
                         temporal_ordered are)",
                        other.as_str()
                    )));
                    continue;
                }
            }
            if c.correlation_type == CorrelationType::ValueCount && value_field.is_none() {
                self.errors
                    .push(fail("value_count needs `condition.field`".into()));
                continue;
            }
            if c.timespan.seconds == 0 {
                self.errors.push(fail("timespan must be positive".into()));
                continue;
            }
            let ci = self.correlations.len();
            let rule_names: Vec<Vec<String>> = refs
                .iter()
                .map(|&i| {
                    let m = &self.rules[i as usize].meta;
                    std::iter::once(m.id.clone())
                        .chain(m.name.clone())
                        .collect()
                })
                .collect();
            for (&ri, names) in refs.iter().zip(&rule_names) {
                // An alias maps, per referenced rule (by name or id), to the
                // field holding the group value in that rule's events.
                let field_for = |group: &str| -> Vec<Box<str>> {
                    let f = c
                        .aliases
                        .iter()
                        .find(|a| a.alias == group)
                        .and_then(|a| names.iter().find_map(|n| a.mapping.get(n)))
                        .map(String::as_str)
                        .unwrap_or(group);
                    f.split('.').map(Into::into).collect()
                };
                let feed = Feed {
                    correlation: ci,
                    group_paths: c.group_by.iter().map(|g| field_for(g)).collect(),
                    value_path: value_field
                        .as_ref()
                        .and_then(|f| f.first())
                        .map(|f| field_for(f)),
                };
                let rule = &mut self.rules[ri as usize];
                rule.feeds.push(feed);
                rule.hidden = true;
                generate[ri as usize] |= c.generate;
            }
            self.correlations.push(Correlation {
                meta: Arc::new(RuleMeta {
                    runbook: extras.runbook,
                    dry_run: extras.dry_run,
                    ..correlation_meta(&c, &path)
                }),
                kind: c.correlation_type,
                rules: refs,
                group_names: c.group_by.clone(),
                timespan_ms: (c.timespan.seconds as i64).saturating_mul(1000),
                predicates,
                expr,
                rule_names,
            });
        }
        for (rule, generate) in self.rules.iter_mut().zip(generate) {
            if generate {
                rule.hidden = false;
            }
        }
    }

    /// Override a correlation's count threshold: it then fires at `n` or
    /// more (events, or distinct values for value_count). Found by `name`
    /// or `id`. Lets operators tune bursts without copying the pack.
    pub fn set_threshold(&mut self, rule: &str, n: u64) -> Result<(), ThresholdError> {
        let c = self
            .correlations
            .iter_mut()
            .find(|c| c.meta.name.as_deref() == Some(rule) || c.meta.id == rule)
            .ok_or_else(|| ThresholdError::NoSuchCorrelation(rule.to_owned()))?;
        match c.kind {
            CorrelationType::EventCount | CorrelationType::ValueCount => {
                c.predicates = vec![(rsigma_parser::ConditionOperator::Gte, n)];
                Ok(())
            }
            other => Err(ThresholdError::NoThreshold {
                rule: rule.to_owned(),
                kind: other.as_str(),
            }),
        }
    }

    /// Put the rule, correlation rule or filter with this id or name in dry
    /// run: a rule's alerts are counted and written to the JSON lines but
    /// never mailed or sent; a filter removes nothing and counts what it
    /// would have removed.
    pub fn set_dry_run(&mut self, name: &str) -> Result<(), NoSuchRule> {
        let is = |m: &RuleMeta| m.id == name || m.name.as_deref() == Some(name);
        let mut found = false;
        for r in &mut self.rules {
            if is(&r.meta) {
                Arc::make_mut(&mut r.meta).dry_run = true;
                found = true;
            }
        }
        for c in &mut self.correlations {
            if is(&c.meta) {
                Arc::make_mut(&mut c.meta).dry_run = true;
                found = true;
            }
        }
        for f in &mut self.filters {
            if f.id == name || f.name.as_deref() == Some(name) {
                f.dry_run = true;
                found = true;
            }
        }
        if found {
            Ok(())
        } else {
            Err(NoSuchRule(name.to_owned()))
        }
    }

    /// The correlation rules.
    pub fn correlations(&self) -> &[Correlation] {
        &self.correlations
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule a [`crate::alert::Match`] or [`crate::correlate::Hit`]
    /// names by index.
    pub fn rule(&self, index: u32) -> &Rule {
        &self.rules[index as usize]
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How rules are indexed: (index, rules in it) for each exact index and
    /// substring prefilter, and the titles of rules tested on every record.
    pub fn index_stats(&self) -> (Vec<(String, usize)>, Vec<&str>) {
        let mut per_field: Vec<(String, usize)> = INDEXED
            .iter()
            .zip(&self.by_field)
            .map(|(name, map)| {
                let mut ids: Vec<u32> = map.values().flatten().copied().collect();
                ids.sort_unstable();
                ids.dedup();
                (name.to_string(), ids.len())
            })
            .collect();
        for ix in &self.substr {
            let mut ids = ix.rules.clone();
            ids.sort_unstable();
            ids.dedup();
            per_field.push((format!("{} (substring)", ix.path.dotted()), ids.len()));
        }
        let always = self
            .always
            .iter()
            .map(|&i| self.rules[i as usize].meta.title.as_str())
            .collect();
        (per_field, always)
    }

    /// Rules the substring prefilter lets through for this record, sorted.
    fn substring_candidates(&self, r: &Record<'_, '_>) -> Vec<u32> {
        let mut out = Vec::new();
        for (k, ix) in self.substr.iter().enumerate() {
            r.any_path(&ix.path, &mut |v| {
                let text;
                let hay = match v.kind() {
                    // Match what Pattern sees: non-ASCII text is compared
                    // Unicode-lowercased, and a few characters fold to ASCII
                    // (KELVIN SIGN to `k`); an ASCII-only scan would miss them.
                    crate::parse::Kind::String => match v.as_str().unwrap_or("") {
                        s if s.is_ascii() => s,
                        s => {
                            text = s.to_lowercase();
                            &text
                        }
                    },
                    crate::parse::Kind::Number | crate::parse::Kind::Bool => {
                        text = v.to_json().to_string();
                        &text
                    }
                    _ => return false,
                };
                // Most values hold none of the literals, and the same
                // values come back record after record (a user agent, an
                // error code): remember recent misses per thread.
                let key = MissKey::of(self.id, k, hay);
                if key.as_ref().is_some_and(MissKey::known) {
                    return false;
                }
                if ix.ac.is_match(hay) {
                    out.extend(
                        ix.ac
                            .find_overlapping_iter(hay)
                            .map(|m| ix.rules[m.pattern().as_usize()]),
                    );
                } else if let Some(key) = key {
                    key.remember();
                }
                false
            });
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// How many rules a record is tested against (its index candidates plus
    /// the rules that pin no indexed field).
    pub fn candidates(&self, r: &Record<'_, '_>) -> usize {
        self.candidate_lists(r)
            .iter()
            .map(|l| l.len())
            .sum::<usize>()
            + self.substring_candidates(r).len()
    }

    /// Call `f` with the index and rule of every rule the record matches,
    /// in rule order.
    pub fn for_each_match<'s>(&'s self, r: &Record<'_, '_>, mut f: impl FnMut(usize, &'s Rule)) {
        // A k-way merge of the sorted candidate lists (a rule is in one
        // list only), without allocating, so matches come in rule order.
        let owned = self.substring_candidates(r);
        let base = self.candidate_lists(r);
        let mut lists: [&[u32]; INDEXED.len() + 2] = [&[]; INDEXED.len() + 2];
        lists[..base.len()].copy_from_slice(&base);
        lists[base.len()] = &owned;
        loop {
            let mut best: Option<(usize, u32)> = None;
            for (k, l) in lists.iter().enumerate() {
                if let Some(&head) = l.first()
                    && best.is_none_or(|(_, b)| head < b)
                {
                    best = Some((k, head));
                }
            }
            let Some((k, i)) = best else { break };
            lists[k] = &lists[k][1..];
            let rule = &self.rules[i as usize];
            if rule.matcher.matches(r)
                && !rule
                    .filters
                    .iter()
                    .any(|&fi| self.filters[fi as usize].removes(r))
            {
                f(i as usize, rule);
            }
        }
    }
}

/// Values longer than this are not remembered (rare, and costly to keep).
const MISS_MAX_BYTES: usize = 512;
/// Slots of the per-thread miss cache (direct-mapped by hash).
const MISS_SLOTS: usize = 1024;

/// One remembered miss: (rule set id, substring index, hash, value).
type Miss = (u64, usize, u64, Box<str>);

thread_local! {
    /// Recent values in which a substring index found nothing, one per
    /// slot. Looking a value up costs a hash and a compare; the
    /// Aho-Corasick pass it saves costs several times that on a 150-byte
    /// user agent (SigmaHQ's user-agent rules run on every record). Set
    /// ids never repeat, so a set never reads another's misses.
    static MISSES: std::cell::RefCell<Vec<Miss>> =
        std::cell::RefCell::new(vec![(0, 0, 0, Box::from("")); MISS_SLOTS]);
}

/// Where a value's miss is remembered; `None` for values too long to keep.
struct MissKey<'v> {
    set: u64,
    index: usize,
    hash: u64,
    value: &'v str,
}

impl<'v> MissKey<'v> {
    fn of(set: u64, index: usize, value: &'v str) -> Option<MissKey<'v>> {
        use std::hash::Hasher;
        if value.len() > MISS_MAX_BYTES {
            return None;
        }
        let mut h = rustc_hash::FxHasher::default();
        h.write(value.as_bytes());
        Some(MissKey {
            set,
            index,
            hash: h.finish(),
            value,
        })
    }

    fn slot(&self) -> usize {
        self.hash as usize % MISS_SLOTS
    }

    fn known(&self) -> bool {
        MISSES.with(|m| {
            let (s, i, h, v) = &m.borrow()[self.slot()];
            *s == self.set && *i == self.index && *h == self.hash && **v == *self.value
        })
    }

    fn remember(self) {
        MISSES.with(|m| {
            m.borrow_mut()[self.slot()] = (self.set, self.index, self.hash, Box::from(self.value));
        });
    }
}

/// Index lookup without allocating for the usual short ASCII values (keys
/// are bytes, so the lowercased copy needs no UTF-8 check).
fn lookup<'a>(map: &'a rustc_hash::FxHashMap<Box<[u8]>, Vec<u32>>, name: &str) -> &'a [u32] {
    let mut stack = [0u8; 96];
    let found = if name.is_ascii() && name.len() <= stack.len() {
        let buf = &mut stack[..name.len()];
        buf.copy_from_slice(name.as_bytes());
        buf.make_ascii_lowercase();
        map.get(&*buf)
    } else {
        map.get(name.to_lowercase().as_bytes())
    };
    found.map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests;
