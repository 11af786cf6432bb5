//! Alert stage: what a match becomes, and the sinks that deliver it.
//!
//! An [`Alert`] owns its fields (it outlives the decoded buffer it came
//! from). Every field copied from the event is attacker-controlled (user
//! names, user agents, request parameters), so each is bounded in length
//! here, once, before any sink sees it; sinks add the escaping their format
//! needs (JSON escaping in [`jsonl`], control characters in the text form).

pub mod jsonl;

use serde::Serialize;

use crate::parse::{Record, Top};
use std::sync::Arc;

use crate::rules::RuleMeta;

/// Longest event-derived field kept in an alert, in bytes. A user agent or
/// ARN is far shorter; anything longer is an attack on the reader or the
/// sink, and is cut with a marker that says how much was dropped.
pub const MAX_FIELD_BYTES: usize = 1024;

/// One rule match on one event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    pub rule_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    pub rule_title: String,
    pub level: &'static str,
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    /// As written in the event (some producers use odd formats; kept as is).
    pub event_time: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    /// `userIdentity.arn`, else `userIdentity.type`.
    pub principal: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The file or object the event came from.
    pub source: String,
    /// Index of the record in that file (for a correlation: of the event
    /// that completed it).
    pub record: usize,
    pub tags: Vec<String>,
    /// Correlation alerts only: the correlation type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<&'static str>,
    /// Correlation alerts only: group-by field → value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<std::collections::BTreeMap<String, String>>,
    /// Correlation alerts only: events counted (value_count: distinct values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Correlation alerts only: the contributing events (at most 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
    /// Correlation alerts only: eventTime of the first contributing event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_event_time: Option<String>,
    /// The rule's full Sigma metadata: status, description, references,
    /// false positives, author, the file it came from.
    pub rule: Arc<RuleMeta>,
}

impl Alert {
    /// Build the alert for `rule` matching record number `index` of `source`.
    pub fn new(rule: &Arc<RuleMeta>, r: &Record<'_, '_>, source: &str, index: usize) -> Alert {
        let s = |t: Top| r.str(t).map(bound);
        Alert {
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            rule_title: rule.title.clone(),
            level: rule.level,
            event_id: s(Top::EventId),
            event_name: s(Top::EventName),
            event_source: s(Top::EventSource),
            event_time: s(Top::EventTime),
            account: s(Top::RecipientAccountId)
                .or_else(|| r.str_at(&["userIdentity", "accountId"]).map(bound)),
            region: s(Top::AwsRegion),
            principal: r
                .str_at(&["userIdentity", "arn"])
                .or_else(|| r.str_at(&["userIdentity", "type"]))
                .map(bound),
            source_ip: s(Top::SourceIpAddress),
            user_agent: s(Top::UserAgent),
            source: source.to_owned(),
            record: index,
            tags: rule.tags.clone(),
            correlation: None,
            group: None,
            count: None,
            event_ids: None,
            first_event_time: None,
            rule: Arc::clone(rule),
        }
    }
}

#[cfg(test)]
impl Alert {
    /// An alert with every event field empty, for unit tests.
    pub(crate) fn example(rule: Arc<RuleMeta>) -> Alert {
        Alert {
            rule_id: rule.id.clone(),
            rule_name: None,
            rule_title: rule.title.clone(),
            level: rule.level,
            event_id: None,
            event_name: None,
            event_source: None,
            event_time: None,
            account: None,
            region: None,
            principal: None,
            source_ip: None,
            user_agent: None,
            source: "test".into(),
            record: 0,
            tags: vec![],
            correlation: None,
            group: None,
            count: None,
            event_ids: None,
            first_event_time: None,
            rule,
        }
    }
}

/// Copy at most [`MAX_FIELD_BYTES`] of `s`, cut on a character boundary,
/// with a marker saying how many bytes were dropped.
pub fn bound(s: &str) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_owned();
    }
    let mut cut = MAX_FIELD_BYTES;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[{} bytes truncated]", &s[..cut], s.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_cuts_on_char_boundary_and_says_so() {
        assert_eq!(bound("short"), "short");
        let long = "é".repeat(MAX_FIELD_BYTES); // 2 bytes each
        let b = bound(&long);
        assert!(b.len() < MAX_FIELD_BYTES + 40);
        assert!(b.ends_with(&format!(
            "…[{} bytes truncated]",
            long.len() - MAX_FIELD_BYTES
        )));
    }
}
