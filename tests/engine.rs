//! The daemon's engine driven through a source of the test's own, in
//! process (no network, no signal handlers): what a source lists is
//! processed, written and committed once, then acknowledged; a listing that
//! fails is counted and tried again at the next run; a stop request ends a
//! long-running daemon with everything committed (the engine never exits
//! the process itself).

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use trailwatch::checkpoint::ObjectId;
use trailwatch::config::Config;
use trailwatch::daemon::{RunOptions, RunStats, Signals, run_with};
use trailwatch::rules::RuleSet;
use trailwatch::source::{Body, Item, Poll, Source, SourceError};

/// Hands out one batch per listing; records what it was told.
struct Fake {
    batches: VecDeque<Vec<(String, Vec<u8>)>>,
    /// Fail this many listings first.
    failures: usize,
    /// Ask for a stop once something is acknowledged.
    stop_after: Option<Signals>,
    listed: Vec<ObjectId>,
    acked: Arc<Mutex<Vec<String>>>,
    /// Its own label (two fakes side by side).
    label: &'static str,
    /// A listing that waits for this (up to 30 s) first; `starved` is set
    /// when it never comes.
    gate: Option<(mpsc::Receiver<()>, Arc<AtomicBool>)>,
    /// Sent when something is acknowledged.
    on_ack: Option<mpsc::Sender<()>>,
}

impl Source for Fake {
    fn label(&self) -> String {
        self.label.into()
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(50)
    }

    fn list(&mut self, _poll: &Poll<'_>) -> Result<Vec<Item>, SourceError> {
        if let Some((gate, starved)) = self.gate.take()
            && gate.recv_timeout(Duration::from_secs(30)).is_err()
        {
            starved.store(true, Ordering::Relaxed);
        }
        if self.failures > 0 {
            self.failures -= 1;
            return Err(SourceError::Remote {
                name: "fake".into(),
                message: "unavailable".into(),
            });
        }
        let batch = self.batches.pop_front().unwrap_or_default();
        Ok(batch
            .into_iter()
            .map(|(key, bytes)| {
                let id = ObjectId {
                    source: self.label.into(),
                    key: key.clone(),
                    etag: "1".into(),
                };
                self.listed.push(id.clone());
                Item {
                    via: "files",
                    id,
                    name: format!("fake://{key}"),
                    body: Body::Bytes(bytes),
                    cursor: None,
                }
            })
            .collect())
    }

    fn ack(&mut self, _rt: &tokio::runtime::Runtime, committed: &dyn Fn(&ObjectId) -> bool) {
        let mut acked = self.acked.lock().unwrap();
        self.listed.retain(|id| {
            let done = committed(id);
            if done {
                acked.push(id.key.clone());
            }
            !done
        });
        if !acked.is_empty()
            && let Some(tx) = &self.on_ack
        {
            let _ = tx.send(());
        }
        if !acked.is_empty()
            && let Some(s) = &self.stop_after
        {
            s.stop();
        }
    }

    fn drained_more(&self) -> bool {
        !self.batches.is_empty()
    }
}

fn example() -> Vec<u8> {
    std::fs::read(
        common::fixtures()
            .join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json"),
    )
    .unwrap()
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.sources.files.clear();
    c.state.dir = dir.join("state");
    c.output.jsonl_path = Some(dir.join("alerts.jsonl"));
    c.http.listen = String::new();
    c
}

fn run(dir: &std::path::Path, fake: Fake, once: bool, signals: Signals) -> RunStats {
    let rules = RuleSet::builtin();
    let mut fake = Some(fake);
    run_with(&config(dir), &rules, RunOptions { once, signals }, |_| {
        vec![Box::new(fake.take().unwrap()) as Box<dyn Source>]
    })
    .unwrap()
}

fn fake(batches: Vec<Vec<(String, Vec<u8>)>>, acked: &Arc<Mutex<Vec<String>>>) -> Fake {
    Fake {
        batches: batches.into(),
        failures: 0,
        stop_after: None,
        listed: Vec::new(),
        acked: Arc::clone(acked),
        label: "fake:test",
        gate: None,
        on_ack: None,
    }
}

