//! Metrics: what operators graph and alert on, in Prometheus' text format
//! (served by [`crate::http`] on `/metrics`).
//!
//! Conventions: the `trailwatch_` prefix, base units (seconds, bytes),
//! counters end in `_total`. Every label value comes from a bounded set
//! the operator controls: source names from the configuration, rule ids
//! from the loaded rules, error kinds and outcomes from enums, accounts
//! only from `[metrics] accounts`. Nothing an event says (principal, ARN,
//! IP, key id, user agent) ever becomes a label value: an attacker could
//! otherwise blow up the series count or inject text into dashboards.
//!
//! The hot path does not touch these: each object's [`ObjectReport`]
//! carries plain counts, added here once per object.

pub mod events;

use std::collections::HashSet;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::pipeline::{ObjectReport, Posture};

/// Ingest lag buckets (seconds): CloudTrail delivers in about 5 minutes;
/// a backfill lags by days.
const LAG_BUCKETS: &[f64] = &[
    60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0, 604800.0,
];

/// Object processing-time buckets (seconds): a CloudTrail file takes
/// milliseconds; a 1 GiB one, seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Label value for accounts not listed in `[metrics] accounts`.
pub(crate) const UNLISTED_ACCOUNT: &str = "unlisted";

/// The registry and every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    /// Accounts allowed as a label value (from the configuration).
    accounts: HashSet<String>,
    pub records: IntCounterVec,
    pub duplicate_keys: IntCounterVec,
    pub read_bytes: IntCounterVec,
    pub decoded_bytes: IntCounterVec,
    pub objects: IntCounterVec,
    pub input_errors: IntCounterVec,
    pub source_errors: IntCounterVec,
    pub sqs_messages: IntCounterVec,
    /// Log-file integrity outcomes ([`crate::integrity::online`]).
    pub integrity: IntCounterVec,
    pub rule_matches: IntCounterVec,
    pub alerts: IntCounterVec,
    pub outbox_depth: IntGaugeVec,
    pub ingest_lag: HistogramVec,
    pub object_duration: HistogramVec,
    pub last_event_time: GaugeVec,
    pub start_time: prometheus::Gauge,
    pub posture: IntCounterVec,
    pub correlation_groups: IntGauge,
    /// The credential inventory ([`crate::posture::inventory`]).
    pub inventory_keys: IntGaugeVec,
    pub inventory_unused_keys: IntGauge,
    pub inventory_console_without_mfa: IntGauge,
    pub inventory_direct_policies: IntGauge,
    /// The `[posture]` stage ([`crate::posture::watch`]): open findings
    /// per fixed id, refreshes by outcome, the last good refresh.
    pub posture_findings: IntGaugeVec,
    pub posture_refreshes: IntCounterVec,
    pub posture_dropped: IntCounterVec,
    pub posture_last_refresh: prometheus::Gauge,
    pub correlation_evicted: IntCounter,
    pub correlation_dropped: IntCounterVec,
    pub store_commits: IntCounter,
    pub events_omitted: IntCounter,
    /// Event time → alert committed, by the path the event came (`via`).
    pub event_to_alert: HistogramVec,
    /// Arrival (object listed, message received) → alert committed.
    pub arrival_to_alert: HistogramVec,
    /// Rule matches each Sigma filter removed, by filter id.
    pub filtered: IntCounterVec,
    pub filter_dry_run: IntCounterVec,
    /// Alert committed → accepted by a remote sink (the SMTP server, the
    /// webhook), by sink.
    pub alert_delivery: HistogramVec,
}

/// Seconds from an event to its alert: EventBridge's seconds to the 5–15
/// minutes of log files, and a late backlog's hours.
const EVENT_TO_ALERT_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 14400.0,
];

/// Seconds from arrival (or commit) to the next step: the daemon's own
/// share, sub-second when all is well, minutes when a sink is down.
const STEP_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

