//! The walk over one chain of digests (one account, region and trail):
//! which digests verify, which were deleted, altered or never written, and
//! what time the chain leaves uncovered. Pure: the digests are fetched
//! and checked before, so the rules here are tested without a bucket.

use std::collections::HashMap;

use super::{Digest, DigestProblem};

/// A digest found in the bucket, and what checking it gave.
#[derive(Clone, Debug)]
pub struct Found {
    pub key: String,
    /// The end time in its key's name (ms): orders the chain, and is all a
    /// digest whose content cannot be trusted still tells.
    pub end_ms: i64,
    pub checked: Result<Checked, DigestProblem>,
}

/// A digest whose signature verified.
#[derive(Clone, Debug)]
pub struct Checked {
    pub digest: Digest,
    /// Hex SHA-256 of its uncompressed content.
    pub hash: String,
    /// Its signature (hex, lower case) from the object's metadata.
    pub signature: String,
}

/// What the walk found, one per digest or gap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    Valid {
        key: String,
    },
    Invalid {
        key: String,
        problem: DigestProblem,
    },
    /// Named as the previous digest by the next one, and not in the bucket.
    Deleted {
        key: String,
    },
    /// The next digest recorded another hash or signature for it: its
    /// content or metadata changed after the next one was written.
    Altered {
        key: String,
    },
    /// Digests missing whose names no remaining digest gives (the links
    /// through them are gone with them): about `hours` of them between
    /// `after` (older, present) and `before`.
    Gap {
        after: String,
        before: String,
        hours: i64,
    },
    /// The first digest of a chain (no previous digest): validation or
    /// logging was (re)started. Not tampering by itself; CloudTrail's own
    /// events say who turned it off.
    ChainStart {
        key: String,
    },
}

impl Finding {
    /// Whether it is evidence of tampering.
    pub fn is_tampering(&self) -> bool {
        !matches!(
            self,
            Finding::Valid { .. }
                | Finding::ChainStart { .. }
                | Finding::Invalid {
                    problem: DigestProblem::Unreadable(_),
                    ..
                }
        )
    }

    /// A digest that could not be read: the run is incomplete.
    pub fn is_unchecked(&self) -> bool {
        matches!(
            self,
            Finding::Invalid {
                problem: DigestProblem::Unreadable(_),
                ..
            }
        )
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Walk `found` (any order) from the newest digest back. `range_start_ms`:
/// digests ending before it were not listed, so a link to one is not a
/// deletion.
pub fn walk(mut found: Vec<Found>, range_start_ms: i64) -> Vec<Finding> {
    found.sort_by(|a, b| b.end_ms.cmp(&a.end_ms).then_with(|| b.key.cmp(&a.key)));
    let by_key: HashMap<&str, usize> = found
        .iter()
        .enumerate()
        .map(|(i, f)| (f.key.as_str(), i))
        .collect();
    let mut out = Vec::new();
    let mut altered = vec![false; found.len()];
    for (i, x) in found.iter().enumerate() {
        let checked = match &x.checked {
            Ok(c) => c,
            Err(problem) => {
                out.push(Finding::Invalid {
                    key: x.key.clone(),
                    problem: problem.clone(),
                });
                continue;
            }
        };
        out.push(Finding::Valid { key: x.key.clone() });
        let d = &checked.digest;
        let Some(prev) = d.previous_digest_s3_object.as_deref() else {
            out.push(Finding::ChainStart { key: x.key.clone() });
            continue;
        };
        match by_key.get(prev) {
            Some(&j) => {
                // Present: it must be what this digest recorded. (Its own
                // signature is checked on its own line.)
                let y = &found[j];
                if let Ok(yc) = &y.checked {
                    let hash_ok = d
                        .previous_digest_hash_value
                        .as_deref()
                        .is_some_and(|h| h.eq_ignore_ascii_case(&yc.hash));
                    let sig_ok = d
                        .previous_digest_signature
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(&yc.signature));
                    let recorded = hash_ok && sig_ok;
                    if !recorded && !altered[j] {
                        altered[j] = true;
                        out.push(Finding::Altered { key: y.key.clone() });
                    }
                }
            }
            None => {
                let prev_end = super::key_end_ms(prev);
                if prev_end.is_some_and(|e| e < range_start_ms) {
                    continue; // before the range: not listed, not missing
                }
                out.push(Finding::Deleted {
                    key: prev.chars().take(1024).collect(),
                });
                // The digests before the deleted one are named only by it:
                // the time between it and the next older digest present
                // says how many more are gone.
                let older = found[i + 1..].iter().find(|f| Some(f.end_ms) < prev_end);
                if let (Some(prev_end), Some(older)) = (prev_end, older) {
                    let hours =
                        ((prev_end - older.end_ms) as f64 / HOUR_MS as f64).round() as i64 - 1;
                    if hours >= 1 {
                        out.push(Finding::Gap {
                            after: older.key.clone(),
                            before: prev.chars().take(1024).collect(),
                            hours,
                        });
                    }
                }
            }
        }
    }
    out
}
