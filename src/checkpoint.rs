//! Checkpoint stage: the daemon's durable progress, in one redb file.
//!
//! Why redb: pure Rust (no C toolchain in the image), one file, ACID
//! transactions whose commit is fsync'd and copy-on-write, so a `kill -9` at
//! any instant leaves either the previous or the new state, never a mix.
//!
//! What it holds:
//! - **objects**: every processed object (source, key, etag) with when, so a
//!   re-listed or re-delivered object is skipped; pruned after a retention
//!   window.
//! - **alerts**: the dedup key of every alert emitted (rule id + event id, or
//!   rule id + group + first event for correlations) with an expiry, so an
//!   object processed twice never alerts twice.
//! - **sinks**: the committed length of each JSON-lines file sink. Alerts
//!   are appended and fsync'd first, then the object, its dedup keys and the
//!   new length are committed in one transaction; on start, the file is cut
//!   back to the committed length. Whatever a crash leaves uncommitted is
//!   both removed from the file and reprocessed: exactly once.
//! - **cursors**: opaque per-source positions (CloudWatch Logs).
//! - **meta**: state saved with each batch (the correlation windows), and
//!   the readiness probe's write.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};
use thiserror::Error;

const OBJECTS: TableDefinition<&str, u64> = TableDefinition::new("objects");
const ALERTS: TableDefinition<&str, u64> = TableDefinition::new("alerts");
const SINKS: TableDefinition<&str, u64> = TableDefinition::new("sinks");
const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// State blobs in parts of at most [`PART_BYTES`]: (name, part) → bytes.
const META_PARTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("meta_parts");

/// A state blob's part size. redb keeps a value in one run of pages sized
/// to the next power of two, and reads the old value whole to replace it:
/// the correlation windows of 100,000 groups (about 45 MB) saved as one
/// value took two 64 MiB buffers at each commit. In parts, a commit's
/// extra memory is a part, whatever the blob's size. (A little under
/// 64 KiB, so a part and its key fit one 64 KiB run.)
const PART_BYTES: usize = (64 << 10) - 512;

/// A store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state store {path} is damaged ({reason}); move it aside to start with an empty \
         store (objects still in the sources are read again and their alerts may be sent \
         again), or restore it from a backup"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("state store {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
}

/// A panic caught by [`quietly`], with its message.
struct Panicked(String);

/// Run `f`, turning a panic into `Err(its message)` without the default
/// hook printing it (called at start, before other threads run).
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.map_err(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Panicked(format!("the database library failed reading it: {what}"))
    })
}

/// One processed object's identity. The etag changes when the content does
/// (S3 ETag; size and mtime for local files), so a rewritten object is read
/// again (and its alerts deduplicated).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub source: String,
    pub key: String,
    pub etag: String,
}

impl ObjectId {
    fn db_key(&self) -> String {
        format!("{}\u{0}{}\u{0}{}", self.source, self.key, self.etag)
    }
}

/// What one object's commit records.
pub struct Commit<'a> {
    pub object: &'a ObjectId,
    /// Dedup keys of the alerts emitted for it, and their expiry (ms).
    pub alert_keys: &'a [(String, u64)],
    /// (sink name, its length in bytes after this object's alerts).
    pub sink: Option<(&'a str, u64)>,
    /// A source cursor advanced by this object, saved in the same
    /// transaction (CloudWatch Logs).
    pub cursor: Option<(&'a str, &'a [u8])>,
    pub now_ms: u64,
}

pub use crate::time::now_ms;

/// The durable store.
pub struct Store {
    db: Database,
    path: PathBuf,
}

/// Default [`Store::open`] page cache: redb's own default is 1 GiB, which a
/// flood of alerts (a dedup key each) would fill; the operating system's
/// page cache serves what does not fit. 32 MiB holds every interior page of
/// a store with millions of keys (64 MiB cost 30 MB more at the peak of a
/// flood of a million alerts, and was no faster).
pub(crate) const DEFAULT_CACHE_BYTES: usize = 32 << 20;