#[test]
fn listed_items_are_processed_committed_once_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let batches = || {
        vec![
            vec![("a".to_string(), example())],
            vec![("b".to_string(), b"not json\n".to_vec())],
        ]
    };
    let stats = run(
        dir.path(),
        fake(batches(), &acked),
        true,
        Signals::default(),
    );
    assert_eq!(stats.objects, 2);
    assert!(stats.alerts_written > 0);
    assert_eq!(
        stats.errors, 1,
        "the object that is not JSON is one counted error"
    );
    let written = common::alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    assert_eq!(written.len() as u64, stats.alerts_written);
    assert!(written.iter().all(|a| a["source"] == "fake://a"));
    assert_eq!(
        *acked.lock().unwrap(),
        ["a", "b"],
        "acknowledged once committed"
    );
    // The same items again: known, skipped, nothing written twice.
    let again = run(
        dir.path(),
        fake(batches(), &acked),
        true,
        Signals::default(),
    );
    assert_eq!(
        (again.objects, again.skipped_known, again.alerts_written),
        (0, 2, 0)
    );
}

#[test]
fn a_failed_listing_is_counted_and_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut f = fake(vec![vec![("a".to_string(), example())]], &acked);
    f.failures = 1;
    let first = run(dir.path(), f, true, Signals::default());
    assert_eq!((first.objects, first.errors), (0, 1));
    let second = run(
        dir.path(),
        fake(vec![vec![("a".to_string(), example())]], &acked),
        true,
        Signals::default(),
    );
    assert_eq!((second.objects, second.errors), (1, 0));
    assert!(second.alerts_written > 0);
}

#[test]
fn a_stop_request_ends_a_running_daemon_with_everything_committed() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let signals = Signals::default();
    let mut f = fake(
        vec![
            vec![("a".to_string(), example())],
            vec![("b".to_string(), example())],
        ],
        &acked,
    );
    f.stop_after = Some(signals.clone());
    // Not `once`: only the stop request ends it, asked once the first item
    // is committed and acknowledged; the second is left for the next run.
    let stats = run(dir.path(), f, false, signals);
    assert_eq!(stats.objects, 1);
    assert_eq!(*acked.lock().unwrap(), ["a"]);
    let again = run(
        dir.path(),
        fake(
            vec![vec![
                ("a".to_string(), example()),
                ("b".to_string(), example()),
            ]],
            &acked,
        ),
        true,
        Signals::default(),
    );
    assert_eq!((again.objects, again.skipped_known), (1, 1));
}

/// Sources run side by side: a listing that hangs (a slow bucket, a long
/// poll) holds only its own source. The first source's listing waits
/// until the second source's item is committed and acknowledged: in one
/// sequential loop that never happens (the second source waits behind the
/// first), so the first source gives up after 30 s and says it starved.
#[test]
fn a_source_stuck_in_its_listing_holds_up_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (release, gate) = mpsc::channel();
    let starved = Arc::new(AtomicBool::new(false));
    let mut slow = fake(vec![vec![("slow".to_string(), example())]], &acked);
    slow.label = "fake:slow";
    slow.gate = Some((gate, Arc::clone(&starved)));
    let mut quick = fake(vec![vec![("quick".to_string(), example())]], &acked);
    quick.label = "fake:quick";
    quick.on_ack = Some(release);
    let rules = RuleSet::builtin();
    let mut both = Some((slow, quick));
    let stats = run_with(
        &config(dir.path()),
        &rules,
        RunOptions {
            once: true,
            signals: Signals::default(),
        },
        |_| {
            let (slow, quick) = both.take().unwrap();
            vec![Box::new(slow) as Box<dyn Source>, Box::new(quick)]
        },
    )
    .unwrap();
    assert!(
        !starved.load(Ordering::Relaxed),
        "the quick source waited behind the stuck one"
    );
    assert_eq!(stats.objects, 2);
    assert_eq!(*acked.lock().unwrap(), ["quick", "slow"]);
}
