//! Daemon configuration (`trailwatch run --config FILE`), in TOML.
//!
//! Every field has a default, and units are in the names. Unknown keys are
//! errors, so a typo never silently falls back to a default. Limits are
//! checked when the configuration is built. `trailwatch config check FILE`
//! runs exactly this validation.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: &'static str,
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where progress is kept (processed objects, alert dedup keys).
    pub state: StateConfig,
    /// What to read. At least one source.
    pub sources: SourcesConfig,
    /// Where alerts go.
    pub output: OutputConfig,
    /// Which rules run.
    pub rules: RulesConfig,
    /// Correlation windows.
    pub correlation: CorrelationConfig,
    /// Resource limits.
    pub limits: LimitsConfig,
    /// Stopping.
    pub shutdown: ShutdownConfig,
    /// The metrics and health listener.
    pub http: HttpConfig,
    /// Metric labels.
    pub metrics: MetricsConfig,
    /// Alert email (off unless configured).
    pub email: Option<crate::alert::email::EmailConfig>,
    /// Alert webhook, Slack-compatible (off unless configured).
    pub webhook: Option<crate::alert::webhook::WebhookConfig>,
    /// PagerDuty Events API v2 (off unless configured).
    pub pagerduty: Option<crate::alert::pagerduty::PagerDutyConfig>,
    /// `[accounts]`: names for account ids, `"123456789012" = "production"`.
    /// Every alert of a named account carries `account_name`, and every
    /// sink shows "production (123456789012)": an analyst at 3 a.m. reads
    /// a name, not twelve digits. (`email.account_names`, its first home,
    /// is still read and merged in; this table wins on a conflict.)
    pub accounts: std::collections::BTreeMap<String, String>,
    /// Online CloudTrail digest validation (off unless enabled).
    pub integrity: crate::integrity::online::IntegrityConfig,
    /// The credential inventory kept from the stream (on by default).
    pub inventory: crate::posture::inventory::InventoryConfig,
    /// IAM posture from the API, refreshed and kept current by the stream
    /// (off unless enabled).
    pub posture: crate::posture::watch::PostureConfig,
}

impl Default for Config {
    /// The embedded default: watch `./cloudtrail`, keep state in
    /// `./trailwatch-state`, print alerts on stdout.
    fn default() -> Self {
        Config {
            state: StateConfig::default(),
            sources: SourcesConfig {
                files: vec![FilesSource::default()],
                s3: Vec::new(),
                sqs: Vec::new(),
                cloudwatch: Vec::new(),
                stdin: false,
            },
            output: OutputConfig::default(),
            rules: RulesConfig::default(),
            correlation: CorrelationConfig::default(),
            limits: LimitsConfig::default(),
            shutdown: ShutdownConfig::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            email: None,
            webhook: None,
            pagerduty: None,
            accounts: Default::default(),
            integrity: Default::default(),
            inventory: Default::default(),
            posture: Default::default(),
        }
    }
}

/// `[state]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the state store (`state.redb`). Put it on a persistent
    /// volume: without it, a restart re-reads everything (alerts are still
    /// deduplicated only within one store).
    pub dir: PathBuf,
    /// How long processed objects and alert dedup keys are remembered.
    /// Longer than the oldest object a source may re-list or re-deliver.
    pub retention_days: u64,
    /// Memory the state store may use to cache its pages, in bytes. What
    /// does not fit is read through the operating system's page cache;
    /// raise it only if commits show up in profiles.
    pub cache_bytes: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("trailwatch-state"),
            retention_days: default_retention_days(),
            cache_bytes: crate::checkpoint::DEFAULT_CACHE_BYTES,
        }
    }
}

const fn default_retention_days() -> u64 {
    30
}

