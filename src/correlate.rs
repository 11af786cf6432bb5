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

/// Default lateness: CloudTrail's documented delivery delay is ~5 minutes,
/// with outliers; 15 minutes catches nearly all without holding state long.
pub const DEFAULT_LATENESS_MS: i64 = 15 * 60 * 1000;
/// Default cap on groups per correlation rule.
pub const DEFAULT_MAX_GROUPS: usize = 100_000;
/// Event ids kept per correlation alert: enough to investigate, bounded.
pub const MAX_EVENT_IDS: usize = 100;
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

/// A group's key: the values of a correlation's `group-by` fields, in
/// one allocation, each part as its length and text, so no value can make
/// two groups one (`a:b` + `c` is not `a` + `b:c`). Ordered as the list of
/// its parts. (As a `Vec<String>`, a key cost two allocations in every hit
/// and every group: 40 MB in a flood of distinct principals.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey(Box<str>);

impl GroupKey {
    pub fn new<S: AsRef<str>>(parts: impl IntoIterator<Item = S>) -> GroupKey {
        let mut text = String::new();
        for p in parts {
            let p = p.as_ref();
            text.push_str(&p.len().to_string());
            text.push(':');
            text.push_str(p);
        }
        GroupKey(text.into_boxed_str())
    }

    /// The field values, in `group-by` order.
    pub fn parts(&self) -> impl Iterator<Item = &str> + '_ {
        let mut rest: &str = &self.0;
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_once(':')?;
            let len: usize = len.parse().ok()?;
            let part = tail.get(..len)?;
            rest = &tail[len..];
            Some(part)
        })
    }
}

impl Ord for GroupKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(other.parts())
    }
}

impl PartialOrd for GroupKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
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

/// An event id as a group remembers it: 16 bytes, inline. CloudTrail's
/// ids are lowercase UUIDs, kept exactly (their 128 bits); any other text
/// is its SHA-256, cut to 128 bits, so no one can make two ids look alike.
/// (A flood of distinct principals makes a hundred thousand groups of one
/// event each: the id as a string cost a pair of allocations, 80 bytes,
/// per group.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IdKey([u8; 16]);

impl IdKey {
    fn of(id: &str) -> IdKey {
        let b = id.as_bytes();
        let uuid = b.len() == 36
            && b.iter().enumerate().all(|(i, &c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
            });
        let mut key = [0u8; 16];
        if uuid {
            let hex = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
            let mut nibbles = b.iter().filter(|&&c| c != b'-').map(|&c| hex(c));
            for byte in &mut key {
                *byte = (nibbles.next().unwrap_or(0) << 4) | nibbles.next().unwrap_or(0);
            }
        } else {
            // Tagged, so no text hashes onto the domain of a UUID by design
            // (it would take a preimage of SHA-256 anyway).
            let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            ctx.update(b"trailwatch event id\0");
            ctx.update(b);
            key.copy_from_slice(&ctx.finish().as_ref()[..16]);
        }
        IdKey(key)
    }

    /// As saved (32 hex digits).
    fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(s: &str) -> Option<IdKey> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let mut key = [0u8; 16];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(IdKey(key))
    }
}

/// Event ids a group counted, with their times. Most groups hold one (a
/// flood of distinct principals makes a hundred thousand such groups):
/// inline then, a short list up to [`Seen::FEW`], and a map past it, where
/// lookups must stay constant-time.
#[derive(Debug, Default)]
enum Seen {
    #[default]
    Empty,
    One(IdKey, i64),
    Few(Vec<(IdKey, i64)>),
    // Boxed: the map is 48 bytes inline, which every group would pay.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<IdKey, i64>>),
}

impl Seen {
    const FEW: usize = 8;

    fn contains_key(&self, id: &IdKey) -> bool {
        match self {
            Seen::Empty => false,
            Seen::One(k, _) => k == id,
            Seen::Few(v) => v.iter().any(|(k, _)| k == id),
            Seen::Many(m) => m.contains_key(id),
        }
    }

