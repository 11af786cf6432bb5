//! `trailwatch posture`: the account's IAM posture from the IAM API (the
//! credential report, the password policy, the account summary, each
//! user's policies), one finding per line, with an exit status for
//! scripts.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use trailwatch::posture::iam::{Model, Thresholds, judge, read};

use crate::cli::{EXIT_INPUT_ERRORS, EXIT_MATCHED, EXIT_OK, EXIT_USAGE};

pub const POSTURE_EXAMPLES: &str = "\
Examples:
  trailwatch posture
  trailwatch posture --config /etc/trailwatch/trailwatch.toml --format json

Findings: root_mfa_disabled, root_access_key_present, password_policy_weak,
console_user_without_mfa, access_key_not_rotated, credential_unused,
user_with_direct_policy, user_with_inline_policy. Ages come from
[inventory] dormant_days and rotation_days (45 and 90).

Exit status: 0 no finding; 1 findings; 2 usage error; 3 the IAM API could
not be read.";

/// Options of `trailwatch posture`.
#[derive(Debug, clap::Args)]
pub struct PostureArgs {
    /// The daemon's configuration, for `[inventory]`'s ages.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// An IAM-compatible endpoint instead of AWS's (tests).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// `text` (aligned columns) or `json` (one object per finding).
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::cli::FormatArg,
}

pub fn run(args: PostureArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(p) => match trailwatch::config::Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        },
        None => trailwatch::config::Config::default(),
    };
    let t = Thresholds {
        unused_days: config.inventory.dormant_days as i64,
        rotation_days: config.inventory.rotation_days as i64,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answers = rt.block_on(async {
        // IAM is global: its endpoint lives in us-east-1.
        let shared =
            trailwatch::source::aws_config_for("us-east-1", args.endpoint_url.as_deref()).await;
        read(&aws_sdk_iam::Client::new(&shared)).await
    });
    let answers = match answers {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_INPUT_ERRORS));
        }
    };
    let now = trailwatch::time::now_event_ms();
    let findings = judge(&Model::of(&answers, now), t, now);
    let mut out = std::io::stdout().lock();
    for f in &findings {
        match args.format {
            crate::cli::FormatArg::Json => {
                serde_json::to_writer(&mut out, f)?;
                writeln!(out)?;
            }
            crate::cli::FormatArg::Text => writeln!(
                out,
                "{:<26} {:<9} {:<40} {} | fix: {}",
                f.finding,
                f.level.as_str(),
                trailwatch::alert::jsonl::clean(Some(&f.principal)),
                trailwatch::alert::jsonl::clean(Some(&f.evidence)),
                f.fix
            )?,
        }
    }
    eprintln!("{} finding(s)", findings.len());
    Ok(ExitCode::from(if findings.is_empty() {
        EXIT_OK
    } else {
        EXIT_MATCHED
    }))
}
