//! The keys a correlation's state is made of: a group's key, and the
//! event ids a group counted, both compact (a flood of distinct principals
//! makes a hundred thousand groups).

use std::collections::HashMap;
use std::fmt::Write;

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
            // Per hit: no allocation for the length.
            let _ = write!(text, "{}:{p}", p.len());
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

/// An event id as a group remembers it: 16 bytes, inline. CloudTrail's
/// ids are lowercase UUIDs, kept exactly (their 128 bits); any other text
/// is its SHA-256, cut to 128 bits, so no one can make two ids look alike.
/// (A flood of distinct principals makes a hundred thousand groups of one
/// event each: the id as a string cost a pair of allocations, 80 bytes,
/// per group.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct IdKey(pub(super) [u8; 16]);

impl IdKey {
    pub(super) fn of(id: &str) -> IdKey {
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
    pub(super) fn to_hex(self) -> String {
        // Per counted id at each commit: one allocation, not one per byte.
        crate::alert::hex(&self.0)
    }

    pub(super) fn from_hex(s: &str) -> Option<IdKey> {
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
pub(super) enum Seen {
    #[default]
    Empty,
    One(IdKey, i64),
    Few(Vec<(IdKey, i64)>),
    // Boxed: the map is 48 bytes inline, which every group would pay.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<IdKey, i64>>),
}

impl Seen {
    pub(super) const FEW: usize = 8;

    pub(super) fn contains_key(&self, id: &IdKey) -> bool {
        match self {
            Seen::Empty => false,
            Seen::One(k, _) => k == id,
            Seen::Few(v) => v.iter().any(|(k, _)| k == id),
            Seen::Many(m) => m.contains_key(id),
        }
    }

    pub(super) fn insert(&mut self, id: IdKey, t: i64) {
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

    pub(super) fn len(&self) -> usize {
        match self {
            Seen::Empty => 0,
            Seen::One(..) => 1,
            Seen::Few(v) => v.len(),
            Seen::Many(m) => m.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn iter(&self) -> Box<dyn Iterator<Item = (IdKey, i64)> + '_> {
        match self {
            Seen::Empty => Box::new(std::iter::empty()),
            Seen::One(k, t) => Box::new(std::iter::once((*k, *t))),
            Seen::Few(v) => Box::new(v.iter().copied()),
            Seen::Many(m) => Box::new(m.iter().map(|(k, t)| (*k, *t))),
        }
    }

    /// Keep the ids whose time `keep` accepts, in the smallest form.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(i64) -> bool) {
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
