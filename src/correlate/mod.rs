//! Correlate stage: Sigma correlation rules (event_count, value_count,
//! temporal, temporal_ordered) over the matches of the rules they reference.
//!
//! Windows run on each event's `eventTime`, not on arrival: CloudTrail
//! delivers files up to ~15 minutes late and out of order, so an event whose
//! time is within `lateness` of the newest time its *group* has seen still
//! counts; older ones are dropped and counted. Lateness is judged per group
//! (per principal, say), never per rule: a backlog read account by account
//! must raise the bursts that reading it in time order would, and one
//! account's newer files must not make another's older events late.
//!
//! What an attacker (or a broken producer) cannot do to a window:
//! - count one event twice: each group remembers the ids of the events it
//!   counted for as long as an event of that time could still arrive, so a
//!   duplicate delivery, a file read again, the same event by another source
//!   or a restart's look-back is ignored (and counted as a duplicate);
//! - move the horizon: an event dated past the clock plus `max_future`
//!   (2099, say) is dropped and counted, not taken as the newest time.
//!
//! State is bounded: events that can no longer fall in a window with an
//! acceptable event are dropped, a group untouched for a while and behind
//! the rule's newest time expires, and past `max_groups` groups per rule
//! the least recently touched are evicted (counted).
//!
//! When a correlation fires:
//! - `gt`/`gte` conditions (a count that can only grow) fire as soon as
//!   they hold, with the events of the window that made them hold; those
//!   events are then consumed, so a continuing burst fires again only after
//!   it reaches the threshold again.
//! - conditions with an upper bound (`lt`, `lte`, `eq`, `neq`) are decided
//!   when a window closes (its end is older than newest − lateness), or when
//!   the input ends ([`Correlator::finish`]).
//!
//! The stage owns no I/O: it takes [`Hit`]s in input order and returns
//! alerts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rsigma_parser::{ConditionExpr, ConditionOperator, CorrelationType};

use crate::alert::{Alert, Context, bound};
pub use crate::rules::Correlation;
pub use keys::GroupKey;
use keys::{IdKey, Seen};

mod keys;
mod snapshot;

/// Default lateness: CloudTrail's documented delivery delay is ~5 minutes,
/// with outliers; 15 minutes catches nearly all without holding state long.
pub const DEFAULT_LATENESS_MS: i64 = 15 * 60 * 1000;
/// Default cap on groups per correlation rule.
pub const DEFAULT_MAX_GROUPS: usize = 100_000;
/// Event ids kept per correlation alert: enough to investigate, bounded.
pub(crate) const MAX_EVENT_IDS: usize = 100;

/// Distinct API calls a correlation alert names (the rest are summed).
pub(crate) const MAX_CALLS: usize = 10;
/// Events kept per group: a threshold above this cannot be reached.
const MAX_EVENTS_PER_GROUP: usize = 10_000;

impl Correlation {
    /// Counts that only grow within a window fire at once; others wait for
    /// the window to close.
    fn fires_early(&self) -> bool {
        self.expr.is_some()
            || self
                .predicates
                .iter()
                .all(|(op, _)| matches!(op, ConditionOperator::Gt | ConditionOperator::Gte))
    }

    fn holds(&self, n: u64) -> bool {
        self.predicates.iter().all(|(op, v)| match op {
            ConditionOperator::Lt => n < *v,
            ConditionOperator::Lte => n <= *v,
            ConditionOperator::Gt => n > *v,
            ConditionOperator::Gte => n >= *v,
            ConditionOperator::Eq => n == *v,
            ConditionOperator::Neq => n != *v,
        })
    }
}

/// A match of a base rule, as the correlations referencing it need it.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Index of the base rule in the rule set.
    pub rule: u32,
    /// `eventTime` in milliseconds since the epoch; `None` if absent or
    /// unreadable (the hit cannot be placed in a window and is counted).
    pub time_ms: Option<i64>,
    /// Per correlation index: the group key and the value (value_count).
    pub keys: Vec<(usize, GroupKey, Option<String>)>,
    /// The event's alert fields (context for the correlation alert:
    /// principal, source IP, ...), without the event.
    pub ctx: HitContext,
}

