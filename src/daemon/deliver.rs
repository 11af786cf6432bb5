//! The commit step: a group of processed objects' alerts deduplicated
//! against the store, written, queued for the remote sinks, and committed
//! with the objects, the correlation windows and the cursors in one
//! transaction.

use std::sync::Arc;
use std::time::Instant;

use super::sink::Sink;
use super::{CORRELATION_STATE, DaemonError, LAST_EVENT_TIMES, RunStats, dedup_key};
use crate::alert::remote::Remote;
use crate::alert::{Alert, Match};
use crate::checkpoint::{Commit, ObjectId, Store, now_ms};
use crate::metrics::Metrics;
use crate::rules::RuleSet;

/// One processed object, ready to be delivered.
pub(super) struct Done {
    pub(super) id: ObjectId,
    /// The object's name in alerts.
    pub(super) source: String,
    /// Its rule matches, compact: each becomes an [`Alert`] only while it
    /// is written or queued, so a flood of matches costs little at rest.
    pub(super) matches: Vec<Match>,
    /// Correlation alerts its events completed.
    pub(super) alerts: Vec<Alert>,
    /// Matches already dropped as repeats inside the object.
    pub(super) deduplicated: u64,
    /// A source cursor its commit advances.
    pub(super) cursor: Option<(String, Vec<u8>)>,
    /// The path it came by ([`crate::source::VIA`]); empty for the alerts
    /// the end of input decides.
    pub(super) via: &'static str,
    /// When it arrived (listed or received).
    pub(super) arrived: Option<Instant>,
}

impl Done {
    /// How many alerts it holds.
    fn len(&self) -> usize {
        self.matches.len() + self.alerts.len()
    }

    /// Alert `i` (matches first, then correlations), made on demand, its
    /// account named from `accounts`.
    fn alert(&self, i: usize, rules: &RuleSet, accounts: &Accounts) -> Alert {
        let mut a = match self.matches.get(i) {
            Some(m) => m.to_alert(&rules.rule(m.rule).meta, &self.source),
            None => self.alerts[i - self.matches.len()].clone(),
        };
        a.name_account(accounts);
        a
    }

    /// The event time of alert `i` (a correlation's: its last event's), in
    /// ms.
    fn event_ms(&self, i: usize) -> Option<i64> {
        let text = match self.matches.get(i) {
            Some(m) => m.event_time()?,
            None => self.alerts[i - self.matches.len()].event_time.as_deref()?,
        };
        crate::time::parse_event_time(text)
    }

    /// The dedup key of alert `i` ([`dedup_key`], without making it).
    fn key(&self, i: usize, rules: &RuleSet) -> String {
        match self.matches.get(i) {
            Some(m) => {
                let id = &rules.rule(m.rule).meta.id;
                match m.event_id() {
                    Some(e) => format!("d\u{0}{id}\u{0}{e}"),
                    None => format!("d\u{0}{id}\u{0}{}#{}", self.source, m.record),
                }
            }
            None => dedup_key(&self.alerts[i - self.matches.len()]),
        }
    }
}

/// Where a batch's results go: the store, the local sink, the remote
/// sinks' outboxes, the metrics.
pub(super) struct Outputs<'a> {
    pub(super) store: &'a Store,
    pub(super) sink: &'a mut Sink,
    pub(super) remotes: &'a [Arc<Remote>],
    pub(super) metrics: &'a Metrics,
    pub(super) rules: &'a RuleSet,
    pub(super) retention_ms: u64,
    /// The `[accounts]` names.
    pub(super) accounts: &'a Accounts,
}

/// What another stage writes in a commit's transaction.
pub(super) type Also<'a> = dyn Fn(&redb::WriteTransaction) -> Result<(), redb::Error> + 'a;

/// Account id → name (`[accounts]`).
pub(super) type Accounts = std::collections::BTreeMap<String, String>;

