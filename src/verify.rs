//! `trailwatch verify`: CloudTrail log-file integrity validation over a
//! bucket, printed for a person (or as JSON lines), with an exit status
//! for scripts.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use trailwatch::integrity::chain::Finding;
use trailwatch::integrity::verify::{Event, LogStatus, Summary, VerifyOptions, verify};

use crate::cli::{EXIT_INPUT_ERRORS, EXIT_MATCHED, EXIT_OK, EXIT_USAGE};

pub const VERIFY_EXAMPLES: &str = "\
Examples:
  trailwatch verify s3://my-trail-bucket --start 2026-11-01 --end 2026-11-20T12:00:00Z
  trailwatch verify s3://my-trail-bucket/prefix --account 111122223333 --region eu-west-1
  trailwatch verify s3://bucket --public-keys ./keys    # FINGERPRINT.der files, no CloudTrail call

Exit status: 0 everything in the range verifies; 1 tampering found (a log
modified, deleted, appended to or not listed; a digest deleted, altered or
invalid; hours no digest covers); 2 usage error; 3 verification incomplete
(the bucket or keys unreadable, a listing failed, logs that could not be read
or verified, no digests).";

/// Options of `trailwatch verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The trail's bucket, and its key prefix if it has one:
    /// `s3://BUCKET[/PREFIX]`.
    #[arg(value_name = "s3://BUCKET[/PREFIX]")]
    pub target: String,
    /// An S3-compatible endpoint instead of AWS's (for tests and
    /// gateways). CloudTrail's own endpoint (ListPublicKeys) is AWS's, or
    /// `AWS_ENDPOINT_URL_CLOUDTRAIL`.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Read CloudTrail's public keys from `FINGERPRINT.der` files (PKCS#1
    /// DER, as ListPublicKeys returns them) instead of calling
    /// ListPublicKeys: for offline and air-gapped use.
    #[arg(long, value_name = "DIR")]
    pub public_keys: Option<PathBuf>,
    /// Verify log files delivered from this time (`2026-11-20T10:00:00Z`
    /// or `2026-11-20`), and the digests covering them. Default: 24 hours
    /// before --end.
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// ... up to this time. Default: two hours ago (the newest hours'
    /// digests are not written yet: log files after the newest digest are
    /// pending, and the run is incomplete).
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// Only this account's chains (organisation trails hold many).
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// Only this region's chains.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Objects fetched and hashed at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// Largest log file read, in compressed bytes; a larger one is
    /// reported as not checked.
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub max_log_bytes: u64,
    /// Print every valid digest and log too, not only the problems.
    #[arg(long)]
    pub verbose: bool,
    /// `text` (tab-separated lines, like `aws cloudtrail validate-logs`) or
    /// `json` (one object per result, then the summary).
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::cli::FormatArg,
}

/// A time argument: a full `eventTime`-like time or a date.
fn parse_time(s: &str) -> Option<i64> {
    trailwatch::time::parse_event_time(s).or_else(|| {
        (s.len() == 10)
            .then(|| trailwatch::time::parse_event_time(&format!("{s}T00:00:00Z")))
            .flatten()
    })
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let usage = |m: &str| {
        eprintln!("error: {m}");
        Ok(ExitCode::from(EXIT_USAGE))
    };
    let Some(rest) = args.target.strip_prefix("s3://") else {
        return usage("the target is s3://BUCKET[/PREFIX]");
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return usage("the target is s3://BUCKET[/PREFIX]");
    }
    let end_ms = match &args.end {
        Some(t) => match parse_time(t) {
            Some(ms) => ms,
            None => return usage("--end: not a time (2026-11-20T10:00:00Z or 2026-11-20)"),
        },
        // Two hours back by default: the newest hours' digests are not
        // all written yet, and a default run should be a complete one.
        None => trailwatch::time::now_ms() as i64 - 2 * 3_600_000,
    };
    let start_ms = match &args.start {
        Some(t) => match parse_time(t) {
            Some(ms) => ms,
            None => return usage("--start: not a time (2026-11-20T10:00:00Z or 2026-11-20)"),
        },
        None => end_ms - 86_400_000,
    };
    if start_ms > end_ms {
        return usage("--start is after --end");
    }
    if args.concurrency == 0 {
        return usage("--concurrency must be at least 1");
    }
    let opts = VerifyOptions {
        bucket: bucket.to_owned(),
        prefix: prefix.trim_end_matches('/').to_owned(),
        endpoint_url: args.endpoint_url.clone(),
        public_keys: args.public_keys.clone(),
        start_ms,
        end_ms,
        account: args.account.clone(),
        region: args.region.clone(),
        concurrency: args.concurrency,
        max_log_bytes: args.max_log_bytes,
        now_ms: trailwatch::time::now_ms() as i64,
    };
    let json = matches!(args.format, crate::cli::FormatArg::Json);
    let verbose = args.verbose;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let mut out = std::io::stdout().lock();
    let mut print = |e: &Event| {
        let valid = matches!(
            e,
            Event::Digest {
                finding: Finding::Valid { .. },
                ..
            } | Event::Log {
                status: LogStatus::Valid | LogStatus::Pending,
                ..
            }
        );
        if valid && !verbose {
            return;
        }
        let line = if json { json_line(e) } else { text_line(e) };
        // A closed pipe (`| head`) ends the output, not the walk.
        let _ = writeln!(out, "{line}");
    };
    let summary = match rt.block_on(verify(&opts, &mut print)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_INPUT_ERRORS));
        }
    };
    let took = started.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({"summary": summary_json(&summary), "seconds": took})
        );
    } else {
        print_summary(&opts, &summary, took);
    }
    let code = if summary.tampered() {
        EXIT_MATCHED
    } else if summary.incomplete() {
        EXIT_INPUT_ERRORS
    } else {
        EXIT_OK
    };
    Ok(ExitCode::from(code))
}

