//! The event an alert carries: the record as compact JSON text, bounded in
//! depth and size whatever the record holds (built member by member from
//! the tape, so a 300 MB member is never copied).

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use super::MAX_EVENT_BYTES;
use crate::parse::Record;

/// An event attached to an alert, as its compact JSON text (bounded by
/// [`MAX_EVENT_BYTES`] and [`MAX_EVENT_DEPTH`]): about a quarter of the
/// memory of a `serde_json::Value` tree, and written out as it is.
///
/// Shared, not copied, between the copies of a match (its alert, the
/// correlation hit pointing at it).
#[derive(Clone)]
pub struct EventJson(Arc<serde_json::value::RawValue>);

impl EventJson {
    /// The record's event, bounded. Built from the tape member by member,
    /// so a member too large to keep (a 300 MB string) is never copied:
    /// memory stays near the bound whatever the record holds.
    pub fn of(r: &Record<'_, '_>) -> EventJson {
        let text =
            serde_json::to_string(&bounded_record(r.root())).unwrap_or_else(|_| "null".into());
        EventJson::from_json(text)
    }

    /// A JSON string standing in for an event that was not kept.
    pub fn note(note: &str) -> EventJson {
        EventJson::from_json(serde_json::Value::String(note.to_owned()).to_string())
    }

