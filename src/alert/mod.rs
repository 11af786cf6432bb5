//! Alert stage: what a match becomes, and the sinks that deliver it.
//!
//! An [`Alert`] owns its fields (it outlives the decoded buffer it came
//! from). Every field copied from the event is attacker-controlled (user
//! names, user agents, request parameters), so each is bounded in length
//! here, once, before any sink sees it; sinks add the escaping their format
//! needs (JSON escaping in [`jsonl`], control characters in the text form).

pub mod email;
pub mod incident;
pub mod jsonl;
pub mod outbox;
pub mod pagerduty;
pub(crate) mod remote;
pub mod webhook;

use serde::{Deserialize, Deserializer, Serialize};

use crate::parse::{Ident, Record, Top};
use std::sync::Arc;

use crate::rules::{Level, RuleMeta};

mod event;
pub use event::EventJson;
#[cfg(test)]
use event::bound_event;

/// Longest event-derived field kept in an alert, in bytes. A user agent or
/// ARN is far shorter; anything longer is an attack on the reader or the
/// sink, and is cut with a marker that says how much was dropped.
pub(crate) const MAX_FIELD_BYTES: usize = 1024;

/// Largest event kept whole in an alert (compact JSON). Above it, the big
/// members are replaced by a note, so a 100 MB record cannot become a
/// 100 MB email or outbox entry.
pub(crate) const MAX_EVENT_BYTES: usize = 16 * 1024;

/// One rule match on one event. It round-trips through JSON: the outbox
/// stores alerts this way until a remote sink accepts them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Alert {
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    pub rule_title: String,
    pub level: Level,
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    /// As written in the event (some producers use odd formats; kept as is).
    pub event_time: Option<String>,
    pub account: Option<String>,
    /// The account's name from the `[accounts]` configuration, when it
    /// has one (set as the daemon delivers the alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
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
    /// Correlation alerts only: the API calls in the window, by event name,
    /// most frequent first (at most [`crate::correlate::MAX_CALLS`] names;
    /// the rest summed under `…`): what the burst was trying to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<Vec<(String, u64)>>,
    /// The event itself, bounded by [`MAX_EVENT_BYTES`]; when asked for
    /// (`with_events`): it costs more than the rest of the alert together.
    /// Correlation alerts carry none (their windows keep each event's
    /// fields, not the event: see [`Context`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventJson>,
    /// The rule's full Sigma metadata: status, description, references,
    /// false positives, author, the file it came from.
    pub rule: Arc<RuleMeta>,
}

impl Alert {
    /// The account as a reader wants it: "production (123456789012)" when
    /// named, else the id; none without an account.
    pub fn account_label(&self) -> Option<String> {
        let id = self.account.as_ref()?;
        Some(match &self.account_name {
            Some(name) => format!("{name} ({id})"),
            None => id.clone(),
        })
    }

    /// Name the account from `names` (the `[accounts]` table).
    pub(crate) fn name_account(&mut self, names: &std::collections::BTreeMap<String, String>) {
        if names.is_empty() {
            return;
        }
        self.account_name = self.account.as_ref().and_then(|a| names.get(a)).cloned();
    }

    /// The key that makes an alert unique: detections by rule and event,
    /// correlations by rule, group and first contributing event. The
    /// daemon's deduplication and the mails' Message-IDs use it.
    pub fn dedup_key(&self) -> String {
        match (&self.correlation, &self.event_ids) {
            (Some(_), Some(ids)) => format!(
                "c\u{0}{}\u{0}{}\u{0}{}",
                self.rule_id,
                serde_json::to_string(&self.group).unwrap_or_default(),
                ids.first().map_or("", String::as_str)
            ),
            _ => match &self.event_id {
                Some(id) => format!("d\u{0}{}\u{0}{id}", self.rule_id),
                None => format!("d\u{0}{}\u{0}{}#{}", self.rule_id, self.source, self.record),
            },
        }
    }

    /// An alert of `rule` on record `record` of `source` with every event
    /// field empty: the base [`Match::to_alert`] and correlations fill in.
    pub(crate) fn of_rule(rule: &Arc<RuleMeta>, source: String, record: usize) -> Alert {
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
            account_name: None,
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
            calls: None,
            event: None,
            rule: Arc::clone(rule),
        }
    }
}

/// The event fields an alert carries, in the order [`Match`] packs them.
pub(crate) const FIELDS: usize = 9;

