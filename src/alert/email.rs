//! The email sink: alerts as multipart (plain text + HTML) mail over SMTP
//! with STARTTLS or implicit TLS (lettre on rustls).
//!
//! Everything copied from an event is attacker-controlled: a user name or
//! user agent can hold CR/LF and header lines, HTML, script, or megabytes.
//! So: event text never becomes a header except the subject, where it is
//! stripped of control characters, cut to a bound and RFC 2047-encoded by
//! lettre; in HTML every value is escaped; field lengths were already
//! bounded when the alert was made, and the event JSON is bounded again.
//! The console link is built only from a well-formed region and event id.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::jsonl::clean;
use super::outbox::{Entry, StormConfig};
use super::remote::DeliveryError;
use super::{Alert, Secret};
use crate::rules::Level;

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only to a loopback host, and only with
    /// `allow_plaintext = true` (a local relay).
    None,
}

/// `[email]`: where and how alert mail goes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name (also the name its certificate must carry).
    pub smtp_host: String,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// Required for `tls = "none"`, which is refused unless the host is
    /// loopback.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Extra trusted CA certificate (PEM) for a private SMTP server; the
    /// Mozilla roots are always trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SMTP user name, if the server needs authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the SMTP password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the SMTP password (a mounted secret), trailing newline
    /// ignored.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Sender, e.g. `trailwatch <trailwatch@example.com>`.
    pub from: String,
    /// Recipients of every alert (at or above `min_level`).
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// More recipients by level or rule tag.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Lowest level mailed (informational, low, medium, high, critical).
    #[serde(default = "default_min_level")]
    pub min_level: String,
    /// Subject of a single-alert mail. Placeholders: {level} {title}
    /// {rule_id} {account} {region} {event_name} {principal} {who} (the
    /// principal's ARN without its prefix: `user/alice`, `root`,
    /// `assumed-role/Deploy/session`) {count}. The default names who did
    /// what, so a list of subjects reads as a list of incidents.
    /// Event values are stripped of control characters and cut.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Seconds one mail may take, from connecting to the server's answer
    /// to the data; then the attempt counts as failed and is retried.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub storm: StormConfig,
    /// Names for account ids, e.g.
    /// `account_names = { "123456789012" = "production" }`. Kept for
    /// configurations written before the top-level `[accounts]` table,
    /// into which it is merged (names there reach every sink, not only
    /// mail).
    #[serde(default)]
    pub account_names: std::collections::BTreeMap<String, String>,
}

/// Extra recipients (and perhaps another sender) for alerts of some levels
/// or tags (empty = any).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    pub levels: Vec<String>,
    /// Rule tags, e.g. `attack.persistence`; any one matches.
    pub tags: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Sender for these alerts instead of `from` (the first matching route
    /// with one wins), e.g. so mail filters can sort critical alerts.
    pub from: Option<String>,
}

fn default_tls() -> TlsMode {
    TlsMode::Starttls
}
fn default_min_level() -> String {
    "low".into()
}
fn default_subject() -> String {
    "[trailwatch] {level}: {title}: {who} {event_name} ({account})".into()
}
fn default_timeout() -> u64 {
    30
}

/// Why the email sink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("email.{field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
}

