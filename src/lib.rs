//! trailwatch: watches AWS CloudTrail for IAM security events.
//!
//! CloudTrail log files are decoded, parsed with simd-json into zero-copy
//! record views, and matched against Sigma rules in parallel; matches
//! become alerts.
//!
//! # Layout
//!
//! One module per stage of the data flow, in the order data moves:
//!
//! - [`source`]: where objects come from (local files and stdin; S3, SQS
//!   and CloudWatch Logs in the daemon), each behind the one
//!   [`source::Source`] trait: it lists [`source::Item`]s, fetches remote
//!   ones, keeps what is in flight claimed and releases what is committed.
//! - [`decode`]: gzip (libdeflate whole-buffer, flate2 to recover damaged
//!   data), size caps against gzip bombs, padding for simd-json.
//! - [`parse`]: records delimited from the real JSON structure (never by a
//!   text search: nested look-alikes of a record stay nested), every layout
//!   (native `Records`, JSON lines, arrays, several documents, digests), the
//!   recovery and streaming walk, and the [`parse::Record`] view rules query
//!   by field path.
//! - [`rules`]: Sigma rules read by rsigma-parser, compiled to matchers over
//!   records, indexed by eventName; the built-in pack lives in `rules/`.
//! - [`correlate`]: Sigma correlation rules (event_count, value_count,
//!   temporal, temporal_ordered) in eventTime windows with bounded state.
//! - [`posture`]: the credential inventory the stream keeps (keys, console
//!   users, cross-account roles: created, last used), and the alerts only
//!   that memory can raise (a dormant key used again, a key past rotation).
//! - [`alert`]: what a match becomes ([`alert::Alert`]) and its sinks
//!   (JSON lines, text, email, webhook, PagerDuty, through a durable
//!   outbox).
//! - [`pipeline`]: one object through the stages, and the parallel `scan`
//!   driver with ordered output and a summary.
//! - [`metrics`] and [`http`]: the Prometheus registry, and the listener
//!   serving `/metrics`, `/healthz` and `/readyz`.
//! - [`integrity`]: CloudTrail log-file integrity validation (signed,
//!   chained hourly digests and the log hashes they list): online in the
//!   daemon as digests arrive, and behind `trailwatch verify`.
//! - [`checkpoint`]: durable progress (processed objects, cursors, alert
//!   dedup keys, correlation windows) in one redb file.
//! - [`daemon`]: `trailwatch run`: each source on a thread of its own
//!   (a long poll or a slow listing holds only itself) handing fetched
//!   batches to one engine, which processes, correlates and commits them
//!   in arrival order; it drives sources through the trait and never
//!   names a kind.
//! - [`time`]: the clock and calendar arithmetic (eventTime, ISO times,
//!   the S3 layout's dates), shared by every stage.
//! - `corpus` (only with the `corpus` feature): a development tool, not a
//!   stage: the synthetic corpus generator behind `trailwatch gen`, which
//!   the benches and tests read. A production build carries none of it.
//!
//! The binary (`src/main.rs`) owns the command line (clap, `anyhow`,
//! printing), signal handling, the throughput bench (`trailwatch bench`)
//! and the demo files; the library returns typed errors and never exits
//! the process.

// The library's public surface is what the binary, tests and benches use;
// the rest is `pub(crate)` so the compiler reports dead code. Doc comments
// on public items still link the private ones they rely on: read these docs
// with `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod alert;
pub mod checkpoint;
pub mod config;
#[cfg(feature = "corpus")]
pub mod corpus;
pub mod correlate;
pub mod daemon;
pub mod decode;
pub mod http;
pub mod integrity;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod posture;
pub mod rules;
pub mod source;
pub mod time;