/// A rule match as the hot path records it: the rule's index, the record's
/// index and the alert's event fields, packed end to end in a text shared
/// by the matches of one batch of records ([`MatchBatch`]). About 90
/// bytes and no allocation of its own, where an [`Alert`] is about 450
/// bytes and a dozen: a rule that matches every record (SigmaHQ has some)
/// would otherwise cost more than parsing. Sinks that need an [`Alert`]
/// make one with [`Match::to_alert`]; `scan` writes its JSON straight from
/// here ([`jsonl::RuleJson`]).
#[derive(Clone)]
pub struct Match {
    /// Index of the rule in the [`crate::rules::RuleSet`] that matched.
    pub rule: u32,
    /// Index of the record in its object.
    pub record: usize,
    /// The batch's text; this match's fields are a slice of it.
    text: Arc<String>,
    fields: Fields,
    /// The event, when asked for ([`EventJson::of`]).
    pub event: Option<EventJson>,
}

/// An alert's event fields for one event, in a text of their own: what a
/// correlation window keeps per event (about 300 bytes and one allocation,
/// where an [`Alert`] is about 450 bytes and a dozen, and no event), so a
/// flood of hits from distinct principals costs little per open group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    text: Box<str>,
    fields: Fields,
    /// The object the event came from.
    pub source: Arc<str>,
    /// The record's index in it.
    pub record: usize,
}

impl Context {
    /// From event fields in [`Match`]'s order: event id, name, source,
    /// time, account, region, principal, source IP, user agent.
    pub(crate) fn from_fields(
        values: [Option<&str>; FIELDS],
        source: Arc<str>,
        record: usize,
    ) -> Context {
        let mut text = String::new();
        let mut ends = [0u32; FIELDS];
        let mut present = 0u16;
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                push_bounded(&mut text, v);
                present |= 1 << i;
            }
            ends[i] = text.len() as u32;
        }
        Context {
            text: text.into_boxed_str(),
            fields: Fields {
                start: 0,
                ends,
                present,
            },
            source,
            record,
        }
    }

    fn field(&self, i: usize) -> Option<&str> {
        self.fields.get(&self.text, i)
    }

    /// The event's id; an empty one is none (it would make distinct
    /// events one, for deduplication and correlation counting).
    pub fn event_id(&self) -> Option<&str> {
        self.field(0).filter(|id| !id.is_empty())
    }

    pub fn event_time(&self) -> Option<&str> {
        self.field(3)
    }

    pub fn event_name(&self) -> Option<&str> {
        self.field(1)
    }

    /// The fields in order (see [`Context::from_fields`]).
    pub fn values(&self) -> [Option<&str>; FIELDS] {
        std::array::from_fn(|i| self.field(i))
    }

    /// An alert of `rule` with these fields (no event).
    pub(crate) fn to_alert(&self, rule: &Arc<RuleMeta>) -> Alert {
        alert_of(
            &self.text,
            &self.fields,
            None,
            rule,
            &self.source,
            self.record,
        )
    }
}

/// Where a match's fields lie in its batch's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    /// Start of the first field.
    start: u32,
    /// End of each field, each bounded by [`MAX_FIELD_BYTES`].
    ends: [u32; FIELDS],
    /// Bit `i` set: field `i` is present (an empty string is not absent).
    present: u16,
}

impl Fields {
    /// Append the alert's fields of `r` to `text`.
    fn push(text: &mut String, r: &Record<'_, '_>) -> Fields {
        let fields: [Option<&str>; FIELDS] = [
            r.str(Top::EventId),
            r.str(Top::EventName),
            r.str(Top::EventSource),
            r.str(Top::EventTime),
            r.str(Top::RecipientAccountId)
                .or_else(|| r.ident_str(Ident::AccountId)),
            r.str(Top::AwsRegion),
            r.ident_str(Ident::Arn).or_else(|| r.ident_str(Ident::Type)),
            r.str(Top::SourceIpAddress),
            r.str(Top::UserAgent),
        ];
        let start = text.len() as u32;
        let mut ends = [0u32; FIELDS];
        let mut present = 0u16;
        for (i, f) in fields.iter().enumerate() {
            if let Some(f) = f {
                push_bounded(text, f);
                present |= 1 << i;
            }
            ends[i] = text.len() as u32;
        }
        Fields {
            start,
            ends,
            present,
        }
    }

    /// Field `i` ([`FIELDS`] order: event id, name, source, time, account,
    /// region, principal, source IP, user agent) in `text`.
    fn get<'a>(&self, text: &'a str, i: usize) -> Option<&'a str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { self.start } else { self.ends[i - 1] };
        Some(&text[start as usize..self.ends[i] as usize])
    }
}