impl EmailConfig {
    /// Check what can be checked without connecting.
    pub(crate) fn validate(&self) -> Result<(), EmailError> {
        let bad = |field, message: &str| EmailError::Config {
            field,
            message: message.into(),
        };
        if self.smtp_host.is_empty() {
            return Err(bad("smtp_host", "is required"));
        }
        if self.tls == TlsMode::None
            && !(self.allow_plaintext && super::is_loopback_host(&self.smtp_host))
        {
            return Err(bad(
                "tls",
                "\"none\" sends mail (and any password) in clear: only to a loopback host, \
                 with allow_plaintext = true",
            ));
        }
        self.from
            .parse::<Mailbox>()
            .map_err(|e| bad("from", &format!("not an address: {e}")))?;
        for a in self
            .to
            .iter()
            .chain(&self.cc)
            .chain(self.routes.iter().flat_map(|r| r.to.iter().chain(&r.cc)))
        {
            a.parse::<Mailbox>()
                .map_err(|e| bad("to", &format!("{a:?} is not an address: {e}")))?;
        }
        if self.to.is_empty() && self.routes.iter().all(|r| r.to.is_empty()) {
            return Err(bad("to", "at least one recipient"));
        }
        if Level::parse(&self.min_level).is_none() {
            return Err(bad(
                "min_level",
                "one of informational, low, medium, high, critical",
            ));
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err(bad(
                "password_env",
                "give password_env or password_file, not both",
            ));
        }
        if (self.password_env.is_some() || self.password_file.is_some()) && self.username.is_none()
        {
            return Err(bad("username", "is required with a password"));
        }
        if self.storm.max_per_hour == 0 {
            return Err(bad("storm.max_per_hour", "must be at least 1"));
        }
        // A misspelt placeholder would reach every subject as written.
        let mut rest = self.subject.as_str();
        while let Some(open) = rest.find('{') {
            rest = &rest[open..];
            match SUBJECT_PLACEHOLDERS.iter().find(|p| rest.starts_with(**p)) {
                Some(p) => rest = &rest[p.len()..],
                None => {
                    let token: String = rest.chars().take_while(|c| *c != '}').take(30).collect();
                    return Err(bad(
                        "subject",
                        &format!(
                            "unknown placeholder {token}}}: use {}",
                            SUBJECT_PLACEHOLDERS.join(" ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `min_level`, validated when the configuration was read.
    pub fn min_level(&self) -> Level {
        Level::parse(&self.min_level).unwrap_or_default()
    }

    /// (from, to, cc) for an alert: the base lists plus every matching
    /// route's; the first matching route's sender, if it names one.
    fn recipients(&self, a: &Alert) -> (String, BTreeSet<String>, BTreeSet<String>) {
        let mut from = None;
        let mut to: BTreeSet<String> = self.to.iter().cloned().collect();
        let mut cc: BTreeSet<String> = self.cc.iter().cloned().collect();
        for r in &self.routes {
            let level_ok = r.levels.is_empty() || r.levels.iter().any(|l| l == a.level.as_str());
            let tag_ok = r.tags.is_empty() || r.tags.iter().any(|t| a.tags.contains(t));
            if level_ok && tag_ok {
                to.extend(r.to.iter().cloned());
                cc.extend(r.cc.iter().cloned());
                from = from.or(r.from.clone());
            }
        }
        cc.retain(|c| !to.contains(c));
        (from.unwrap_or_else(|| self.from.clone()), to, cc)
    }
}

/// A connected-on-demand SMTP sender.
pub(crate) struct EmailSink {
    config: EmailConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailSink {
    /// Build the transport (reads the password and CA file; connects later).
    pub fn new(config: EmailConfig) -> Result<EmailSink, EmailError> {
        config.validate()?;
        let bad = |field, message: String| EmailError::Config { field, message };
        let port = config.smtp_port.unwrap_or(match config.tls {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        });
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
                .port(port)
                .timeout(Some(Duration::from_secs(config.timeout_secs)));
        if config.tls != TlsMode::None {
            let mut params = TlsParameters::builder(config.smtp_host.clone());
            if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| bad("ca_file", format!("{}: {e}", ca.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| bad("ca_file", format!("{}: {e}", ca.display())))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| bad("tls", e.to_string()))?;
            builder = builder.tls(match config.tls {
                TlsMode::Starttls => Tls::Required(params),
                _ => Tls::Wrapper(params),
            });
        }
        if let Some(user) = &config.username {
            let password = Secret::load(
                config.password_env.as_deref(),
                config.password_file.as_deref(),
            )
            .map_err(|m| bad("password", m))?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.map(|p| p.expose().to_owned()).unwrap_or_default(),
            ));
        }
        Ok(EmailSink {
            transport: builder.build(),
            config,
        })
    }

    /// Send queued entries: one mail per entry, or (digest) one mail per
    /// set of recipients. Returns, per mail, the sequence numbers it
    /// carried and the outcome.
    pub async fn send(
        &self,
        entries: Vec<(u64, Entry)>,
        digest: bool,
    ) -> Vec<(Vec<u64>, Result<(), DeliveryError>)> {
        let groups: Vec<Vec<(u64, Entry)>> = if digest {
            super::outbox::group_by(entries, |e| self.config.recipients(&e.alert))
                .into_values()
                .collect()
        } else {
            entries.into_iter().map(|e| vec![e]).collect()
        };
        let mut out = Vec::new();
        for group in groups {
            let seqs: Vec<u64> = group.iter().map(|(s, _)| *s).collect();
            let limit = Duration::from_secs(self.config.timeout_secs);
            let result = match self.message(&group) {
                // lettre's own timeout covers connecting only: a server
                // that stops answering mid-conversation (after DATA, say)
                // would stall delivery for good. The whole exchange is
                // bounded here; lettre is built without its connection
                // pool, so an abandoned exchange leaves no half-used
                // connection behind to be reused.
                Ok(m) => match tokio::time::timeout(limit, self.transport.send(m)).await {
                    Ok(sent) => sent.map(|_| ()).map_err(DeliveryError::from),
                    Err(_) => Err(DeliveryError::SmtpTimeout {
                        secs: self.config.timeout_secs,
                    }),
                },
                Err(e) => Err(e),
            };
            out.push((seqs, result));
        }
        out
    }

    /// Build the mail for one entry or a digest of several.
    ///
    /// (The subject of a summary says so: see [`summary_line`].)
    pub fn message(&self, group: &[(u64, Entry)]) -> Result<Message, DeliveryError> {
        let first = &group.first().ok_or(DeliveryError::Empty)?.1.alert;
        let (from, to, cc) = self.config.recipients(first);
        let subject = if group.len() == 1 && group[0].1.summary {
            format!(
                "[trailwatch] {} more held back: {}",
                group[0].1.suppressed_before,
                subject(&self.config.subject, first)
            )
        } else if group.len() == 1
            && let Some(inc) = group[0].1.incident.as_ref().filter(|i| i.len() > 1)
        {
            // One incident: who, and what they did in order.
            header_safe(
                &format!(
                    "[trailwatch] {}: incident, {} alerts by {}: {} ({})",
                    first.level,
                    inc.len(),
                    first.principal.as_deref().map_or("-", short_principal),
                    inc.path(4),
                    first.account_label().as_deref().unwrap_or("-"),
                ),
                250,
            )
        } else if group.len() == 1 {
            subject(&self.config.subject, first)
        } else {
            let top = group
                .iter()
                .map(|(_, e)| e.alert.level)
                .max()
                .unwrap_or_default();
            format!("[trailwatch] {} alerts, highest {top}", group.len())
        };
        let address = |role, a: &str| {
            a.parse::<Mailbox>()
                .map_err(|source| DeliveryError::Address {
                    role,
                    address: a.to_owned(),
                    source,
                })
        };
        let from = address("from", &from)?;
        let domain = from.email.domain().to_owned();
        let id = message_id(group, &domain);
        let mut b = Message::builder()
            .from(from)
            .subject(subject)
            .message_id(Some(id));
        // The messages of one incident are one thread in any mail client.
        if let Some(inc) = group.iter().find_map(|(_, e)| e.incident.as_ref()) {
            let root = format!("<trailwatch.incident.{}@{}>", inc.id, domain);
            b = b.in_reply_to(root.clone()).references(root);
        }
        for t in &to {
            b = b.to(address("to", t)?);
        }
        for c in &cc {
            b = b.cc(address("cc", c)?);
        }
        let (text, html) = if group.len() == 1 {
            (text_body(&group[0].1), html_body(&group[0].1))
        } else {
            (digest_text(group), digest_html(group))
        };
        Ok(b.multipart(MultiPart::alternative_plain_html(text, html))?)
    }
}

/// The placeholders a subject template may use.
pub(crate) const SUBJECT_PLACEHOLDERS: [&str; 9] = [
    "{level}",
    "{title}",
    "{rule_id}",
    "{account}",
    "{region}",
    "{event_name}",
    "{principal}",
    "{who}",
    "{count}",
];

/// Render the subject template, with event values made header-safe.
pub fn subject(template: &str, a: &Alert) -> String {
    let count = a.count.map(|c| c.to_string()).unwrap_or_default();
    let who = a.principal.as_deref().map_or("-", short_principal);
    let account = a.account_label().unwrap_or_else(|| "-".to_owned());
    let fields: [(&str, &str); 9] = [
        ("{who}", who),
        ("{level}", a.level.as_str()),
        ("{title}", &a.rule_title),
        ("{rule_id}", &a.rule_id),
        ("{account}", &account),
        ("{region}", a.region.as_deref().unwrap_or("-")),
        ("{event_name}", a.event_name.as_deref().unwrap_or("-")),
        ("{principal}", a.principal.as_deref().unwrap_or("-")),
        ("{count}", &count),
    ];
    // One pass over the template: a value is never read as a placeholder
    // (a user agent of `{title}` stays that text).
    let mut s = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        s.push_str(&rest[..open]);
        rest = &rest[open..];
        match fields.iter().find(|(k, _)| rest.starts_with(k)) {
            Some((k, v)) => {
                s.push_str(&header_safe(v, 120));
                rest = &rest[k.len()..];
            }
            None => {
                s.push('{');
                rest = &rest[1..];
            }
        }
    }
    s.push_str(rest);
    header_safe(&s, 250)
}

/// An ARN's resource part (`user/alice` of `arn:aws:iam::1:user/alice`),
/// which says who in a subject line; anything else as it is.
pub(crate) fn short_principal(p: &str) -> &str {
    match p.strip_prefix("arn:") {
        Some(rest) => rest
            .splitn(5, ':')
            .nth(4)
            .filter(|r| !r.is_empty())
            .unwrap_or(p),
        None => p,
    }
}

/// No control characters (CR/LF, tabs, escapes, Unicode line separators),
/// at most `max` characters.
pub(crate) fn header_safe(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_control() || invisible(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    // `=?charset?b?…?=` in a header is an RFC 2047 encoded word: a client
    // would decode the attacker's text into anything. Break the opener.
    let cleaned = cleaned.replace("=?", "= ?");
    if cleaned.chars().count() <= max {
        cleaned
    } else {
        cleaned.chars().take(max).collect::<String>() + "…"
    }
}

/// Characters that change how a line reads without being seen: line and
/// paragraph separators, bidi overrides and isolates, zero-width ones.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{2028}'
            | '\u{2029}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Escape text for HTML element content and quoted attributes.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The CloudTrail console link to the event, only from values of the
/// right shape (an attacker's "region" cannot make it point elsewhere).
pub(crate) fn console_link(a: &Alert) -> Option<String> {
    let region = a.region.as_deref()?;
    let id = a.event_id.as_deref()?;
    let region_ok = region.len() <= 20
        && region.split('-').count() >= 3
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let id_ok = id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (region_ok && id_ok).then(|| {
        format!(
            "https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events/{id}"
        )
    })
}

/// The alert's facts, label → value, in mail order. Values are event text
/// (the attacker's): line breaks, other controls, Unicode separators and
/// bidi controls are escaped ([`jsonl::clean`]), so no value can forge a
/// line (`Rule id: ...`) in the text part or reorder what is shown.
fn facts(a: &Alert) -> Vec<(&'static str, String)> {
    let o = |v: &Option<String>| clean(v.as_deref());
    let event = a.event.as_ref().map(|e| e.to_value());
    let mut f = vec![
        ("Rule", clean(Some(&a.rule_title))),
        ("Level", a.level.to_string()),
        ("Principal", o(&a.principal)),
    ];
    if let Some(e) = &event {
        f.extend(event_facts(e));
    }
    f.extend([
        ("Account", clean(a.account_label().as_deref())),
        ("Region", o(&a.region)),
        ("Source IP", o(&a.source_ip)),
        ("User agent", o(&a.user_agent)),
        ("Event time", o(&a.event_time)),
        ("Event name", o(&a.event_name)),
        ("Event source", o(&a.event_source)),
        ("Event id", o(&a.event_id)),
    ]);
    if let (Some(kind), Some(n)) = (a.correlation, a.count) {
        f.push(("Correlation", format!("{kind}, {n} events")));
        if let Some(g) = &a.group {
            let g: Vec<String> = g
                .iter()
                .map(|(k, v)| format!("{}={}", clean(Some(k)), clean(Some(v))))
                .collect();
            f.push(("Group", g.join(", ")));
        }
        if let Some(t) = &a.first_event_time {
            f.push(("First event", clean(Some(t))));
        }
        if let Some(calls) = &a.calls {
            let calls: Vec<String> = calls
                .iter()
                .map(|(name, n)| format!("{} ×{n}", clean(Some(name))))
                .collect();
            f.push(("Calls", calls.join(", ")));
        }
        if let Some(ids) = &a.event_ids {
            let ids: Vec<String> = ids.iter().map(|i| clean(Some(i))).collect();
            f.push(("Event ids", ids.join(", ")));
        }
    }
    f.push(("Rule id", clean(Some(&a.rule_id))));
    f.push((
        "Found in",
        format!("{} (record {})", clean(Some(&a.source)), a.record),
    ));
    f
}

/// Request parameters worth a line in the mail: what was acted on (the
/// user, role, group, policy, trail, detector, key), in this order. The
/// rest stays in the event below.
const KEY_PARAMETERS: [&str; 16] = [
    "userName",
    "roleName",
    "groupName",
    "policyArn",
    "policyName",
    "name",
    "trailName",
    "detectorId",
    "accessKeyId",
    "serialNumber",
    "instanceProfileName",
    "roleArn",
    "roleSessionName",
    "samlProviderArn",
    "openIDConnectProviderArn",
    "bucketName",
];

/// What the responder needs from the event itself, without opening it:
/// whether the call succeeded (`errorCode`/`errorMessage`), the access key
/// the caller used (what to revoke), a key the call created, and the key
/// request parameters. Values are the attacker's text: cleaned like every
/// fact, and each cut to [`MAX_FACT_CHARS`].
fn event_facts(e: &serde_json::Value) -> Vec<(&'static str, String)> {
    let text = fact_text;
    let mut f = Vec::new();
    if let Some(k) = e.pointer("/userIdentity/accessKeyId").and_then(text) {
        f.push(("Access key used", k));
    }
    let code = e.get("errorCode").and_then(text);
    let message = e.get("errorMessage").and_then(text);
    let result = match (code, message) {
        (Some(c), Some(m)) => format!("failed: {c}: {m}"),
        (Some(c), None) => format!("failed: {c}"),
        (None, Some(m)) => format!("failed: {m}"),
        (None, None) => match e.pointer("/responseElements/ConsoleLogin").and_then(text) {
            Some(outcome) => outcome,
            None => "succeeded (no errorCode)".into(),
        },
    };
    f.push(("Result", result));
    if let Some(k) = e
        .pointer("/responseElements/accessKey/accessKeyId")
        .and_then(text)
    {
        f.push(("Key created", k));
    }
    let params = key_parameters(e);
    if !params.is_empty() {
        f.push(("Parameters", params));
    }
    f
}

/// The key request parameters of an event (`userName=alice, policyArn=…`),
/// cleaned and each cut: what the call acted on. Empty when none.
pub(crate) fn key_parameters(e: &serde_json::Value) -> String {
    let Some(params) = e.get("requestParameters").and_then(|p| p.as_object()) else {
        return String::new();
    };
    KEY_PARAMETERS
        .iter()
        .filter_map(|k| Some(format!("{k}={}", params.get(*k).and_then(fact_text)?)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A scalar event value as a fact: cleaned and cut; `None` for objects,
/// arrays and null (not a fact a line can show).
fn fact_text(v: &serde_json::Value) -> Option<String> {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    Some(cut(&clean(Some(&s)), MAX_FACT_CHARS))
}

/// An event value shown as a fact is cut to this many characters.
const MAX_FACT_CHARS: usize = 200;

/// At most `max` characters of `s`, marked when cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The Message-ID of a mail: a digest of the identities of the alerts it
/// carries ([`Alert::dedup_key`], and for a summary its count and window),
/// so a resend of the same mail (after a crash) keeps it, and any other
/// mail, from any store or instance, has another: mail systems thread and
/// deduplicate by it.
pub(crate) fn message_id(group: &[(u64, Entry)], domain: &str) -> String {
    let mut keys: Vec<String> = group
        .iter()
        .map(|(_, e)| {
            let mut k = e.alert.dedup_key();
            if e.summary {
                k.push_str(&format!(
                    "\u{0}summary\u{0}{}\u{0}{}",
                    e.suppressed_before, e.summary_since_ms
                ));
            }
            k
        })
        .collect();
    keys.sort();
    // Each key with its length: no two lists of keys hash the same text.
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for k in &keys {
        ctx.update(&(k.len() as u64).to_le_bytes());
        ctx.update(k.as_bytes());
    }
    let digest = ctx.finish();
    let hex = super::hex(&digest.as_ref()[..16]);
    format!("<trailwatch.{hex}.{}@{domain}>", group.len())
}

fn event_json(a: &Alert) -> Option<String> {
    a.event
        .as_ref()
        .and_then(|e| serde_json::to_string_pretty(&e.to_value()).ok())
}

/// The line over an incident's timeline.
fn incident_heading(inc: &super::incident::IncidentView) -> String {
    let kept = if inc.more > 0 {
        format!(
            " ({} shown: the most severe kept when it grew too long)",
            inc.steps.len()
        )
    } else {
        String::new()
    };
    format!(
        "Incident {}: {} alerts by this principal since {}{kept} (each mail of it carries \
         the timeline so far; this one is headed by its most severe alert):",
        inc.id,
        inc.len(),
        clean(Some(inc.first_event_time())),
    )
}

/// One folded alert in a line: when, how severe, which rule, what call,
/// on what, with what result (the facts a responder acts on).
pub(crate) fn folded_line(a: &Alert) -> String {
    let mut line = format!(
        "{} {} {}: {}",
        clean(a.event_time.as_deref()),
        a.level,
        clean(Some(&a.rule_title)),
        clean(a.event_name.as_deref()),
    );
    if let Some(e) = a.event.as_ref().map(|e| e.to_value()) {
        for (k, v) in event_facts(&e) {
            if k != "Access key used" {
                let _ = write!(line, "; {k}: {v}");
            }
        }
    }
    line
}

/// What a suppression summary says: how many alerts were held back, since
/// when, and that the one shown is the last.
pub(crate) fn summary_line(e: &Entry) -> String {
    format!(
        "Summary: {} alerts like this one (same rule, principal, action and level) were held \
         back by storm control (suppress_secs) since {}; the last of them is shown.",
        e.suppressed_before,
        crate::time::iso_time(e.summary_since_ms as i64)
    )
}

/// Plain-text body of a single-alert mail.
pub(crate) fn text_body(e: &Entry) -> String {
    let a = &e.alert;
    let mut s = String::new();
    let _ = writeln!(s, "{} ({})\n", clean(Some(&a.rule_title)), a.level);
    if let Some(d) = &a.rule.description {
        let _ = writeln!(s, "{}\n", d.trim());
    }
    for (k, v) in facts(a) {
        let _ = writeln!(s, "{k:>15}: {v}");
    }
    if !e.folded.is_empty() {
        let _ = writeln!(
            s,
            "\nAlso in this message ({} more alerts of this incident, each in the JSON \
             lines in full):",
            e.folded.len()
        );
        for f in &e.folded {
            let _ = writeln!(s, "  {}", folded_line(f));
        }
    }
    if let Some(inc) = e.incident.as_ref().filter(|i| i.len() > 1) {
        let _ = writeln!(s, "\n{}", incident_heading(inc));
        for step in &inc.steps {
            let _ = writeln!(
                s,
                "  {:<20} {:<13} {:<24} {}",
                clean(Some(&step.event_time)),
                step.level.as_str(),
                clean(Some(&step.event_name)),
                clean(Some(&step.rule_title))
            );
        }
        if inc.more > 0 {
            let _ = writeln!(s, "  … and {} more", inc.more);
        }
    }
    if let Some(r) = &a.rule.runbook {
        let _ = writeln!(s, "\nRunbook:\n{}", r.trim());
    }
    if e.summary {
        let _ = writeln!(s, "\n{}", summary_line(e));
    } else if e.suppressed_before > 0 {
        let _ = writeln!(
            s,
            "\n{} more alerts like this one (same rule, principal, action and level) were \
             held back by storm control before this one.",
            e.suppressed_before
        );
    }
    if let Some(link) = console_link(a) {
        let _ = writeln!(s, "\nIn the CloudTrail console: {link}");
    }
    if !a.tags.is_empty() {
        let _ = writeln!(s, "\nTags (ATT&CK): {}", a.tags.join(", "));
    }
    if !a.rule.falsepositives.is_empty() {
        let _ = writeln!(s, "\nFalse positives:");
        for f in &a.rule.falsepositives {
            let _ = writeln!(s, "  - {f}");
        }
    }
    if !a.rule.references.is_empty() {
        let _ = writeln!(s, "\nReferences:");
        for r in &a.rule.references {
            let _ = writeln!(s, "  - {r}");
        }
    }
    if let Some(j) = event_json(a) {
        let _ = writeln!(s, "\nEvent:\n{j}");
    }
    s
}

/// HTML body of a single-alert mail: every value escaped.
pub(crate) fn html_body(e: &Entry) -> String {
    let a = &e.alert;
    let h = html_escape;
    let mut s = String::from("<!DOCTYPE html><html><body style=\"font-family:sans-serif\">");
    let _ = write!(
        s,
        "<h2>{} <small>({})</small></h2>",
        h(&a.rule_title),
        h(a.level.as_str())
    );
    if let Some(d) = &a.rule.description {
        let _ = write!(s, "<p>{}</p>", h(d.trim()));
    }
    s.push_str("<table cellpadding=\"3\">");
    for (k, v) in facts(a) {
        let _ = write!(
            s,
            "<tr><th align=\"left\">{}</th><td><code>{}</code></td></tr>",
            h(k),
            h(&v)
        );
    }
    s.push_str("</table>");
    if !e.folded.is_empty() {
        let _ = write!(
            s,
            "<h3>Also in this message ({} more alerts of this incident)</h3><ul>",
            e.folded.len()
        );
        for f in &e.folded {
            let _ = write!(s, "<li><code>{}</code></li>", h(&folded_line(f)));
        }
        s.push_str("</ul>");
    }
    if let Some(inc) = e.incident.as_ref().filter(|i| i.len() > 1) {
        let _ = write!(
            s,
            "<h3>{}</h3><table cellpadding=\"3\">",
            h(&incident_heading(inc))
        );
        for step in &inc.steps {
            let _ = write!(
                s,
                "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                h(&step.event_time),
                h(step.level.as_str()),
                h(&step.event_name),
                h(&step.rule_title)
            );
        }
        s.push_str("</table>");
        if inc.more > 0 {
            let _ = write!(s, "<p>… and {} more</p>", inc.more);
        }
    }
    if let Some(r) = &a.rule.runbook {
        let _ = write!(s, "<h3>Runbook</h3><pre>{}</pre>", h(r.trim()));
    }
    if e.summary {
        let _ = write!(s, "<p><b>{}</b></p>", html_escape(&summary_line(e)));
    } else if e.suppressed_before > 0 {
        let _ = write!(
            s,
            "<p>{} more alerts like this one (same rule, principal, action and level) were \
             held back by storm control before this one.</p>",
            e.suppressed_before
        );
    }
    if let Some(link) = console_link(a) {
        let _ = write!(
            s,
            "<p><a href=\"{}\">Open the event in the CloudTrail console</a></p>",
            h(&link)
        );
    }
    if !a.tags.is_empty() {
        let _ = write!(s, "<p>Tags (ATT&amp;CK): {}</p>", h(&a.tags.join(", ")));
    }
    list(&mut s, "False positives", &a.rule.falsepositives);
    list(&mut s, "References", &a.rule.references);
    if let Some(j) = event_json(a) {
        let _ = write!(s, "<h3>Event</h3><pre>{}</pre>", h(&j));
    }
    s.push_str("</body></html>");
    s
}

fn list(s: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(s, "<h3>{}</h3><ul>", html_escape(title));
    for i in items {
        let _ = write!(s, "<li>{}</li>", html_escape(i));
    }
    s.push_str("</ul>");
}

/// Events shown in full in a digest (the rest by their facts only).
const DIGEST_EVENTS: usize = 10;

fn digest_text(group: &[(u64, Entry)]) -> String {
    let mut s = format!("{} alerts\n", group.len());
    for (i, (_, e)) in group.iter().enumerate() {
        let _ = writeln!(s, "\n== {}. ==", i + 1);
        if i < DIGEST_EVENTS {
            s.push_str(&text_body(e));
        } else {
            for (k, v) in facts(&e.alert) {
                let _ = writeln!(s, "{k:>15}: {v}");
            }
        }
    }
    s
}

fn digest_html(group: &[(u64, Entry)]) -> String {
    let mut s = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{} alerts</h2>",
        group.len()
    );
    for (i, (_, e)) in group.iter().enumerate() {
        let body = html_body(&Entry {
            alert: if i < DIGEST_EVENTS {
                e.alert.clone()
            } else {
                Alert {
                    event: None,
                    ..e.alert.clone()
                }
            },
            ..e.clone()
        });
        let inner = body
            .trim_start_matches("<!DOCTYPE html><html><body style=\"font-family:sans-serif\">")
            .trim_end_matches("</body></html>");
        let _ = write!(s, "<hr>{inner}");
    }
    s.push_str("</body></html>");
    s
}

#[cfg(test)]
mod tests;
