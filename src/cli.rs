//! Command-line interface: the subcommands, their options (doc comments
//! become `--help`), and what each runs. `main.rs` only parses, sets up
//! logging and calls [`run`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use trailwatch::alert::jsonl::Format;
use trailwatch::pipeline::{self, Limits, ScanOptions};
use trailwatch::rules;
use trailwatch::source::files;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: `--fail-on-match` and at least one rule matched.
pub const EXIT_MATCHED: u8 = 1;
/// Exit status: bad usage or configuration (unknown option, missing path,
/// no loadable rules).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: input errors occurred and `--strict` was given.
pub const EXIT_INPUT_ERRORS: u8 = 3;

/// trailwatch watches AWS CloudTrail for IAM security events: root usage,
/// missing MFA, new access keys, policy and trail tampering, bursts of
/// denied calls.
#[derive(Debug, Parser)]
#[command(name = "trailwatch", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` env-filter syntax (also read from RUST_LOG).
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `scan --format`: the library's [`Format`], as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One JSON object per line.
    Json,
    /// One readable line per alert.
    Text,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Json => Format::Json,
            FormatArg::Text => Format::Text,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan CloudTrail log files and print rule matches.
    #[command(after_help = SCAN_EXAMPLES)]
    Scan(ScanArgs),
    /// Run the daemon: watch sources for new CloudTrail files and alert,
    /// until SIGTERM/SIGINT. Without --config: watch ./cloudtrail, keep
    /// state in ./trailwatch-state, print alerts on stdout.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Check and test Sigma rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Generate a deterministic synthetic CloudTrail corpus with known
    /// attacks (and `expected.jsonl`, the alerts they must raise), for
    /// benchmarks and tests. Built with `--features corpus` only.
    #[cfg(feature = "corpus")]
    Gen(GenArgs),
    /// Measure throughput on a corpus: decode + parse with no rules (the
    /// limit) against the full pipeline, on one thread and on all.
    Bench(crate::bench::BenchArgs),
    /// Prove that no CloudTrail log file was deleted or altered: walk the
    /// signed digest chains under a bucket, hash every log they list, name
    /// every log they do not (CloudTrail log-file integrity validation).
    #[command(after_help = crate::verify::VERIFY_EXAMPLES)]
    Verify(crate::verify::VerifyArgs),
    /// The account's IAM posture from the IAM API: root MFA and keys, the
    /// password policy, console users without MFA, keys not rotated,
    /// unused credentials, policies attached to users.
    #[command(after_help = crate::posture_cmd::POSTURE_EXAMPLES)]
    Posture(crate::posture_cmd::PostureArgs),
    /// Ask a running daemon whether it is healthy (exit 0) or not (exit 1):
    /// the container health check. Plain HTTP GET, no shell or curl needed.
    Healthcheck(HealthcheckArgs),
}

/// Options of `trailwatch gen`.
#[cfg(feature = "corpus")]
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Directory to write into (CloudTrail's key layout under AWSLogs/).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Total uncompressed JSON: bytes, or with KB, MB, GB (powers of 1024).
    #[arg(long, default_value = "200MB", value_parser = parse_size)]
    pub size: u64,
    /// Smallest file, uncompressed.
    #[arg(long, default_value = "5MB", value_parser = parse_size)]
    pub min_file: u64,
    /// Largest file, uncompressed.
    #[arg(long, default_value = "50MB", value_parser = parse_size)]
    pub max_file: u64,
}

/// "2GB", "200MB", "64KB" or plain bytes.
#[cfg(feature = "corpus")]
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
        (n, 1u64 << 30)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, 1 << 20)
    } else if let Some(n) = t.strip_suffix("KB") {
        (n, 1 << 10)
    } else {
        (t.strip_suffix('B').unwrap_or(&t), 1)
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 2GB, 200MB, 4096)"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("{s:?} is not a size"));
    }
    Ok((n * mult as f64) as u64)
}

/// Options of `trailwatch healthcheck`.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to GET; 200 means healthy. `/readyz` also checks sources
    /// and the state store.
    #[arg(long, default_value = "http://127.0.0.1:9808/healthz")]
    pub url: String,
    /// Seconds to wait for connecting and for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

