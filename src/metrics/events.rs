//! Internal events: each thing that happens to the daemon that an operator
//! must be able to see, as one struct whose [`InternalEvent::emit`] logs it
//! and counts it together (Vector's `internal_events`). A drop can no longer
//! be logged without being counted, or counted without a line saying why:
//! the two live in one place, and a test emits each event and reads the
//! counter back.
//!
//! Text an event carries (object names, error messages) can be an
//! attacker's: it is escaped in logs and never becomes a label value.

use std::time::Duration;

use super::Metrics;
use crate::alert::jsonl::clean;
use crate::alert::remote::DeliveryError;
use crate::pipeline::{self, ErrorKind, ObjectReport};
use crate::source::SourceError;

/// Something to log and count at once.
pub(crate) trait InternalEvent {
    fn emit(self, metrics: &Metrics);
}

/// A source could not be listed (network, permissions); it is tried again
/// at its next poll. Counted in `trailwatch_source_errors_total`.
pub(crate) struct ListingFailed<'a> {
    pub source: &'a str,
    pub error: &'a SourceError,
}

impl InternalEvent for ListingFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::warn!(source = %self.source, "listing failed: {}", self.error);
        metrics
            .source_errors
            .with_label_values(&[self.source])
            .inc();
    }
}

/// An object went through the pipeline: its counts, its problems (the
/// first twenty logged ([`pipeline::log_errors`]), every one counted
/// in `trailwatch_input_errors_total` by kind), and the alerts that carry a
/// note instead of their event (`trailwatch_alert_events_omitted_total`).
pub(crate) struct ObjectProcessed<'a> {
    pub source: &'a str,
    pub report: &'a ObjectReport,
    pub took: Duration,
    pub now_ms: i64,
}

impl InternalEvent for ObjectProcessed<'_> {
    fn emit(self, metrics: &Metrics) {
        let report = self.report;
        pipeline::log_errors(report);
        metrics.object(self.source, report, self.took, self.now_ms);
        if report.events_omitted > 0 {
            tracing::warn!(
                source = %clean(Some(&report.source)),
                "{} alerts carry a note instead of their event: the object's \
                 alerts reached limits.max_event_bytes_per_object",
                report.events_omitted
            );
            metrics.events_omitted.inc_by(report.events_omitted);
        }
    }
}

/// An object could not be read (perhaps transiently): not committed, so
/// it is read again later. Counted as a `failed` object and a `read` input
/// error.
pub(crate) struct ObjectUnreadable<'a> {
    pub source: &'a str,
    pub report: &'a ObjectReport,
}

impl InternalEvent for ObjectUnreadable<'_> {
    fn emit(self, metrics: &Metrics) {
        pipeline::log_errors(self.report);
        metrics
            .objects
            .with_label_values(&[self.source, "failed"])
            .inc();
        metrics
            .input_errors
            .with_label_values(&[self.source, ErrorKind::Read.as_str()])
            .inc();
    }
}

/// A directory entry that cannot be read (a symlink loop, a dangling link,
/// no permission): skipped, logged and counted once when it appears.
pub(crate) struct EntryUnreadable<'a> {
    pub source: &'a str,
    pub path: &'a str,
    pub message: &'a str,
}

impl InternalEvent for EntryUnreadable<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::warn!(
            source = %self.source,
            path = %clean(Some(self.path)),
            "skipping an entry that cannot be read: {}",
            self.message
        );
        metrics
            .input_errors
            .with_label_values(&[self.source, ErrorKind::Read.as_str()])
            .inc();
    }
}

/// Alerts a remote sink delivered (`trailwatch_alerts_total{outcome="sent"}`),
/// and how long each waited since it was committed
/// (`trailwatch_alert_delivery_seconds`).
pub(crate) struct Delivered<'a> {
    pub sink: &'a str,
    /// When each alert was queued (committed), in ms.
    pub queued_ms: Vec<u64>,
    pub now_ms: u64,
}