/// Where a hit's fields are: in its match (sharing the text of the match's
/// batch, as it comes from the pipeline: no copy while the hit waits), or
/// on their own. A window that keeps the event copies them out
/// ([`HitContext::context`]), so windows never pin a batch's text.
#[derive(Debug, Clone)]
pub enum HitContext {
    Match(crate::alert::Match, Arc<str>),
    Owned(Arc<Context>),
}

impl HitContext {
    /// The fields as a window keeps them.
    pub fn context(&self) -> Arc<Context> {
        match self {
            HitContext::Match(m, source) => Arc::new(m.context(source)),
            HitContext::Owned(c) => Arc::clone(c),
        }
    }

    /// The event's id, when it has one.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            HitContext::Match(m, _) => m.event_id(),
            HitContext::Owned(c) => c.event_id(),
        }
    }

    /// The index of the record in its object.
    pub fn record(&self) -> usize {
        match self {
            HitContext::Match(m, _) => m.record,
            HitContext::Owned(c) => c.record,
        }
    }
}

/// Counters an operator watches (they become metrics).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CorrelationStats {
    /// Hits older than their group's newest time − lateness, dropped.
    pub late: u64,
    /// Hits dated past the clock + `max_future`, dropped.
    pub future: u64,
    /// Hits without a usable eventTime.
    pub untimed: u64,
    /// Hits of an event its group had already counted (by event id).
    pub duplicates: u64,
    /// Groups evicted to respect `max_groups`.
    pub evicted_groups: u64,
    /// Events dropped from full groups.
    pub evicted_events: u64,
}

impl CorrelationStats {
    /// Every counter with its name (the `reason` of the metric).
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("late", self.late),
            ("future", self.future),
            ("untimed", self.untimed),
            ("duplicate", self.duplicates),
            ("evicted_event", self.evicted_events),
            ("evicted_group", self.evicted_groups),
        ]
    }
}

#[derive(Debug, Clone)]
struct Ev {
    time: i64,
    /// Position of the base rule in the correlation's `rules`.
    pos: u16,
    value: Option<String>,
    ctx: Arc<Context>,
}

#[derive(Debug, Default)]
struct Group {
    /// Pending events, counting toward a window; sorted by time (stable
    /// for equal times: input order).
    events: Vec<Ev>,
    /// Ids of the events this group counted (pending, or consumed by a
    /// window that fired), with their times, kept while an event of that
    /// time is not yet late: a repeat is recognised and ignored.
    seen: Seen,
    /// The newest event time the group took: lateness is judged per group.
    newest: i64,
    /// The correlation's hit counter when the group was last touched: for
    /// evicting the least recently touched, and for expiring idle groups.
    touched: u64,
}

#[derive(Debug, Default)]
struct State {
    groups: HashMap<GroupKey, Group>,
    /// The newest event time any group took (bounded by the clock): groups
    /// far behind it, and untouched for a while, expire.
    newest: i64,
}

/// Hits a group must go untouched, besides being behind in time, before it
/// expires: a backlog read account by account keeps its own groups alive
/// while its files are read, whatever other accounts' times are.
const IDLE_HITS: u64 = 50_000;

/// Default bound on how far past the clock an event may be dated and still
/// count: clocks disagree by seconds; 15 minutes is generous.
pub(crate) const DEFAULT_MAX_FUTURE_MS: i64 = 15 * 60 * 1000;

/// Runs every correlation rule of a rule set over hits, in input order.
pub struct Correlator {
    rules: Vec<Correlation>,
    states: Vec<State>,
    lateness_ms: i64,
    max_groups: usize,
    /// How far past the clock an event's time may be.
    max_future_ms: i64,
    /// The clock (milliseconds since the epoch); replaceable in tests.
    clock: fn() -> i64,
    /// Hits fed so far (the recency of groups).
    tick: u64,
    pub stats: CorrelationStats,
    hits_since_sweep: usize,
    /// State changed since the last [`Correlator::save`].
    dirty: bool,
}

impl Correlator {
    pub fn new(rules: Vec<Correlation>, lateness_ms: i64, max_groups: usize) -> Self {
        let states = rules.iter().map(|_| State::default()).collect();
        Correlator {
            rules,
            states,
            lateness_ms,
            max_groups: max_groups.max(1),
            max_future_ms: DEFAULT_MAX_FUTURE_MS,
            clock: crate::time::now_event_ms,
            tick: 0,
            stats: CorrelationStats::default(),
            hits_since_sweep: 0,
            dirty: false,
        }
    }

