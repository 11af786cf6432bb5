//! A real S3/SQS/CloudWatch Logs-compatible server for tests: moto's
//! `moto_server`, on 127.0.0.1 and a free port, stopped on drop.
//! `.ci/test` installs it into a venv and exports its path in
//! `TRAILWATCH_MOTO_SERVER`; otherwise `moto_server` must be on PATH.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let bin = std::env::var("TRAILWATCH_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        // A free port: bind, read it, release it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): run the tests through .ci/test, which installs moto[server]")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Environment for a daemon talking to this server: any credentials
    /// are accepted; instance metadata is never asked.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// An S3 client for test setup.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

impl Moto {
    /// An IAM client for test setup.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        let creds = aws_sdk_iam::config::Credentials::new("testing", "testing", None, None, "test");
        let conf = aws_sdk_iam::config::Builder::new()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .build();
        aws_sdk_iam::Client::from_conf(conf)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// An SQS client for test setup.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let creds = aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "test");
        let conf = aws_sdk_sqs::config::Builder::new()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }
}

impl Moto {
    /// A CloudWatch Logs client for test setup.
    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        let creds = aws_sdk_cloudwatchlogs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        );
        let conf = aws_sdk_cloudwatchlogs::config::Builder::new()
            .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .build();
        aws_sdk_cloudwatchlogs::Client::from_conf(conf)
    }
}

impl Moto {
    /// Run `trailwatch run --once` against this server: state and an
    /// `alerts.jsonl` sink in `dir`, plus `source` (a `[[sources.X]]`
    /// block, without `endpoint_url` and `region`, which are added).
    /// Returns stderr; panics if the daemon fails.
    pub fn run_once(&self, dir: &std::path::Path, source: &str) -> String {
        self.run_config(&self.config(dir, source, ""))
    }

    /// `trailwatch run --once --config cfg` with this server's
    /// environment; returns stderr, panics if the daemon fails.
    pub fn run_config(&self, cfg: &std::path::Path) -> String {
        let out = assert_cmd::Command::cargo_bin("trailwatch")
            .unwrap()
            .args(["run", "--once", "--config"])
            .arg(cfg)
            .envs(self.env())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    }

    /// `trailwatch ARGS --config CFG` with this server's environment and
    /// stdout discarded, for a daemon the test runs beside it: the caller
    /// chooses stderr and spawns it.
    pub fn daemon(&self, args: &[&str], cfg: &std::path::Path) -> std::process::Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trailwatch"));
        c.args(args)
            .arg("--config")
            .arg(cfg)
            .envs(self.env())
            .stdout(Stdio::null());
        c
    }

    /// Create log group `group` with one stream, `stream`.
    pub fn create_log_stream(&self, rt: &tokio::runtime::Runtime, group: &str, stream: &str) {
        let logs = self.logs();
        rt.block_on(async {
            logs.create_log_group()
                .log_group_name(group)
                .send()
                .await
                .unwrap();
            logs.create_log_stream()
                .log_group_name(group)
                .log_stream_name(stream)
                .send()
                .await
                .unwrap();
        });
    }

    /// Write the configuration `run_once` uses; `extra` is appended to the
    /// source block.
    pub fn config(&self, dir: &std::path::Path, source: &str, extra: &str) -> std::path::PathBuf {
        let cfg = dir.join("trailwatch.toml");
        std::fs::write(
            &cfg,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[output]\njsonl_path = {:?}\n{source}\nendpoint_url = {:?}\nregion = \"us-east-1\"\n{extra}",
                dir.join("state"),
                dir.join("alerts.jsonl"),
                self.endpoint
            ),
        )
        .unwrap();
        cfg
    }
}

/// Make a configuration written by [`Moto::config`] serve metrics and
/// health on `port` (a daemon the test queries while it runs).
pub fn listen_on(cfg: &std::path::Path, port: u16) {
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(cfg, text).unwrap();
}

/// Put `records` into the log stream `group`/`stream` as CloudWatch Logs
/// events (one per record, as a trail delivers them), timestamped from
/// `base_ms` a millisecond apart.
pub fn put_log_events(
    rt: &tokio::runtime::Runtime,
    logs: &aws_sdk_cloudwatchlogs::Client,
    (group, stream): (&str, &str),
    records: &[serde_json::Value],
    base_ms: i64,
) {
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    let events: Vec<InputLogEvent> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            InputLogEvent::builder()
                .timestamp(base_ms + i as i64)
                .message(r.to_string())
                .build()
                .unwrap()
        })
        .collect();
    rt.block_on(
        logs.put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send(),
    )
    .unwrap();
}