/// Attacker-named keys are printed through `clean` (no control
/// characters: a key cannot rewrite the terminal or forge a line).
fn clean(s: &str) -> String {
    trailwatch::alert::jsonl::clean(Some(s))
}

fn text_line(e: &Event) -> String {
    match e {
        Event::Digest { bucket, finding } => {
            let at = |k: &str| format!("s3://{bucket}/{}", clean(k));
            match finding {
                Finding::Valid { key } => format!("Digest file\t{}\tvalid", at(key)),
                Finding::Invalid { key, problem } => format!(
                    "Digest file\t{}\t{}: {}",
                    at(key),
                    if finding.is_unchecked() {
                        "NOT CHECKED"
                    } else {
                        "INVALID"
                    },
                    clean(&problem.to_string())
                ),
                Finding::Deleted { key } => {
                    format!("Digest file\t{}\tINVALID: not found (deleted)", at(key))
                }
                Finding::Altered { key } => format!(
                    "Digest file\t{}\tINVALID: not what the next digest recorded (altered or replaced)",
                    at(key)
                ),
                Finding::Gap {
                    after,
                    before,
                    hours,
                } => format!(
                    "Digest chain\t{} .. {}\tINVALID: about {hours} more digest(s) deleted between them (their names went with them)",
                    at(after),
                    at(before)
                ),
                Finding::ChainStart { key } => format!(
                    "Digest chain\t{}\tstarts here (validation or logging was started or restarted)",
                    at(key)
                ),
            }
        }
        Event::Log {
            bucket,
            key,
            status,
        } => {
            let what = match status {
                LogStatus::Valid => "valid".to_owned(),
                LogStatus::Modified => "INVALID: hash value doesn't match (modified)".to_owned(),
                LogStatus::Appended => {
                    "INVALID: data appended after the first gzip member".to_owned()
                }
                LogStatus::Unreadable => "INVALID: not gzip or damaged (modified)".to_owned(),
                LogStatus::Bomb => format!(
                    "INVALID: inflates past {} GiB (not a CloudTrail log file)",
                    trailwatch::integrity::MAX_LOG_INFLATED >> 30
                ),
                LogStatus::Deleted => "INVALID: not found (deleted)".to_owned(),
                LogStatus::NotListed => {
                    "INVALID: listed by no digest (added after delivery)".to_owned()
                }
                LogStatus::Stray => {
                    "INVALID: not where CloudTrail delivers (outside its day folders; listed by no digest)"
                        .to_owned()
                }
                LogStatus::Unverified => {
                    "NOT VERIFIED: no verified digest covers its hour".to_owned()
                }
                LogStatus::Pending => "pending: its digest is not written yet".to_owned(),
                LogStatus::TooLarge(n) => format!("NOT CHECKED: {n} bytes, over --max-log-bytes"),
                LogStatus::Error(m) => format!("NOT CHECKED: {}", clean(m)),
            };
            format!("Log file\ts3://{bucket}/{}\t{what}", clean(key))
        }
        Event::Uncovered {
            chain,
            last_key,
            next_key,
            hours,
        } => {
            if last_key.is_empty() {
                format!(
                    "Digest chain\t{}\tNO DIGESTS in the range, and log files there (validation off, or every digest deleted)",
                    clean(chain)
                )
            } else if next_key.is_empty() {
                format!(
                    "Digest chain\t{}\tNOT COVERED: no digest for about {hours} hour(s) after {} (the newest digests deleted, or logging stopped)",
                    clean(chain),
                    clean(last_key)
                )
            } else {
                format!(
                    "Digest chain\t{}\tNOT COVERED: about {hours} hour(s) between {} and the chain starting again at {} (logging or validation stopped, or digests deleted)",
                    clean(chain),
                    clean(last_key),
                    clean(next_key)
                )
            }
        }
        Event::Error { what, message } => {
            format!("Listing\t{}\tNOT CHECKED: {}", clean(what), clean(message))
        }
    }
}