/// `[sources]`: any number of each kind.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// `[[sources.files]]`: local directories watched for new files.
    pub files: Vec<FilesSource>,
    /// `[[sources.s3]]`: CloudTrail buckets polled.
    pub s3: Vec<crate::source::s3::S3Config>,
    /// `[[sources.sqs]]`: queues of new-file notifications.
    pub sqs: Vec<crate::source::sqs::SqsConfig>,
    /// `[[sources.cloudwatch]]`: CloudWatch Logs groups a trail writes to.
    pub cloudwatch: Vec<crate::source::cloudwatch::CloudWatchConfig>,
    /// Read CloudTrail records as JSON lines from standard input until it
    /// closes (e.g. piped from another collector). Alerts are deduplicated;
    /// nothing of stdin can be re-read after a crash.
    pub stdin: bool,
}

/// A local directory of CloudTrail files (any layout, gzip or not).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilesSource {
    /// Directory to watch (recursively). Created if missing.
    pub path: PathBuf,
    /// How often to look for new or changed files.
    pub poll_interval_secs: u64,
    /// Files modified more recently than this are left for the next poll,
    /// so a file still being written is not read half-way.
    pub settle_secs: u64,
}

impl Default for FilesSource {
    fn default() -> Self {
        FilesSource {
            path: PathBuf::from("cloudtrail"),
            poll_interval_secs: 5,
            settle_secs: 2,
        }
    }
}

/// `[output]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Append alerts as JSON lines to this file, exactly once across
    /// crashes. Without it, alerts go to stdout (at least once: a crash
    /// between printing and committing repeats the last object's alerts).
    pub jsonl_path: Option<PathBuf>,
    /// Attach the event (up to 16 KiB) to each alert, in the JSON lines
    /// and the mails. Building it is most of an alert's cost: with a rule
    /// matching most events, turning it off keeps throughput up.
    pub include_event: bool,
    /// How alerts look on stdout (without `jsonl_path`): `json` (one
    /// object per line, for pipes) or `text` (one readable line per alert,
    /// for a person watching). `run --format` sets it.
    pub stdout_format: crate::alert::jsonl::Format,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            jsonl_path: None,
            include_event: true,
            stdout_format: crate::alert::jsonl::Format::Json,
        }
    }
}

/// `[rules]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Sigma rule directories; empty means the built-in pack.
    pub dirs: Vec<PathBuf>,
    /// Burst thresholds by correlation rule name, e.g.
    /// `thresholds = { access_denied_burst = 25 }`.
    pub thresholds: std::collections::BTreeMap<String, u64>,
    /// Refuse to start when a rule fails to load.
    pub strict: bool,
    /// Sigma filter files or directories (`filter:` documents, the Sigma
    /// filters specification) added on top of the rules in use, the
    /// built-in pack included: exceptions without editing rules.
    pub filters: Vec<PathBuf>,
    /// Ids or names of rules, correlation rules or filters to run in dry
    /// run: a rule's alerts are counted and written to the JSON lines but
    /// never mailed or sent; a filter removes nothing and counts what it
    /// would have removed. A name nothing answers to refuses the start.
    pub dry_run: Vec<String>,
}

/// `[correlation]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// How far behind the newest eventTime an event may arrive and still
    /// count. CloudTrail delivers within about 5 minutes, with outliers.
    pub lateness_secs: u64,
    /// Groups kept per correlation rule before the least recent are evicted.
    pub max_groups: usize,
    /// How far past this host's clock an event may be dated and still
    /// count in windows. An event dated later (2099, say) is dropped and
    /// counted, so it cannot make every later event look late.
    pub max_future_secs: u64,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            lateness_secs: 900,
            max_groups: crate::correlate::DEFAULT_MAX_GROUPS,
            max_future_secs: (crate::correlate::DEFAULT_MAX_FUTURE_MS / 1000) as u64,
        }
    }
}

/// `[limits]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest object accepted, stored or decompressed (gzip bombs).
    pub max_object_bytes: u64,
    /// Objects processed at once.
    pub objects_in_flight: usize,
    /// Event text (`output.include_event`) that the alerts of one object
    /// may hold in all; past it, alerts carry a note instead of their
    /// event. Bounds a flood of distinct alerts from one object (about ten
    /// thousand typical events fit the default, 16 MiB).
    pub max_event_bytes_per_object: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_object_bytes: crate::decode::DEFAULT_MAX_OBJECT_BYTES,
            objects_in_flight: 4,
            max_event_bytes_per_object: crate::pipeline::DEFAULT_MAX_EVENT_BYTES_PER_OBJECT,
        }
    }
}