    pub(super) fn from_json(text: String) -> EventJson {
        EventJson(Arc::from(
            serde_json::value::RawValue::from_string(text).unwrap_or_else(|_| {
                serde_json::value::RawValue::from_string("null".into()).expect("valid")
            }),
        ))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Its bytes in memory (for the per-object budget).
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As a tree (to render it; transient).
    pub(crate) fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for EventJson {
    fn eq(&self, other: &EventJson) -> bool {
        self.get() == other.get()
    }
}

impl Eq for EventJson {}

impl std::fmt::Debug for EventJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for EventJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for EventJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EventJson, D::Error> {
        Box::<serde_json::value::RawValue>::deserialize(d).map(|b| EventJson(Arc::from(b)))
    }
}

/// Deepest nesting kept in an alert's event. serde_json (the outbox's own
/// reader, and most consumers') refuses documents nested past 128 levels;
/// CloudTrail's deepest real events are around ten.
pub(crate) const MAX_EVENT_DEPTH: usize = 32;

/// Replace what lies deeper than `depth` levels by a note.
fn cap_depth(v: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    match v {
        Value::Array(_) | Value::Object(_) if depth == 0 => {
            *v = Value::String(format!(
                "[nested deeper than {MAX_EVENT_DEPTH} levels omitted]"
            ));
        }
        Value::Array(a) => a.iter_mut().for_each(|e| cap_depth(e, depth - 1)),
        Value::Object(o) => o.values_mut().for_each(|e| cap_depth(e, depth - 1)),
        _ => {}
    }
}

/// About how many bytes `v` takes as compact JSON (escapes not counted),
/// looking no deeper than [`MAX_EVENT_DEPTH`] (deeper parts become a note).
fn json_size(v: crate::parse::Value<'_, '_>, depth: usize) -> usize {
    use crate::parse::Kind;
    const NOTE: usize = 48;
    match v.kind() {
        Kind::Null => 4,
        Kind::Bool => 5,
        Kind::Number => 24,
        Kind::String => v.as_str().map_or(2, |s| s.len() + 2),
        Kind::Array | Kind::Object if depth >= MAX_EVENT_DEPTH => NOTE,
        Kind::Array => {
            2 + v
                .elements()
                .map(|e| json_size(e, depth + 1) + 1)
                .sum::<usize>()
        }
        Kind::Object => {
            2 + v
                .entries()
                .map(|(k, e)| k.len() + 4 + json_size(e, depth + 1))
                .sum::<usize>()
        }
    }
}

/// `v` as a JSON tree, containers deeper than `depth` levels replaced by a
/// note (as [`cap_depth`] does).
fn to_json_capped(v: crate::parse::Value<'_, '_>, depth: usize) -> serde_json::Value {
    use crate::parse::Kind;
    match v.kind() {
        Kind::Array | Kind::Object if depth == 0 => serde_json::Value::String(format!(
            "[nested deeper than {MAX_EVENT_DEPTH} levels omitted]"
        )),
        Kind::Array => {
            serde_json::Value::Array(v.elements().map(|e| to_json_capped(e, depth - 1)).collect())
        }
        Kind::Object => serde_json::Value::Object(
            v.entries()
                .map(|(k, e)| (k.to_owned(), to_json_capped(e, depth - 1)))
                .collect(),
        ),
        _ => v.to_json(),
    }
}

/// A record's event within [`MAX_EVENT_BYTES`] and [`MAX_EVENT_DEPTH`],
/// without building what will not be kept: each top-level member's size
/// is estimated on the tape, the largest are replaced by a note of their
/// size until the rest fits, and only the rest is built (the last of
/// duplicate keys, as everywhere).
fn bounded_record(root: crate::parse::Value<'_, '_>) -> serde_json::Value {
    if root.kind() != crate::parse::Kind::Object {
        return bound_event(to_json_capped(root, MAX_EVENT_DEPTH));
    }
    let mut members: Vec<(&str, crate::parse::Value<'_, '_>, usize)> = Vec::new();
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (k, v) in root.entries() {
        let size = k.len() + 4 + json_size(v, 1);
        match at.get(k) {
            Some(&i) => members[i] = (k, v, size),
            None => {
                at.insert(k, members.len());
                members.push((k, v, size));
            }
        }
    }
    let mut total = 2 + members.iter().map(|m| m.2).sum::<usize>();
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|a, b| members[*b].2.cmp(&members[*a].2));
    let mut omitted = vec![None; members.len()];
    for i in order {
        if total <= MAX_EVENT_BYTES {
            break;
        }
        let note = format!("[{} bytes omitted]", members[i].2 - members[i].0.len() - 4);
        total = total + note.len() + 2 + members[i].0.len() + 4 - members[i].2;
        omitted[i] = Some(note);
    }
    if total > MAX_EVENT_BYTES {
        return serde_json::Value::String(format!(
            "[event with {} members omitted]",
            members.len()
        ));
    }
    let map = members
        .iter()
        .zip(omitted)
        .map(|((k, v, _), note)| {
            let value = match note {
                Some(n) => serde_json::Value::String(n),
                None => to_json_capped(*v, MAX_EVENT_DEPTH - 1),
            };
            ((*k).to_owned(), value)
        })
        .collect();
    // Escapes can make the estimate short: the exact pass on what is left.
    bound_event(serde_json::Value::Object(map))
}

/// Keep an event whole if its JSON fits [`MAX_EVENT_BYTES`] and
/// [`MAX_EVENT_DEPTH`]; otherwise replace its deepest parts, then its
/// largest members, by a note until it fits.
pub(crate) fn bound_event(mut event: serde_json::Value) -> serde_json::Value {
    cap_depth(&mut event, MAX_EVENT_DEPTH);
    let size = |v: &serde_json::Value| serde_json::to_vec(v).map_or(0, |b| b.len());
    let mut total = size(&event);
    if total <= MAX_EVENT_BYTES {
        return event;
    }
    let serde_json::Value::Object(mut map) = event else {
        return serde_json::Value::String(format!("[event of {total} bytes omitted]"));
    };
    let mut sizes: Vec<(usize, String)> = map.iter().map(|(k, v)| (size(v), k.clone())).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    for (n, key) in sizes {
        if total <= MAX_EVENT_BYTES {
            break;
        }
        let note = format!("[{n} bytes omitted]");
        total = total + note.len() + 2 - n;
        map.insert(key, serde_json::Value::String(note));
    }
    if total > MAX_EVENT_BYTES {
        return serde_json::Value::String(format!("[event with {} members omitted]", map.len()));
    }
    serde_json::Value::Object(map)
}