/// A match not yet given its batch's text.
struct Pending {
    rule: u32,
    record: usize,
    fields: Fields,
    event: Option<EventJson>,
    /// A hidden rule's match: it feeds correlations, it does not alert.
    hidden: bool,
}

/// The matches of one batch of records (a chunk), their fields written
/// into one growing text: one allocation per batch instead of one per
/// match (138k matches cost ~3% of the pipeline that way).
#[derive(Default)]
pub(crate) struct MatchBatch {
    text: String,
    pending: Vec<Pending>,
}

impl MatchBatch {
    #[cfg(test)]
    /// Record a match of rule number `rule` on `r`, record `record` of its
    /// object, with `event` attached.
    pub fn push(&mut self, rule: u32, r: &Record<'_, '_>, record: usize, event: Option<EventJson>) {
        self.push_as(rule, r, record, event, false);
    }

    /// [`MatchBatch::push`], saying whether the rule is hidden (its match
    /// only feeds correlations: [`MatchBatch::finish_split`] keeps it
    /// apart from the alerts).
    pub(crate) fn push_as(
        &mut self,
        rule: u32,
        r: &Record<'_, '_>,
        record: usize,
        event: Option<EventJson>,
        hidden: bool,
    ) {
        let fields = Fields::push(&mut self.text, r);
        self.pending.push(Pending {
            rule,
            record,
            fields,
            event,
            hidden,
        });
    }

    /// How many matches were pushed: the index the next one will have in
    /// [`MatchBatch::finish_split`]'s list of all.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    /// The last match pushed, as a correlation window keeps it.
    pub(crate) fn last_context(&self, source: &Arc<str>) -> Option<Context> {
        let p = self.pending.last()?;
        let values: [Option<&str>; FIELDS] = std::array::from_fn(|i| p.fields.get(&self.text, i));
        Some(Context::from_fields(values, Arc::clone(source), p.record))
    }