/// `[shutdown]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// After SIGTERM/SIGINT, how long in-flight objects may take to finish
    /// before the daemon exits anyway (they are then re-read on restart).
    /// Keep it under the orchestrator's stop timeout (ECS: 30 s).
    pub grace_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_secs: 25 }
    }
}

/// `[http]`: `/metrics`, `/healthz`, `/readyz`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on; empty turns the listener off. Loopback by
    /// default; in a container, `0.0.0.0:9808` lets Prometheus reach it.
    /// Port 0 picks a free port (logged at start).
    pub listen: String,
    /// `/healthz` fails when the main loop has made no progress for this
    /// long (a stuck loop, not a slow object: objects take seconds).
    pub stall_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: crate::http::DEFAULT_LISTEN.to_owned(),
            stall_secs: 600,
        }
    }
}

/// `[metrics]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Account ids allowed as the `account` label of posture counters;
    /// others count as "unlisted". A list, so label values stay bounded
    /// whatever the input claims.
    pub accounts: Vec<String>,
}

impl Config {
    /// Read, parse and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parse and validate TOML text; `name` labels errors. `${VAR}` is
    /// replaced by the environment variable `VAR` first (see
    /// [`interpolate`]).
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let text =
            interpolate(text, |v| std::env::var(v).ok()).map_err(|e| ConfigError::Parse {
                path: name.to_owned(),
                message: e.to_string(),
            })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: name.to_owned(),
            message: parse_message(&text, &e),
        })?;
        if let Some((field, v)) = too_long_interval(&table, "") {
            return Err(ConfigError::Parse {
                path: name.to_owned(),
                message: format!(
                    "{field} = {v}: an interval of more than {MAX_INTERVAL_SECS} s (10 years) \
                     would overflow the clock arithmetic"
                ),
            });
        }
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: name.to_owned(),
            message: parse_message(&text, &e),
        })?;
        if let Some(e) = &config.email {
            for (id, n) in &e.account_names {
                config
                    .accounts
                    .entry(id.clone())
                    .or_insert_with(|| n.clone());
            }
        }
        config.validate(name)?;
        Ok(config)
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| ConfigError::Invalid {
            path: name.to_owned(),
            field,
            message: message.to_owned(),
        };
        for q in &self.sources.sqs {
            if q.queue_url.is_empty() {
                return Err(bad("sources.sqs.queue_url", "is required"));
            }
        }
        for c in &self.sources.cloudwatch {
            if c.log_group.is_empty() {
                return Err(bad("sources.cloudwatch.log_group", "is required"));
            }
            if c.poll_interval_secs == 0 || c.max_requests_per_sec == 0 {
                return Err(bad(
                    "sources.cloudwatch",
                    "poll_interval_secs and max_requests_per_sec must be at least 1",
                ));
            }
        }
        if self.sources.files.is_empty()
            && self.sources.s3.is_empty()
            && self.sources.sqs.is_empty()
            && self.sources.cloudwatch.is_empty()
            && !self.sources.stdin
        {
            return Err(bad("sources", "configure at least one source"));
        }
        for s in &self.sources.s3 {
            if s.bucket.is_empty() {
                return Err(bad("sources.s3.bucket", "is required"));
            }
            if s.poll_interval_secs == 0 {
                return Err(bad("sources.s3.poll_interval_secs", "must be at least 1"));
            }
            if !(1..=1024).contains(&s.list_concurrency) {
                return Err(bad("sources.s3.list_concurrency", "must be 1 to 1024"));
            }
            if let Some(d) = &s.start_date
                && crate::source::s3::parse_day(d).is_none()
            {
                return Err(bad("sources.s3.start_date", "must be YYYY-MM-DD"));
            }
        }
        for f in &self.sources.files {
            if f.poll_interval_secs == 0 {
                return Err(bad(
                    "sources.files.poll_interval_secs",
                    "must be at least 1",
                ));
            }
        }
        if self.limits.objects_in_flight == 0 {
            return Err(bad("limits.objects_in_flight", "must be at least 1"));
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(bad(
                "http.listen",
                "must be IP:PORT (e.g. 127.0.0.1:9808), or empty for no listener",
            ));
        }
        if let Some(e) = &self.email {
            e.validate().map_err(|e| ConfigError::Parse {
                path: name.to_owned(),
                message: e.to_string(),
            })?;
        }
        if let Some(w) = &self.webhook {
            w.validate().map_err(|e| ConfigError::Parse {
                path: name.to_owned(),
                message: e.to_string(),
            })?;
        }
        if let Some(p) = &self.pagerduty {
            p.validate().map_err(|e| ConfigError::Parse {
                path: name.to_owned(),
                message: e.to_string(),
            })?;
        }
        if self.integrity.enabled && self.sources.s3.is_empty() && self.sources.sqs.is_empty() {
            return Err(bad(
                "integrity.enabled",
                "needs an S3 or SQS source: digests and the log files they list are S3 objects",
            ));
        }
        if self.integrity.grace_secs > 36 * 3600 {
            return Err(bad(
                "integrity.grace_secs",
                "at most 129600 (36 h): what is awaited longer would be forgotten first",
            ));
        }
        if self.inventory.dormant_days == 0 || self.inventory.rotation_days == 0 {
            return Err(bad(
                "inventory",
                "dormant_days and rotation_days must be at least 1",
            ));
        }
        if self.posture.enabled {
            // Shorter only against a test endpoint on this machine.
            let local = self.posture.endpoint_url.as_deref().is_some_and(|u| {
                let host = u.split("://").nth(1).unwrap_or(u);
                host.starts_with("127.0.0.1")
                    || host.starts_with("localhost")
                    || host.starts_with("[::1]")
            });
            if self.posture.interval_secs < 60 && !local {
                return Err(bad(
                    "posture.interval_secs",
                    "must be at least 60 against AWS (IAM's report changes every 4 hours); \
                     shorter only with a loopback endpoint_url",
                ));
            }
            if self.posture.interval_secs == 0 {
                return Err(bad("posture.interval_secs", "must be at least 1"));
            }
            if self.posture.max_users == 0 || self.posture.timeout_secs == 0 {
                return Err(bad(
                    "posture",
                    "max_users and timeout_secs must be at least 1",
                ));
            }
        }
        if self.inventory.max_keys == 0 {
            return Err(bad("inventory.max_keys", "must be at least 1"));
        }
        if self.integrity.digest_delay_secs > 36 * 3600 {
            return Err(bad(
                "integrity.digest_delay_secs",
                "at most 129600 (36 h): what is awaited longer would be forgotten first",
            ));
        }
        if self.integrity.no_digest_hours > 24 * 30 {
            return Err(bad("integrity.no_digest_hours", "at most 720 (30 days)"));
        }
        for (id, n) in &self.accounts {
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("accounts", "each key must be a 12-digit account id"));
            }
            // The name reaches mail subjects and PagerDuty titles: one
            // short line of text.
            if n.trim().is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
                return Err(bad(
                    "accounts",
                    "each name must be 1 to 64 characters, without control characters",
                ));
            }
        }
        for a in &self.metrics.accounts {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(
                    "metrics.accounts",
                    "each must be a 12-digit account id",
                ));
            }
        }
        if self.limits.max_object_bytes < 1024 {
            return Err(bad("limits.max_object_bytes", "must be at least 1024"));
        }
        if self.state.retention_days == 0 {
            return Err(bad("state.retention_days", "must be at least 1"));
        }
        if self.correlation.max_groups == 0 {
            return Err(bad("correlation.max_groups", "must be at least 1"));
        }
        if let Some((k, _)) = self.rules.thresholds.iter().find(|(_, v)| **v == 0) {
            return Err(ConfigError::Invalid {
                path: name.to_owned(),
                field: "rules.thresholds",
                message: format!("`{k}` = 0 would fire on nothing"),
            });
        }
        Ok(())
    }
}

