//! The durable outbox of the remote sinks (email, webhook), and their storm
//! control.
//!
//! An alert for a remote sink is stored in the state store in the same
//! transaction that commits the object it came from, and removed only after
//! the remote end accepted it. SMTP or the webhook down means the alert
//! waits and is retried with exponential backoff, across restarts; nothing
//! is dropped. The one window left: a crash after the server accepted a
//! message and before its removal is committed sends it again, with the
//! same `Message-ID` so mail systems can fold the copy.
//!
//! Storm control, per sink, decided when alerts are queued (durably, in the
//! same transaction) and when they are sent:
//! - **suppression**: after an alert for a (rule, group, event name, level),
//!   more of the same within `suppress_secs` are counted, not sent; when
//!   the window closes with a count, a summary goes out (the last alert
//!   held back and how many there were). The group is the correlation's
//!   group, else the principal and account: StopLogging then DeleteTrail by
//!   one principal are two alerts, both sent.
//! - **digest**: with `digest_secs` > 0, alerts wait and go out together,
//!   one message per interval (per set of recipients).
//! - **hourly cap**: at most `max_per_hour` messages in any hour; the rest
//!   stay queued and go out as the hour rolls on, never dropped.
//!
//! - **incidents**: with `incident_secs` > 0, alerts of one principal in
//!   one account within that long of each other are one incident
//!   ([`super::incident`]): an alert whose incident's message is still
//!   queued is folded into it, and every message of an incident carries its
//!   timeline.
//!
//! Order: the most severe first (the queue is keyed by level, then by
//! arrival), and a critical alert is never held, by the cap or a digest
//! interval (it still counts against the cap).

use std::collections::{BTreeMap, HashMap};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::Alert;
use super::incident::{self, Incident, IncidentView};
use crate::rules::Level;

/// (sink, [`Key`]) → [`Entry`] as JSON.
const OUTBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("outbox");
/// The suppression windows of version 1 (no summary): dropped at start.
const SUPPRESS_V1: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("suppress");
/// (sink, suppression key) → [`Window`] as JSON.
const SUPPRESS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("suppress_v2");
/// sink → [`SinkState`] as JSON.
const SINK_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_state");
/// (sink, incident key) → [`Incident`] as JSON.
const INCIDENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("incidents");

/// Storm control of one sink (`[email.storm]`, `[webhook.storm]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StormConfig {
    /// After an alert for a (rule, group), others of the same pair within
    /// this many seconds are counted and not sent. 0 disables.
    pub suppress_secs: u64,
    /// Gather alerts and send one message every this many seconds. 0 sends
    /// each alert as it comes.
    pub digest_secs: u64,
    /// Messages per rolling hour; more wait in the outbox (never dropped).
    pub max_per_hour: u32,
    /// First retry delay after a failed delivery; doubles per attempt.
    pub retry_initial_secs: u64,
    /// Longest retry delay.
    pub retry_max_secs: u64,
    /// Alerts of one principal (in one account) within this many seconds of
    /// each other are one incident: folded into its queued message when
    /// there is one, and each message carries the incident's timeline. 0
    /// sends every alert on its own.
    pub incident_secs: u64,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            suppress_secs: 3600,
            digest_secs: 0,
            max_per_hour: 60,
            retry_initial_secs: 5,
            retry_max_secs: 900,
            incident_secs: 3600,
        }
    }
}

/// One queued alert.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub alert: Alert,
    pub queued_ms: u64,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not before this time (ms): the retry backoff.
    pub next_ms: u64,
    /// Alerts of the same kind suppressed before this one.
    pub suppressed_before: u64,
    /// A suppression summary: `alert` is the last alert held back, and
    /// `suppressed_before` how many were, since `summary_since_ms`.
    #[serde(default)]
    pub summary: bool,
    #[serde(default)]
    pub summary_since_ms: u64,
    /// The incident it belongs to, when it has more than this alert: the
    /// timeline its message shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentView>,
    /// Alerts of the incident folded into this message (at most
    /// [`MAX_FOLDED`]), whole: a webhook receives every alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<Alert>,
    /// Where `alert` belongs among `folded` in arrival order (`folded` is
    /// in arrival order without it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub head_at: usize,
    /// Not an alert: its incident is over (quiet for `incident_secs`),
    /// and a sink that resolves (PagerDuty with `resolve = true`) says so.
    /// `alert` is then the incident's most severe alert, for reference.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolve: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Alerts one message may fold in; an incident growing further starts
/// another message (its timeline still whole).
pub(crate) const MAX_FOLDED: usize = 20;

impl Entry {
    /// `alert`, queued at `now_ms` and due at once: not yet tried, no
    /// suppressed count, not a summary.
    pub fn new(alert: Alert, now_ms: u64) -> Entry {
        Entry {
            alert,
            queued_ms: now_ms,
            attempts: 0,
            next_ms: now_ms,
            suppressed_before: 0,
            summary: false,
            summary_since_ms: 0,
            incident: None,
            folded: Vec::new(),
            head_at: 0,
            resolve: false,
        }
    }
}

/// A suppression window: alerts of one kind held back until `until`.
#[derive(Debug, Serialize, Deserialize)]
struct Window {
    until: u64,
    /// Held back so far, the first one's time, and the last one.
    count: u64,
    since_ms: u64,
    last: Option<Alert>,
}

/// An outbox key: the priority in the top byte (1 for critical, 5 for
/// informational: a range scan meets the most severe first), the sequence
/// number below. A key whose top byte is 0 was written before priorities
/// (it is moved at start).
fn key(level: Level, seq: u64) -> u64 {
    (u64::from(5 - level as u8) << 56) | (seq & ((1 << 56) - 1))
}

/// The priority of critical alerts in [`key`].
const CRITICAL_PRIORITY: u64 = 1;

/// Per-sink bookkeeping.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SinkState {
    next_seq: u64,
    /// Times (ms) of messages sent in the last hour, for the cap.
    sent_ms: Vec<u64>,
    /// When the last digest went out.
    last_digest_ms: u64,
    /// No incident of this sink is over before this time (`None`: not
    /// known, look), like `windows_end_ms` for suppression windows.
    #[serde(default)]
    incidents_end_ms: Option<u64>,
    /// Entries in this sink's outbox, kept with every change (and counted
    /// again at start): the depth gauge and a drain read it every few
    /// seconds, and counting a flood's entries each time read every one.
    #[serde(default)]
    queued: u64,
    /// No suppression window of this sink ends before this time (`None`:
    /// not known, look): most rounds then know without reading the
    /// windows that none has ended.
    #[serde(default)]
    windows_end_ms: Option<u64>,
}