impl Store {
    /// Open (or create) `state.redb` in `dir`, with a page cache of at
    /// most `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("state.redb");
        // redb panics on some corrupted pages (an `unreachable!` in its
        // b-tree) instead of returning an error: opening, and a full check
        // of every page's checksum, run under `catch_unwind`, so damage is
        // a clear error naming the file at start, never a panic later.
        let opened = quietly(|| {
            let mut db = redb::Builder::new()
                .set_cache_size(cache_bytes)
                .create(&path)
                .map_err(|e| db_err(&path, e))?;
            match db.check_integrity() {
                Ok(true) => Ok(db),
                Ok(false) => Err(StoreError::Corrupt {
                    path: path.clone(),
                    reason: "pages failed their checksums (repaired from the last \
                             commit's copy; start again)"
                        .into(),
                }),
                Err(e) => Err(db_err(&path, e)),
            }
        });
        let db = match opened {
            Ok(r) => r?,
            Err(Panicked(reason)) => return Err(StoreError::Corrupt { path, reason }),
        };
        let store = Store { db, path };
        // Create the tables so readers never meet a missing one.
        store.write(|txn| {
            txn.open_table(OBJECTS)?;
            txn.open_table(ALERTS)?;
            txn.open_table(SINKS)?;
            txn.open_table(CURSORS)?;
            txn.open_table(META)?;
            txn.open_table(META_PARTS)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        f(&txn).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))
    }

    /// Was this exact object (same etag) processed?
    pub(crate) fn is_processed(&self, id: &ObjectId) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(OBJECTS).map_err(|e| self.err(e))?;
        Ok(t.get(id.db_key().as_str())
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// Was any version (any ETag) of `key` from `source` processed?
    pub(crate) fn processed_any(&self, source: &str, key: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(OBJECTS).map_err(|e| self.err(e))?;
        let prefix = format!("{source}\u{0}{key}\u{0}");
        let first = t
            .range(prefix.as_str()..)
            .map_err(|e| self.err(e))?
            .next()
            .transpose()
            .map_err(|e| self.err(e))?;
        Ok(first.is_some_and(|(k, _)| k.value().starts_with(&prefix)))
    }

    /// Was an alert with this dedup key emitted (and not yet expired)?
    pub(crate) fn alert_seen(&self, key: &str, now_ms: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(ALERTS).map_err(|e| self.err(e))?;
        Ok(t.get(key)
            .map_err(|e| self.err(e))?
            .is_some_and(|expiry| expiry.value() > now_ms))
    }

    /// The committed length of a file sink (0 if never committed).
    pub(crate) fn sink_len(&self, sink: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(SINKS).map_err(|e| self.err(e))?;
        Ok(t.get(sink)
            .map_err(|e| self.err(e))?
            .map_or(0, |v| v.value()))
    }

    #[cfg(test)]
    /// Record an object as processed, with its alerts' dedup keys and the
    /// sink's new length, atomically (one fsync'd transaction).
    pub(crate) fn commit(&self, c: &Commit<'_>) -> Result<(), StoreError> {
        self.commit_all(std::slice::from_ref(c))
    }

    #[cfg(test)]
    /// Several objects in one transaction: one fsync for a whole batch.
    pub(crate) fn commit_all(&self, commits: &[Commit<'_>]) -> Result<(), StoreError> {
        self.commit_batch(commits, &[], |_| Ok(()))
    }

    /// Several objects, named state blobs (`meta`) and whatever `also`
    /// writes (the alert outbox) in one transaction, so all of it always
    /// matches the objects committed with it.
    pub(crate) fn commit_batch(
        &self,
        commits: &[Commit<'_>],
        meta: &[(&str, &[u8])],
        also: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            also(txn)?;
            for c in commits {
                Self::record(txn, c)?;
            }
            if !meta.is_empty() {
                let mut whole = txn.open_table(META)?;
                let mut parts = txn.open_table(META_PARTS)?;
                for (name, value) in meta {
                    // A blob saved whole by an older version goes.
                    whole.remove(*name)?;
                    let mut n = 0u32;
                    // An empty blob is one empty part, so it reads back as
                    // empty, not as missing.
                    for part in value
                        .chunks(PART_BYTES)
                        .chain(value.is_empty().then_some(&[][..]))
                    {
                        parts.insert((*name, n), part)?;
                        n += 1;
                    }
                    // Parts past the new end belong to a longer old blob.
                    parts.retain_in((*name, n)..=(*name, u32::MAX), |_, _| false)?;
                }
            }
            Ok(())
        })
    }

    /// The database, for stages keeping their own tables in it (the
    /// outbox).
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Wrap a database error with this store's path.
    pub fn error(&self, e: impl Into<redb::Error>) -> StoreError {
        self.err(e)
    }

    /// A state blob saved by [`Store::commit_batch`].
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let parts = txn.open_table(META_PARTS).map_err(|e| self.err(e))?;
        let mut blob: Option<Vec<u8>> = None;
        for part in parts
            .range((name, 0)..=(name, u32::MAX))
            .map_err(|e| self.err(e))?
        {
            let (_, v) = part.map_err(|e| self.err(e))?;
            blob.get_or_insert_with(Vec::new)
                .extend_from_slice(v.value());
        }
        if blob.is_some() {
            return Ok(blob);
        }
        // Saved whole by an older version.
        let t = txn.open_table(META).map_err(|e| self.err(e))?;
        Ok(t.get(name)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    /// Readiness: commit a tiny write (a full disk or a read-only volume
    /// fails here before it fails a batch).
    pub(crate) fn probe(&self) -> Result<(), StoreError> {
        let now = now_ms();
        self.write(|txn| {
            txn.open_table(META)?
                .insert("probe", now.to_le_bytes().as_slice())?;
            Ok(())
        })
    }

    fn record(txn: &redb::WriteTransaction, c: &Commit<'_>) -> Result<(), redb::Error> {
        txn.open_table(OBJECTS)?
            .insert(c.object.db_key().as_str(), c.now_ms)?;
        let mut alerts = txn.open_table(ALERTS)?;
        for (key, expiry) in c.alert_keys {
            alerts.insert(key.as_str(), *expiry)?;
        }
        if let Some((sink, len)) = c.sink {
            txn.open_table(SINKS)?.insert(sink, len)?;
        }
        if let Some((name, value)) = c.cursor {
            txn.open_table(CURSORS)?.insert(name, value)?;
        }
        Ok(())
    }

    /// A source's cursor, if saved.
    pub fn cursor(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(CURSORS).map_err(|e| self.err(e))?;
        Ok(t.get(name)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    #[cfg(test)]
    pub(crate) fn set_cursor(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(CURSORS)?.insert(name, value)?;
            Ok(())
        })
    }

    /// Forget objects processed before `objects_before_ms` and alert keys
    /// expired at `now_ms`. Returns how many entries were removed.
    pub(crate) fn prune(&self, objects_before_ms: u64, now_ms: u64) -> Result<u64, StoreError> {
        let mut removed = 0u64;
        self.write(|txn| {
            txn.open_table(OBJECTS)?.retain(|_, at| {
                let keep = at >= objects_before_ms;
                removed += u64::from(!keep);
                keep
            })?;
            txn.open_table(ALERTS)?.retain(|_, expiry| {
                let keep = expiry > now_ms;
                removed += u64::from(!keep);
                keep
            })?;
            Ok(())
        })?;
        Ok(removed)
    }

    #[cfg(test)]
    /// Number of processed objects remembered.
    pub(crate) fn object_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(OBJECTS).map_err(|e| self.err(e))?;
        redb::ReadableTableMetadata::len(&t).map_err(|e| self.err(e))
    }
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_owned(),
        source: Box::new(e.into()),
    }
}