    /// Events dated more than `ms` past the clock are dropped (counted).
    pub(crate) fn with_max_future(mut self, ms: i64) -> Self {
        self.max_future_ms = ms.max(0);
        self
    }

    #[cfg(test)]
    /// Use `clock` (milliseconds since the epoch) instead of the system's.
    pub(crate) fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    /// Whether the state changed since the last save.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Open groups across every correlation (a gauge operators watch).
    pub fn groups(&self) -> usize {
        self.states.iter().map(|s| s.groups.len()).sum()
    }

    /// Feed one hit; returns the correlation alerts it completes.
    pub fn push(&mut self, hit: &Hit) -> Vec<Alert> {
        self.dirty = true;
        self.tick += 1;
        let mut out = Vec::new();
        let Some(t) = hit.time_ms else {
            self.stats.untimed += 1;
            return out;
        };
        if t > (self.clock)().saturating_add(self.max_future_ms) {
            self.stats.future += 1;
            return out;
        }
        // Made once, when a window first keeps the event, shared by all.
        let mut ctx: Option<Arc<Context>> = None;
        let id = hit.ctx.event_id().map(IdKey::of);
        for (ci, key, value) in &hit.keys {
            let c = &self.rules[*ci];
            let Some(pos) = c.rules.iter().position(|r| *r == hit.rule) else {
                continue;
            };
            let st = &mut self.states[*ci];
            if let Some(g) = st.groups.get(key) {
                if t < g.newest.saturating_sub(self.lateness_ms) {
                    self.stats.late += 1;
                    continue;
                }
                if id.is_some_and(|id| g.seen.contains_key(&id)) {
                    self.stats.duplicates += 1;
                    continue;
                }
            } else if st.groups.len() >= self.max_groups {
                self.stats.evicted_groups += evict(st, self.max_groups);
            }
            st.newest = st.newest.max(t);
            let g = st.groups.entry(key.clone()).or_default();
            g.touched = self.tick;
            g.newest = g.newest.max(t);
            if let Some(id) = id {
                g.seen.insert(id, t);
            }
            let at = g.events.partition_point(|e| e.time <= t);
            if g.events.capacity() == 0 {
                // Exactly one, not Vec's first growth to four: most groups
                // of a flood of distinct principals hold a single event.
                g.events.reserve_exact(1);
            }
            g.events.insert(
                at,
                Ev {
                    time: t,
                    pos: pos as u16,
                    value: value.clone(),
                    ctx: Arc::clone(ctx.get_or_insert_with(|| hit.ctx.context())),
                },
            );
            if g.events.len() > MAX_EVENTS_PER_GROUP {
                g.events.remove(0);
                self.stats.evicted_events += 1;
            }
            if c.fires_early()
                && let Some(fired) = fire_early(c, key, g, t)
            {
                out.push(fired);
            }
        }
        self.hits_since_sweep += 1;
        // Every 1024 hits, or less often when many groups are open, so a
        // sweep (a pass over the groups) costs O(1) per hit amortized.
        if self.hits_since_sweep >= 1024
            && self.hits_since_sweep
                >= self.states.iter().map(|s| s.groups.len()).sum::<usize>() / 4
        {
            self.hits_since_sweep = 0;
            out.extend(self.sweep(false));
        }
        out
    }

    /// End of input: decide every open window (for conditions decided at
    /// close) and return what fires.
    pub fn finish(&mut self) -> Vec<Alert> {
        self.dirty = true;
        self.sweep(true)
    }

