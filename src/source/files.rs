//! Local files, directories and stdin: the `scan` command's source, and the
//! daemon's embedded default.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Body, Item, Poll, Source, SourceError};
use crate::checkpoint::ObjectId;
use crate::config::FilesSource;
use crate::metrics::events::{EntryUnreadable, InternalEvent};

/// One object to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
    /// An entry under a directory that cannot be read or followed (a
    /// symlink loop, a dangling link, a directory without permission): it
    /// costs only itself, reported where it falls in the listing.
    Unreadable {
        path: PathBuf,
        message: String,
    },
}

impl Input {
    /// The name used in alerts and errors.
    pub fn name(&self) -> String {
        match self {
            Input::File(p) | Input::Unreadable { path: p, .. } => p.display().to_string(),
            Input::Stdin => "<stdin>".into(),
        }
    }

    /// Read the whole object, refusing one larger than `cap` bytes before
    /// reading it (or, for stdin, as soon as it passes the cap).
    pub fn read(&self, cap: u64) -> Result<Vec<u8>, SourceError> {
        let name = self.name();
        let io = |source| SourceError::Io {
            name: name.clone(),
            source,
        };
        match self {
            Input::Unreadable { message, .. } => Err(io(std::io::Error::other(message.clone()))),
            Input::File(p) => {
                let size = std::fs::metadata(p).map_err(io)?.len();
                if size > cap {
                    return Err(SourceError::TooLarge { name, size, cap });
                }
                std::fs::read(p).map_err(io)
            }
            Input::Stdin => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .lock()
                    .take(cap.saturating_add(1))
                    .read_to_end(&mut buf)
                    .map_err(io)?;
                if buf.len() as u64 > cap {
                    return Err(SourceError::TooLarge {
                        name,
                        size: buf.len() as u64,
                        cap,
                    });
                }
                Ok(buf)
            }
        }
    }
}