/// The sink's bookkeeping as stored (default when none is).
fn read_state(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    sink: &str,
) -> DbResult<SinkState> {
    Ok(t.get(sink)?
        .and_then(|v| serde_json::from_slice(v.value()).ok())
        .unwrap_or_default())
}

/// What queuing a batch did, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Queued {
    pub queued: u64,
    pub suppressed: u64,
    /// Below the sink's minimum level.
    pub filtered: u64,
    /// Of a rule in dry run: written locally, never sent.
    pub dry_run: u64,
    /// Folded into their incident's queued message instead of one of
    /// their own.
    pub merged: u64,
}

/// The outbox of one remote sink.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    /// The sink's name (`email`, `webhook`): its metrics label and key.
    pub sink: &'static str,
    pub storm: StormConfig,
    /// Alerts below this level are not for this sink.
    pub min_level: Level,
    /// Whether an incident that is over gets a message saying so (a
    /// PagerDuty `resolve`): only sinks that can close what they opened.
    pub resolve: bool,
}

type DbResult<T> = Result<T, redb::Error>;

impl Outbox {
    /// Create the tables (at start, so readers never meet a missing one),
    /// and move entries queued before priorities to their place.
    pub fn init(db: &Database) -> DbResult<()> {
        let txn = db.begin_write()?;
        {
            let mut outbox = txn.open_table(OUTBOX)?;
            let old: Vec<((String, u64), Vec<u8>)> = outbox
                .iter()?
                .filter_map(Result::ok)
                .filter(|(k, _)| k.value().1 >> 56 == 0)
                .map(|(k, v)| ((k.value().0.to_owned(), k.value().1), v.value().to_vec()))
                .collect();
            for ((sink, seq), bytes) in old {
                let level = serde_json::from_slice::<Entry>(&bytes)
                    .map_or(Level::Informational, |e| e.alert.level);
                outbox.remove((sink.as_str(), seq))?;
                outbox.insert((sink.as_str(), key(level, seq)), bytes.as_slice())?;
            }
            // Each sink's depth, counted once here and kept from then on.
            let mut counts: HashMap<String, u64> = HashMap::new();
            for row in outbox.iter()? {
                let (k, _) = row?;
                *counts.entry(k.value().0.to_owned()).or_default() += 1;
            }
            let mut states = txn.open_table(SINK_STATE)?;
            let mut sinks: Vec<String> = states
                .iter()?
                .filter_map(Result::ok)
                .map(|(k, _)| k.value().to_owned())
                .collect();
            sinks.extend(counts.keys().cloned());
            sinks.sort_unstable();
            sinks.dedup();
            for sink in sinks {
                let mut state = read_state(&states, &sink)?;
                state.queued = counts.get(&sink).copied().unwrap_or(0);
                let bytes = serde_json::to_vec(&state).expect("plain data");
                states.insert(sink.as_str(), bytes.as_slice())?;
            }
            txn.open_table(SUPPRESS)?;
            txn.open_table(INCIDENTS)?;
        }
        txn.delete_table(SUPPRESS_V1)?;
        txn.commit()?;
        Ok(())
    }

    fn state(&self, t: &impl ReadableTable<&'static str, &'static [u8]>) -> DbResult<SinkState> {
        read_state(t, self.sink)
    }