    /// Per group: close windows that ended before the group's newest time
    /// − lateness (all of them when `all`, or when the group expires) and
    /// drop what can no longer matter: events no acceptable event can
    /// share a window with, ids no longer needed to spot a repeat, and
    /// groups behind the rule's newest time and untouched for
    /// [`IDLE_HITS`] hits.
    fn sweep(&mut self, all: bool) -> Vec<Alert> {
        let mut out = Vec::new();
        let lateness = self.lateness_ms;
        let tick = self.tick;
        for (c, st) in self.rules.iter().zip(self.states.iter_mut()) {
            let expire_before = st.newest.saturating_sub(lateness + c.timespan_ms);
            // Only groups with something to decide or drop: a sweep runs
            // every 1024 hits, and visiting every key of 100,000 open
            // groups each time made a flood of distinct principals
            // quadratic (1M events: 103 s, then seconds).
            let mut keys: Vec<&GroupKey> = st
                .groups
                .iter()
                .filter(|(_, g)| {
                    let horizon = g.newest.saturating_sub(lateness);
                    let idle = g.newest < expire_before && g.touched + IDLE_HITS < tick;
                    all || idle
                        || g.events
                            .first()
                            .is_none_or(|f| f.time.saturating_add(c.timespan_ms) < horizon)
                        || g.seen.iter().any(|(_, t)| t < horizon)
                })
                .map(|(k, _)| k)
                .collect();
            keys.sort(); // deterministic output order
            let keys: Vec<GroupKey> = keys.into_iter().cloned().collect();
            for key in keys {
                let g = st.groups.get_mut(&key).expect("listed");
                let idle = g.newest < expire_before && g.touched + IDLE_HITS < tick;
                let horizon = if all || idle {
                    i64::MAX
                } else {
                    g.newest.saturating_sub(lateness)
                };
                if !c.fires_early() {
                    // Each window starts at an event; decide the windows
                    // whose end has passed the horizon.
                    while let Some(first) = g.events.first() {
                        let end = first.time.saturating_add(c.timespan_ms);
                        if end >= horizon {
                            break;
                        }
                        let n_end = g.events.partition_point(|e| e.time <= end);
                        let window = &g.events[..n_end];
                        if c.holds(count(c, window)) {
                            out.push(correlation_alert(c, &key, window));
                            g.events.drain(..n_end);
                        } else {
                            g.events.remove(0);
                        }
                    }
                } else {
                    let keep_from = horizon.saturating_sub(c.timespan_ms);
                    let n = g.events.partition_point(|e| e.time < keep_from);
                    g.events.drain(..n);
                }
                g.seen.retain(|t| t >= horizon);
                if (g.events.is_empty() && g.seen.is_empty()) || idle {
                    st.groups.remove(&key);
                }
            }
        }
        out
    }
}

/// Evict the least recently touched groups to make room (a tenth of the
/// cap at once, so eviction is not paid per hit). Returns how many.
fn evict(st: &mut State, max: usize) -> u64 {
    let before = st.groups.len();
    if st.groups.len() >= max {
        // Found without sorting or cloning every key; ties broken by key,
        // so the choice is deterministic.
        let drop = (st.groups.len() + 1 - max + max / 10).min(st.groups.len());
        let mut seen: Vec<(u64, &GroupKey)> =
            st.groups.iter().map(|(k, g)| (g.touched, k)).collect();
        if drop < seen.len() {
            seen.select_nth_unstable(drop);
        }
        let gone: Vec<GroupKey> = seen[..drop].iter().map(|(_, k)| (*k).clone()).collect();
        for k in gone {
            st.groups.remove(&k);
        }
    }
    (before - st.groups.len()) as u64
}

/// The count a condition is about, over a window of events.
fn count(c: &Correlation, window: &[Ev]) -> u64 {
    match c.kind {
        CorrelationType::ValueCount => window
            .iter()
            .filter_map(|e| e.value.as_deref())
            .collect::<HashSet<_>>()
            .len() as u64,
        CorrelationType::Temporal | CorrelationType::TemporalOrdered => {
            window.iter().map(|e| e.pos).collect::<HashSet<_>>().len() as u64
        }
        _ => window.len() as u64,
    }
}

/// For conditions that only grow: find a window of length timespan that
/// contains the new event at `t` and satisfies the condition.
fn fire_early(c: &Correlation, key: &GroupKey, g: &mut Group, t: i64) -> Option<Alert> {
    let lo = g.events.partition_point(|e| e.time < t - c.timespan_ms);
    let hi = g.events.partition_point(|e| e.time <= t + c.timespan_ms);
    // Slide a window start over [lo, ..] while it still reaches `t`.
    let mut start = lo;
    while start < hi && g.events[start].time <= t {
        let end = g.events[start..hi]
            .partition_point(|e| e.time <= g.events[start].time + c.timespan_ms)
            + start;
        let window = &g.events[start..end];
        if window_fires(c, window) {
            let alert = correlation_alert(c, key, window);
            g.events.drain(start..end);
            return Some(alert);
        }
        start += 1;
    }
    None
}

