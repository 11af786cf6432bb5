//! The PagerDuty sink: alerts as PagerDuty Events API v2 `trigger` events,
//! through the same durable outbox (retries, storm control, incidents) as
//! mail and the webhook; with `resolve = true`, a `resolve` for each
//! incident once it is over.
//!
//! Each message is one event whose `dedup_key` is the alert's identity:
//! its incident's id when it belongs to one (so every update of an
//! incident lands on the same PagerDuty incident as a new log entry, not a
//! new page), else a digest of the alert's dedup key. A trigger sent twice
//! (a crash between PagerDuty's 202 and the outbox's commit) is therefore
//! folded by PagerDuty itself: the at-least-once outbox becomes
//! exactly-once pages.
//!
//! The routing (integration) key is a secret: it comes from the
//! environment or a file, and appears in no log or error.

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;
use super::email::{console_link, header_safe, short_principal};
use super::outbox::{Entry, StormConfig};
use super::remote::DeliveryError;
use crate::rules::Level;

/// PagerDuty's Events API v2 endpoint.
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `[pagerduty]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// Environment variable holding the integration's routing key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// File holding the routing key (a mounted secret).
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// The Events API v2 endpoint (PagerDuty's by default; `http://` only
    /// to a loopback host, for tests and relays).
    #[serde(default = "default_url")]
    pub url: String,
    /// Lowest level that pages: `high` by default (a page wakes someone).
    #[serde(default = "default_min_level")]
    pub min_level: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub storm: StormConfig,
    /// Send a `resolve` for an incident once it is over: quiet for
    /// `storm.incident_secs` (an hour by default) after its last alert.
    /// Off by default: a quiet attacker is not a handled incident, and a
    /// team may want to close pages by hand. Alerts outside incidents are
    /// never resolved.
    #[serde(default)]
    pub resolve: bool,
}

fn default_url() -> String {
    EVENTS_URL.into()
}
fn default_min_level() -> String {
    "high".into()
}
fn default_timeout() -> u64 {
    10
}

/// Why the PagerDuty sink cannot start.
#[derive(Debug, thiserror::Error)]
#[error("pagerduty: {0}")]
pub struct PagerDutyError(String);

impl PagerDutyConfig {
    pub(crate) fn validate(&self) -> Result<(), PagerDutyError> {
        if self.routing_key_env.is_some() == self.routing_key_file.is_some() {
            return Err(PagerDutyError(
                "give exactly one of routing_key_env, routing_key_file".into(),
            ));
        }
        if Level::parse(&self.min_level).is_none() {
            return Err(PagerDutyError(
                "min_level: one of informational, low, medium, high, critical".into(),
            ));
        }
        if self.storm.max_per_hour == 0 {
            return Err(PagerDutyError(
                "storm.max_per_hour must be at least 1".into(),
            ));
        }
        check_url(&self.url)?;
        Ok(())
    }

    /// `min_level`, validated when the configuration was read.
    pub fn min_level(&self) -> Level {
        Level::parse(&self.min_level).unwrap_or_default()
    }
}

fn check_url(url: &str) -> Result<reqwest::Url, PagerDutyError> {
    super::endpoint(url).map_err(|m| PagerDutyError(format!("url {m}")))
}

/// A ready PagerDuty sink.
pub(crate) struct PagerDutySink {
    client: reqwest::Client,
    url: reqwest::Url,
    routing_key: Secret,
}

impl PagerDutySink {
    pub fn new(config: &PagerDutyConfig) -> Result<PagerDutySink, PagerDutyError> {
        config.validate()?;
        let routing_key = Secret::load(
            config.routing_key_env.as_deref(),
            config.routing_key_file.as_deref(),
        )
        .map_err(PagerDutyError)?
        .ok_or_else(|| PagerDutyError("no routing key".into()))?;
        let client = super::http_client(config.timeout_secs).map_err(PagerDutyError)?;
        Ok(PagerDutySink {
            client,
            url: check_url(&config.url)?,
            routing_key,
        })
    }

    /// Send each entry as one trigger event. PagerDuty answers 202; any
    /// other answer (429 when rate-limited, 5xx, and 400 too: the alert
    /// must still arrive once the integration is fixed) is a failure, and
    /// the outbox tries again; PagerDuty folds repeated triggers by
    /// `dedup_key`.
    pub async fn send(&self, entries: &[(u64, Entry)]) -> Result<(), DeliveryError> {
        for (_, e) in entries {
            let body = event(e, self.routing_key.expose());
            let resp = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).expect("alerts serialize"))
                .send()
                .await
                .map_err(|e| DeliveryError::Http(e.without_url()))?;
            let status = resp.status();
            if !status.is_success() {
                // PagerDuty says why (an invalid field, a rate limit): log
                // its answer, cleaned and cut, the routing key masked.
                let why = resp.text().await.unwrap_or_default();
                let why = super::jsonl::clean(Some(&why)).replace(self.routing_key.expose(), "***");
                tracing::warn!(
                    status = status.as_u16(),
                    answer = %why.chars().take(300).collect::<String>(),
                    "pagerduty refused an event"
                );
                return Err(DeliveryError::Status(status));
            }
        }
        Ok(())
    }
}