const RUN_EXAMPLES: &str = "\
Examples:
  trailwatch run --demo          # write example attack files into ./cloudtrail, then watch it
  trailwatch run --format text   # readable alert lines on stdout instead of JSON
  trailwatch run --listen 127.0.0.1:9900   # metrics and health on another port
  trailwatch run --config /etc/trailwatch/trailwatch.toml
  trailwatch run --once          # process what is there now, then exit";

/// Options of `trailwatch run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// TOML configuration (see deploy/trailwatch.example.toml); without it,
    /// the embedded default. `${VAR}` in it is read from the environment.
    #[arg(long, short, value_name = "FILE", env = "TRAILWATCH_CONFIG")]
    pub config: Option<PathBuf>,

    /// First write example CloudTrail files with a few attacks into the
    /// first watched directory.
    #[arg(long)]
    pub demo: bool,

    /// Process the files present now, then exit.
    #[arg(long)]
    pub once: bool,

    /// Read CloudTrail records as JSON lines from standard input (instead
    /// of the configured sources), until it closes.
    #[arg(long)]
    pub stdin: bool,

    /// How alerts printed on stdout look (without `output.jsonl_path`):
    /// one JSON object per line, or one readable line per alert.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Serve /metrics, /healthz and /readyz here instead of the
    /// configuration's `http.listen` (e.g. 127.0.0.1:9900 when 9808 is
    /// taken; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// `trailwatch config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file: syntax, unknown keys, limits.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `trailwatch rules ...`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load rules and report every problem (file:line), duplicate ids and
    /// missing metadata. Without DIR, checks the built-in pack.
    Check {
        /// Rule directories or files.
        #[arg(value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Run each rule's NAME.tests.jsonl fixtures (events it must match and
    /// near misses it must not).
    Test {
        /// Rule directories or files (the repository's `rules/` holds the
        /// built-in pack and its fixtures).
        #[arg(value_name = "DIR", required = true)]
        dirs: Vec<PathBuf>,
    },
}

const SCAN_EXAMPLES: &str = "\
Input: CloudTrail's {\"Records\":[...]} files, JSON lines, or JSON arrays of
records, gzip-compressed or not (detected from the bytes). Digest files are
skipped and counted.

Exit status: 0 ok; 1 a rule matched (with --fail-on-match); 2 usage or rule
error; 3 input errors occurred (with --strict).

Examples:
  trailwatch scan examples/
  trailwatch scan --format text ~/trail/AWSLogs/123456789012/CloudTrail/
  zcat file.json.gz | trailwatch scan -
  trailwatch scan --rules my-rules/ --fail-on-match logs/ > alerts.jsonl";