/// The longest interval (`*_secs`) the config takes: ten years. Larger
/// ones would overflow `Instant + Duration` or milliseconds in `u64`.
const MAX_INTERVAL_SECS: i64 = 10 * 365 * 86_400;

/// The first `*_secs` value (at any depth, in arrays of tables too) over
/// [`MAX_INTERVAL_SECS`], with its dotted path.
fn too_long_interval(table: &toml::Table, prefix: &str) -> Option<(String, i64)> {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Integer(n) if k.ends_with("_secs") && *n > MAX_INTERVAL_SECS => {
                return Some((path, *n));
            }
            toml::Value::Table(t) => {
                if let Some(found) = too_long_interval(t, &path) {
                    return Some(found);
                }
            }
            toml::Value::Array(items) => {
                for t in items.iter().filter_map(toml::Value::as_table) {
                    if let Some(found) = too_long_interval(t, &path) {
                        return Some(found);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// A TOML error as `line L, column C: what`, without the excerpt of the
/// file the toml crate shows and with every quoted value elided: a secret
/// written where it does not belong (an inline `password`, a token in the
/// wrong field) must never reach a log or the journal through an error.
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let at = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |p| p + 1);
            let column = before.len() - line_start + 1;
            // A value of the wrong type or form: the TOML parsed, so its
            // line is a real `key = value`, and the key (never the value)
            // says what to fix. (After a syntax error the line may be the
            // middle of a string: nothing of it is shown.)
            let data_error = [
                "invalid type",
                "invalid value",
                "unknown variant",
                "invalid length",
            ]
            .iter()
            .any(|p| message.starts_with(p));
            let key = before[line_start..]
                .split_once('=')
                .map(|(k, _)| k.trim())
                .filter(|k| {
                    data_error
                        && !k.is_empty()
                        && k.len() <= 64
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                });
            match key {
                Some(k) => format!("line {line}, column {column}, `{k}`: "),
                None => format!("line {line}, column {column}: "),
            }
        }
        None => String::new(),
    };
    format!("{at}{}", elide_values(message))
}