/// A command-line path that does not exist or cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PathError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Expand command-line paths: files as given, directories recursively
/// (sorted, hidden entries skipped, symlinks followed), `-` as stdin. A
/// path given that does not exist is an error; an entry under a directory
/// that cannot be read becomes an [`Input::Unreadable`] in its place, and
/// the rest is listed.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<Input>, PathError> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(Input::Stdin);
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|source| PathError {
            path: p.display().to_string(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, &mut out);
        } else {
            out.push(Input::File(p.clone()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Input>) {
    let it = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in it {
        match entry {
            Ok(entry) if entry.file_type().is_file() => out.push(Input::File(entry.into_path())),
            Ok(_) => {}
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                let message = match (e.loop_ancestor(), e.io_error()) {
                    (Some(ancestor), _) => {
                        format!("symlink loop back to {}", ancestor.display())
                    }
                    (None, Some(io)) if io.kind() == std::io::ErrorKind::NotFound => {
                        "dangling symlink (its target does not exist)".to_owned()
                    }
                    (None, Some(io)) => io.to_string(),
                    (None, None) => e.to_string(),
                };
                out.push(Input::Unreadable { path, message });
            }
        }
    }
}

/// A directory the daemon watches (`[[sources.files]]`).
pub(crate) struct Watched {
    config: FilesSource,
    /// Entries that could not be read at the last poll (each logged once).
    unreadable: HashSet<PathBuf>,
}

impl Watched {
    pub fn new(config: FilesSource) -> Watched {
        Watched {
            config,
            unreadable: HashSet::new(),
        }
    }
}

/// A local file's identity: size and modification time stand in for an
/// ETag, so a rewritten file is read again.
fn file_object(root: &Path, path: &Path) -> Option<(ObjectId, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?;
    let nanos = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Some((
        ObjectId {
            source: format!("files:{}", root.display()),
            key: path
                .strip_prefix(root)
                .unwrap_or(path)
                .display()
                .to_string(),
            etag: format!("{}-{nanos}", meta.len()),
        },
        mtime,
    ))
}

impl Source for Watched {
    fn label(&self) -> String {
        format!("files:{}", self.config.path.display())
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.config.poll_interval_secs)
    }

    fn list(&mut self, poll: &Poll<'_>) -> Result<Vec<Item>, SourceError> {
        let label = self.label();
        let root = &self.config.path;
        let listed = expand(std::slice::from_ref(root)).map_err(|e| SourceError::Io {
            name: root.display().to_string(),
            source: e.source,
        })?;
        let settled = SystemTime::now() - Duration::from_secs(self.config.settle_secs);
        // An entry that cannot be read (a symlink loop, a dangling link, a
        // directory without permission) costs only itself: logged and
        // counted when it appears, not at every poll.
        let mut still = HashSet::new();
        for input in &listed {
            if let Input::Unreadable { path, message } = input {
                if !self.unreadable.contains(path) {
                    EntryUnreadable {
                        source: &label,
                        path: &path.display().to_string(),
                        message,
                    }
                    .emit(poll.metrics);
                }
                still.insert(path.clone());
            }
        }
        self.unreadable = still;
        Ok(listed
            .into_iter()
            .filter_map(|input| {
                let Input::File(path) = input else {
                    return None;
                };
                let (id, mtime) = file_object(root, &path)?;
                // Perhaps still being written: next poll.
                (poll.once || mtime <= settled).then(|| Item {
                    via: "files",
                    id,
                    name: path.display().to_string(),
                    body: Body::File(path),
                    cursor: None,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_directories_sorted_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for f in ["b/c/2.json", "a.json.gz", ".hidden", "b/1.json"] {
            std::fs::write(dir.path().join(f), "{}").unwrap();
        }
        let got: Vec<_> = expand(&[dir.path().to_path_buf()])
            .unwrap()
            .into_iter()
            .map(|i| match i {
                Input::File(p) => p.strip_prefix(dir.path()).unwrap().display().to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ["a.json.gz", "b/1.json", "b/c/2.json"]);
        assert!(expand(&[dir.path().join("missing")]).is_err());
        assert_eq!(expand(&["-".into()]).unwrap(), [Input::Stdin]);
    }

    /// A symlink loop, a dangling link and an unreadable directory under a
    /// watched directory each cost only themselves: listed in place as
    /// unreadable, with a reason, and every other file is still listed.
    #[test]
    fn bad_entries_cost_only_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/loop")).unwrap();
        std::fs::write(d.join("a/1.json"), "{}").unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("a/loop/back")).unwrap();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("b-dangling")).unwrap();
        std::fs::create_dir_all(d.join("c-locked")).unwrap();
        std::fs::write(d.join("c-locked/hidden.json"), "{}").unwrap();
        std::fs::write(d.join("z.json"), "{}").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("c-locked"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        // Root reads any directory: the permission case only holds for others.
        let root = std::fs::read_dir(d.join("c-locked")).is_ok();
        let got = expand(&[d.to_path_buf()]).unwrap();
        std::fs::set_permissions(d.join("c-locked"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let files: Vec<String> = got
            .iter()
            .filter_map(|i| match i {
                Input::File(p) => Some(p.strip_prefix(d).unwrap().display().to_string()),
                _ => None,
            })
            .collect();
        let bad: Vec<(String, String)> = got
            .iter()
            .filter_map(|i| match i {
                Input::Unreadable { path, message } => Some((
                    path.strip_prefix(d).unwrap().display().to_string(),
                    message.clone(),
                )),
                _ => None,
            })
            .collect();
        assert!(files.contains(&"a/1.json".to_string()), "{files:?}");
        assert!(files.contains(&"z.json".to_string()), "{files:?}");
        assert!(
            bad.iter()
                .any(|(p, m)| p == "a/loop/back" && m.contains("loop")),
            "{bad:?}"
        );
        assert!(
            bad.iter()
                .any(|(p, m)| p == "b-dangling" && m.contains("dangling")),
            "{bad:?}"
        );
        if !root {
            assert!(bad.iter().any(|(p, _)| p == "c-locked"), "{bad:?}");
        }
        let unreadable = got
            .iter()
            .find(|i| matches!(i, Input::Unreadable { .. }))
            .unwrap();
        assert!(unreadable.read(1 << 20).is_err());
    }

    #[test]
    fn refuses_files_over_the_cap_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        std::fs::write(&f, vec![b'x'; 100]).unwrap();
        match Input::File(f).read(10) {
            Err(SourceError::TooLarge {
                size: 100, cap: 10, ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
