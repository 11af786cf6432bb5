//! Sigma filters (the Sigma filters specification): exceptions a team
//! writes in files of its own, without editing the rules they tune. A
//! filter names the rules it applies to (by id, name or title; none: every
//! rule) and a detection; a match of such a rule on a record the filter's
//! detection also matches is removed before it alerts or feeds a
//! correlation, and counted (`trailwatch_filtered_total{filter}`), so an
//! exception never hides what it does.
//!
//! Filters are read from the rule directories (any YAML document with a
//! `filter:` section) and from `rules.filters` in the configuration, which
//! adds them on top of the rules in use (the built-in pack included).

use std::sync::atomic::{AtomicU64, Ordering};

use super::compile::Matcher;

/// One compiled filter.
#[derive(Debug)]
pub struct Filter {
    /// Its id (else its file and title): the metric's label, from the
    /// operator's own files.
    pub id: String,
    pub title: String,
    pub path: String,
    /// The rules it names; `None`: every rule.
    pub targets: Option<Vec<String>>,
    /// Its Sigma `name`, which `rules.dry_run` may use.
    pub name: Option<String>,
    pub(super) matcher: Matcher,
    /// Removes nothing: counts what it would have removed (`dry_run: true`
    /// in its document, or `rules.dry_run`), so an exception can be tried
    /// before it silences anything.
    pub dry_run: bool,
    /// Matches removed (in dry run: that it would have removed) since
    /// [`Filter::take_removed`] last ran.
    removed: AtomicU64,
}

impl Filter {
    pub(super) fn new(rule: &rsigma_parser::FilterRule, matcher: Matcher, path: &str) -> Filter {
        Filter {
            id: rule
                .id
                .clone()
                .unwrap_or_else(|| format!("{path}#{}", rule.title)),
            title: rule.title.clone(),
            path: path.to_owned(),
            targets: match &rule.rules {
                rsigma_parser::FilterRuleTarget::Any => None,
                rsigma_parser::FilterRuleTarget::Specific(t) => Some(t.clone()),
            },
            name: rule.name.clone(),
            matcher,
            dry_run: false,
            removed: AtomicU64::new(0),
        }
    }

    /// Whether the filter removes this match (and count it if it matches,
    /// removed or, in dry run, not).
    pub(super) fn removes(&self, r: &crate::parse::Record<'_, '_>) -> bool {
        let hit = self.matcher.matches(r);
        if hit {
            self.removed.fetch_add(1, Ordering::Relaxed);
        }
        hit && !self.dry_run
    }

    /// Matches removed since the last call (the daemon adds them to its
    /// metric after each batch; `scan` sums them for its summary).
    pub(crate) fn take_removed(&self) -> u64 {
        self.removed.swap(0, Ordering::Relaxed)
    }
}