/// `"..."` becomes `"…"`, and so does the value named in "unknown variant
/// `...`"; key names (in backticks elsewhere) stay, as they say what to fix.
fn elide_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(p) = rest.find(['"', '`']) {
        out.push_str(&rest[..p]);
        let quote = rest.as_bytes()[p] as char;
        let after = &rest[p + 1..];
        let is_value = quote == '"' || out.ends_with("unknown variant ");
        // The closing quote (a `\"` inside a string does not close it).
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if quote == '"' && !escaped => escaped = true,
                c if c == quote && !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            out.push(quote);
            out.push_str(if is_value { "…" } else { after });
            return out;
        };
        out.push(quote);
        out.push_str(if is_value { "…" } else { &after[..end] });
        out.push(quote);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Why `${...}` could not be replaced (never the value itself: it may be a
/// secret).
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum InterpolateError {
    #[error("line {line}: `${{` without a closing `}}`")]
    Unclosed { line: usize },
    #[error("line {line}: `${{{text}}}` is not a variable name")]
    NotAName { line: usize, text: String },
    #[error(
        "line {line}: environment variable {var} is not set (write ${{{var}:-default}} for a default)"
    )]
    Unset { line: usize, var: String },
    #[error(
        "line {line}: the value of {var} holds a quote, backslash or line break, which cannot go into the configuration"
    )]
    UnsafeValue { line: usize, var: String },
}

