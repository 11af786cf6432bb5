//! Where the daemon writes alerts: stdout, or a JSON lines file whose
//! committed length the store keeps (cut back after a crash, followed
//! across rotation).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::DaemonError;
use crate::alert::{Alert, jsonl};
use crate::checkpoint::Store;

/// Where alerts are written.
pub(super) enum Sink {
    Stdout(jsonl::Format),
    /// A JSON-lines file, cut back at start to the length this store
    /// committed, if this store wrote it.
    File {
        file: File,
        path: String,
        len: u64,
        /// (device, inode) of the open file: the path now naming another
        /// file (rotated by renaming) means reopen.
        identity: (u64, u64),
        /// Set by SIGHUP: reopen the path before the next write.
        reopen: Arc<AtomicBool>,
    },
}

/// (device, inode): which file a path names, whatever its name.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// The store's record of which file it wrote under a sink's path.
fn identity_key(path: &str) -> String {
    format!("sink-identity:{path}")
}

impl Sink {
    pub(super) fn open(
        path: Option<&Path>,
        stdout_format: jsonl::Format,
        store: &Store,
        reopen: Arc<AtomicBool>,
    ) -> Result<Sink, DaemonError> {
        let Some(path) = path else {
            return Ok(Sink::Stdout(stdout_format));
        };
        let name = path.display().to_string();
        let err = |source| DaemonError::Sink {
            path: name.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = Self::open_file(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let actual = meta.len();
        let id = identity(&meta);
        let committed = store.sink_len(&name)?;
        let saved: Option<(u64, u64)> = store
            .meta(&identity_key(&name))?
            .and_then(|v| serde_json::from_slice(&v).ok());
        // Cut back only what this store wrote to this very file: never a
        // file a lost or new store knows nothing of (an EFS mount that
        // failed, a relative state dir from another directory), nor one
        // that replaced it.
        let ours = match saved {
            Some(saved) => saved == id,
            // A store from before identities were kept: it did write here
            // if it committed anything.
            None => committed > 0,
        };
        let len = if !ours {
            if actual > 0 {
                tracing::warn!(
                    sink = %name,
                    bytes = actual,
                    "the state store has no record of writing this file (a new or lost \
                     store, or the file was replaced): keeping all of it and appending; \
                     alerts for objects still in the sources may be written again"
                );
            }
            actual
        } else if actual > committed {
            tracing::warn!(
                sink = %name,
                "removing {} bytes of alerts written but not committed before the last stop; \
                 their objects will be read again",
                actual - committed
            );
            file.set_len(committed).map_err(err)?;
            committed
        } else {
            if actual < committed {
                tracing::warn!(
                    sink = %name,
                    "the file is shorter than this store committed (rotated or edited): \
                     appending after what is there"
                );
            }
            actual
        };
        Self::save_identity(store, &name, id)?;
        Ok(Sink::File {
            file,
            path: name,
            len,
            identity: id,
            reopen,
        })
    }

    pub(super) fn open_file(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
    }

    pub(super) fn save_identity(
        store: &Store,
        name: &str,
        id: (u64, u64),
    ) -> Result<(), DaemonError> {
        let bytes = serde_json::to_vec(&id).expect("plain data");
        store.commit_batch(
            &[],
            &[(identity_key(name).as_str(), bytes.as_slice())],
            |_| Ok(()),
        )?;
        Ok(())
    }

    /// Before a write: follow a rotation. A SIGHUP, or the path now naming
    /// another file (renamed away) or none, reopens the path (a new file);
    /// a file cut shorter than written (`copytruncate`) is appended to at
    /// its new end, never past it (which would leave a hole of NULs).
    pub(super) fn follow_rotation(&mut self, store: &Store) -> Result<(), DaemonError> {
        let Sink::File {
            file,
            path,
            len,
            identity: id,
            reopen,
        } = self
        else {
            return Ok(());
        };
        let err = |source| DaemonError::Sink {
            path: path.clone(),
            source,
        };
        let now = std::fs::metadata(&*path).ok().map(|m| identity(&m));
        if reopen.swap(false, Ordering::Relaxed) || now != Some(*id) {
            let fresh = Self::open_file(Path::new(path.as_str())).map_err(err)?;
            let meta = fresh.metadata().map_err(err)?;
            tracing::info!(sink = %path, bytes = meta.len(), "alerts file reopened (rotated)");
            *file = fresh;
            *len = meta.len();
            *id = identity(&meta);
            Self::save_identity(store, path, *id)?;
            return Ok(());
        }
        let actual = file.metadata().map_err(err)?.len();
        if actual < *len {
            tracing::info!(
                sink = %path,
                "alerts file was truncated (copytruncate): appending at its new end"
            );
            *len = actual;
        }
        Ok(())
    }

    /// The `sink` label of its metrics.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Sink::Stdout(_) => "stdout",
            Sink::File { .. } => "jsonl",
        }
    }

    /// Write alerts durably, one at a time as they come; returns the
    /// committed-length update.
    pub(super) fn write(
        &mut self,
        alerts: impl Iterator<Item = Alert>,
    ) -> Result<Option<(String, u64)>, DaemonError> {
        match self {
            Sink::Stdout(format) => {
                let err = |source| DaemonError::Sink {
                    path: "stdout".into(),
                    source,
                };
                let mut out = io::BufWriter::new(io::stdout().lock());
                for a in alerts {
                    jsonl::write(&mut out, &a, *format).map_err(err)?;
                }
                out.flush().map_err(err)?;
                Ok(None)
            }
            Sink::File {
                file, path, len, ..
            } => {
                let err = |source| DaemonError::Sink {
                    path: path.clone(),
                    source,
                };
                use std::io::{Seek, SeekFrom};
                file.seek(SeekFrom::Start(*len)).map_err(err)?;
                let mut out = Counting {
                    inner: io::BufWriter::with_capacity(1 << 20, &mut *file),
                    written: 0,
                };
                for a in alerts {
                    jsonl::write(&mut out, &a, jsonl::Format::Json).map_err(err)?;
                }
                out.inner.flush().map_err(err)?;
                let written = out.written;
                drop(out);
                if written > 0 {
                    file.sync_data().map_err(err)?;
                    *len += written;
                }
                Ok(Some((path.clone(), *len)))
            }
        }
    }
}

/// A writer that counts what it passes on.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