impl Metrics {
    /// Create and register every metric. `accounts` are the account ids
    /// that may appear as label values.
    pub fn new(accounts: &[String]) -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique");
            h
        };
        let records = counter(
            "trailwatch_records_total",
            "CloudTrail records parsed and run through the rules.",
            &["source"],
        );
        let duplicate_keys = counter(
            "trailwatch_records_duplicate_keys_total",
            "Records that repeat a key (CloudTrail never does: a forged file, or \
             parameters echoed from a caller). They are still matched, the last value \
             of a repeated key counting everywhere, as in JSON.parse, jq and Python.",
            &["source"],
        );
        let read_bytes = counter(
            "trailwatch_read_bytes_total",
            "Bytes of objects read, as stored (compressed).",
            &["source"],
        );
        let decoded_bytes = counter(
            "trailwatch_decoded_bytes_total",
            "Bytes of JSON after decompression.",
            &["source"],
        );
        let objects = counter(
            "trailwatch_objects_total",
            "Objects by outcome: processed, already_processed (listed again, unchanged: \
             not read, nothing lost), digest (CloudTrail digest files, not records), \
             failed (read error; retried).",
            &["source", "outcome"],
        );
        let input_errors = counter(
            "trailwatch_input_errors_total",
            "Problems in input, by kind; each drops the damaged part only (a record, \
             the rest of a member, an object over the size cap) and is logged.",
            &["source", "kind"],
        );
        let sqs_messages = counter(
            "trailwatch_sqs_messages_total",
            "SQS messages by outcome: received, deleted (their objects committed, or \
             nothing to read), test_event (S3's test notification), malformed (not \
             a notification trailwatch reads; logged and deleted).",
            &["source", "outcome"],
        );
        let integrity = counter(
            "trailwatch_integrity_total",
            "CloudTrail log-file integrity, online: log files by outcome (verified, \
             altered, missing, unverifiable: delivered before validation was watched) \
             and digests by outcome (valid, invalid, altered, missing, no_digests: a \
             place with logs and no digests).",
            &["check", "outcome"],
        );
        for (check, outcome) in crate::integrity::online::OUTCOMES {
            integrity.with_label_values(&[check, outcome]);
        }
        let source_errors = counter(
            "trailwatch_source_errors_total",
            "Failed listings or receives of a source (network, permissions); retried \
             at the next poll.",
            &["source"],
        );
        let rule_matches = counter(
            "trailwatch_rule_matches_total",
            "Rule and correlation matches, before deduplication and storm control. rule \
             is the title (cut to 80 bytes), for dashboards.",
            &["rule_id", "rule", "level"],
        );
        let alerts = counter(
            "trailwatch_alerts_total",
            "Alerts by sink and outcome: written/sent, deduplicated (seen before), \
             suppressed (storm control), queued (in the outbox), failed (a delivery \
             attempt failed; retried).",
            &["sink", "outcome"],
        );
        let outbox_depth = IntGaugeVec::new(
            Opts::new(
                "trailwatch_outbox_depth",
                "Alerts stored and waiting for delivery, by sink.",
            ),
            &["sink"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(outbox_depth.clone()))
            .expect("unique");
        let ingest_lag = histogram(
            "trailwatch_ingest_lag_seconds",
            "Now minus eventTime of each record when processed.",
            &["source"],
            LAG_BUCKETS,
        );
        let filtered = counter(
            "trailwatch_filtered_total",
            "Rule matches removed by a Sigma filter (an exception), by filter id.",
            &["filter"],
        );
        let filter_dry_run = counter(
            "trailwatch_filter_dry_run_total",
            "Rule matches a Sigma filter in dry run would have removed (they alerted), \
             by filter id.",
            &["filter"],
        );
        let event_to_alert = histogram(
            "trailwatch_event_to_alert_seconds",
            "Time from an event (its eventTime) to its alert committed, by the path it came.",
            &["via"],
            EVENT_TO_ALERT_BUCKETS,
        );
        let arrival_to_alert = histogram(
            "trailwatch_arrival_to_alert_seconds",
            "Time from an object listed or a message received to its alerts committed, by the path it came.",
            &["via"],
            STEP_BUCKETS,
        );
        let alert_delivery = histogram(
            "trailwatch_alert_delivery_seconds",
            "Time from an alert committed to a remote sink accepting it (SMTP server, webhook).",
            &["sink"],
            STEP_BUCKETS,
        );
        let object_duration = histogram(
            "trailwatch_object_duration_seconds",
            "Time to decode, parse and match one object.",
            &["source"],
            DURATION_BUCKETS,
        );
        let last_event_time = GaugeVec::new(
            Opts::new(
                "trailwatch_last_event_time_seconds",
                "Newest eventTime processed (never past the clock), as a Unix time; kept \
                 across restarts in the state store.",
            ),
            &["source"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(last_event_time.clone()))
            .expect("unique");
        let start_time = prometheus::Gauge::with_opts(Opts::new(
            "trailwatch_start_time_seconds",
            "When this process started, as a Unix time: with no event seen yet (a \
             fresh state store), how long the trail has been silent is counted from it.",
        ))
        .expect("valid metric");
        start_time.set(crate::time::now_ms() as f64 / 1000.0);
        registry
            .register(Box::new(start_time.clone()))
            .expect("unique");
        let posture = counter(
            "trailwatch_posture_events_total",
            "Events security dashboards track: root_login (successful root console \
             sign-in), console_login_without_mfa (IAM user or root), access_key_created, \
             access_denied. account is the id if listed in [metrics] accounts, else \
             \"unlisted\".",
            &["kind", "account"],
        );
        let correlation_groups = IntGauge::new(
            "trailwatch_correlation_groups",
            "Open correlation groups held in memory.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(correlation_groups.clone()))
            .expect("unique");
        let inventory_keys = IntGaugeVec::new(
            Opts::new(
                "trailwatch_inventory_access_keys",
                "Long-term access keys the stream has seen and not seen deleted, by days \
                 since their last use (event time, relative to the newest use seen).",
            ),
            &["age"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(inventory_keys.clone()))
            .expect("unique");
        for age in crate::posture::inventory::AGE_BUCKETS {
            inventory_keys.with_label_values(&[age]);
        }
        let inventory_unused_keys = IntGauge::new(
            "trailwatch_inventory_unused_access_keys",
            "Access keys unused for the inventory's dormant_days (45 by default).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(inventory_unused_keys.clone()))
            .expect("unique");
        let inventory_console_without_mfa = IntGauge::new(
            "trailwatch_inventory_console_users_without_mfa",
            "Console users (and root) whose last sign-in did not use MFA.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(inventory_console_without_mfa.clone()))
            .expect("unique");
        let inventory_direct_policies = IntGauge::new(
            "trailwatch_inventory_users_with_direct_policies",
            "Users with a policy attached or put directly (seen in the stream, not since \
             removed): permissions belong on groups and roles.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(inventory_direct_policies.clone()))
            .expect("unique");
        let posture_findings = IntGaugeVec::new(
            Opts::new(
                "trailwatch_posture_findings",
                "Open IAM posture findings ([posture]), by fixed finding id: from the last \
                 refresh of the IAM API, kept current by the stream.",
            ),
            &["finding"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(posture_findings.clone()))
            .expect("unique");
        let posture_refreshes = IntCounterVec::new(
            Opts::new(
                "trailwatch_posture_refreshes_total",
                "Reads of the IAM API for [posture], by outcome (ok, failed).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(posture_refreshes.clone()))
            .expect("unique");
        let posture_dropped = IntCounterVec::new(
            Opts::new(
                "trailwatch_posture_events_dropped_total",
                "IAM changes in the stream [posture] did not apply, by reason: future (dated \
                 over 15 minutes ahead), duplicate (an event applied already), older (a newer \
                 event changed the same thing), full (max_users reached).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(posture_dropped.clone()))
            .expect("unique");
        let posture_last_refresh = prometheus::Gauge::new(
            "trailwatch_posture_last_refresh_timestamp_seconds",
            "When the IAM API was last read successfully for [posture] (0: never).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(posture_last_refresh.clone()))
            .expect("unique");
        let events_omitted = IntCounter::new(
            "trailwatch_alert_events_omitted_total",
            "Alerts that carry a note instead of their event: their object's alerts \
             already held limits.max_event_bytes_per_object of events.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(events_omitted.clone()))
            .expect("unique");
        let correlation_evicted = IntCounter::new(
            "trailwatch_correlation_evicted_total",
            "Correlation groups evicted to stay within max_groups (their counts are lost).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(correlation_evicted.clone()))
            .expect("unique");
        let correlation_dropped = counter(
            "trailwatch_correlation_dropped_total",
            "Correlation hits not counted in a window, by reason: late (older than their \
             group's newest time minus correlation.lateness_secs), future (dated past the \
             clock plus correlation.max_future_secs), untimed (no readable eventTime), \
             duplicate (an event the group had already counted, by event id), \
             evicted_event (a group held 10,000 events). Each series exists from the start.",
            &["reason"],
        );
        for reason in ["late", "future", "untimed", "duplicate", "evicted_event"] {
            correlation_dropped.with_label_values(&[reason]);
        }
        let store_commits = IntCounter::new(
            "trailwatch_store_commits_total",
            "Transactions committed to the state store.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_commits.clone()))
            .expect("unique");
        let build = IntGaugeVec::new(
            Opts::new("trailwatch_build_info", "Always 1; the version as a label."),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build)).expect("unique");
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            registry.register(Box::new(pc)).expect("unique");
        }
        Metrics {
            registry,
            accounts: accounts.iter().cloned().collect(),
            records,
            duplicate_keys,
            read_bytes,
            decoded_bytes,
            objects,
            input_errors,
            source_errors,
            sqs_messages,
            integrity,
            rule_matches,
            alerts,
            outbox_depth,
            ingest_lag,
            object_duration,
            last_event_time,
            start_time,
            posture,
            correlation_groups,
            inventory_keys,
            inventory_unused_keys,
            inventory_console_without_mfa,
            inventory_direct_policies,
            posture_findings,
            posture_refreshes,
            posture_dropped,
            posture_last_refresh,
            correlation_evicted,
            correlation_dropped,
            events_omitted,
            store_commits,
            event_to_alert,
            arrival_to_alert,
            alert_delivery,
            filtered,
            filter_dry_run,
        }
    }

    /// Add what each filter removed since the last call (and make every
    /// filter's series exist at 0). Filter ids come from the operator's
    /// own files: a bounded set.
    pub fn filters(&self, rules: &crate::rules::RuleSet) {
        for f in rules.filters() {
            let counter = if f.dry_run {
                &self.filter_dry_run
            } else {
                &self.filtered
            };
            counter.with_label_values(&[&f.id]).inc_by(f.take_removed());
        }
    }

    /// Add one processed object's counts. `now_ms` is the processing time
    /// the lag is measured against.
    pub fn object(&self, source: &str, report: &ObjectReport, took: Duration, now_ms: i64) {
        let outcome = if report.is_digest() {
            "digest"
        } else {
            "processed"
        };
        self.objects.with_label_values(&[source, outcome]).inc();
        self.records
            .with_label_values(&[source])
            .inc_by(report.records);
        self.duplicate_keys
            .with_label_values(&[source])
            .inc_by(report.duplicate_keys);
        self.read_bytes
            .with_label_values(&[source])
            .inc_by(report.bytes_read);
        self.decoded_bytes
            .with_label_values(&[source])
            .inc_by(report.bytes_decoded);
        for (kind, n) in report.error_counts() {
            self.input_errors
                .with_label_values(&[source, kind.as_str()])
                .inc_by(n);
        }
        self.object_duration
            .with_label_values(&[source])
            .observe(took.as_secs_f64());
        if !report.event_times_ms.is_empty() {
            let lag = self.ingest_lag.with_label_values(&[source]);
            let mut newest = i64::MIN;
            for &t in &report.event_times_ms {
                lag.observe((now_ms - t).max(0) as f64 / 1000.0);
                newest = newest.max(t);
            }
            let g = self.last_event_time.with_label_values(&[source]);
            // An event dated in the future must not hold the gauge ahead of
            // the clock (it would keep "no new events" from ever firing).
            let secs = newest.min(now_ms) as f64 / 1000.0;
            if secs > g.get() {
                g.set(secs);
            }
        }
        for (kind, account) in &report.posture {
            let account = if self.accounts.contains(account.as_str()) {
                account.as_str()
            } else {
                UNLISTED_ACCOUNT
            };
            self.posture
                .with_label_values(&[kind.as_str(), account])
                .inc();
        }
    }

    /// Count one rule or correlation match.
    /// Bring the correlation counters up to `stats` (they only grow).
    pub fn correlation(&self, stats: &crate::correlate::CorrelationStats) {
        for (reason, n) in stats.named() {
            if reason == "evicted_group" {
                self.correlation_evicted
                    .inc_by(n.saturating_sub(self.correlation_evicted.get()));
            } else {
                let c = self.correlation_dropped.with_label_values(&[reason]);
                c.inc_by(n.saturating_sub(c.get()));
            }
        }
    }

    pub(crate) fn rule_match(&self, rule_id: &str, title: &str, level: &str) {
        let mut title = title;
        if title.len() > 80 {
            let mut end = 80;
            while !title.is_char_boundary(end) {
                end -= 1;
            }
            title = &title[..end];
        }
        self.rule_matches
            .with_label_values(&[rule_id, title, level])
            .inc();
    }

    /// Set the inventory's gauges.
    pub(crate) fn inventory(&self, g: &crate::posture::inventory::Gauges) {
        for (age, n) in crate::posture::inventory::AGE_BUCKETS
            .iter()
            .zip(g.keys_by_age)
        {
            self.inventory_keys.with_label_values(&[age]).set(n as i64);
        }
        self.inventory_unused_keys.set(g.unused_keys as i64);
        self.inventory_console_without_mfa
            .set(g.console_without_mfa as i64);
        self.inventory_direct_policies
            .set(g.users_with_direct_policies as i64);
    }

    /// Declare the `[posture]` series (at 0 before the first refresh).
    pub(crate) fn declare_posture_findings(&self) {
        for f in crate::posture::watch::FINDINGS {
            self.posture_findings.with_label_values(&[f]);
        }
        for o in ["ok", "failed"] {
            self.posture_refreshes.with_label_values(&[o]);
        }
        for r in ["future", "duplicate", "older", "full"] {
            self.posture_dropped.with_label_values(&[r]);
        }
    }

    /// Count alerts of a sink by outcome.
    pub fn alerts(&self, sink: &str, outcome: &str, n: u64) {
        self.alerts.with_label_values(&[sink, outcome]).inc_by(n);
    }

    /// Make every series of a source exist at 0, so dashboards and
    /// `rate()` see it before its first object.
    pub(crate) fn declare_source(&self, source: &str) {
        for outcome in ["processed", "already_processed", "digest", "failed"] {
            self.objects.with_label_values(&[source, outcome]);
        }
        self.records.with_label_values(&[source]);
        self.duplicate_keys.with_label_values(&[source]);
        self.read_bytes.with_label_values(&[source]);
        self.decoded_bytes.with_label_values(&[source]);
        self.source_errors.with_label_values(&[source]);
        for kind in crate::pipeline::ErrorKind::ALL {
            self.input_errors
                .with_label_values(&[source, kind.as_str()]);
        }
    }

    /// The newest event time of each source, to save with a commit.
    pub(crate) fn last_event_times(&self) -> Vec<(String, f64)> {
        use prometheus::core::Collector;
        self.last_event_time
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter_map(|m| {
                let source = m.get_label().first()?.value().to_owned();
                Some((source, m.get_gauge().get_value()))
            })
            .collect()
    }

    /// At start: a source's newest event time as the store saved it (no
    /// later than `now`), so "no new events" can fire for a trail that
    /// stopped before this process started.
    pub(crate) fn restore_last_event_time(&self, source: &str, saved: f64, now: f64) {
        self.last_event_time
            .with_label_values(&[source])
            .set(saved.min(now));
    }

    /// Make the alert series of a sink exist at 0.
    pub(crate) fn declare_sink(&self, sink: &str, outcomes: &[&str]) {
        for o in outcomes {
            self.alerts.with_label_values(&[sink, o]);
        }
    }

    /// Make the time-to-alert histograms exist for every path, and the
    /// delivery one for each remote sink, before the first alert.
    pub(crate) fn declare_latency(&self, remote_sinks: &[&str]) {
        for via in crate::source::VIA {
            self.event_to_alert.with_label_values(&[via]);
            self.arrival_to_alert.with_label_values(&[via]);
        }
        for sink in remote_sinks {
            self.alert_delivery.with_label_values(&[sink]);
        }
    }

    /// Make every posture series of the listed accounts exist at 0.
    pub(crate) fn declare_posture(&self) {
        let mut accounts: Vec<&str> = self.accounts.iter().map(String::as_str).collect();
        accounts.push(UNLISTED_ACCOUNT);
        for kind in Posture::ALL {
            for a in &accounts {
                self.posture.with_label_values(&[kind.as_str(), a]);
            }
        }
    }

    /// The text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{ErrorKind, InputError};

    #[test]
    fn accounts_outside_the_list_never_become_label_values() {
        let m = Metrics::new(&["111111111111".into()]);
        let report = ObjectReport {
            records: 3,
            posture: vec![
                (Posture::AccessDenied, "111111111111".into()),
                (Posture::AccessDenied, "999999999999".into()),
                (Posture::RootLogin, "evil\"} 1\nfake_metric 2".into()),
            ],
            errors: vec![InputError {
                source: "x".into(),
                kind: ErrorKind::InvalidJson,
                message: "bad".into(),
            }],
            event_times_ms: vec![1_000, 5_000],
            ..Default::default()
        };
        m.object("files:x", &report, Duration::from_millis(3), 65_000);
        let text = m.render();
        assert!(text.contains(
            "trailwatch_posture_events_total{account=\"111111111111\",kind=\"access_denied\"} 1"
        ));
        assert!(text.contains(
            "trailwatch_posture_events_total{account=\"unlisted\",kind=\"access_denied\"} 1"
        ));
        assert!(text.contains(
            "trailwatch_posture_events_total{account=\"unlisted\",kind=\"root_login\"} 1"
        ));
        assert!(!text.contains("999999999999") && !text.contains("fake_metric"));
        assert!(text.contains("trailwatch_records_total{source=\"files:x\"} 3"));
        assert!(
            text.contains(
                "trailwatch_input_errors_total{kind=\"invalid_json\",source=\"files:x\"} 1"
            )
        );
        // Lags of 64 s and 60 s: one in the 60 s bucket, both by 300 s.
        assert!(
            text.contains("trailwatch_ingest_lag_seconds_bucket{source=\"files:x\",le=\"60\"} 1")
        );
        assert!(
            text.contains("trailwatch_ingest_lag_seconds_bucket{source=\"files:x\",le=\"300\"} 2")
        );
        assert!(text.contains("trailwatch_last_event_time_seconds{source=\"files:x\"} 5"));
    }
}