/// Replace `${VAR}` (and `${VAR:-default}`) by environment values, so one
/// file serves every deployment: a container image carries the file and the
/// task definition sets `TRAILWATCH_QUEUE_URL` (Vector and docker compose
/// read `${...}` the same way). `$$` is a literal `$`; a `$` before anything
/// else stays as it is. Comment lines are left alone, so a commented-out
/// example never needs its variable. Values go into the TOML text as they
/// are, so a value holding a quote, a backslash or a line break is refused:
/// the environment can fill in a value, never add keys.
pub(crate) fn interpolate(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(after) = rest.strip_prefix("$$") {
                out.push('$');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("${") {
                let end = after
                    .find('}')
                    .ok_or(InterpolateError::Unclosed { line: n + 1 })?;
                let inner = &after[..end];
                let (var, default) = match inner.split_once(":-") {
                    Some((v, d)) => (v, Some(d)),
                    None => (inner, None),
                };
                let valid = var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(InterpolateError::NotAName {
                        line: n + 1,
                        text: inner.to_owned(),
                    });
                }
                let value = match (env(var), default) {
                    (Some(v), _) if !v.is_empty() => v,
                    (_, Some(d)) => d.to_owned(),
                    _ => {
                        return Err(InterpolateError::Unset {
                            line: n + 1,
                            var: var.to_owned(),
                        });
                    }
                };
                if value.contains(['"', '\\', '\n', '\r']) {
                    return Err(InterpolateError::UnsafeValue {
                        line: n + 1,
                        var: var.to_owned(),
                    });
                }
                out.push_str(&value);
                rest = &after[end + 1..];
            } else {
                out.push('$');
                rest = &rest[1..];
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret written where the config does not take it (an inline
    /// `password`, a token in a wrong-typed field, a value broken over
    /// lines) never appears in the error that rejects it.
    #[test]
    fn config_errors_never_repeat_a_value() {
        let head = "[state]\ndir = \"/tmp/s\"\n[[sources.files]]\npath = \"/tmp\"\n[email]\n\
                    from = \"a@example.com\"\nto = [\"b@example.com\"]\nsmtp_host = \"h\"\n";
        for (body, says) in [
            (
                "password = \"hunter2-SECRET\"\n",
                "unknown field `password`",
            ),
            ("smtp_port = \"hunter2-SECRET\"\n", "expected u16"),
            ("tls = \"hunter2-SECRET\"\n", "unknown variant"),
            ("password_env = \"x\\\"hunter2-SECRET\n\"\n", "line 10"),
            (
                "username = \"u\"\nusername = \"hunter2-SECRET\"\n",
                "line 10",
            ),
        ] {
            let err = Config::parse(&format!("{head}{body}"), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(!err.contains("hunter2"), "{body:?} -> {err}");
            assert!(!err.contains("SECRET"), "{body:?} -> {err}");
            assert!(err.contains(says), "{body:?} -> {err}");
        }
    }

    /// `[posture]` is off by default; on, it refuses an interval that
    /// would hammer AWS's IAM and zero bounds, and takes a short one
    /// against a test endpoint.
    #[test]
    fn posture_bounds_are_checked() {
        let head = "[state]\ndir = \"/tmp/s\"\n[[sources.files]]\npath = \"/tmp\"\n";
        let c = Config::parse(head, "t.toml").unwrap();
        assert!(!c.posture.enabled);
        assert_eq!(c.posture.interval_secs, 14_400);
        let c = Config::parse(
            &format!(
                "{head}[posture]\nenabled = true\ninterval_secs = 5\nendpoint_url = \"http://127.0.0.1:1\"\n"
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.posture.interval_secs, 5);
        for bad in [
            "interval_secs = 5",
            "max_users = 0",
            "timeout_secs = 0",
            "max_user = 5",
            "interval_secs = 5\nendpoint_url = \"https://iam.amazonaws.com\"",
            "interval_secs = 0\nendpoint_url = \"http://127.0.0.1:1\"",
        ] {
            let err = Config::parse(
                &format!("{head}[posture]\nenabled = true\n{bad}\n"),
                "t.toml",
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("posture") || err.contains("max_user"),
                "{bad} -> {err}"
            );
        }
    }

    /// `[accounts]` takes 12-digit ids and one-line names; the mail's
    /// older `account_names` is merged in, the new table winning.
    #[test]
    fn account_names_are_ids_to_one_line_names_merged_from_the_mail() {
        let head = "[state]\ndir = \"/tmp/s\"\n[[sources.files]]\npath = \"/tmp\"\n";
        let mail = "[email]\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\nsmtp_host = \"h\"\n\
                    account_names = { \"111111111111\" = \"old\", \"222222222222\" = \"staging\" }\n";
        let c = Config::parse(
            &format!("{head}[accounts]\n\"111111111111\" = \"production\"\n{mail}"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.accounts["111111111111"], "production");
        assert_eq!(c.accounts["222222222222"], "staging");
        for bad in [
            "\"12345\" = \"short\"",
            "\"12345678901x\" = \"letter\"",
            "\"123456789012\" = \"\"",
            "\"123456789012\" = \"a\\nSubject: forged\"",
            &format!("\"123456789012\" = \"{}\"", "n".repeat(65)),
        ] {
            let err = Config::parse(&format!("{head}[accounts]\n{bad}\n"), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains("accounts"), "{bad} -> {err}");
        }
    }

    #[test]
    fn environment_variables_fill_in_values_but_cannot_add_keys() {
        let env = |v: &str| match v {
            "QUEUE" => Some("https://sqs.eu-west-1.amazonaws.com/1/q".to_owned()),
            "EVIL" => Some("x\"\n[state]\ndir = \"/\"".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            interpolate("url = \"${QUEUE}\" # $HOME $$x\n", env).unwrap(),
            "url = \"https://sqs.eu-west-1.amazonaws.com/1/q\" # $HOME $x\n"
        );
        assert_eq!(interpolate("a = \"${NOPE:-d}\"", env).unwrap(), "a = \"d\"");
        assert_eq!(
            interpolate("a = \"${EMPTY:-d}\"", env).unwrap(),
            "a = \"d\""
        );
        assert_eq!(
            interpolate("# url = \"${NOPE}\"\n", env).unwrap(),
            "# url = \"${NOPE}\"\n"
        );
        let e = interpolate("\nurl = \"${NOPE}\"", env).unwrap_err();
        assert_eq!(
            e,
            InterpolateError::Unset {
                line: 2,
                var: "NOPE".into()
            }
        );
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("NOPE is not set"),
            "{e}"
        );
        assert!(matches!(
            interpolate("a = \"${EVIL}\"", env).unwrap_err(),
            InterpolateError::UnsafeValue { var, .. } if var == "EVIL"
        ));
        assert!(matches!(
            interpolate("a = \"${1X}\"", env),
            Err(InterpolateError::NotAName { .. })
        ));
        assert!(matches!(
            interpolate("a = \"${X\"", env),
            Err(InterpolateError::Unclosed { line: 1 })
        ));
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
    }

    #[test]
    fn fields_parse_and_unknown_keys_are_refused() {
        let c = Config::parse(
            "[state]\ndir = \"/var/lib/trailwatch\"\n[[sources.files]]\npath = \"/logs\"\npoll_interval_secs = 30\n\
             [rules]\nthresholds = { access_denied_burst = 25 }\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.state.dir, PathBuf::from("/var/lib/trailwatch"));
        assert_eq!(c.sources.files[0].poll_interval_secs, 30);
        assert_eq!(
            c.sources.files[0].settle_secs, 2,
            "unset fields keep defaults"
        );
        assert_eq!(c.rules.thresholds["access_denied_burst"], 25);

        let e = Config::parse("[state]\ndirr = \"x\"\n", "cfg.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cfg.toml") && e.contains("unknown field `dirr`"),
            "{e}"
        );
        let e = Config::parse("[limits]\nobjects_in_flight = 0\n", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.objects_in_flight"), "{e}");
        for n in [0, 1025] {
            let e = Config::parse(
                &format!("[[sources.s3]]\nbucket = \"b\"\nlist_concurrency = {n}\n"),
                "c",
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("sources.s3.list_concurrency"), "{e}");
        }
        let c = Config::parse("[[sources.s3]]\nbucket = \"b\"\n", "c").unwrap();
        assert_eq!(c.sources.s3[0].list_concurrency, 32);
        let e = Config::parse("[limits]\nmax_object_bytes = \"big\"\n", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_object_bytes"), "{e}");
    }
}