    /// Queue `alerts` inside the caller's write transaction (the one that
    /// commits their objects), applying the level filter and suppression;
    /// alerts of a rule in dry run are counted and left out.
    /// They are taken one at a time, so a batch need not hold them all.
    pub fn enqueue(
        &self,
        txn: &redb::WriteTransaction,
        alerts: &mut dyn Iterator<Item = Alert>,
        now_ms: u64,
    ) -> DbResult<Queued> {
        let mut out = Queued::default();
        let mut alerts = alerts.peekable();
        if alerts.peek().is_none() {
            return Ok(out);
        }
        let mut states = txn.open_table(SINK_STATE)?;
        let mut state = self.state(&states)?;
        let mut outbox = txn.open_table(OUTBOX)?;
        let mut suppress = txn.open_table(SUPPRESS)?;
        let mut incidents = txn.open_table(INCIDENTS)?;
        let window_ms = self.storm.suppress_secs.saturating_mul(1000);
        let incident_ms = self.storm.incident_secs.saturating_mul(1000);
        // The incidents this batch touches, read once and written once at
        // the end (`None`: none live yet, the next alert opens one).
        let mut touched: HashMap<String, Option<Incident>> = HashMap::new();
        for a in alerts {
            if a.rule.dry_run {
                out.dry_run += 1;
                continue;
            }
            if a.level < self.min_level {
                out.filtered += 1;
                continue;
            }
            let ikey = incident::key(&a).filter(|k| {
                incident_ms > 0
                    && (touched.contains_key(k)
                        || touched.len() < incident::MAX_INCIDENTS_PER_BATCH)
            });
            if let Some(k) = &ikey
                && !touched.contains_key(k)
            {
                let stored = incidents
                    .get((self.sink, k.as_str()))?
                    .and_then(|v| serde_json::from_slice::<Incident>(v.value()).ok());
                let live = match stored {
                    Some(i) if now_ms.saturating_sub(i.last_ms) <= incident_ms => Some(i),
                    // Over, but not yet closed by a delivery round: closed
                    // here, before the new incident takes its place.
                    Some(over) => {
                        self.queue_resolve(&mut outbox, &mut state, over, now_ms)?;
                        None
                    }
                    None => None,
                };
                touched.insert(k.clone(), live);
            }
            let mut suppressed_before = 0;
            if window_ms > 0 {
                let k = suppression_key(&a);
                let prev: Option<Window> = suppress
                    .get((self.sink, k.as_str()))?
                    .and_then(|v| serde_json::from_slice(v.value()).ok());
                match prev {
                    Some(mut w) if w.until > now_ms => {
                        // Held back, but still a step of its incident: the
                        // incident's queued message (if any) shows it.
                        if let Some(Some(inc)) = ikey.as_ref().and_then(|k| touched.get_mut(k)) {
                            inc.push(&a, now_ms);
                            if let Some(p) = inc.pending {
                                let old = outbox
                                    .get((self.sink, p))?
                                    .and_then(|v| serde_json::from_slice::<Entry>(v.value()).ok());
                                if let Some(mut old) = old {
                                    old.incident = Some(inc.view.clone());
                                    let bytes = serde_json::to_vec(&old).expect("alerts serialize");
                                    outbox.insert((self.sink, p), bytes.as_slice())?;
                                }
                            }
                        }
                        w.count += 1;
                        if w.count == 1 {
                            w.since_ms = now_ms;
                        }
                        w.last = Some(a);
                        let bytes = serde_json::to_vec(&w).expect("plain data");
                        suppress.insert((self.sink, k.as_str()), bytes.as_slice())?;
                        out.suppressed += 1;
                        continue;
                    }
                    // A window closed with a count not yet summarised:
                    // this alert says it.
                    Some(w) => suppressed_before = w.count,
                    None => {}
                }
                let w = Window {
                    until: now_ms + window_ms,
                    count: 0,
                    since_ms: 0,
                    last: None,
                };
                state.windows_end_ms = state.windows_end_ms.map(|end| end.min(w.until));
                let bytes = serde_json::to_vec(&w).expect("plain data");
                suppress.insert((self.sink, k.as_str()), bytes.as_slice())?;
            }
            let mut entry = Entry {
                suppressed_before,
                ..Entry::new(a, now_ms)
            };
            let mut merged = false;
            let mut pending = None;
            if let Some(k) = &ikey
                && let Some(slot) = touched.get_mut(k)
            {
                match slot {
                    Some(inc) => inc.push(&entry.alert, now_ms),
                    None => *slot = Some(Incident::open(k, &entry.alert, now_ms)),
                }
                let inc = slot.as_mut().expect("opened above");
                // Its incident's message still waits: one message for
                // both, headed by the more severe alert (the newer on a
                // tie).
                if let Some(p) = inc.pending {
                    let old = outbox
                        .get((self.sink, p))?
                        .and_then(|v| serde_json::from_slice::<Entry>(v.value()).ok())
                        .filter(|o| o.folded.len() < MAX_FOLDED);
                    if let Some(old) = old {
                        outbox.remove((self.sink, p))?;
                        merged = true;
                        // `folded` stays in arrival order, the headline's
                        // place in it kept in `head_at`.
                        let mut folded = old.folded;
                        if old.alert.level > entry.alert.level {
                            folded.push(std::mem::replace(&mut entry.alert, old.alert));
                            entry.suppressed_before = old.suppressed_before;
                            entry.head_at = old.head_at;
                        } else {
                            folded.insert(old.head_at.min(folded.len()), old.alert);
                            entry.head_at = folded.len();
                        }
                        entry.folded = folded;
                        entry.queued_ms = old.queued_ms;
                    }
                }
                // From its first alert on: the first message already has
                // the incident's thread and PagerDuty key, so the story
                // is one thread and one page from the start.
                entry.incident = Some(inc.view.clone());
                if self.resolve {
                    inc.note_head(&entry.alert);
                }
                pending = Some(inc);
            }
            let k = key(entry.alert.level, state.next_seq);
            let bytes = serde_json::to_vec(&entry).expect("alerts serialize");
            outbox.insert((self.sink, k), bytes.as_slice())?;
            state.next_seq += 1;
            if let Some(inc) = pending {
                inc.pending = Some(k);
            }
            if merged {
                out.merged += 1;
            } else {
                out.queued += 1;
                state.queued += 1;
            }
        }
        for (k, inc) in touched {
            if let Some(inc) = inc {
                state.incidents_end_ms = state
                    .incidents_end_ms
                    .map(|end| end.min(inc.last_ms.saturating_add(incident_ms)));
                let bytes = serde_json::to_vec(&inc).expect("plain data");
                incidents.insert((self.sink, k.as_str()), bytes.as_slice())?;
            }
        }
        let bytes = serde_json::to_vec(&state).expect("plain data");
        states.insert(self.sink, bytes.as_slice())?;
        Ok(out)
    }

