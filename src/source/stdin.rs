//! The daemon's standard input (`sources.stdin`): JSON lines, read by a
//! thread and handed out in batches; the source is finished when stdin
//! closes.

use std::io;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::{Body, Item, Poll, Source, SourceError};
use crate::checkpoint::{ObjectId, now_ms};

/// A batch is at most this much text (the lines waiting, up to it).
const BATCH_BYTES: usize = 4 << 20;

pub(crate) struct StdinSource {
    lines: Receiver<Vec<u8>>,
    finished: bool,
    batches: u64,
}

impl StdinSource {
    /// Start the reading thread.
    pub fn start() -> StdinSource {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(10_000);
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut input = io::stdin().lock();
            loop {
                let mut line = Vec::new();
                match input.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break, // end of input: the sender drops
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        StdinSource {
            lines: rx,
            finished: false,
            batches: 0,
        }
    }

    /// Up to [`BATCH_BYTES`] of lines: waits up to a second for the first.
    fn batch(&mut self) -> Option<Vec<u8>> {
        let mut doc = match self.lines.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => {
                self.finished = true;
                return None;
            }
        };
        while doc.len() < BATCH_BYTES {
            match self.lines.try_recv() {
                Ok(line) => doc.extend(line),
                Err(_) => break,
            }
        }
        if doc.last() != Some(&b'\n') {
            doc.push(b'\n');
        }
        self.batches += 1;
        Some(doc)
    }
}

impl Source for StdinSource {
    fn label(&self) -> String {
        "stdin".into()
    }

    fn poll_interval(&self) -> Duration {
        // The wait for a line does the waiting.
        Duration::ZERO
    }

    fn list(&mut self, _poll: &Poll<'_>) -> Result<Vec<Item>, SourceError> {
        Ok(self
            .batch()
            .map(|document| {
                let id = ObjectId {
                    source: "stdin".into(),
                    key: format!("{}-{}", now_ms(), self.batches),
                    etag: String::new(),
                };
                Item {
                    via: "stdin",
                    name: format!("{}@{}", id.source, id.key),
                    id,
                    body: Body::Bytes(document),
                    cursor: None,
                }
            })
            .into_iter()
            .collect())
    }

    fn drained_more(&self) -> bool {
        !self.finished
    }

    fn listing_waits_for_input(&self) -> bool {
        true
    }

    fn finished(&self) -> bool {
        self.finished
    }
}
