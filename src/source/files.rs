//! Local files, directories and stdin: the `scan` command's source, and the
//! daemon's embedded default.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::SourceError;

/// One object to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    /// The name used in alerts and errors.
    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
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
/// (sorted, hidden entries skipped, symlinks followed), `-` as stdin.
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
            walk(p, &mut out)?;
        } else {
            out.push(Input::File(p.clone()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Input>) -> Result<(), PathError> {
    let it = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in it {
        let entry = entry.map_err(|e| PathError {
            path: e.path().unwrap_or(dir).display().to_string(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
        })?;
        if entry.file_type().is_file() {
            out.push(Input::File(entry.into_path()));
        }
    }
    Ok(())
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
                Input::Stdin => "-".into(),
            })
            .collect();
        assert_eq!(got, ["a.json.gz", "b/1.json", "b/c/2.json"]);
        assert!(expand(&[dir.path().join("missing")]).is_err());
        assert_eq!(expand(&["-".into()]).unwrap(), [Input::Stdin]);
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