    fn insert(&mut self, id: IdKey, t: i64) {
        match self {
            Seen::Empty => *self = Seen::One(id, t),
            Seen::One(k, old) if *k == id => *old = t,
            Seen::One(k, old) => {
                *self = Seen::Few(vec![(*k, *old), (id, t)]);
            }
            Seen::Few(v) if v.len() < Self::FEW => {
                if let Some(slot) = v.iter_mut().find(|(k, _)| *k == id) {
                    slot.1 = t;
                } else {
                    v.push((id, t));
                }
            }
            Seen::Few(v) => {
                let mut m: HashMap<IdKey, i64> = std::mem::take(v).into_iter().collect();
                m.insert(id, t);
                *self = Seen::Many(Box::new(m));
            }
            Seen::Many(m) => {
                m.insert(id, t);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Seen::Empty => 0,
            Seen::One(..) => 1,
            Seen::Few(v) => v.len(),
            Seen::Many(m) => m.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (IdKey, i64)> + '_> {
        match self {
            Seen::Empty => Box::new(std::iter::empty()),
            Seen::One(k, t) => Box::new(std::iter::once((*k, *t))),
            Seen::Few(v) => Box::new(v.iter().copied()),
            Seen::Many(m) => Box::new(m.iter().map(|(k, t)| (*k, *t))),
        }
    }

    /// Keep the ids whose time `keep` accepts, in the smallest form.
    fn retain(&mut self, mut keep: impl FnMut(i64) -> bool) {
        let left: Vec<(IdKey, i64)> = match self {
            Seen::Empty => return,
            Seen::One(_, t) => {
                if !keep(*t) {
                    *self = Seen::Empty;
                }
                return;
            }
            Seen::Few(v) => {
                v.retain(|(_, t)| keep(*t));
                std::mem::take(v)
            }
            Seen::Many(m) => {
                m.retain(|_, t| keep(*t));
                if m.len() > Self::FEW {
                    return;
                }
                m.drain().collect()
            }
        };
        *self = match left.len() {
            0 => Seen::Empty,
            1 => Seen::One(left[0].0, left[0].1),
            _ => {
                let mut left = left;
                left.shrink_to_fit();
                Seen::Few(left)
            }
        };
    }
}

impl FromIterator<(IdKey, i64)> for Seen {
    fn from_iter<I: IntoIterator<Item = (IdKey, i64)>>(items: I) -> Self {
        let mut s = Seen::default();
        for (id, t) in items {
            s.insert(id, t);
        }
        s
    }
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
pub const DEFAULT_MAX_FUTURE_MS: i64 = 15 * 60 * 1000;

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

fn wall_clock_ms() -> i64 {
    crate::time::now_ms() as i64
}

/// Version of the saved state's format; another version is ignored.
/// (2: events as arrays, object names in a table: a tenth of version 1's
/// size, which mattered with 100,000 groups saved at each commit. 3: each
/// group's newest time, recency and counted event ids, so lateness and
/// duplicates are judged per group across a restart. 4: those ids as
/// [`IdKey`]s; version 3 is still read.)
const SNAPSHOT_VERSION: u32 = 4;

/// The open windows, as saved in the state store with each batch (so a
/// restart neither forgets half a burst nor counts an event twice: the
/// snapshot is committed with exactly the objects it has seen). Written
/// from borrowed state ([`SnapshotRef`]), read back owned.
#[derive(serde::Deserialize)]
struct Snapshot {
    /// The correlator's hit counter.
    tick: u64,
    /// The objects events came from, once each.
    sources: Vec<String>,
    rules: Vec<SavedRule>,
}

#[derive(serde::Deserialize)]
struct SavedRule {
    /// The correlation's id: windows of rules no longer loaded are dropped.
    id: String,
    /// Referenced rules, to notice a changed rule and drop its windows.
    refs: usize,
    newest: i64,
    groups: Vec<SavedGroup>,
}

#[derive(serde::Deserialize)]
struct SavedGroup {
    key: Vec<String>,
    newest: i64,
    touched: u64,
    events: Vec<SavedEv>,
    /// (event id, time) counted: the id as [`IdKey::to_hex`] (version 4),
    /// or as the event's own id (version 3).
    seen: Vec<(String, i64)>,
}

/// An event in a window, with the context a correlation alert copies:
/// (time, position of its rule, value, the alert's fields, index of its
/// object in `sources`, record index).
#[derive(serde::Deserialize)]
struct SavedEv(
    i64,
    u16,
    Option<String>,
    [Option<String>; crate::alert::FIELDS],
    u32,
    usize,
);

#[derive(serde::Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    tick: u64,
    sources: Vec<&'a str>,
    rules: Vec<SavedRuleRef<'a>>,
}

#[derive(serde::Serialize)]
struct SavedRuleRef<'a> {
    id: &'a str,
    refs: usize,
    newest: i64,
    groups: Vec<SavedGroupRef<'a>>,
}

#[derive(serde::Serialize)]
struct SavedGroupRef<'a> {
    key: Vec<&'a str>,
    newest: i64,
    touched: u64,
    events: Vec<SavedEvRef<'a>>,
    seen: Vec<(String, i64)>,
}