    /// Queue the message that says `over` is over, when this sink resolves
    /// and the incident has a headline to refer to.
    fn queue_resolve(
        &self,
        outbox: &mut redb::Table<(&'static str, u64), &'static [u8]>,
        state: &mut SinkState,
        over: Incident,
        now_ms: u64,
    ) -> DbResult<bool> {
        let Some(head) = over.head.filter(|_| self.resolve) else {
            return Ok(false);
        };
        let entry = Entry {
            resolve: true,
            incident: Some(over.view),
            ..Entry::new(head, now_ms)
        };
        let bytes = serde_json::to_vec(&entry).expect("alerts serialize");
        // The lowest priority: after every alert queued before it.
        outbox.insert(
            (self.sink, key(Level::Informational, state.next_seq)),
            bytes.as_slice(),
        )?;
        state.next_seq += 1;
        state.queued += 1;
        Ok(true)
    }

    /// Forget the incidents that are over (quiet for `incident_secs`), and
    /// for a sink that resolves, queue a message saying each is over.
    /// One whose message has not gone out yet waits for it (checked again
    /// a minute later), so a resolve never overtakes its trigger. Most
    /// rounds know from the earliest end that nothing is over and read
    /// nothing more. Returns the resolves queued.
    pub(crate) fn close_incidents(&self, db: &Database, now_ms: u64) -> DbResult<u64> {
        let incident_ms = self.storm.incident_secs.saturating_mul(1000);
        let due = {
            let txn = db.begin_read()?;
            let state = self.state(&txn.open_table(SINK_STATE)?)?;
            state.incidents_end_ms.is_none_or(|end| end <= now_ms)
        };
        if !due {
            return Ok(0);
        }
        let txn = db.begin_write()?;
        let mut resolved = 0;
        {
            let mut incidents = txn.open_table(INCIDENTS)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut states = txn.open_table(SINK_STATE)?;
            let mut state = self.state(&states)?;
            let mut next_end = u64::MAX;
            let mut over = Vec::new();
            for row in incidents.range((self.sink, "")..)? {
                let (k, v) = row?;
                if k.value().0 != self.sink {
                    break;
                }
                let inc = serde_json::from_slice::<Incident>(v.value()).ok();
                let end = inc
                    .as_ref()
                    .map_or(0, |i| i.last_ms.saturating_add(incident_ms));
                if end <= now_ms {
                    over.push((k.value().1.to_owned(), inc));
                } else {
                    next_end = next_end.min(end);
                }
            }
            for (k, inc) in over {
                if let Some(inc) = inc {
                    let waiting = match inc.pending {
                        Some(p) => outbox.get((self.sink, p))?.is_some(),
                        None => false,
                    };
                    if self.resolve && inc.head.is_some() && waiting {
                        next_end = next_end.min(now_ms + 60_000);
                        continue;
                    }
                    if self.queue_resolve(&mut outbox, &mut state, inc, now_ms)? {
                        resolved += 1;
                    }
                }
                incidents.remove((self.sink, k.as_str()))?;
            }
            state.incidents_end_ms = Some(next_end);
            let bytes = serde_json::to_vec(&state).expect("plain data");
            states.insert(self.sink, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(resolved)
    }

    /// Close the suppression windows that ended: each that held alerts
    /// back becomes a summary in the outbox (the last alert and the count),
    /// and is forgotten; so is every other ended window. Returns the
    /// summaries queued.
    pub(crate) fn close_windows(&self, db: &Database, now_ms: u64) -> DbResult<u64> {
        // A cheap look first: most rounds find nothing and write nothing,
        // and know it from the earliest end without reading the windows.
        let any = {
            let txn = db.begin_read()?;
            let state = self.state(&txn.open_table(SINK_STATE)?)?;
            match state.windows_end_ms {
                Some(end) => end <= now_ms,
                None => true,
            }
        };
        if !any {
            return Ok(0);
        }
        // Read again inside the write: two callers (a delivery round and a
        // drain) must not both summarise one window.
        let txn = db.begin_write()?;
        let mut queued = 0;
        {
            let mut suppress = txn.open_table(SUPPRESS)?;
            let (ended, next_end) = self.ended(&suppress, now_ms)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut states = txn.open_table(SINK_STATE)?;
            let mut state = self.state(&states)?;
            state.windows_end_ms = Some(next_end);
            for (k, w) in ended {
                suppress.remove((self.sink, k.as_str()))?;
                let Some(last) = w.last.filter(|_| w.count > 0) else {
                    continue;
                };
                let level = last.level;
                let entry = Entry {
                    suppressed_before: w.count,
                    summary: true,
                    summary_since_ms: w.since_ms,
                    ..Entry::new(last, now_ms)
                };
                let bytes = serde_json::to_vec(&entry).expect("alerts serialize");
                outbox.insert((self.sink, key(level, state.next_seq)), bytes.as_slice())?;
                state.next_seq += 1;
                state.queued += 1;
                queued += 1;
            }
            let bytes = serde_json::to_vec(&state).expect("plain data");
            states.insert(self.sink, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(queued)
    }

    /// This sink's suppression windows that ended by `now_ms`, and the
    /// earliest end of the others (`u64::MAX` when none is left).
    fn ended(
        &self,
        t: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
        now_ms: u64,
    ) -> DbResult<(Vec<(String, Window)>, u64)> {
        let mut out = Vec::new();
        let mut next_end = u64::MAX;
        for row in t.range((self.sink, "")..)? {
            let (k, v) = row?;
            if k.value().0 != self.sink {
                break;
            }
            if let Ok(w) = serde_json::from_slice::<Window>(v.value()) {
                if w.until <= now_ms {
                    out.push((k.value().1.to_owned(), w));
                } else {
                    next_end = next_end.min(w.until);
                }
            }
        }
        Ok((out, next_end))
    }

    /// Alerts waiting, for the depth gauge.
    pub fn depth(&self, db: &Database) -> DbResult<u64> {
        let txn = db.begin_read()?;
        Ok(self.state(&txn.open_table(SINK_STATE)?)?.queued)
    }

    /// What may be sent now, oldest first: nothing while the hourly cap is
    /// used up or a digest interval is still running; at most `limit`
    /// entries, whose retry time has come. With `Err(wait_ms)` nothing is
    /// due and the next chance is that far away (bounded by 1 s so new
    /// alerts are picked up quickly).
    pub(crate) fn due(
        &self,
        db: &Database,
        now_ms: u64,
        limit: usize,
    ) -> DbResult<Result<Vec<(u64, Entry)>, u64>> {
        let txn = db.begin_read()?;
        let state = self.state(&txn.open_table(SINK_STATE)?)?;
        let hour_ago = now_ms.saturating_sub(3_600_000);
        let recent: Vec<u64> = state
            .sent_ms
            .iter()
            .copied()
            .filter(|t| *t > hour_ago)
            .collect();
        // While the cap is used up, or a digest interval runs, only
        // critical alerts go: they are never held (they count against the
        // cap all the same).
        let mut wait = None;
        if recent.len() >= self.storm.max_per_hour as usize {
            let free_at = recent.iter().min().copied().unwrap_or(now_ms) + 3_600_000;
            wait = Some(free_at.saturating_sub(now_ms).clamp(1, 1000));
        }
        let digest_ms = self.storm.digest_secs.saturating_mul(1000);
        if wait.is_none() && digest_ms > 0 && now_ms < state.last_digest_ms + digest_ms {
            wait = Some((state.last_digest_ms + digest_ms - now_ms).clamp(1, 1000));
        }
        let last_key = match wait {
            Some(_) => (CRITICAL_PRIORITY << 56) | ((1 << 56) - 1),
            None => u64::MAX,
        };
        let t = txn.open_table(OUTBOX)?;
        let mut out = Vec::new();
        // Key order: the most severe first, then the oldest.
        for row in t.range((self.sink, 0)..=(self.sink, last_key))? {
            let (k, v) = row?;
            let Ok(entry) = serde_json::from_slice::<Entry>(v.value()) else {
                // Unreadable (written by another version): leave it, say so.
                tracing::warn!(
                    sink = self.sink,
                    seq = k.value().1,
                    "unreadable outbox entry left in place"
                );
                continue;
            };
            if entry.next_ms <= now_ms {
                out.push((k.value().1, entry));
                if out.len() >= limit {
                    break;
                }
            }
        }
        if out.is_empty() {
            return Ok(Err(wait.unwrap_or(1000)));
        }
        Ok(Ok(out))
    }

    /// The remote end accepted `seqs` in `messages` messages: remove them
    /// and count the messages against the hourly cap.
    pub fn delivered(
        &self,
        db: &Database,
        seqs: &[u64],
        messages: u32,
        now_ms: u64,
    ) -> DbResult<()> {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(OUTBOX)?;
            let mut removed = 0;
            for s in seqs {
                removed += u64::from(t.remove((self.sink, *s))?.is_some());
            }
            let mut states = txn.open_table(SINK_STATE)?;
            let mut state = self.state(&states)?;
            state.queued = state.queued.saturating_sub(removed);
            let hour_ago = now_ms.saturating_sub(3_600_000);
            state.sent_ms.retain(|t| *t > hour_ago);
            state
                .sent_ms
                .extend(std::iter::repeat_n(now_ms, messages as usize));
            if self.storm.digest_secs > 0 {
                state.last_digest_ms = now_ms;
            }
            let bytes = serde_json::to_vec(&state).expect("plain data");
            states.insert(self.sink, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Delivery of `seqs` failed: try again after an exponential backoff.
    pub fn failed(&self, db: &Database, seqs: &[u64], now_ms: u64) -> DbResult<()> {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(OUTBOX)?;
            for s in seqs {
                let Some(mut entry) = t
                    .get((self.sink, *s))?
                    .and_then(|v| serde_json::from_slice::<Entry>(v.value()).ok())
                else {
                    continue;
                };
                entry.attempts += 1;
                let delay = self
                    .storm
                    .retry_initial_secs
                    .saturating_mul(1 << entry.attempts.saturating_sub(1).min(20))
                    .min(self.storm.retry_max_secs);
                entry.next_ms = now_ms + delay.saturating_mul(1000);
                let bytes = serde_json::to_vec(&entry).expect("alerts serialize");
                t.insert((self.sink, *s), bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// What makes two alerts "the same" for suppression: the rule, the group
/// (the correlation's, else who did it where), the event name, what it was
/// done to (the key request parameters: a key for `svc-ci`, then one for
/// `admin`, are two alerts) and the level. A different action by the same
/// principal, or the same action on another target, is news.
fn suppression_key(a: &Alert) -> String {
    let group = match &a.group {
        Some(g) => serde_json::to_string(g).unwrap_or_default(),
        None => format!(
            "{}\u{0}{}",
            a.principal.as_deref().unwrap_or(""),
            a.account.as_deref().unwrap_or("")
        ),
    };
    let target = a
        .event
        .as_ref()
        .map(|e| super::email::key_parameters(&e.to_value()))
        .unwrap_or_default();
    format!(
        "{}\u{0}{group}\u{0}{}\u{0}{target}\u{0}{}",
        a.rule_id,
        a.event_name.as_deref().unwrap_or(""),
        a.level
    )
}

/// Group entries by a key (recipients), keeping order within each group.
pub(crate) fn group_by<K: Ord>(
    entries: Vec<(u64, Entry)>,
    key: impl Fn(&Entry) -> K,
) -> BTreeMap<K, Vec<(u64, Entry)>> {
    let mut out: BTreeMap<K, Vec<(u64, Entry)>> = BTreeMap::new();
    for e in entries {
        out.entry(key(&e.1)).or_default().push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleMeta;
    use std::sync::Arc;

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("s.redb")).unwrap();
        Outbox::init(&db).unwrap();
        (dir, db)
    }

    fn alert(rule: &str, principal: &str) -> Alert {
        let mut a = Alert::example(Arc::new(RuleMeta::example(rule)));
        a.principal = Some(principal.into());
        a
    }

    fn enqueue(db: &Database, o: &Outbox, alerts: &[Alert], now: u64) -> Queued {
        let mut alerts = alerts.iter().cloned();
        let alerts = &mut alerts;
        let txn = db.begin_write().unwrap();
        let q = o.enqueue(&txn, alerts, now).unwrap();
        txn.commit().unwrap();
        q
    }

    fn outbox(storm: StormConfig) -> Outbox {
        Outbox {
            sink: "email",
            storm,
            min_level: Level::Informational,
            resolve: false,
        }
    }

    fn step(rule: &str, event: &str, level: &'static str, principal: &str) -> Alert {
        let mut a = with_level(rule, principal, level);
        a.event_name = Some(event.into());
        a.account = Some("111111111111".into());
        a
    }

    /// CreateUser → CreateAccessKey → AttachUserPolicy → DeleteTrail by one
    /// principal in one batch is one message: headed by the most severe
    /// alert (the newer on a tie), every other alert folded in whole, the
    /// timeline in order. Another principal is another incident. Once the
    /// message is sent, the next alert of the incident is an update with
    /// the whole timeline; a held-back alert joins the timeline of the
    /// queued message; a quiet incident is over; `incident_secs = 0` sends
    /// each alert on its own.
    #[test]
    fn one_principal_across_rules_is_one_incident_message() {
        let (_d, db) = db();
        let o = outbox(StormConfig {
            suppress_secs: 600,
            ..StormConfig::default()
        });
        let m = "arn:aws:iam::111111111111:user/mallory";
        let story = [
            step("users", "CreateUser", "low", m),
            step("keys", "CreateAccessKey", "informational", m),
            step("admin", "AttachUserPolicy", "high", m),
            step(
                "other",
                "GetCallerIdentity",
                "low",
                "arn:aws:iam::111111111111:user/bob",
            ),
            step("trail", "DeleteTrail", "high", m),
        ];
        let q = enqueue(&db, &o, &story, 1_000);
        assert_eq!((q.queued, q.merged), (2, 3));
        let due = o.due(&db, 1_000, 10).unwrap().unwrap();
        assert_eq!(due.len(), 2);
        let (seq, mallory) = due
            .iter()
            .find(|(_, e)| e.alert.principal.as_deref() == Some(m))
            .unwrap();
        assert_eq!(mallory.alert.event_name.as_deref(), Some("DeleteTrail"));
        let folded: Vec<&str> = mallory
            .folded
            .iter()
            .map(|a| a.event_name.as_deref().unwrap())
            .collect();
        assert_eq!(
            folded,
            ["CreateUser", "CreateAccessKey", "AttachUserPolicy"]
        );
        let inc = mallory.incident.as_ref().expect("a timeline");
        let timeline: Vec<&str> = inc.steps.iter().map(|s| s.event_name.as_str()).collect();
        assert_eq!(
            timeline,
            [
                "CreateUser",
                "CreateAccessKey",
                "AttachUserPolicy",
                "DeleteTrail"
            ]
        );
        // The subject's path leads with the most severe.
        assert_eq!(
            inc.path(10),
            "AttachUserPolicy, DeleteTrail, CreateUser, CreateAccessKey"
        );
        let bob = due.iter().find(|(s, _)| s != seq).unwrap();
        assert_eq!(bob.1.incident.as_ref().map(|i| i.len()), Some(1));
        assert!(bob.1.folded.is_empty());
        o.delivered(&db, &[*seq, bob.0], 2, 2_000).unwrap();

        // Sent: the next alert is an update, with the whole story so far.
        let q = enqueue(
            &db,
            &o,
            &[step("mfa", "DeactivateMFADevice", "high", m)],
            5_000,
        );
        assert_eq!((q.queued, q.merged), (1, 0));
        // A repeat held back by suppression still joins the timeline.
        let q = enqueue(
            &db,
            &o,
            &[step("mfa", "DeactivateMFADevice", "high", m)],
            6_000,
        );
        assert_eq!(q.suppressed, 1);
        let due = o.due(&db, 6_000, 10).unwrap().unwrap();
        assert_eq!(due.len(), 1);
        let inc = due[0].1.incident.as_ref().unwrap();
        assert_eq!(inc.len(), 6);
        assert_eq!(inc.id, mallory.incident.as_ref().unwrap().id, "one thread");
        o.delivered(&db, &[due[0].0], 1, 7_000).unwrap();

        // Quiet for an hour: over; the next alert opens a new incident.
        let later = 6_000 + 3_600_000 + 1;
        enqueue(&db, &o, &[step("users", "CreateUser", "low", m)], later);
        let due = o.due(&db, later, 10).unwrap().unwrap();
        let fresh = due[0].1.incident.as_ref().unwrap();
        assert_eq!(fresh.len(), 1, "a new incident of one alert");
        assert_ne!(fresh.id, inc.id);

        // Off: every alert on its own.
        let (_d2, db2) = super::tests::db();
        let off = outbox(StormConfig {
            incident_secs: 0,
            ..StormConfig::default()
        });
        let q = enqueue(&db2, &off, &story, 1_000);
        assert_eq!((q.queued, q.merged), (5, 0));
    }

    /// The same action by the same principal on another target is news:
    /// a key for `svc-ci`, then one for `admin`, are both sent, not the
    /// second held back for an hour as a repeat of the first.
    #[test]
    fn the_same_call_on_another_target_is_not_suppressed() {
        let (_d, db) = db();
        let o = outbox(StormConfig {
            incident_secs: 0,
            ..StormConfig::default()
        });
        let key_for = |user: &str| {
            let mut a = step("keys", "CreateAccessKey", "medium", "arn:aws:iam::1:user/m");
            let e = serde_json::json!({ "requestParameters": { "userName": user } });
            a.event = Some(crate::alert::EventJson::from_json(e.to_string()));
            a
        };
        let q = enqueue(
            &db,
            &o,
            &[key_for("svc-ci"), key_for("svc-ci"), key_for("admin")],
            0,
        );
        assert_eq!((q.queued, q.suppressed), (2, 1));
    }

    /// A message folds in at most MAX_FOLDED alerts; the incident goes on
    /// in a new message, its timeline whole and bounded.
    #[test]
    fn an_incident_message_folds_a_bounded_number_of_alerts() {
        let (_d, db) = db();
        let o = outbox(StormConfig {
            suppress_secs: 0,
            ..StormConfig::default()
        });
        let m = "arn:aws:iam::111111111111:user/mallory";
        let many: Vec<Alert> = (0..200)
            .map(|i| step(&format!("r{i}"), &format!("Call{i}"), "low", m))
            .collect();
        let q = enqueue(&db, &o, &many, 1_000);
        assert_eq!(q.queued + q.merged, 200);
        assert_eq!(q.queued, 200 / (MAX_FOLDED as u64 + 1) + 1);
        let due = o.due(&db, 1_000, 100).unwrap().unwrap();
        assert!(due.iter().all(|(_, e)| e.folded.len() <= MAX_FOLDED));
        let total: usize = due.iter().map(|(_, e)| 1 + e.folded.len()).sum();
        assert_eq!(total, 200, "every alert in some message, whole");
        let last = due
            .iter()
            .map(|(_, e)| e.incident.as_ref().unwrap().len())
            .max();
        assert_eq!(last, Some(200));
        assert!(
            due.iter()
                .all(|(_, e)| e.incident.as_ref().unwrap().steps.len()
                    <= crate::alert::incident::MAX_STEPS)
        );
    }

    #[test]
    fn suppression_counts_and_reports_on_the_next_alert() {
        let (_d, db) = db();
        let o = outbox(StormConfig::default());
        let same = vec![alert("r", "alice"); 5];
        let q = enqueue(&db, &o, &same, 1_000);
        assert_eq!((q.queued, q.suppressed), (1, 4));
        // Another principal is another pair.
        assert_eq!(enqueue(&db, &o, &[alert("r", "bob")], 2_000).queued, 1);
        // After the window, the next one goes out and carries the count.
        let q = enqueue(&db, &o, &[alert("r", "alice")], 1_000 + 3_600_000);
        assert_eq!(q.queued, 1);
        let due = o.due(&db, 1_000 + 3_600_000, 10).unwrap().unwrap();
        assert_eq!(due.len(), 3);
        assert_eq!(due[2].1.suppressed_before, 4);
        assert_eq!(o.depth(&db).unwrap(), 3);
    }

    #[test]
    fn the_hourly_cap_queues_and_releases_never_drops() {
        let (_d, db) = db();
        let o = outbox(StormConfig {
            suppress_secs: 0,
            max_per_hour: 2,
            ..Default::default()
        });
        let alerts: Vec<Alert> = (0..5).map(|i| alert("r", &format!("p{i}"))).collect();
        assert_eq!(enqueue(&db, &o, &alerts, 0).queued, 5);
        let mut t = 10_000;
        let mut sent = 0;
        while sent < 2 {
            let due = o.due(&db, t, 1).unwrap().unwrap();
            o.delivered(&db, &[due[0].0], 1, t).unwrap();
            sent += 1;
            t += 1000;
        }
        // Cap used up: nothing due until an hour after the first send.
        assert!(o.due(&db, t, 1).unwrap().is_err());
        assert!(o.due(&db, 10_000 + 3_599_000, 1).unwrap().is_err());
        assert!(o.due(&db, 10_000 + 3_600_001, 1).unwrap().is_ok());
        assert_eq!(o.depth(&db).unwrap(), 3);
    }

    #[test]
    fn failures_back_off_exponentially() {
        let (_d, db) = db();
        let o = outbox(StormConfig::default());
        enqueue(&db, &o, &[alert("r", "a")], 0);
        let seq = o.due(&db, 0, 1).unwrap().unwrap()[0].0;
        o.failed(&db, &[seq], 0).unwrap(); // retry after 5 s
        assert!(o.due(&db, 4_999, 1).unwrap().is_err());
        assert!(o.due(&db, 5_000, 1).unwrap().is_ok());
        o.failed(&db, &[seq], 5_000).unwrap(); // then 10 s
        assert!(o.due(&db, 14_999, 1).unwrap().is_err());
        let e = o.due(&db, 15_000, 1).unwrap().unwrap();
        assert_eq!(e[0].1.attempts, 2);
    }

    #[test]
    fn levels_below_the_minimum_are_not_queued() {
        let (_d, db) = db();
        let o = Outbox {
            min_level: Level::High,
            ..outbox(StormConfig::default())
        };
        let mut low = alert("r", "a");
        low.level = Level::Low;
        let q = enqueue(&db, &o, &[low, alert("r2", "a")], 0);
        assert_eq!((q.queued, q.filtered), (1, 1));
    }

    /// A rule in dry run is written locally but never queued for a mail
    /// or a webhook, however severe; it is counted as such.
    #[test]
    fn alerts_of_a_rule_in_dry_run_are_not_queued() {
        let (_d, db) = db();
        let o = outbox(StormConfig::default());
        let mut trial = with_level("r", "a", "critical");
        let mut meta = (*trial.rule).clone();
        meta.dry_run = true;
        trial.rule = std::sync::Arc::new(meta);
        let q = enqueue(&db, &o, &[trial, alert("r2", "a")], 0);
        assert_eq!((q.queued, q.dry_run), (1, 1));
        let due = o.due(&db, 0, 10).unwrap().unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.alert.rule_id, "r2");
    }

    fn with_level(rule: &str, principal: &str, level: &'static str) -> Alert {
        let level = Level::parse(level).expect("a level");
        let mut a = alert(rule, principal);
        a.level = level;
        a
    }

    /// Under the hourly cap the most severe go first, and critical alerts
    /// are never held by it (they are counted against it all the same).
    #[test]
    fn critical_alerts_go_first_and_are_never_held_by_the_cap() {
        let (_d, db) = db();
        let o = outbox(StormConfig {
            suppress_secs: 0,
            max_per_hour: 3,
            ..Default::default()
        });
        let mut alerts: Vec<Alert> = (0..3)
            .map(|i| with_level("iam_change_without_mfa", &format!("p{i}"), "low"))
            .collect();
        alerts.push(with_level("cloudtrail_deleted", "attacker", "critical"));
        alerts.push(with_level("leave_organization", "attacker", "high"));
        assert_eq!(enqueue(&db, &o, &alerts, 0).queued, 5);
        let due = o.due(&db, 0, 10).unwrap().unwrap();
        let order: Vec<&str> = due.iter().map(|(_, e)| e.alert.level.as_str()).collect();
        assert_eq!(order, ["critical", "high", "low", "low", "low"]);
        // Three mails use the cap: the critical and the high among them.
        let seqs: Vec<u64> = due[..3].iter().map(|(s, _)| *s).collect();
        o.delivered(&db, &seqs, 3, 1_000).unwrap();
        // Cap used up: lows wait, a new critical does not.
        assert!(o.due(&db, 2_000, 10).unwrap().is_err());
        enqueue(
            &db,
            &o,
            &[with_level("root_login", "root", "critical")],
            2_000,
        );
        let due = o.due(&db, 2_000, 10).unwrap().unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.alert.rule_id, "root_login");
        o.delivered(&db, &[due[0].0], 1, 2_000).unwrap();
        // The lows go once the hour has passed.
        assert_eq!(o.due(&db, 3_601_001, 10).unwrap().unwrap().len(), 2);
    }

    /// A window that held alerts back ends in a summary of its own, sent
    /// without waiting for another such alert; different actions by the
    /// same principal are not held back as repeats.
    /// An incident over (quiet for `incident_secs`) is forgotten, and a
    /// sink that resolves queues one resolve for it, on the incident's id,
    /// never before the incident's message has gone out; a sink that does
    /// not resolve only forgets it. The principal's next alert opens a new
    /// incident.
    #[test]
    fn an_incident_over_is_resolved_after_its_message_went_out() {
        let (_d, db) = db();
        let storm = StormConfig {
            suppress_secs: 0,
            incident_secs: 60,
            ..Default::default()
        };
        let pd = Outbox {
            sink: "pagerduty",
            resolve: true,
            ..outbox(storm.clone())
        };
        let mail = outbox(storm);
        let m = "arn:aws:iam::111111111111:user/mallory";
        let story = [
            step("users", "CreateUser", "low", m),
            step("admin", "AttachUserPolicy", "high", m),
        ];
        for o in [&pd, &mail] {
            assert_eq!(enqueue(&db, o, &story, 1_000).merged, 1);
        }
        // Not over yet: nothing read, nothing queued.
        assert_eq!(pd.close_incidents(&db, 30_000).unwrap(), 0);
        // Over, but its message still waits (the cap, a failing sink):
        // the resolve waits for it.
        assert_eq!(pd.close_incidents(&db, 62_000).unwrap(), 0);
        let trigger = pd.due(&db, 62_000, 10).unwrap().unwrap();
        assert_eq!(trigger.len(), 1);
        assert!(!trigger[0].1.resolve);
        let id = trigger[0].1.incident.as_ref().unwrap().id.clone();
        pd.delivered(&db, &[trigger[0].0], 1, 62_000).unwrap();
        // Checked again a minute later: now resolved, once.
        assert_eq!(pd.close_incidents(&db, 62_001).unwrap(), 0);
        assert_eq!(pd.close_incidents(&db, 122_000).unwrap(), 1);
        assert_eq!(pd.close_incidents(&db, 999_000).unwrap(), 0);
        let due = pd.due(&db, 122_000, 10).unwrap().unwrap();
        assert_eq!(due.len(), 1);
        let resolve = &due[0].1;
        assert!(resolve.resolve);
        assert_eq!(resolve.incident.as_ref().unwrap().id, id);
        assert_eq!(
            resolve.alert.event_name.as_deref(),
            Some("AttachUserPolicy")
        );
        assert!(resolve.alert.event.is_none());
        // The sink that does not resolve forgets the incident, queues
        // nothing new.
        let before = mail.depth(&db).unwrap();
        assert_eq!(mail.close_incidents(&db, 122_000).unwrap(), 0);
        assert_eq!(mail.depth(&db).unwrap(), before);
        // The next alert is a new incident.
        enqueue(
            &db,
            &pd,
            &[step("keys", "CreateAccessKey", "high", m)],
            130_000,
        );
        let next = pd.due(&db, 130_000, 10).unwrap().unwrap();
        let fresh = next.iter().find(|(_, e)| !e.resolve).unwrap();
        assert_ne!(fresh.1.incident.as_ref().unwrap().id, id);
    }

    /// No delivery round closed an incident before the principal's next
    /// alert (the daemon was down for hours): the alert closes it, and the
    /// resolve is queued before the new incident opens.
    #[test]
    fn an_incident_found_over_by_the_next_alert_is_resolved() {
        let (_d, db) = db();
        let pd = Outbox {
            sink: "pagerduty",
            resolve: true,
            ..outbox(StormConfig {
                suppress_secs: 0,
                incident_secs: 60,
                ..Default::default()
            })
        };
        let m = "arn:aws:iam::111111111111:user/mallory";
        enqueue(&db, &pd, &[step("users", "CreateUser", "high", m)], 1_000);
        let first = pd.due(&db, 1_000, 10).unwrap().unwrap();
        pd.delivered(&db, &[first[0].0], 1, 1_000).unwrap();
        enqueue(
            &db,
            &pd,
            &[step("keys", "CreateAccessKey", "high", m)],
            500_000,
        );
        let due = pd.due(&db, 500_000, 10).unwrap().unwrap();
        assert_eq!(due.len(), 2);
        let ids: Vec<(bool, String)> = due
            .iter()
            .map(|(_, e)| (e.resolve, e.incident.as_ref().unwrap().id.clone()))
            .collect();
        assert!(!ids[0].0, "the new alert first: {ids:?}");
        assert!(ids[1].0, "{ids:?}");
        assert_eq!(ids[1].1, first[0].1.incident.as_ref().unwrap().id);
        assert_ne!(ids[0].1, ids[1].1);
    }

    /// Entries of `o`'s sink as a scan finds them.
    fn counted(db: &Database, o: &Outbox) -> u64 {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(OUTBOX).unwrap();
        t.range((o.sink, 0)..=(o.sink, u64::MAX)).unwrap().count() as u64
    }

    /// The depth is a count kept with each change, not a scan: it must
    /// agree with one through queuing, folding, suppression, summaries,
    /// delivery (a seq delivered twice counted once) and a restart whose
    /// stored count is wrong.
    #[test]
    fn the_kept_depth_agrees_with_a_count_through_every_change() {
        let (_d, db) = db();
        let o = outbox(StormConfig {
            suppress_secs: 60,
            ..Default::default()
        });
        let check = |what: &str| assert_eq!(o.depth(&db).unwrap(), counted(&db, &o), "{what}");
        let mut batch = Vec::new();
        for p in ["a", "b", "c"] {
            let p = &format!("arn:aws:iam::111111111111:user/{p}");
            batch.push(step("r1", "CreateUser", "high", p));
            batch.push(step("r2", "CreateAccessKey", "medium", p));
            batch.push(step("r2", "CreateAccessKey", "medium", p));
        }
        let q = enqueue(&db, &o, &batch, 1_000);
        assert!(q.merged > 0 && q.suppressed > 0, "{q:?}");
        check("after a batch that folds and suppresses");
        let other = outbox(StormConfig::default());
        let other = Outbox {
            sink: "webhook",
            ..other
        };
        enqueue(&db, &other, &[alert("r", "z")], 1_000);
        check("another sink's entry is not this sink's");
        assert_eq!(o.close_windows(&db, 61_000).unwrap(), 3);
        check("after summaries");
        let due = o.due(&db, 61_000, 2).unwrap().unwrap();
        let seqs: Vec<u64> = due.iter().map(|(s, _)| *s).collect();
        o.delivered(&db, &seqs, 1, 61_000).unwrap();
        o.delivered(&db, &seqs, 1, 61_001).unwrap();
        check("after a delivery reported twice");
        // A stored count gone wrong (an older version kept none) is
        // counted again at start.
        {
            let txn = db.begin_write().unwrap();
            {
                let mut states = txn.open_table(SINK_STATE).unwrap();
                let mut st = read_state(&states, "email").unwrap();
                st.queued = 999;
                let bytes = serde_json::to_vec(&st).unwrap();
                states.insert("email", bytes.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        Outbox::init(&db).unwrap();
        check("after a restart");
        assert!(o.depth(&db).unwrap() > 0);
    }

    #[test]
    fn a_closed_window_is_summarised_and_other_actions_are_news() {
        let (_d, db) = db();
        let o = outbox(StormConfig {
            suppress_secs: 60,
            ..Default::default()
        });
        let mut stop = with_level("tamper", "attacker", "critical");
        stop.event_name = Some("StopLogging".into());
        let mut delete = stop.clone();
        delete.event_name = Some("DeleteTrail".into());
        let q = enqueue(&db, &o, &[stop.clone(), delete, stop.clone(), stop], 1_000);
        assert_eq!((q.queued, q.suppressed), (2, 2));
        // Before the window ends: nothing to summarise.
        assert_eq!(o.close_windows(&db, 60_999).unwrap(), 0);
        assert_eq!(o.close_windows(&db, 61_000).unwrap(), 1);
        let due = o.due(&db, 61_000, 10).unwrap().unwrap();
        let summary: Vec<&Entry> = due.iter().map(|(_, e)| e).filter(|e| e.summary).collect();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].suppressed_before, 2);
        assert_eq!(summary[0].summary_since_ms, 1_000);
        assert_eq!(summary[0].alert.event_name.as_deref(), Some("StopLogging"));
        // Closed once: not again, and the next alert carries no count.
        assert_eq!(o.close_windows(&db, 200_000).unwrap(), 0);
        let mut again = with_level("tamper", "attacker", "critical");
        again.event_name = Some("StopLogging".into());
        assert_eq!(enqueue(&db, &o, &[again], 200_000).queued, 1);
        let due = o.due(&db, 200_000, 10).unwrap().unwrap();
        assert!(
            due.iter()
                .all(|(_, e)| e.summary || e.suppressed_before == 0)
        );
    }

    /// Entries queued before priorities (sequence-only keys) are moved to
    /// their level's place at start, and keep their order.
    #[test]
    fn entries_from_before_priorities_are_moved() {
        let (_d, db) = db();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(OUTBOX).unwrap();
            for (seq, level) in [(0u64, "low"), (1, "critical")] {
                let e = Entry::new(with_level("r", "p", level), 0);
                let bytes = serde_json::to_vec(&e).unwrap();
                t.insert(("email", seq), bytes.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        Outbox::init(&db).unwrap();
        let o = outbox(StormConfig::default());
        let due = o.due(&db, 0, 10).unwrap().unwrap();
        let order: Vec<&str> = due.iter().map(|(_, e)| e.alert.level.as_str()).collect();
        assert_eq!(order, ["critical", "low"]);
        assert!(due.iter().all(|(k, _)| k >> 56 != 0));
    }
}
