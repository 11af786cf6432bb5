//! Alert stage: what a match becomes, and the sinks that deliver it.
//!
//! An [`Alert`] owns its fields (it outlives the decoded buffer it came
//! from). Every field copied from the event is attacker-controlled (user
//! names, user agents, request parameters), so each is bounded in length
//! here, once, before any sink sees it; sinks add the escaping their format
//! needs (JSON escaping in [`jsonl`], control characters in the text form).

pub mod email;
pub mod jsonl;
pub mod outbox;
pub mod remote;
pub mod webhook;

use serde::{Deserialize, Deserializer, Serialize};

use crate::parse::{Record, Top};
use std::sync::Arc;

use crate::rules::RuleMeta;

/// Longest event-derived field kept in an alert, in bytes. A user agent or
/// ARN is far shorter; anything longer is an attack on the reader or the
/// sink, and is cut with a marker that says how much was dropped.
pub const MAX_FIELD_BYTES: usize = 1024;

/// Largest event kept whole in an alert (compact JSON). Above it, the big
/// members are replaced by a note, so a 100 MB record cannot become a
/// 100 MB email or outbox entry.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

/// One rule match on one event. It round-trips through JSON: the outbox
/// stores alerts this way until a remote sink accepts them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Alert {
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    pub rule_title: String,
    #[serde(deserialize_with = "known_str")]
    pub level: Known,
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
    /// The rule's tags, shared with it (one per alert would be a copy of a
    /// list per match).
    pub tags: Arc<[String]>,
    /// Correlation alerts only: the correlation type.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_str_opt"
    )]
    pub correlation: Option<Known>,
    /// Correlation alerts only: group-by field → value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<std::collections::BTreeMap<String, String>>,
    /// Correlation alerts only: events counted (value_count: distinct values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Correlation alerts only: the contributing events (at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
    /// Correlation alerts only: eventTime of the first contributing event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_event_time: Option<String>,
    /// The event itself (for a correlation, the one that completed it),
    /// bounded by [`MAX_EVENT_BYTES`]; when asked for (`with_events`): it
    /// costs more than the rest of the alert together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
    /// The rule's full Sigma metadata: status, description, references,
    /// false positives, author, the file it came from.
    pub rule: Arc<RuleMeta>,
}

impl Alert {
    /// An alert of `rule` on record `record` of `source` with every event
    /// field empty: the base the other constructors fill in.
    pub fn of_rule(rule: &Arc<RuleMeta>, source: String, record: usize) -> Alert {
        Alert {
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
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
            source,
            record,
            tags: Arc::clone(&rule.tags),
            correlation: None,
            group: None,
            count: None,
            event_ids: None,
            first_event_time: None,
            event: None,
            rule: Arc::clone(rule),
        }
    }

    /// Build the alert for `rule` matching record number `index` of `source`.
    pub fn new(rule: &Arc<RuleMeta>, r: &Record<'_, '_>, source: &str, index: usize) -> Alert {
        let s = |t: Top| r.str(t).map(bound);
        Alert {
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
            ..Alert::of_rule(rule, source.to_owned(), index)
        }
    }
}

/// A string from [`KNOWN`]. An alias, not `&'static str` written out: serde
/// would otherwise make the whole alert borrow from its input for `'static`.
pub type Known = &'static str;

/// The strings a `&'static str` field may hold (levels, correlation
/// types), so a stored alert deserializes back to the same value.
const KNOWN: &[&str] = &[
    "informational",
    "low",
    "medium",
    "high",
    "critical",
    "event_count",
    "value_count",
    "temporal",
    "temporal_ordered",
];

pub(crate) fn known_str<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    KNOWN
        .iter()
        .find(|k| **k == s)
        .copied()
        .ok_or_else(|| serde::de::Error::custom(format!("unknown level or type {s:?}")))
}

fn known_str_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
    known_str(d).map(Some)
}

/// Keep an event whole if its JSON fits [`MAX_EVENT_BYTES`]; otherwise
/// replace its largest members by a note of their size until it fits.
pub fn bound_event(event: serde_json::Value) -> serde_json::Value {
    let size = |v: &serde_json::Value| serde_json::to_vec(v).map_or(0, |b| b.len());
    let mut total = size(&event);
    if total <= MAX_EVENT_BYTES {
        return event;
    }
    let serde_json::Value::Object(mut map) = event else {
        return serde_json::Value::String(format!("[event of {total} bytes omitted]"));
    };
    let mut sizes: Vec<(usize, String)> = map.iter().map(|(k, v)| (size(v), k.clone())).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    for (n, key) in sizes {
        if total <= MAX_EVENT_BYTES {
            break;
        }
        let note = format!("[{n} bytes omitted]");
        total = total + note.len() + 2 - n;
        map.insert(key, serde_json::Value::String(note));
    }
    if total > MAX_EVENT_BYTES {
        return serde_json::Value::String(format!("[event with {} members omitted]", map.len()));
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
impl Alert {
    /// An alert with every event field empty, for unit tests.
    pub(crate) fn example(rule: Arc<RuleMeta>) -> Alert {
        Alert::of_rule(&rule, "test".into(), 0)
    }
}

/// A secret (SMTP password, webhook URL) read from the environment or a
/// file. Its `Debug` shows nothing, so it cannot leak through a logged
/// config or error.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// From the variable `env` or the file `file` (trailing newline
    /// dropped); `None` when neither is given. Errors name the variable or
    /// file, never the value.
    pub fn load(
        env: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> Result<Option<Secret>, String> {
        if let Some(name) = env {
            return match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
                _ => Err(format!("environment variable {name} is not set")),
            };
        }
        if let Some(path) = file {
            let v = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let v = v.trim_end_matches(['\n', '\r']).to_owned();
            if v.is_empty() {
                return Err(format!("{} is empty", path.display()));
            }
            return Ok(Some(Secret(v)));
        }
        Ok(None)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A host name or address that stays on this machine (`localhost`,
/// 127.0.0.0/8, `::1`, bracketed or not): where plain-text SMTP and
/// `http://` webhooks are allowed.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
    fn alerts_round_trip_through_json() {
        let mut a = Alert::example(Arc::new(RuleMeta::example("r1")));
        a.correlation = Some("event_count");
        a.event = Some(serde_json::json!({"eventName": "X"}));
        let back: Alert = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn big_events_keep_their_small_fields() {
        let e = serde_json::json!({
            "eventName": "PutObject",
            "requestParameters": {"x": "a".repeat(100_000)},
        });
        let b = bound_event(e);
        assert!(serde_json::to_vec(&b).unwrap().len() <= MAX_EVENT_BYTES);
        assert_eq!(b["eventName"], "PutObject");
        assert!(
            b["requestParameters"]
                .as_str()
                .unwrap()
                .contains("bytes omitted")
        );
    }

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