fn json_line(e: &Event) -> String {
    let v = match e {
        Event::Digest { bucket, finding } => {
            let (status, key, extra) = match finding {
                Finding::Valid { key } => ("valid", key.clone(), serde_json::Value::Null),
                Finding::Invalid { key, problem } => (
                    if finding.is_unchecked() {
                        "not_checked"
                    } else {
                        "invalid"
                    },
                    key.clone(),
                    problem.to_string().into(),
                ),
                Finding::Deleted { key } => ("deleted", key.clone(), serde_json::Value::Null),
                Finding::Altered { key } => ("altered", key.clone(), serde_json::Value::Null),
                Finding::Gap {
                    after,
                    before,
                    hours,
                } => (
                    "gap",
                    before.clone(),
                    serde_json::json!({"after": after, "hours": hours}),
                ),
                Finding::ChainStart { key } => {
                    ("chain_start", key.clone(), serde_json::Value::Null)
                }
            };
            serde_json::json!({"object": "digest", "bucket": bucket, "key": key, "status": status, "detail": extra})
        }
        Event::Log {
            bucket,
            key,
            status,
        } => {
            let (s, detail) = match status {
                LogStatus::Valid => ("valid", serde_json::Value::Null),
                LogStatus::Modified => ("modified", serde_json::Value::Null),
                LogStatus::Appended => ("appended", serde_json::Value::Null),
                LogStatus::Unreadable => ("unreadable", serde_json::Value::Null),
                LogStatus::Bomb => ("bomb", serde_json::Value::Null),
                LogStatus::Deleted => ("deleted", serde_json::Value::Null),
                LogStatus::NotListed => ("not_listed", serde_json::Value::Null),
                LogStatus::Unverified => ("not_verified", serde_json::Value::Null),
                LogStatus::Stray => ("stray", serde_json::Value::Null),
                LogStatus::Pending => ("pending", serde_json::Value::Null),
                LogStatus::TooLarge(n) => ("not_checked", serde_json::json!({"bytes": n})),
                LogStatus::Error(m) => ("not_checked", m.clone().into()),
            };
            serde_json::json!({"object": "log", "bucket": bucket, "key": key, "status": s, "detail": detail})
        }
        Event::Uncovered {
            chain,
            last_key,
            next_key,
            hours,
        } => serde_json::json!({
            "object": "chain", "bucket": null, "key": chain,
            "status": if last_key.is_empty() { "no_digests" } else { "not_covered" },
            "detail": {"last_key": last_key, "next_key": next_key, "hours": hours},
        }),
        Event::Error { what, message } => serde_json::json!({
            "object": "listing", "bucket": null, "key": what, "status": "not_checked", "detail": message,
        }),
    };
    clean_json(v).to_string()
}

/// Every string of `v` through [`clean`]: JSON allows U+2028, U+0085 and
/// bidi controls raw, and a line-splitting reader or a terminal would act
/// on them.
fn clean_json(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(clean(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(clean_json).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, clean_json(v))).collect()),
        other => other,
    }
}

fn summary_json(s: &Summary) -> serde_json::Value {
    serde_json::json!({
        "chains": s.chains,
        "digests_valid": s.digests_valid,
        "digests_invalid": s.digests_bad,
        "logs_valid": s.logs_valid,
        "logs_invalid": s.logs_bad,
        "logs_not_checked": s.logs_unchecked,
        "chains_not_covered": s.uncovered,
        "logs_pending": s.logs_pending,
        "errors": s.errors,
        "bytes_hashed": s.bytes_hashed,
    })
}

fn print_summary(opts: &VerifyOptions, s: &Summary, took: f64) {
    println!();
    println!(
        "Results for log files delivered {} to {}, {} chain(s):",
        trailwatch::time::iso_time(opts.start_ms),
        trailwatch::time::iso_time(opts.end_ms),
        s.chains
    );
    if s.chains == 0 {
        println!(
            "No digest chains found: is log-file validation on for this trail, and the prefix right?"
        );
        return;
    }
    println!(
        "{}/{} digest files valid{}",
        s.digests_valid,
        s.digests_valid + s.digests_bad,
        if s.digests_bad > 0 {
            format!(", {} INVALID", s.digests_bad)
        } else {
            String::new()
        }
    );
    println!(
        "{}/{} log files valid{}{}",
        s.logs_valid,
        s.logs_valid + s.logs_bad + s.logs_unchecked,
        if s.logs_bad > 0 {
            format!(", {} INVALID", s.logs_bad)
        } else {
            String::new()
        },
        if s.logs_unchecked > 0 {
            format!(", {} NOT CHECKED or NOT VERIFIED", s.logs_unchecked)
        } else {
            String::new()
        }
    );
    if s.uncovered > 0 {
        println!("{} span(s) of hours no digest covers", s.uncovered);
    }
    if s.logs_pending > 0 {
        println!(
            "{} log file(s) delivered after the newest digest: not digested yet, verify again in an hour",
            s.logs_pending
        );
    }
    if s.errors > 0 {
        println!(
            "{} listing(s) failed: what they hold is NOT CHECKED",
            s.errors
        );
    }
    println!(
        "{:.1} MiB of log content hashed in {took:.1} s",
        s.bytes_hashed as f64 / f64::from(1 << 20)
    );
}