impl InternalEvent for Delivered<'_> {
    fn emit(self, metrics: &Metrics) {
        let n = self.queued_ms.len() as u64;
        tracing::info!(sink = self.sink, alerts = n, "alerts delivered");
        metrics.alerts(self.sink, "sent", n);
        let waited = metrics.alert_delivery.with_label_values(&[self.sink]);
        for q in self.queued_ms {
            waited.observe(self.now_ms.saturating_sub(q) as f64 / 1000.0);
        }
    }
}

/// A delivery failed; the alerts stay queued and are tried again
/// (`trailwatch_alerts_total{outcome="failed"}`).
pub(crate) struct DeliveryFailed<'a> {
    pub sink: &'a str,
    pub alerts: u64,
    pub error: &'a DeliveryError,
}

impl InternalEvent for DeliveryFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::warn!(
            sink = self.sink,
            alerts = self.alerts,
            "delivery failed, will retry: {}",
            self.error
        );
        metrics.alerts(self.sink, "failed", self.alerts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::InputError;

    fn value(m: &Metrics, series: &str) -> f64 {
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series}"))
    }

    /// Each event moves its counter: what is logged is counted.
    #[test]
    fn every_event_counts_what_it_logs() {
        let m = Metrics::new(&[]);
        let error = SourceError::Remote {
            name: "n".into(),
            message: "down".into(),
        };
        ListingFailed {
            source: "s3:a",
            error: &error,
        }
        .emit(&m);
        assert_eq!(
            value(&m, "trailwatch_source_errors_total{source=\"s3:a\"}"),
            1.0
        );

        let problem = |kind| InputError {
            source: "o".into(),
            kind,
            message: "bad".into(),
        };
        let report = ObjectReport {
            source: "o".into(),
            errors: vec![problem(ErrorKind::InvalidJson); 30],
            events_omitted: 4,
            ..Default::default()
        };
        ObjectProcessed {
            source: "s3:a",
            report: &report,
            took: Duration::ZERO,
            now_ms: 0,
        }
        .emit(&m);
        assert_eq!(
            value(
                &m,
                "trailwatch_input_errors_total{kind=\"invalid_json\",source=\"s3:a\"}"
            ),
            30.0,
            "every problem counted, though only the first are logged"
        );
        assert_eq!(value(&m, "trailwatch_alert_events_omitted_total"), 4.0);

        let unreadable = ObjectReport {
            source: "o".into(),
            errors: vec![problem(ErrorKind::Read)],
            ..Default::default()
        };
        ObjectUnreadable {
            source: "s3:a",
            report: &unreadable,
        }
        .emit(&m);
        EntryUnreadable {
            source: "s3:a",
            path: "/x\n",
            message: "loop",
        }
        .emit(&m);
        assert_eq!(
            value(
                &m,
                "trailwatch_objects_total{outcome=\"failed\",source=\"s3:a\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &m,
                "trailwatch_input_errors_total{kind=\"read\",source=\"s3:a\"}"
            ),
            2.0
        );

        Delivered {
            sink: "email",
            queued_ms: vec![1_000, 2_000, 9_500],
            now_ms: 10_000,
        }
        .emit(&m);
        assert_eq!(
            value(
                &m,
                "trailwatch_alert_delivery_seconds_count{sink=\"email\"}"
            ),
            3.0
        );
        assert_eq!(
            value(&m, "trailwatch_alert_delivery_seconds_sum{sink=\"email\"}"),
            17.5
        );
        DeliveryFailed {
            sink: "email",
            alerts: 2,
            error: &DeliveryError::Empty,
        }
        .emit(&m);
        assert_eq!(
            value(
                &m,
                "trailwatch_alerts_total{outcome=\"sent\",sink=\"email\"}"
            ),
            3.0
        );
        assert_eq!(
            value(
                &m,
                "trailwatch_alerts_total{outcome=\"failed\",sink=\"email\"}"
            ),
            2.0
        );
    }
}
