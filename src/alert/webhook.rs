//! The webhook sink: alerts POSTed as Slack-compatible JSON (a `text`
//! summary Slack and Mattermost show, plus the full alerts under
//! `trailwatch` for anything else), with the outbox's retry semantics.
//!
//! The URL is usually a secret (a Slack incoming-webhook URL is a bearer
//! token), so it comes from the environment or a file, and errors are
//! logged without it. In the summary, `&`, `<` and `>` are escaped as Slack
//! requires, so an event cannot forge links or `<!channel>` mentions.

use std::path::PathBuf;

use serde::Deserialize;

use super::outbox::{Entry, StormConfig};
use super::remote::DeliveryError;
use super::{Alert, Secret};
use crate::rules::Level;

/// `[webhook]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Environment variable holding the URL (preferred: it is a secret).
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the URL (a mounted secret).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// The URL itself, for endpoints whose URL is not a secret. `http://`
    /// only to a loopback host.
    #[serde(default)]
    pub url: Option<String>,
    /// Lowest level posted.
    #[serde(default = "default_min_level")]
    pub min_level: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub storm: StormConfig,
}

fn default_min_level() -> String {
    "medium".into()
}
fn default_timeout() -> u64 {
    10
}

/// Why the webhook sink cannot start.
#[derive(Debug, thiserror::Error)]
#[error("webhook: {0}")]
pub struct WebhookError(String);

impl WebhookConfig {
    pub(crate) fn validate(&self) -> Result<(), WebhookError> {
        let given = [
            self.url_env.is_some(),
            self.url_file.is_some(),
            self.url.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(WebhookError(
                "give exactly one of url_env, url_file, url".into(),
            ));
        }
        if Level::parse(&self.min_level).is_none() {
            return Err(WebhookError(
                "min_level: one of informational, low, medium, high, critical".into(),
            ));
        }
        if self.storm.max_per_hour == 0 {
            return Err(WebhookError("storm.max_per_hour must be at least 1".into()));
        }
        Ok(())
    }

    /// `min_level`, validated when the configuration was read.
    pub fn min_level(&self) -> Level {
        Level::parse(&self.min_level).unwrap_or_default()
    }
}

/// Check a webhook URL without echoing it (it may be a secret).
fn check_url(url: &str) -> Result<reqwest::Url, WebhookError> {
    super::endpoint(url).map_err(|m| WebhookError(format!("the URL {m}")))
}

/// A ready-to-post webhook.
pub(crate) struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl WebhookSink {
    pub fn new(config: &WebhookConfig) -> Result<WebhookSink, WebhookError> {
        config.validate()?;
        let url = match &config.url {
            Some(u) => u.clone(),
            None => Secret::load(config.url_env.as_deref(), config.url_file.as_deref())
                .map_err(WebhookError)?
                .ok_or_else(|| WebhookError("no URL".into()))?
                .expose()
                .to_owned(),
        };
        let url = check_url(url.trim())?;
        let client = super::http_client(config.timeout_secs).map_err(WebhookError)?;
        Ok(WebhookSink { client, url })
    }

    /// POST the entries as one message. Any 2xx is accepted; anything else
    /// (including 4xx: a misconfigured endpoint is fixed by its owner, and
    /// the alerts must still arrive) is retried.
    pub async fn send(&self, entries: &[(u64, Entry)]) -> Result<(), DeliveryError> {
        let body = body(entries);
        let resp = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).expect("alerts serialize"))
            .send()
            .await
            .map_err(|e| DeliveryError::Http(e.without_url()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status))
        }
    }
}

/// Escape text for Slack's mrkdwn.
pub(crate) fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn line(a: &Alert, suppressed: u64) -> String {
    // Event text: controls (a line break would forge a line in `text`),
    // separators and bidi controls escaped first, then Slack's markup.
    let o = |v: &Option<String>| slack_escape(&super::jsonl::clean(v.as_deref()));
    let mut s = format!(
        "*[{}] {}*  principal `{}` account `{}` region `{}` ip `{}` event `{}` at {}",
        a.level,
        slack_escape(&super::jsonl::clean(Some(&a.rule_title))),
        o(&a.principal).replace('`', "'"),
        o(&a.account_label()).replace('`', "'"),
        o(&a.region).replace('`', "'"),
        o(&a.source_ip).replace('`', "'"),
        o(&a.event_name).replace('`', "'"),
        o(&a.event_time),
    );
    if let Some(n) = a.count {
        s.push_str(&format!(" ({n} events)"));
    }
    if let Some(calls) = &a.calls {
        let top: Vec<String> = calls
            .iter()
            .take(3)
            .map(|(name, n)| format!("{} ×{n}", o(&Some(name.clone())).replace('`', "'")))
            .collect();
        s.push_str(&format!(" calls: {}", top.join(", ")));
    }
    if suppressed > 0 {
        s.push_str(&format!(" (+{suppressed} suppressed before)"));
    }
    s
}

/// The JSON posted for a group of entries.
pub fn body(entries: &[(u64, Entry)]) -> serde_json::Value {
    let text: Vec<String> = entries
        .iter()
        .map(|(_, e)| {
            let mut l = line(&e.alert, e.suppressed_before);
            if let Some(inc) = &e.incident {
                l.push_str(&format!(
                    " (incident `{}`: {} alerts: {})",
                    inc.id,
                    inc.len(),
                    slack_escape(&super::jsonl::clean(Some(&inc.path(6)))).replace('`', "'")
                ));
            }
            l
        })
        .collect();
    serde_json::json!({
        "text": text.join("\n"),
        "trailwatch": {
            "alerts": entries.iter().map(|(seq, e)| serde_json::json!({
                "seq": seq,
                "suppressed_before": e.suppressed_before,
                "incident": e.incident,
                "alert": e.alert,
                "folded": e.folded,
                "head_at": e.head_at,
            })).collect::<Vec<_>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleMeta;
    use std::sync::Arc;

    /// One alert is one line of Slack text: no event value adds another.
    #[test]
    fn event_text_cannot_add_lines_to_the_message() {
        let mut a = Alert::example(Arc::new(RuleMeta::example("r")));
        a.principal = Some("p\n*[critical] Forged*\r\u{2028}x\u{202e}".into());
        a.region = Some("us-east-1\nmore".into());
        let b = body(&[(1, Entry::new(a, 0))]);
        let text = b["text"].as_str().unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains(['\r', '\u{2028}', '\u{202e}']), "{text}");
        // The full alert, for machines, keeps the exact value.
        assert_eq!(
            b["trailwatch"]["alerts"][0]["alert"]["region"],
            "us-east-1\nmore"
        );
    }

    #[test]
    fn mentions_and_links_from_events_are_defused() {
        let mut a = Alert::example(Arc::new(RuleMeta::example("r")));
        a.principal = Some("<!channel> <https://evil.example|click> `x`".into());
        let b = body(&[(
            7,
            Entry {
                suppressed_before: 2,
                ..Entry::new(a, 0)
            },
        )]);
        let text = b["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'));
        assert!(text.contains("&lt;!channel&gt;"));
        assert!(text.contains("+2 suppressed"));
        assert_eq!(b["trailwatch"]["alerts"][0]["seq"], 7);
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        assert!(check_url("https://hooks.example.com/x").is_ok());
        assert!(check_url("http://127.0.0.1:9/x").is_ok());
        let err = check_url("http://hooks.example.com/T0/B0/SECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
        let err = check_url("not a url SECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
    }
}