/// Options of `trailwatch scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files or directories (searched recursively) to scan; `-` reads stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Sigma rule directory or file; repeatable. Replaces the built-in pack.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,

    /// Sigma filter file or directory (exceptions: `filter:` documents)
    /// applied on top of the rules; repeatable.
    #[arg(long = "filters", value_name = "PATH")]
    pub filters: Vec<PathBuf>,

    /// Put a rule, correlation or filter (id or name) in dry run: its
    /// alerts are marked `"dry_run": true` (a filter removes nothing and
    /// counts what it would have); repeatable.
    #[arg(long = "dry-run", value_name = "ID")]
    pub dry_run: Vec<String>,

    /// Write alerts here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Alert format.
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    pub format: FormatArg,

    /// Stop at the first input error and exit 3.
    #[arg(long)]
    pub strict: bool,

    /// Exit 1 when any rule matched (for scripts and CI).
    #[arg(long)]
    pub fail_on_match: bool,

    /// Refuse objects larger than this, stored or decompressed (gzip bombs).
    #[arg(long, value_name = "BYTES", default_value_t = trailwatch::decode::DEFAULT_MAX_OBJECT_BYTES)]
    pub max_object_bytes: u64,

    /// Include each alert's event (up to 16 KiB) in the JSON output.
    #[arg(long)]
    pub with_event: bool,

    /// How late an event may arrive (its eventTime behind the newest seen)
    /// and still count in correlation windows.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub lateness_secs: u64,

    /// Groups kept per correlation rule; the least recently seen are
    /// evicted beyond this (and counted).
    #[arg(long, value_name = "N", default_value_t = trailwatch::correlate::DEFAULT_MAX_GROUPS)]
    pub max_groups: usize,

    /// Set a burst (correlation) rule's threshold: it fires at N or more
    /// events. Repeatable, e.g. `--threshold access_denied_burst=25`.
    #[arg(long, value_name = "NAME=N", value_parser = parse_threshold)]
    pub threshold: Vec<(String, u64)>,

    /// Worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Refuse to run (exit 2) if any rule fails to load, instead of skipping it.
    #[arg(long)]
    pub strict_rules: bool,

    /// Do not print the closing summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run a parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan(args) => scan(args),
        Command::Rules(RulesCommand::Check { dirs }) => rules_check(&dirs),
        Command::Rules(RulesCommand::Test { dirs }) => rules_test(&dirs),
        Command::Run(args) => run_daemon(args),
        Command::Verify(args) => crate::verify::run(args),
        Command::Posture(args) => crate::posture_cmd::run(args),
        #[cfg(feature = "corpus")]
        Command::Gen(args) => {
            if args.min_file == 0 || args.max_file < args.min_file {
                eprintln!("error: --min-file must be at least 1 byte and at most --max-file");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            let opts = trailwatch::corpus::CorpusOptions {
                seed: args.seed,
                size_bytes: args.size,
                min_file_bytes: args.min_file,
                max_file_bytes: args.max_file,
                ..Default::default()
            };
            let s = trailwatch::corpus::generate(&opts, &args.out)?;
            println!(
                // MiB, the unit `--size` is read in (powers of 1024), so the
                // figure printed is the figure asked for.
                "{} files, {} records, {:.1} MiB of JSON ({:.1} MiB gzip), {} expected alerts in {}",
                s.files.len(),
                s.records,
                s.json_bytes as f64 / 1048576.0,
                s.gzip_bytes as f64 / 1048576.0,
                s.expected_alerts,
                args.out.join("expected.jsonl").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => crate::bench::run(args),
        Command::Healthcheck(args) => {
            match trailwatch::http::check(
                &args.url,
                std::time::Duration::from_secs(args.timeout_secs),
            ) {
                Ok(body) => {
                    println!("{body}");
                    Ok(ExitCode::from(EXIT_OK))
                }
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Config(ConfigCommand::Check { file }) => {
            // Everything `run` checks before it starts: the file, then the
            // rules it names and their thresholds.
            let checked = trailwatch::config::Config::load(&file)
                .map_err(|e| e.to_string())
                .and_then(|c| daemon_rules(&c).map(|r| (c, r)));
            match checked {
                Ok((_, rules)) => {
                    println!(
                        "{}: ok ({} rules, {} correlations)",
                        file.display(),
                        rules.len(),
                        rules.correlations().len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EXIT_USAGE))
                }
            }
        }
    }
}

fn scan(args: ScanArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.threads {
        // Only fails if a pool already exists: harmless, the default stays.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    let mut rules = match rules::load_or_builtin(&args.rules) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if let Err(e) = rules.add_filters(&args.filters) {
        eprintln!("error: --filters: {e}");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    for (name, n) in &args.threshold {
        if let Err(e) = rules.set_threshold(name, *n) {
            eprintln!("error: --threshold {name}={n}: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    }
    for name in &args.dry_run {
        if let Err(e) = rules.set_dry_run(name) {
            eprintln!("error: --dry-run {name}: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    }
    for e in &rules.errors {
        tracing::warn!("skipped rule: {e}");
    }
    if args.strict_rules && !rules.errors.is_empty() {
        eprintln!(
            "error: {} rule problem(s) and --strict-rules",
            rules.errors.len()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    if rules.is_empty() {
        eprintln!("error: no rule could be loaded");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let inputs = match files::expand(&args.paths) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let mut out: Box<dyn Write> = match &args.output {
        // A large buffer: a noisy rule writes hundreds of MB of lines.
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(p)
                .map_err(|e| anyhow::anyhow!("cannot create output file {}: {e}", p.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout().lock())),
    };
    let opts = ScanOptions {
        limits: Limits {
            max_object_bytes: args.max_object_bytes,
            with_events: args.with_event,
            ..Limits::default()
        },
        strict: args.strict,
        format: args.format.into(),
        lateness_ms: (args.lateness_secs.min(i64::MAX as u64 / 1000) as i64) * 1000,
        max_groups: args.max_groups,
    };
    let summary = match pipeline::scan(&inputs, &rules, &opts, &mut out) {
        Ok(s) => s,
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(anyhow::anyhow!("writing alerts: {e}")),
    };
    if !args.quiet {
        eprint!("{summary}");
        // How much memory the input took: bounded by the configuration, so
        // an operator (and a test) can see a hostile file did not grow it.
        if let Some(rss) = trailwatch::daemon::peak_rss_bytes() {
            eprintln!("peak resident memory: {} MiB", rss >> 20);
        }
    }
    Ok(ExitCode::from(
        if args.strict && summary.error_count() > 0 {
            EXIT_INPUT_ERRORS
        } else if args.fail_on_match && summary.matches > 0 {
            EXIT_MATCHED
        } else {
            EXIT_OK
        },
    ))
}

/// `NAME=N` for `--threshold`.
fn parse_threshold(s: &str) -> Result<(String, u64), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=N, got `{s}`"))?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{n}` is not a whole number"))?;
    if n == 0 {
        return Err("a threshold of 0 would fire on nothing".into());
    }
    Ok((name.to_owned(), n))
}

fn rules_check(dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let set = match rules::load_or_builtin(dirs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let mut problems: Vec<String> = set.errors.iter().map(|e| e.to_string()).collect();
    let mut seen = std::collections::HashMap::new();
    let metas = set
        .rules()
        .iter()
        .map(|r| &r.meta)
        .chain(set.correlations().iter().map(|c| &c.meta));
    for m in metas {
        if let Some(first) = seen.insert(m.id.clone(), m.path.clone()) {
            problems.push(format!("{}: id {} is also used by {first}", m.path, m.id));
        }
        if m.id == m.path || m.id.starts_with(&format!("{}#", m.path)) {
            problems.push(format!("{}: rule `{}` has no id", m.path, m.title));
        }
    }
    let mut warnings = Vec::new();
    if !dirs.is_empty() {
        for f in rules::fixtures::rule_files(dirs)? {
            if !rules::fixtures::fixture_path(&f).exists() {
                warnings.push(format!("{}: no .tests.jsonl fixtures", f.display()));
            }
        }
    }
    let (indexed, always) = set.index_stats();
    let parts: Vec<String> = indexed
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(f, n)| format!("{n} on {f}"))
        .collect();
    println!("index: {}", parts.join(", "));
    for title in &always {
        println!("note: `{title}` pins no indexed field and is tested on every record");
    }
    for p in &problems {
        println!("error: {p}");
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    println!(
        "checked {} rules and {} correlations: {} errors, {} warnings",
        set.len(),
        set.correlations().len(),
        problems.len(),
        warnings.len()
    );
    Ok(ExitCode::from(if problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_MATCHED
    }))
}

fn rules_test(dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let report = match rules::fixtures::run(dirs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    for r in report.results.iter().filter(|r| !r.passed()) {
        println!(
            "FAIL {}:{} {:?}: expected {}, got {}",
            r.file,
            r.line,
            r.name,
            if r.expect { "a match" } else { "no match" },
            if r.got { "a match" } else { "no match" }
        );
    }
    for (file, problem) in &report.problems {
        println!("problem: {file}: {problem}");
    }
    let failed = report.failed();
    println!(
        "rule fixtures: {} files, {} cases passed, {} failed, {} problems",
        report.files,
        report.results.len() - failed,
        failed,
        report.problems.len()
    );
    Ok(ExitCode::from(
        if failed == 0 && report.problems.is_empty() {
            EXIT_OK
        } else {
            EXIT_MATCHED
        },
    ))
}

/// The rules a daemon with `config` runs: loaded (problems logged), refused
/// when none load or `strict` meets a problem, thresholds applied. Shared
/// by `run` and `config check`, so the check refuses what `run` refuses.
fn daemon_rules(config: &trailwatch::config::Config) -> Result<rules::RuleSet, String> {
    let mut rules = rules::load_or_builtin(&config.rules.dirs).map_err(|e| e.to_string())?;
    rules
        .add_filters(&config.rules.filters)
        .map_err(|e| format!("rules.filters: {e}"))?;
    for e in &rules.errors {
        tracing::warn!("skipped rule: {e}");
    }
    if config.rules.strict && !rules.errors.is_empty() {
        return Err(format!(
            "{} rule problem(s) and rules.strict is set",
            rules.errors.len()
        ));
    }
    if rules.is_empty() {
        return Err("no rule loaded".into());
    }
    for (name, n) in &config.rules.thresholds {
        rules
            .set_threshold(name, *n)
            .map_err(|e| format!("rules.thresholds.{name}: {e}"))?;
    }
    for name in &config.rules.dry_run {
        rules
            .set_dry_run(name)
            .map_err(|e| format!("rules.dry_run: {e}"))?;
    }
    Ok(rules)
}

/// Objects in flight get `grace` to finish after a stop signal; then the
/// process exits. Nothing is lost by exiting mid-object: uncommitted
/// objects are read again at the next start.
fn grace_watchdog(stop: Arc<AtomicBool>, grace: Duration) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(grace);
        tracing::warn!("grace period of {}s over, exiting", grace.as_secs());
        std::process::exit(0);
    });
}

fn run_daemon(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => match trailwatch::config::Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        },
        None => trailwatch::config::Config::default(),
    };
    let mut config = config;
    if let Some(f) = args.format {
        config.output.stdout_format = f.into();
    }
    if let Some(addr) = &args.listen {
        config.http.listen = addr.clone();
    }
    if args.stdin {
        config.sources = trailwatch::config::SourcesConfig {
            stdin: true,
            ..Default::default()
        };
    }
    let rules = match daemon_rules(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if args.demo {
        let Some(dir) = config.sources.files.first().map(|f| &f.path) else {
            eprintln!("error: --demo needs a watched directory ([[sources.files]])");
            return Ok(ExitCode::from(EXIT_USAGE));
        };
        // The store remembers every alert it raised: a second demo in the
        // same place raises them again, deduplicated, and prints nothing.
        let state = &config.state.dir;
        if std::fs::read_dir(state).is_ok_and(|mut d| d.next().is_some()) {
            eprintln!(
                "demo: {} already holds the state of an earlier run, which has seen these \
                 alerts: they will not print again. To start over: stop trailwatch, \
                 `rm -rf {} {}`, run `trailwatch run --demo` again.",
                state.display(),
                state.display(),
                dir.display()
            );
        }
        let written = crate::demo::write_demo(dir)
            .map_err(|e| anyhow::anyhow!("writing demo files into {}: {e}", dir.display()))?;
        tracing::info!(
            "demo: wrote {} CloudTrail files under {}",
            written.len(),
            dir.display()
        );
    }
    let signals = trailwatch::daemon::Signals::default();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&signals.stop))
            .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&signals.reopen))
        .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
    grace_watchdog(
        Arc::clone(&signals.stop),
        Duration::from_secs(config.shutdown.grace_secs),
    );
    let stats = trailwatch::daemon::run(
        &config,
        &rules,
        trailwatch::daemon::RunOptions {
            once: args.once,
            signals,
        },
    )?;
    tracing::info!(
        objects = stats.objects,
        alerts = stats.alerts_written,
        deduplicated = stats.alerts_deduplicated,
        already_processed = stats.skipped_known,
        errors = stats.errors,
        peak_rss_mib = trailwatch::daemon::peak_rss_bytes().map(|b| b / (1 << 20)),
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
}