/// PagerDuty refuses events over 512 KB; the details are kept well under.
pub(crate) const MAX_DETAILS_BYTES: usize = 256 << 10;

/// What rides in `custom_details`: the alert without its event and rule
/// documentation (the JSON lines and the mail have those), the incident's
/// timeline and the folded alerts as one line each; cut to a stub when an
/// event's author has inflated it past [`MAX_DETAILS_BYTES`] (every control
/// character is six bytes of JSON), so no event can make a page
/// undeliverable.
fn details(e: &Entry) -> serde_json::Value {
    let mut alert = serde_json::to_value(&e.alert).unwrap_or_default();
    if let Some(o) = alert.as_object_mut() {
        o.remove("event");
        o.remove("rule");
    }
    let full = serde_json::json!({
        "alert": alert,
        "incident": e.incident,
        "folded": e.folded.iter().map(|f| serde_json::json!({
            "rule_id": f.rule_id,
            "rule_title": f.rule_title,
            "level": f.level,
            "event_id": f.event_id,
            "event_name": f.event_name,
            "event_time": f.event_time,
            "principal": f.principal,
            "line": super::email::folded_line(f),
        })).collect::<Vec<_>>(),
        "suppressed_before": e.suppressed_before,
        "runbook": e.alert.rule.runbook,
    });
    if serde_json::to_vec(&full).map_or(usize::MAX, |v| v.len()) <= MAX_DETAILS_BYTES {
        return full;
    }
    serde_json::json!({
        "rule_id": e.alert.rule_id,
        "event_id": e.alert.event_id.as_deref().map(|s| header_safe(s, 100)),
        "folded": e.folded.len(),
        "note": "details cut to keep the event under PagerDuty's size limit: see the mail or the JSON lines",
    })
}

/// PagerDuty's severity for a level: critical pages as critical, high as
/// error, medium as warning, the rest as info.
pub fn severity(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::High => "error",
        Level::Medium => "warning",
        Level::Low | Level::Informational => "info",
    }
}

/// The `dedup_key` of an entry: its incident's, else its alert's (a
/// digest: the dedup key holds raw event ids, and PagerDuty allows 255
/// characters).
pub fn dedup_key(e: &Entry) -> String {
    match &e.incident {
        Some(inc) => format!("trailwatch-incident-{}", inc.id),
        None => {
            let d = aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                e.alert.dedup_key().as_bytes(),
            );
            format!("trailwatch-alert-{}", super::hex(&d.as_ref()[..16]))
        }
    }
}