fn window_fires(c: &Correlation, window: &[Ev]) -> bool {
    match c.kind {
        CorrelationType::Temporal => temporal_holds(c, window),
        CorrelationType::TemporalOrdered => ordered(c, window),
        _ => c.holds(count(c, window)),
    }
}

/// temporal: the expression over rule names, or by default every
/// referenced rule (a lone `gte: 1`, rsigma-parser's stand-in for "no
/// condition", means all), or a count threshold on distinct rules.
fn temporal_holds(c: &Correlation, window: &[Ev]) -> bool {
    let present: HashSet<u16> = window.iter().map(|e| e.pos).collect();
    if let Some(expr) = &c.expr {
        return eval_expr(expr, c, &present);
    }
    if c.predicates == [(ConditionOperator::Gte, 1)] {
        return present.len() == c.rules.len();
    }
    c.holds(present.len() as u64)
}

fn eval_expr(e: &ConditionExpr, c: &Correlation, present: &HashSet<u16>) -> bool {
    match e {
        ConditionExpr::Identifier(id) => c
            .rule_names
            .iter()
            .position(|names| names.iter().any(|n| n == id))
            .is_some_and(|p| present.contains(&(p as u16))),
        ConditionExpr::And(v) => v.iter().all(|x| eval_expr(x, c, present)),
        ConditionExpr::Or(v) => v.iter().any(|x| eval_expr(x, c, present)),
        ConditionExpr::Not(x) => !eval_expr(x, c, present),
        ConditionExpr::Selector { .. } => present.len() == c.rules.len(),
    }
}

/// temporal_ordered: events of rule 0, 1, ... n-1 appear in that order
/// (non-decreasing times) inside the window.
fn ordered(c: &Correlation, window: &[Ev]) -> bool {
    let mut want = 0u16;
    for e in window {
        if e.pos == want {
            want += 1;
            if usize::from(want) == c.rules.len() {
                return true;
            }
        }
    }
    false
}

fn correlation_alert(c: &Correlation, key: &GroupKey, window: &[Ev]) -> Alert {
    // Context from the event that completed the window.
    let last = window.last().expect("non-empty window");
    let mut a = last.ctx.to_alert(&c.meta);
    a.correlation = Some(c.kind.as_str());
    a.count = Some(match c.kind {
        CorrelationType::ValueCount => count(c, window),
        _ => window.len() as u64,
    });
    a.group = Some(
        c.group_names
            .iter()
            .cloned()
            .zip(key.parts().map(bound))
            .collect::<BTreeMap<_, _>>(),
    );
    a.event_ids = Some(
        window
            .iter()
            .filter_map(|e| e.ctx.event_id().map(str::to_owned))
            .take(MAX_EVENT_IDS)
            .collect(),
    );
    a.first_event_time = window
        .first()
        .and_then(|e| e.ctx.event_time().map(str::to_owned));
    a.calls = Some(calls(window));
    a
}

/// The window's event names by count, most frequent first (then by name),
/// at most [`MAX_CALLS`] of them and `…` for the rest: a burst of
/// AccessDenied reads as "GetSecretValue ×40, ListUsers ×3", which says
/// what the caller was after.
fn calls(window: &[Ev]) -> Vec<(String, u64)> {
    let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
    for e in window {
        *by_name
            .entry(e.ctx.event_name().unwrap_or("-"))
            .or_default() += 1;
    }
    let mut v: Vec<(&str, u64)> = by_name.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let rest: u64 = v.iter().skip(MAX_CALLS).map(|(_, n)| n).sum();
    let mut out: Vec<(String, u64)> = v
        .into_iter()
        .take(MAX_CALLS)
        .map(|(name, n)| (bound(name), n))
        .collect();
    if rest > 0 {
        out.push(("…".into(), rest));
    }
    out
}

#[cfg(test)]
mod tests;