    #[cfg(test)]
    /// Forget the last match pushed (a hidden rule's, kept only as a
    /// correlation hit).
    pub fn pop(&mut self) {
        if let Some(p) = self.pending.pop() {
            self.text.truncate(p.fields.start as usize);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    #[cfg(test)]
    /// The matches, sharing the text.
    pub fn finish(self) -> Vec<Match> {
        self.finish_split().0
    }

    /// The matches that alert, and every match in the order pushed
    /// (hidden ones included, for the correlation hits that point at
    /// them), all sharing one text, sized to fit.
    pub(crate) fn finish_split(mut self) -> (Vec<Match>, Vec<Match>) {
        self.text.shrink_to_fit();
        let text = Arc::new(self.text);
        let all: Vec<Match> = self
            .pending
            .iter()
            .map(|p| Match {
                rule: p.rule,
                record: p.record,
                text: Arc::clone(&text),
                fields: p.fields,
                event: p.event.clone(),
            })
            .collect();
        let alerts = all
            .iter()
            .zip(&self.pending)
            .filter(|(_, p)| !p.hidden)
            .map(|(m, _)| m.clone())
            .collect();
        (alerts, all)
    }
}

fn alert_of(
    text: &str,
    fields: &Fields,
    event: Option<&EventJson>,
    rule: &Arc<RuleMeta>,
    source: &str,
    record: usize,
) -> Alert {
    let f = |i| fields.get(text, i).map(str::to_owned);
    Alert {
        event_id: f(0),
        event_name: f(1),
        event_source: f(2),
        event_time: f(3),
        account: f(4),
        region: f(5),
        principal: f(6),
        source_ip: f(7),
        user_agent: f(8),
        event: event.cloned(),
        ..Alert::of_rule(rule, source.to_owned(), record)
    }
}

impl Match {
    /// One match alone, in a batch of its own (for tests: the pipeline
    /// records matches through [`MatchBatch`]).
    #[cfg(test)]
    pub fn new(rule: u32, r: &Record<'_, '_>, record: usize, with_event: bool) -> Match {
        let mut b = MatchBatch::default();
        b.push(rule, r, record, with_event.then(|| EventJson::of(r)));
        b.finish().pop().expect("one match")
    }

    fn field(&self, i: usize) -> Option<&str> {
        self.fields.get(&self.text, i)
    }

    /// The event's id; an empty one is none (it would make distinct
    /// events one, for deduplication and correlation counting).
    pub fn event_id(&self) -> Option<&str> {
        self.field(0).filter(|id| !id.is_empty())
    }

    pub fn event_time(&self) -> Option<&str> {
        self.field(3)
    }

    /// The full alert, for sinks that keep or render one.
    pub(crate) fn to_alert(&self, rule: &Arc<RuleMeta>, source: &str) -> Alert {
        alert_of(
            &self.text,
            &self.fields,
            self.event.as_ref(),
            rule,
            source,
            self.record,
        )
    }

    /// This match's fields as a correlation window keeps them.
    pub fn context(&self, source: &Arc<str>) -> Context {
        let values: [Option<&str>; FIELDS] = std::array::from_fn(|i| self.field(i));
        Context::from_fields(values, Arc::clone(source), self.record)
    }

    /// All the event fields' text, end to end (to check once whether any
    /// needs escaping in JSON).
    pub(crate) fn fields_text(&self) -> &str {
        &self.text[self.fields.start as usize..self.fields.ends[FIELDS - 1] as usize]
    }

    /// The event fields in [`Alert`]'s serialization order, each with its
    /// JSON key and separator (`,"event_id":`), for writing lines.
    pub(crate) fn named_json_keys(&self) -> impl Iterator<Item = (&'static [u8], Option<&str>)> {
        const KEYS: [&[u8]; FIELDS] = [
            b",\"event_id\":",
            b",\"event_name\":",
            b",\"event_source\":",
            b",\"event_time\":",
            b",\"account\":",
            b",\"region\":",
            b",\"principal\":",
            b",\"source_ip\":",
            b",\"user_agent\":",
        ];
        KEYS.iter().enumerate().map(|(i, k)| (*k, self.field(i)))
    }

    /// The event fields in [`Alert`]'s serialization order, with their names.
    pub(crate) fn named_fields(&self) -> impl Iterator<Item = (&'static str, Option<&str>)> {
        const NAMES: [&str; FIELDS] = [
            "event_id",
            "event_name",
            "event_source",
            "event_time",
            "account",
            "region",
            "principal",
            "source_ip",
            "user_agent",
        ];
        NAMES.iter().enumerate().map(|(i, n)| (*n, self.field(i)))
    }
}

/// Equal when the rule, the record, the fields and the event are (the
/// batch texts they lie in may differ).
impl PartialEq for Match {
    fn eq(&self, other: &Match) -> bool {
        self.rule == other.rule
            && self.record == other.record
            && (0..FIELDS).all(|i| self.field(i) == other.field(i))
            && self.event == other.event
    }
}

impl Eq for Match {}

impl std::fmt::Debug for Match {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Match")
            .field("rule", &self.rule)
            .field("record", &self.record)
            .field("fields", &self.named_fields().collect::<Vec<_>>())
            .field("event", &self.event)
            .finish()
    }
}

/// Append `s` bounded as [`bound`] would, without an intermediate string.
fn push_bounded(out: &mut String, s: &str) {
    if s.len() <= MAX_FIELD_BYTES {
        out.push_str(s);
    } else {
        out.push_str(&bound(s));
    }
}

/// A string from [`KNOWN`]. An alias, not `&'static str` written out: serde
/// would otherwise make the whole alert borrow from its input for `'static`.
pub type Known = &'static str;

/// The strings a `&'static str` field may hold (correlation types), so a
/// stored alert deserializes back to the same value.
const KNOWN: &[&str] = &["event_count", "value_count", "temporal", "temporal_ordered"];

fn known_str<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    KNOWN
        .iter()
        .find(|k| **k == s)
        .copied()
        .ok_or_else(|| serde::de::Error::custom(format!("unknown correlation type {s:?}")))
}

fn known_str_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
    known_str(d).map(Some)
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
pub(crate) struct Secret(String);

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

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// An HTTP endpoint's URL, checked: `https://`, or `http://` only to a
/// loopback host. The message never echoes the URL (it may be a secret).
pub(crate) fn endpoint(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("is not valid ({e})"))?;
    let loopback = u.host_str().is_some_and(is_loopback_host);
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err("must be https:// (http:// only to a loopback host)".into()),
    }
}

/// The HTTP client of a remote sink: its timeout, and no redirects (a
/// redirect would send alerts, and perhaps a token, somewhere else).
pub(crate) fn http_client(timeout_secs: u64) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.without_url().to_string())
}

/// A host name or address that stays on this machine (`localhost`,
/// 127.0.0.0/8, `::1`, bracketed or not): where plain-text SMTP and
/// `http://` webhooks are allowed.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Lowercase hex of `bytes` in one allocation (saved correlation ids,
/// Message-IDs, hashed store keys).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
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
mod tests;