/// Read-then-write over one table of JSON values, for a stage that decides
/// against the store and writes at the commit (the engine's thread is the
/// only writer of such tables, so a read transaction then the commit's
/// write transaction see no one else's change). Reads go through what was
/// already decided.
pub(crate) struct Overlay<T> {
    table: TableDefinition<'static, &'static str, &'static [u8]>,
    changed: std::collections::BTreeMap<String, Option<T>>,
}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Clone> Overlay<T> {
    pub(crate) fn new(table: TableDefinition<'static, &'static str, &'static [u8]>) -> Overlay<T> {
        Overlay {
            table,
            changed: std::collections::BTreeMap::new(),
        }
    }

    /// The value of `key`: as decided, else as stored (a value that does
    /// not read back, from an older version, is none).
    pub(crate) fn get(
        &self,
        read: &redb::ReadTransaction,
        key: &str,
    ) -> Result<Option<T>, redb::Error> {
        if let Some(v) = self.changed.get(key) {
            return Ok(v.clone());
        }
        match read.open_table(self.table) {
            Ok(t) => Ok(t
                .get(key)?
                .and_then(|v| serde_json::from_slice(v.value()).ok())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn put(&mut self, key: String, value: T) {
        self.changed.insert(key, Some(value));
    }

    pub(crate) fn remove(&mut self, key: String) {
        self.changed.insert(key, None);
    }

    /// The keys decided in this step (put or removed).
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.changed.keys()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    /// Every entry, as decided: the first `limit` stored (values that do
    /// not read back are left out), with what was decided over them.
    pub(crate) fn all(
        &self,
        read: &redb::ReadTransaction,
        limit: usize,
    ) -> Result<std::collections::BTreeMap<String, T>, redb::Error> {
        let mut out = std::collections::BTreeMap::new();
        match read.open_table(self.table) {
            Ok(t) => {
                for e in redb::ReadableTable::iter(&t)?.take(limit) {
                    let (k, v) = e?;
                    if let Ok(v) = serde_json::from_slice(v.value()) {
                        out.insert(k.value().to_owned(), v);
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for (k, v) in &self.changed {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        Ok(out)
    }

    /// Write what was decided.
    pub(crate) fn apply(&self, txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        let mut t = txn.open_table(self.table)?;
        for (k, v) in &self.changed {
            match v {
                Some(v) => {
                    let bytes = serde_json::to_vec(v).map_err(|e| {
                        redb::Error::Io(std::io::Error::other(format!("state not encodable: {e}")))
                    })?;
                    t.insert(k.as_str(), bytes.as_slice())?;
                }
                None => {
                    t.remove(k.as_str())?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, etag: &str) -> ObjectId {
        ObjectId {
            source: "files".into(),
            key: key.into(),
            etag: etag.into(),
        }
    }

    /// Blobs of any size read back exactly, across reopening: several
    /// parts, one part, empty, a shorter blob over a longer one (no stale
    /// parts), and a blob an older version saved whole.
    #[test]
    fn state_blobs_are_saved_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..PART_BYTES * 3 + 17).map(|i| (i % 251) as u8).collect();
        {
            let s = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
            s.write(|txn| {
                txn.open_table(META)?
                    .insert("legacy", b"whole".as_slice())?;
                Ok(())
            })
            .unwrap();
            s.commit_batch(
                &[],
                &[("big", &big), ("empty", &[]), ("small", b"abc")],
                |_| Ok(()),
            )
            .unwrap();
        }
        let s = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(s.meta("big").unwrap().as_deref(), Some(&big[..]));
        assert_eq!(s.meta("empty").unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(s.meta("small").unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(s.meta("missing").unwrap(), None);
        assert_eq!(s.meta("legacy").unwrap().as_deref(), Some(&b"whole"[..]));
        let parts = |s: &Store, name: &str| {
            let txn = s.db.begin_read().unwrap();
            let t = txn.open_table(META_PARTS).unwrap();
            t.range((name, 0)..=(name, u32::MAX)).unwrap().count()
        };
        assert_eq!(parts(&s, "big"), 4);
        let shorter = &big[..PART_BYTES + 1];
        s.commit_batch(&[], &[("big", shorter), ("legacy", b"parts")], |_| Ok(()))
            .unwrap();
        assert_eq!(s.meta("big").unwrap().as_deref(), Some(shorter));
        assert_eq!(
            parts(&s, "big"),
            2,
            "stale parts of the longer blob removed"
        );
        assert_eq!(s.meta("legacy").unwrap().as_deref(), Some(&b"parts"[..]));
        let txn = s.db.begin_read().unwrap();
        let whole = txn.open_table(META).unwrap();
        assert!(
            whole.get("legacy").unwrap().is_none(),
            "the whole copy goes"
        );
    }

    #[test]
    fn commits_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
            assert!(!s.is_processed(&obj("a", "1")).unwrap());
            s.commit(&Commit {
                object: &obj("a", "1"),
                alert_keys: &[("rule:evt".into(), 5_000)],
                sink: Some(("alerts.jsonl", 1234)),
                cursor: None,
                now_ms: 1_000,
            })
            .unwrap();
            s.set_cursor("cw", b"pos").unwrap();
        }
        let s = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        assert!(s.is_processed(&obj("a", "1")).unwrap());
        assert!(
            !s.is_processed(&obj("a", "2")).unwrap(),
            "new etag: read again"
        );
        assert!(s.alert_seen("rule:evt", 4_999).unwrap());
        assert!(!s.alert_seen("rule:evt", 5_000).unwrap(), "expired");
        assert_eq!(s.sink_len("alerts.jsonl").unwrap(), 1234);
        assert_eq!(s.sink_len("other").unwrap(), 0);
        assert_eq!(s.cursor("cw").unwrap().as_deref(), Some(&b"pos"[..]));
        assert_eq!(s.object_count().unwrap(), 1);
        assert_eq!(s.prune(2_000, 6_000).unwrap(), 2);
        assert_eq!(s.object_count().unwrap(), 0);
        assert!(!s.alert_seen("rule:evt", 0).unwrap());
    }
}
