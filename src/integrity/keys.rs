//! CloudTrail's public keys, by fingerprint: PKCS#1 DER RSA public keys,
//! as `ListPublicKeys` returns them, or read from a directory of
//! `FINGERPRINT.der` files for offline and air-gapped use.

use std::collections::HashMap;
use std::path::Path;

/// Why the keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no FINGERPRINT.der files in it")]
    Empty(String),
    #[error("ListPublicKeys: {0}")]
    List(String),
}

/// Largest key file read: an RSA-8192 public key is about 1 KiB of DER.
const MAX_KEY_BYTES: u64 = 16 << 10;

/// Public keys by fingerprint (lower-case hex).
#[derive(Clone, Debug, Default)]
pub struct PublicKeys {
    keys: HashMap<String, Vec<u8>>,
}

impl PublicKeys {
    /// Keys given as (fingerprint, PKCS#1 DER) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Vec<u8>)>) -> PublicKeys {
        PublicKeys {
            keys: pairs
                .into_iter()
                .map(|(f, k)| (f.to_ascii_lowercase(), k))
                .collect(),
        }
    }

    /// Every `FINGERPRINT.der` in `dir` (the fingerprint is the file name).
    pub fn from_dir(dir: &Path) -> Result<PublicKeys, KeyError> {
        let read_err = |path: &Path, source| KeyError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut pairs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
            let path = entry.map_err(|e| read_err(dir, e))?.path();
            if path.extension().is_none_or(|e| e != "der") {
                continue;
            }
            let Some(fingerprint) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let len = std::fs::metadata(&path)
                .map_err(|e| read_err(&path, e))?
                .len();
            if len > MAX_KEY_BYTES {
                return Err(read_err(
                    &path,
                    std::io::Error::other(format!("{len} bytes: not a public key")),
                ));
            }
            let der = std::fs::read(&path).map_err(|e| read_err(&path, e))?;
            pairs.push((fingerprint.to_owned(), der));
        }
        if pairs.is_empty() {
            return Err(KeyError::Empty(dir.display().to_string()));
        }
        Ok(PublicKeys::from_pairs(pairs))
    }

    /// The keys valid at some time between `start` and `end` (seconds since
    /// the epoch), from CloudTrail's `ListPublicKeys`, every page.
    pub async fn list(
        client: &aws_sdk_cloudtrail::Client,
        start: i64,
        end: i64,
    ) -> Result<PublicKeys, KeyError> {
        use aws_sdk_cloudtrail::primitives::DateTime;
        let mut pairs = Vec::new();
        let mut token: Option<String> = None;
        // A loop bounded by pages, not by what the server says: a server
        // that always answers with a token must not hold the walk forever.
        for _ in 0..1000 {
            let out = client
                .list_public_keys()
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    KeyError::List(
                        aws_sdk_cloudtrail::error::DisplayErrorContext(&e)
                            .to_string()
                            .chars()
                            .take(300)
                            .collect(),
                    )
                })?;
            for k in out.public_key_list() {
                if let (Some(f), Some(v)) = (k.fingerprint(), k.value()) {
                    pairs.push((f.to_owned(), v.as_ref().to_vec()));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(PublicKeys::from_pairs(pairs))
    }

    /// Add `other`'s keys (a refresh from `ListPublicKeys`).
    pub fn merge(&mut self, other: PublicKeys) {
        self.keys.extend(other.keys);
    }

    /// The key with `fingerprint` (lower-case hex).
    pub fn get(&self, fingerprint: &str) -> Option<&[u8]> {
        self.keys.get(fingerprint).map(Vec::as_slice)
    }
}
