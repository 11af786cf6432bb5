//! The `trailwatch` binary: parse the command line, set up logging, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

mod bench;
mod cli;
mod demo;
mod posture_cmd;
mod verify;

use cli::{Cli, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, &cli.log);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Library errors already include their cause in the message.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes each formatted log event to stderr through
/// [`trailwatch::alert::jsonl::escape_log_line`].
struct SafeLine;

impl std::io::Write for SafeLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr()
            .lock()
            .write_all(&trailwatch::alert::jsonl::escape_log_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Each event is one write: escaped so no value can break its line.
        .with_writer(|| SafeLine)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