/// Steps 3-5 for a batch of objects: dedup, write durably (one fsync),
/// commit every object with its keys and the sink length (one
/// transaction). All or nothing: a crash leaves the batch to be read again.
pub(super) fn deliver(
    to: &mut Outputs<'_>,
    batch: Vec<Done>,
    windows: Option<Vec<u8>>,
    // State other stages decided (digest validation, the inventory),
    // written in the same transaction.
    also: Option<&Also<'_>>,
    stats: &mut RunStats,
) -> Result<(), DaemonError> {
    let Outputs {
        store,
        sink,
        remotes,
        metrics,
        rules,
        retention_ms,
        accounts,
    } = to;
    let (store, remotes, metrics, rules, retention_ms, accounts) =
        (*store, *remotes, *metrics, *rules, *retention_ms, *accounts);
    if batch.is_empty() && windows.is_none() && also.is_none() {
        return Ok(());
    }
    let now = now_ms();
    let mut keys: Vec<Vec<(String, u64)>> = Vec::with_capacity(batch.len());
    let mut seen = std::collections::HashSet::new();
    // (object, alert) of each alert not seen before: alerts are made from
    // these one at a time, written, and made again for the outboxes, so a
    // batch never holds them all at once.
    let mut fresh: Vec<(usize, usize)> = Vec::new();
    let mut total = 0u64;
    for (di, d) in batch.iter().enumerate() {
        let mut mine = Vec::new();
        stats.alerts_deduplicated += d.deduplicated;
        total += d.deduplicated + d.len() as u64;
        for i in 0..d.len() {
            let key = d.key(i, rules);
            if store.alert_seen(&key, now)? || !seen.insert(key.clone()) {
                stats.alerts_deduplicated += 1;
                continue;
            }
            mine.push((key, now + retention_ms));
            fresh.push((di, i));
        }
        keys.push(mine);
    }
    drop(seen);
    if !fresh.is_empty() {
        sink.follow_rotation(store)?;
    }
    let sink_len = sink.write(
        fresh
            .iter()
            .map(|&(di, i)| batch[di].alert(i, rules, accounts)),
    )?;
    let commits: Vec<Commit<'_>> = batch
        .iter()
        .zip(&keys)
        .map(|(d, k)| Commit {
            object: &d.id,
            alert_keys: k,
            sink: sink_len.as_ref().map(|(n, l)| (n.as_str(), *l)),
            cursor: d.cursor.as_ref().map(|(n, v)| (n.as_str(), v.as_slice())),
            now_ms: now,
        })
        .collect();
    let times: std::collections::HashMap<String, f64> =
        metrics.last_event_times().into_iter().collect();
    let times = serde_json::to_vec(&times).expect("plain data");
    let meta: Vec<(&str, &[u8])> = windows
        .as_deref()
        .map(|w| (CORRELATION_STATE, w))
        .into_iter()
        .chain([(LAST_EVENT_TIMES, times.as_slice())])
        .collect();
    let mut queued = Vec::with_capacity(remotes.len());
    store.commit_batch(&commits, &meta, |txn| {
        if let Some(also) = also {
            also(txn)?;
        }
        for r in remotes {
            let mut alerts = fresh
                .iter()
                .map(|&(di, i)| batch[di].alert(i, rules, accounts));
            queued.push(r.outbox.enqueue(txn, &mut alerts, now)?);
        }
        Ok(())
    })?;
    for (r, q) in remotes.iter().zip(&queued) {
        metrics.alerts(r.outbox.sink, "queued", q.queued);
        metrics.alerts(r.outbox.sink, "suppressed", q.suppressed);
        metrics.alerts(r.outbox.sink, "filtered", q.filtered);
        metrics.alerts(r.outbox.sink, "dry_run", q.dry_run);
        metrics.alerts(r.outbox.sink, "merged", q.merged);
        if q.queued > 0 {
            r.wake.notify_one();
        }
    }
    metrics.store_commits.inc();
    observe_latency(metrics, &batch, &fresh);
    metrics.alerts(sink.name(), "sent", fresh.len() as u64);
    metrics.alerts(sink.name(), "deduplicated", total - fresh.len() as u64);
    stats.alerts_written += fresh.len() as u64;
    Ok(())
}

/// Time to alert, for the alerts just committed: from each event's time,
/// and from its object's arrival (once per object that raised any).
fn observe_latency(metrics: &Metrics, batch: &[Done], fresh: &[(usize, usize)]) {
    let now = crate::time::now_event_ms();
    let mut last = None;
    for &(di, i) in fresh {
        let d = &batch[di];
        if d.via.is_empty() {
            continue;
        }
        if let Some(t) = d.event_ms(i) {
            metrics
                .event_to_alert
                .with_label_values(&[d.via])
                .observe((now - t).max(0) as f64 / 1000.0);
        }
        if last != Some(di)
            && let Some(arrived) = d.arrived
        {
            metrics
                .arrival_to_alert
                .with_label_values(&[d.via])
                .observe(arrived.elapsed().as_secs_f64());
        }
        last = Some(di);
    }
}