/// The Events API v2 `trigger` for one entry. Event text is the
/// attacker's: the summary is stripped of control characters and cut
/// (PagerDuty shows it as the incident's title); the full alert rides in
/// `custom_details` as JSON data, never as markup.
pub fn event(e: &Entry, routing_key: &str) -> serde_json::Value {
    if e.resolve {
        return serde_json::json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key(e),
        });
    }
    let a = &e.alert;
    let who = a.principal.as_deref().map_or("-", short_principal);
    let summary = match &e.incident {
        Some(inc) => format!(
            "{}: incident, {} alerts: {who} {} ({})",
            a.rule_title,
            inc.len(),
            inc.path(4),
            a.account_label().as_deref().unwrap_or("-")
        ),
        None => format!(
            "{}: {who} {} ({})",
            a.rule_title,
            a.event_name.as_deref().unwrap_or("-"),
            a.account_label().as_deref().unwrap_or("-")
        ),
    };
    let timestamp = a
        .event_time
        .as_deref()
        .and_then(crate::time::parse_event_time)
        .map(crate::time::iso_time);
    let link = console_link(a);
    let nonempty = |v: Option<&str>, default: &str| -> String {
        let v = header_safe(v.unwrap_or(default), 200);
        if v.trim().is_empty() {
            default.to_owned()
        } else {
            v
        }
    };
    let mut payload = serde_json::json!({
        "summary": header_safe(&summary, 1000),
        "source": nonempty(a.account_label().as_deref(), "aws"),
        "severity": severity(a.level),
        "component": nonempty(a.event_source.as_deref(), "cloudtrail"),
        "group": nonempty(a.region.as_deref(), "-"),
        "class": a.rule_name.as_deref().unwrap_or(&a.rule_id),
        "custom_details": details(e),
    });
    if let Some(t) = timestamp {
        payload["timestamp"] = serde_json::Value::String(t);
    }
    let mut body = serde_json::json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(e),
        "client": "trailwatch",
        "payload": payload,
    });
    if let Some(l) = link {
        body["client_url"] = serde_json::Value::String(l.clone());
        body["links"] =
            serde_json::json!([{ "href": l, "text": "The event in the CloudTrail console" }]);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alert;
    use crate::rules::RuleMeta;
    use std::sync::Arc;

    /// A resolve is only the routing key, the action and the incident's
    /// dedup key: the same key its triggers carried.
    #[test]
    fn a_resolve_names_the_incident_its_triggers_opened() {
        let a = Alert::example(Arc::new(RuleMeta::example("r")));
        let mut trigger = Entry::new(a.clone(), 1);
        trigger.incident = Some(crate::alert::incident::Incident::open("k", &a, 1).view);
        let resolve = Entry {
            resolve: true,
            incident: trigger.incident.clone(),
            ..Entry::new(a, 2)
        };
        let t = event(&trigger, "KEY");
        let r = event(&resolve, "KEY");
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], t["dedup_key"]);
        assert_eq!(r["routing_key"], "KEY");
        assert!(r.get("payload").is_none(), "{r}");
    }

    /// The trigger carries what PagerDuty requires, in its vocabulary, and
    /// nothing the event's author could use to break out of a field.
    #[test]
    fn triggers_follow_the_events_v2_shape() {
        let mut a = Alert::example(Arc::new(RuleMeta::example("r")));
        a.level = Level::Critical;
        a.principal = Some("arn:aws:iam::1:root".into());
        a.event_name = Some("ConsoleLogin\r\nX: y".into());
        a.account = Some("123456789012".into());
        a.event_time = Some("2026-12-01T10:00:00Z".into());
        a.event_id = Some("0b7e3f0e-1111-2222-3333-444455556666".into());
        a.region = Some("eu-west-1".into());
        let e = Entry::new(a.clone(), 0);
        let b = event(&e, "R0UTINGKEY");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["routing_key"], "R0UTINGKEY");
        assert_eq!(b["payload"]["severity"], "critical");
        assert_eq!(b["payload"]["timestamp"], "2026-12-01T10:00:00Z");
        let summary = b["payload"]["summary"].as_str().unwrap();
        assert!(summary.starts_with("R: root ConsoleLogin"), "{summary}");
        assert!(!summary.contains(['\r', '\n']), "{summary}");
        assert!(
            b["client_url"]
                .as_str()
                .unwrap()
                .contains("#/events/0b7e3f0e")
        );
        let key = b["dedup_key"].as_str().unwrap();
        assert!(key.starts_with("trailwatch-alert-") && key.len() < 255);
        assert_eq!(key, dedup_key(&Entry::new(a, 99)), "stable per alert");
        // An odd event time is left out rather than passed on.
        let mut odd = e.clone();
        odd.alert.event_time = Some("yesterday".into());
        assert!(event(&odd, "k")["payload"].get("timestamp").is_none());
        assert_eq!(severity(Level::High), "error");
        assert_eq!(severity(Level::Low), "info");
    }

    /// The worst an event's author can do to a page's size: every field
    /// and the event full of control characters (six bytes of JSON each),
    /// twenty such alerts folded in. The event stays under PagerDuty's
    /// 512 KB and keeps its required fields; an empty account still names
    /// a source.
    #[test]
    fn no_event_can_make_a_page_too_large() {
        let junk = "\u{1}".repeat(20_000);
        let mut a = Alert::example(Arc::new(RuleMeta::example("r")));
        for f in [
            &mut a.event_name,
            &mut a.region,
            &mut a.source_ip,
            &mut a.user_agent,
            &mut a.principal,
            &mut a.event_id,
        ] {
            *f = Some(crate::alert::bound(&junk));
        }
        a.account = Some(String::new());
        let event =
            serde_json::json!({ "errorMessage": junk, "requestParameters": { "userName": junk } });
        a.event = Some(crate::alert::EventJson::from_json(event.to_string()));
        let mut e = Entry::new(a.clone(), 0);
        e.folded = vec![a; crate::alert::outbox::MAX_FOLDED];
        let body = serde_json::to_vec(&event_of(&e)).unwrap();
        assert!(body.len() < 512 << 10, "{} bytes", body.len());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["payload"]["source"], "aws");
        assert!(v["payload"]["summary"].as_str().unwrap().chars().count() <= 1001);
    }

    fn event_of(e: &Entry) -> serde_json::Value {
        event(e, "k")
    }
}