#[derive(serde::Serialize)]
struct SavedEvRef<'a>(
    i64,
    u16,
    Option<&'a str>,
    [Option<&'a str>; crate::alert::FIELDS],
    u32,
    usize,
);

impl Correlator {
    pub fn new(rules: Vec<Correlation>, lateness_ms: i64, max_groups: usize) -> Self {
        let states = rules.iter().map(|_| State::default()).collect();
        Correlator {
            rules,
            states,
            lateness_ms,
            max_groups: max_groups.max(1),
            max_future_ms: DEFAULT_MAX_FUTURE_MS,
            clock: wall_clock_ms,
            tick: 0,
            stats: CorrelationStats::default(),
            hits_since_sweep: 0,
            dirty: false,
        }
    }

    /// Events dated more than `ms` past the clock are dropped (counted).
    pub fn with_max_future(mut self, ms: i64) -> Self {
        self.max_future_ms = ms.max(0);
        self
    }

    /// Use `clock` (milliseconds since the epoch) instead of the system's.
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    /// Whether the state changed since the last save.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Serialize the open windows (see [`Snapshot`]), from the live state
    /// (no owned copy of it), into a buffer sized in advance.
    pub fn save(&mut self) -> Vec<u8> {
        self.dirty = false;
        let mut sources: Vec<&str> = Vec::new();
        let mut source_index: HashMap<&str, u32> = HashMap::new();
        let mut estimate = 64;
        let rules = self
            .rules
            .iter()
            .zip(&self.states)
            .map(|(c, st)| SavedRuleRef {
                id: &c.meta.id,
                refs: c.rules.len(),
                newest: st.newest,
                groups: st
                    .groups
                    .iter()
                    .map(|(key, g)| {
                        estimate += 64 + g.seen.len() * 56;
                        SavedGroupRef {
                            key: key.parts().collect(),
                            newest: g.newest,
                            touched: g.touched,
                            seen: g.seen.iter().map(|(k, t)| (k.to_hex(), t)).collect(),
                            events: g
                                .events
                                .iter()
                                .map(|e| {
                                    let source: &str = &e.ctx.source;
                                    let index = *source_index.entry(source).or_insert_with(|| {
                                        sources.push(source);
                                        estimate += source.len() + 3;
                                        (sources.len() - 1) as u32
                                    });
                                    let fields = e.ctx.values();
                                    estimate += 96
                                        + fields.iter().flatten().map(|f| f.len()).sum::<usize>()
                                        + e.value.as_ref().map_or(0, String::len);
                                    SavedEvRef(
                                        e.time,
                                        e.pos,
                                        e.value.as_deref(),
                                        fields,
                                        index,
                                        e.ctx.record,
                                    )
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let snapshot = SnapshotRef {
            version: SNAPSHOT_VERSION,
            tick: self.tick,
            sources,
            rules,
        };
        let mut out = Vec::with_capacity(estimate);
        serde_json::to_writer(&mut out, &snapshot).expect("plain data serializes");
        out
    }

    /// Load windows saved by [`Correlator::save`] into an empty correlator.
    /// Windows of correlations no longer loaded (or whose referenced rules
    /// changed) are dropped. Returns the number of groups restored.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<usize, String> {
        #[derive(serde::Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        // Version 3 saved event ids as they came; they are read into keys.
        if v.version != SNAPSHOT_VERSION && v.version != 3 {
            return Err(format!(
                "saved format {} is not {SNAPSHOT_VERSION} (windows open at the last stop \
                 before an upgrade start afresh)",
                v.version
            ));
        }
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let sources: Vec<Arc<str>> = snap.sources.iter().map(|s| Arc::from(s.as_str())).collect();
        self.tick = self.tick.max(snap.tick);
        let mut restored = 0;
        for saved in snap.rules {
            let Some(ci) = self
                .rules
                .iter()
                .position(|c| c.meta.id == saved.id && c.rules.len() == saved.refs)
            else {
                continue;
            };
            let c = &self.rules[ci];
            let st = &mut self.states[ci];
            st.newest = st.newest.max(saved.newest);
            for g in saved.groups {
                let events: Vec<Ev> = g
                    .events
                    .into_iter()
                    .filter(|e| usize::from(e.1) < c.rules.len())
                    .map(|SavedEv(time, pos, value, fields, source, record)| Ev {
                        time,
                        pos,
                        ctx: Arc::new(Context::from_fields(
                            fields.each_ref().map(|f| f.as_deref()),
                            sources
                                .get(source as usize)
                                .cloned()
                                .unwrap_or_else(|| Arc::from("")),
                            record,
                        )),
                        value,
                    })
                    .collect();
                if (!events.is_empty() || !g.seen.is_empty()) && st.groups.len() < self.max_groups {
                    st.groups.insert(
                        GroupKey::new(&g.key),
                        Group {
                            events,
                            seen: g
                                .seen
                                .into_iter()
                                .filter_map(|(id, t)| {
                                    let key = if v.version == 3 {
                                        Some(IdKey::of(&id))
                                    } else {
                                        IdKey::from_hex(&id)
                                    };
                                    Some((key?, t))
                                })
                                .collect(),
                            newest: g.newest,
                            touched: g.touched,
                        },
                    );
                    restored += 1;
                }
            }
        }
        Ok(restored)
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
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleMeta;

    /// The compact id set answers like a map through its growth past a
    /// few ids and its shrinking back, times included.
    #[test]
    fn seen_ids_answer_like_a_map_at_any_size() {
        assert!(std::mem::size_of::<Seen>() <= 32, "a group pays it inline");
        let mut s = Seen::default();
        let mut m: HashMap<IdKey, i64> = HashMap::new();
        let key = |i: i64| IdKey::of(&format!("e{i}"));
        for i in 0..20i64 {
            s.insert(key(i), i);
            m.insert(key(i), i);
            assert_eq!(s.len(), m.len());
            match i {
                0 => assert!(matches!(s, Seen::One(..))),
                1..8 => assert!(matches!(s, Seen::Few(_))),
                _ => {}
            }
        }
        assert!(matches!(s, Seen::Many(_)));
        for i in 0..25 {
            assert_eq!(s.contains_key(&key(i)), i < 20);
        }
        s.retain(|t| t >= 15);
        assert!(matches!(s, Seen::Few(_)));
        let mut left: Vec<i64> = s.iter().map(|(_, t)| t).collect();
        left.sort();
        assert_eq!(left, [15, 16, 17, 18, 19]);
        assert!(!s.contains_key(&key(3)) && s.contains_key(&key(19)));
        s.retain(|t| t == 19);
        assert!(matches!(s, Seen::One(_, 19)));
        s.insert(key(19), 21);
        assert_eq!(s.iter().collect::<Vec<_>>(), [(key(19), 21)]);
        s.retain(|_| false);
        assert!(s.is_empty() && matches!(s, Seen::Empty));
    }

    /// Keys read back as their parts, two different lists never make one
    /// key, and keys sort as their lists do.
    #[test]
    fn group_keys_are_injective_and_ordered_as_lists() {
        let lists: Vec<Vec<&str>> = vec![
            vec![],
            vec![""],
            vec!["", ""],
            vec!["a:b", "c"],
            vec!["a", "b:c"],
            vec!["1:a"],
            vec!["1", "a"],
            vec!["ü", "12:x"],
            vec!["arn:aws:iam::1:user/x"],
        ];
        for a in &lists {
            let k = GroupKey::new(a);
            assert_eq!(k.parts().collect::<Vec<_>>(), *a);
            for b in &lists {
                let j = GroupKey::new(b);
                assert_eq!(k == j, a == b, "{a:?} {b:?}");
                assert_eq!(k.cmp(&j), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    /// CloudTrail's ids (lowercase UUIDs) are kept exactly; other text is
    /// digested; the saved form reads back.
    #[test]
    fn event_ids_become_exact_or_digested_keys() {
        let uuid = "3f1c6e2a-9b7d-4c1e-8a2f-0123456789ab";
        let k = IdKey::of(uuid);
        assert_eq!(k.to_hex(), uuid.replace('-', ""));
        assert_eq!(IdKey::from_hex(&k.to_hex()), Some(k));
        // The same digits in another shape are other ids.
        for other in [
            "3F1C6E2A-9B7D-4C1E-8A2F-0123456789AB",
            "3f1c6e2a9b7d4c1e8a2f0123456789ab",
            "{3f1c6e2a-9b7d-4c1e-8a2f-0123456789ab}",
            "3f1c6e2a-9b7d-4c1e-8a2f-0123456789ag",
        ] {
            assert_ne!(IdKey::of(other), k, "{other}");
        }
        assert_ne!(IdKey::of("a"), IdKey::of("b"));
        assert_eq!(IdKey::of("some id"), IdKey::of("some id"));
        assert_eq!(IdKey::from_hex("zz"), None);
        assert_eq!(IdKey::from_hex(&"g".repeat(32)), None);
    }

    fn meta() -> Arc<RuleMeta> {
        Arc::new(RuleMeta::example("c"))
    }

    fn corr(
        kind: CorrelationType,
        rules: Vec<u32>,
        preds: Vec<(ConditionOperator, u64)>,
    ) -> Correlation {
        Correlation {
            meta: meta(),
            kind,
            rule_names: rules.iter().map(|r| vec![format!("r{r}")]).collect(),
            rules,
            group_names: vec!["g".into()],
            timespan_ms: 60_000,
            predicates: preds,
            expr: None,
        }
    }

    fn hit(rule: u32, t_sec: i64, group: &str, id: &str) -> Hit {
        let time = t_sec.to_string();
        let mut fields = [None; crate::alert::FIELDS];
        fields[0] = Some(id);
        fields[3] = Some(time.as_str());
        Hit {
            rule,
            time_ms: Some(t_sec * 1000),
            keys: vec![(0, GroupKey::new([group]), None)],
            ctx: HitContext::Owned(Arc::new(Context::from_fields(fields, Arc::from("test"), 0))),
        }
    }

    fn ids(a: &Alert) -> Vec<String> {
        a.event_ids.clone().unwrap()
    }

    #[test]
    fn upper_bounded_conditions_are_decided_when_windows_close() {
        // "Fewer than 3 events in a minute": decided at close, not at once.
        let c = corr(
            CorrelationType::EventCount,
            vec![0],
            vec![(ConditionOperator::Lt, 3)],
        );
        let mut k = Correlator::new(vec![c], 0, 100);
        assert!(k.push(&hit(0, 0, "quiet", "q1")).is_empty());
        for (i, t) in [0, 10, 20].iter().enumerate() {
            assert!(k.push(&hit(0, *t, "busy", &format!("b{i}"))).is_empty());
        }
        // Nothing has closed yet; the end of input closes everything.
        let fired = k.finish();
        assert_eq!(fired.len(), 2, "{fired:?}");
        let groups: Vec<_> = fired
            .iter()
            .map(|a| a.group.clone().unwrap()["g"].clone())
            .collect();
        // "busy" had 3 in its first window (no), then windows of 2 and 1 (yes).
        assert!(groups.contains(&"quiet".to_string()));
        assert!(groups.contains(&"busy".to_string()));
        let busy = fired
            .iter()
            .find(|a| a.group.as_ref().unwrap()["g"] == "busy")
            .unwrap();
        assert_eq!(ids(busy), ["b1", "b2"]);
    }

    /// A window decided at close (an upper bound) closes when its own
    /// group's time moves past it, or when the group goes idle (behind the
    /// rule's newest time and untouched for a while): never because
    /// another group's time moved (a backlog of another account).
    #[test]
    fn ranges_and_windows_close_as_their_groups_time_advances() {
        let c = corr(
            CorrelationType::EventCount,
            vec![0],
            vec![(ConditionOperator::Gt, 1), (ConditionOperator::Lte, 2)],
        );
        let mut k = Correlator::new(vec![c], 0, 100);
        k.push(&hit(0, 0, "g", "a"));
        k.push(&hit(0, 5, "g", "b"));
        k.push(&hit(0, 0, "idle", "i1"));
        k.push(&hit(0, 5, "idle", "i2"));
        // Another group far ahead in time: neither window closes yet.
        let mut fired = Vec::new();
        for i in 0..1100 {
            fired.extend(k.push(&hit(0, 10_000 + i, "other", &format!("x{i}"))));
        }
        assert!(
            fired
                .iter()
                .all(|a| a.group.as_ref().unwrap()["g"] == "other")
        );
        // The group's own time moves past its window: it is decided.
        for i in 0..1100 {
            fired.extend(k.push(&hit(0, 10_000 + i, "g", &format!("g{i}"))));
        }
        let g: Vec<_> = fired
            .iter()
            .filter(|a| a.group.as_ref().unwrap()["g"] == "g")
            .collect();
        assert_eq!(g.len(), 1);
        assert_eq!(ids(g[0]), ["a", "b"]);
        // The idle group is decided once it has gone untouched long enough.
        for i in 0..IDLE_HITS as i64 + 2048 {
            fired.extend(k.push(&hit(
                0,
                20_000 + i,
                &format!("n{}", i % 50),
                &format!("n{i}"),
            )));
        }
        let idle: Vec<_> = fired
            .iter()
            .filter(|a| a.group.as_ref().unwrap()["g"] == "idle")
            .collect();
        assert_eq!(idle.len(), 1);
        assert_eq!(ids(idle[0]), ["i1", "i2"]);
    }

    /// The same event (by id) counts once per group, whatever brings it
    /// again: a duplicate delivery, a re-read, another source, the look-back
    /// after a restart (the ids are saved with the windows).
    #[test]
    fn an_event_counts_once_across_repeats_and_restarts() {
        let c = corr(
            CorrelationType::EventCount,
            vec![0],
            vec![(ConditionOperator::Gte, 10)],
        );
        let mut k = Correlator::new(vec![c.clone()], DEFAULT_LATENESS_MS, 100);
        for i in 0..6 {
            assert!(k.push(&hit(0, i, "p", &format!("e{i}"))).is_empty());
        }
        // Delivered again, then the daemon restarts and reads them again.
        for i in 0..6 {
            assert!(k.push(&hit(0, i, "p", &format!("e{i}"))).is_empty());
        }
        assert_eq!(k.stats.duplicates, 6);
        let saved = k.save();
        let mut k = Correlator::new(vec![c], DEFAULT_LATENESS_MS, 100);
        k.restore(&saved).unwrap();
        for i in 0..6 {
            assert!(k.push(&hit(0, i, "p", &format!("e{i}"))).is_empty(), "{i}");
        }
        assert_eq!(k.stats.duplicates, 6, "after the restart too");
        // Four new events make ten: one burst, each id once.
        let mut fired = Vec::new();
        for i in 6..10 {
            fired.extend(k.push(&hit(0, i, "p", &format!("e{i}"))));
        }
        assert_eq!(fired.len(), 1);
        let got = ids(&fired[0]);
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(got.len(), 10);
        assert_eq!(unique.len(), 10);
    }

    /// Windows saved by the previous version (format 3: counted ids as the
    /// events' own text) are read: their ids still make repeats repeats.
    #[test]
    fn windows_saved_in_format_3_are_read() {
        let c = corr(
            CorrelationType::EventCount,
            vec![0],
            vec![(ConditionOperator::Gte, 10)],
        );
        let mut k = Correlator::new(vec![c.clone()], DEFAULT_LATENESS_MS, 100);
        let uuid = "3f1c6e2a-9b7d-4c1e-8a2f-0123456789ab";
        for (i, id) in [(0, "e0"), (1, uuid)] {
            k.push(&hit(0, i, "p", id));
        }
        let mut v: serde_json::Value = serde_json::from_slice(&k.save()).unwrap();
        assert_eq!(v["version"], 4);
        v["version"] = 3.into();
        let seen = &mut v["rules"][0]["groups"][0]["seen"];
        let mut times: Vec<i64> = seen
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_i64().unwrap())
            .collect();
        times.sort();
        *seen = serde_json::json!([["e0", times[0]], [uuid, times[1]]]);
        let mut k = Correlator::new(vec![c], DEFAULT_LATENESS_MS, 100);
        assert_eq!(k.restore(&serde_json::to_vec(&v).unwrap()), Ok(1));
        k.push(&hit(0, 0, "p", "e0"));
        k.push(&hit(0, 1, "p", uuid));
        assert_eq!(k.stats.duplicates, 2);
        k.push(&hit(0, 2, "p", "e2"));
        assert_eq!(k.stats.duplicates, 2, "a new id counts");
    }

    /// One event dated far in the future is dropped and counted; it moves
    /// no horizon, so later real events still make their burst (and
    /// lateness is judged per group: another group's newer times make
    /// nothing late).
    #[test]
    fn a_future_event_or_another_groups_time_silences_nothing() {
        fn clock() -> i64 {
            100_000_000
        }
        let c = corr(
            CorrelationType::EventCount,
            vec![0],
            vec![(ConditionOperator::Gte, 3)],
        );
        let mut k = Correlator::new(vec![c], 1000, 100).with_clock(clock);
        let year_2099 = 4_000_000_000; // seconds
        assert!(k.push(&hit(0, year_2099, "p", "future")).is_empty());
        assert_eq!(k.stats.future, 1);
        // Another account's events, much newer than this group's.
        assert!(k.push(&hit(0, 90_000, "other", "o1")).is_empty());
        let mut fired = Vec::new();
        for i in 0..3 {
            fired.extend(k.push(&hit(0, 10 + i, "p", &format!("p{i}"))));
        }
        assert_eq!(fired.len(), 1, "{:?}", k.stats);
        assert_eq!(k.stats.late, 0);
    }

    #[test]
    fn temporal_needs_every_rule_or_its_expression() {
        let c = corr(
            CorrelationType::Temporal,
            vec![0, 1],
            vec![(ConditionOperator::Gte, 1)],
        );
        let mut k = Correlator::new(vec![c.clone()], DEFAULT_LATENESS_MS, 100);
        assert!(k.push(&hit(1, 30, "g", "second-rule-first")).is_empty());
        let fired = k.push(&hit(0, 40, "g", "first-rule"));
        assert_eq!(fired.len(), 1, "any order");
        assert_eq!(fired[0].correlation, Some("temporal"));

        let mut with_expr = c;
        with_expr.expr = Some(rsigma_parser::parse_condition("r0 and not r1").unwrap());
        let mut k = Correlator::new(vec![with_expr], DEFAULT_LATENESS_MS, 100);
        assert_eq!(k.push(&hit(0, 0, "g", "only-r0")).len(), 1);
    }
}
