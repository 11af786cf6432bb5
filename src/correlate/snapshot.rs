//! The open windows saved in the state store with each batch, and read
//! back at start.

use std::collections::HashMap;
use std::sync::Arc;

use super::keys::{GroupKey, IdKey};
use super::{Correlator, Ev, Group};
use crate::alert::Context;

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

/// Why saved windows were not restored (the daemon then starts with none).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error(
        "saved format {0} is not {SNAPSHOT_VERSION} (windows open at the last stop before an upgrade start afresh)"
    )]
    Version(u32),
    #[error("saved windows are not readable: {0}")]
    Damaged(#[from] serde_json::Error),
}

impl Correlator {
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
    pub(crate) fn restore(&mut self, bytes: &[u8]) -> Result<usize, SnapshotError> {
        #[derive(serde::Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes)?;
        // Version 3 saved event ids as they came; they are read into keys.
        if v.version != SNAPSHOT_VERSION && v.version != 3 {
            return Err(SnapshotError::Version(v.version));
        }
        let snap: Snapshot = serde_json::from_slice(bytes)?;
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
}
