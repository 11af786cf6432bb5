//! The deploy kit (`deploy/`), checked by the tools that will read it:
//! promtool for the Prometheus configuration, alerting rules and their unit
//! tests; cfn-lint for the CloudFormation stack; systemd-analyze for the
//! unit; `trailwatch config check` for every configuration, with the
//! environment the task definition and the stack give it. The IAM policy
//! must grant exactly the AWS calls the code makes.
//!
//! (Whether the dashboard and alerting rules use only metric names the
//! daemon exports is checked against a live daemon in tests/metrics.rs.)
//!
//! `.ci/test` installs prometheus (apt), cfn-lint (venv) and systemd (apt).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{python, tool};
use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

fn ok(out: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// `trailwatch config check FILE` with exactly `env` as the environment
/// the configuration may read.
fn config_check(file: &Path, env: &BTreeMap<String, String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(["config", "check"])
        .arg(file)
        .env_clear()
        .envs(env)
        .output()
        .unwrap()
}

/// The `${VAR}` a configuration needs (those without a `:-default`).
fn required_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(i) = rest.find("${") {
            let end = rest[i..].find('}').expect("closed") + i;
            let inner = &rest[i + 2..end];
            if !inner.contains(":-") {
                out.insert(inner.to_owned());
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

fn prom(name: &str) -> String {
    tool(
        name,
        "Debian's prometheus package (apt-get install prometheus)",
    )
}

#[test]
fn prometheus_config_rules_and_rule_unit_tests_pass_promtool() {
    let dir = deploy("prometheus");
    let promtool = prom("promtool");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "trailwatch.rules.yml"],
        vec!["test", "rules", "trailwatch.rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        ok(out, &format!("promtool {}", args.join(" ")));
    }
    // Every alerting rule has a unit test, with a summary and description.
    let rules = read("prometheus/trailwatch.rules.yml");
    let tests = read("prometheus/trailwatch.rules.test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for a in &alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "alert {a} has no promtool unit test"
        );
    }
    assert_eq!(rules.matches("summary:").count(), alerts.len());
    assert_eq!(rules.matches("description:").count(), alerts.len());
    assert!(rules.contains("absent(up{job=\"trailwatch\"})"));
}

#[test]
fn example_configs_pass_config_check() {
    let file = deploy("trailwatch.example.toml");
    ok(
        config_check(&file, &BTreeMap::new()),
        "config check of trailwatch.example.toml",
    );
    // The systemd host's configuration, with the variables it names.
    let text = read("systemd/trailwatch.toml");
    let env: BTreeMap<String, String> = required_vars(&text)
        .into_iter()
        .map(|v| {
            let value = if v.contains("EMAIL") {
                "someone@example.com".to_owned()
            } else {
                format!("value-of-{v}")
            };
            (v, value)
        })
        .collect();
    assert!(env.contains_key("TRAILWATCH_BUCKET"), "{env:?}");
    let sd = deploy("systemd/trailwatch.toml");
    ok(
        config_check(&sd, &env),
        "config check of systemd/trailwatch.toml",
    );
    // And it names what is missing when a variable is not set.
    let mut short = env.clone();
    short.remove("TRAILWATCH_BUCKET");
    let out = config_check(&sd, &short);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRAILWATCH_BUCKET is not set"));
}

/// The container's environment in the task definition: variables and
/// secrets (secrets get a placeholder value).
fn task_env(task: &Value) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let c = &task["containerDefinitions"][0];
    let env = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let secrets = c["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    (env, secrets)
}

fn grace_secs(config_text: &str) -> u64 {
    config_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("grace_secs = "))
        .expect("the container config sets grace_secs")
        .parse()
        .unwrap()
}

#[test]
fn ecs_task_definition_gives_the_image_config_what_it_needs() {
    let task = json("ecs/task-definition.json");
    let config = read("ecs/trailwatch.toml");
    let (env, secrets) = task_env(&task);

    // Two roles: what ECS does (pull, logs, secrets) and what trailwatch does.
    let (task_role, exec_role) = (
        task["taskRoleArn"].as_str().unwrap(),
        task["executionRoleArn"].as_str().unwrap(),
    );
    assert_ne!(task_role, exec_role);

    let c = &task["containerDefinitions"][0];
    assert_eq!(
        c["healthCheck"]["command"],
        serde_json::json!(["CMD", "/usr/local/bin/trailwatch", "healthcheck"]),
        "exec form: the image has no shell"
    );
    let stop = c["stopTimeout"].as_u64().unwrap();
    assert!(
        stop > grace_secs(&config),
        "stopTimeout {stop} must exceed shutdown.grace_secs"
    );
    assert_eq!(c["logConfiguration"]["logDriver"], "awslogs");
    assert_eq!(c["readonlyRootFilesystem"], true);
    assert_eq!(c["user"], "65532:65532");
    let mount = &c["mountPoints"][0];
    assert_eq!(mount["containerPath"], "/var/lib/trailwatch");
    assert!(config.contains("dir = \"/var/lib/trailwatch\""));
    // Alerts exactly once on the durable volume, not through the lossy
    // (non-blocking) log driver mixed with the daemon's logs.
    assert!(
        config.contains("jsonl_path = \"/var/lib/trailwatch/"),
        "alerts go to the state volume"
    );
    let volume = task["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["sourceVolume"])
        .expect("the state volume is declared");
    assert_eq!(
        volume["efsVolumeConfiguration"]["transitEncryption"],
        "ENABLED"
    );

    // The SMTP password is a secret, never a plain variable.
    assert!(secrets.contains("TRAILWATCH_SMTP_PASSWORD"));
    assert!(
        !env.keys()
            .any(|k| k.contains("PASSWORD") || k.contains("SECRET"))
    );
    assert!(config.contains("password_env = \"TRAILWATCH_SMTP_PASSWORD\""));

    // Every variable the config reads is set, and then the config passes.
    let missing: Vec<String> = required_vars(&config)
        .into_iter()
        .filter(|v| !env.contains_key(v) && !secrets.contains(v))
        .collect();
    assert!(
        missing.is_empty(),
        "the task definition does not set {missing:?}"
    );
    let mut all = env.clone();
    for s in &secrets {
        all.insert(s.clone(), "placeholder".into());
    }
    ok(
        config_check(&deploy("ecs/trailwatch.toml"), &all),
        "config check of ecs/trailwatch.toml with the task's environment",
    );
}

/// IAM actions of the AWS SDK calls the sources make.
fn calls_in_sources() -> BTreeSet<&'static str> {
    calls_in(&["s3.rs", "sqs.rs", "cloudwatch.rs", "files.rs", "mod.rs"])
}

/// IAM actions of the AWS SDK calls made in these files of `src/source`.
fn calls_in(files: &[&str]) -> BTreeSet<&'static str> {
    calls_in_dir("src/source", files)
}

/// IAM actions of the AWS SDK calls made in these files of `dir`.
fn calls_in_dir(dir: &str, files: &[&str]) -> BTreeSet<&'static str> {
    let calls = [
        (".get_object()", "s3:GetObject"),
        (".list_objects_v2()", "s3:ListBucket"),
        (".receive_message()", "sqs:ReceiveMessage"),
        (".delete_message()", "sqs:DeleteMessage"),
        (".delete_message_batch()", "sqs:DeleteMessage"),
        (
            ".change_message_visibility()",
            "sqs:ChangeMessageVisibility",
        ),
        (".get_queue_attributes()", "sqs:GetQueueAttributes"),
        (".filter_log_events()", "logs:FilterLogEvents"),
        (".get_log_events()", "logs:GetLogEvents"),
        (".list_public_keys()", "cloudtrail:ListPublicKeys"),
        (
            ".generate_credential_report()",
            "iam:GenerateCredentialReport",
        ),
        (".get_credential_report()", "iam:GetCredentialReport"),
        (
            ".get_account_password_policy()",
            "iam:GetAccountPasswordPolicy",
        ),
        (".get_account_summary()", "iam:GetAccountSummary"),
        (".list_users()", "iam:ListUsers"),
        (
            ".list_attached_user_policies()",
            "iam:ListAttachedUserPolicies",
        ),
        (".list_user_policies()", "iam:ListUserPolicies"),
        (".list_access_keys()", "iam:ListAccessKeys"),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let code: String = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .collect();
    calls
        .iter()
        .filter(|(call, _)| code.contains(call))
        .map(|(_, action)| *action)
        .collect()
}

fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
        other => panic!("Action {other}"),
    }
}

#[test]
fn iam_task_policy_grants_exactly_the_calls_the_code_makes() {
    let policy = json("iam/task-role-policy.json");
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().unwrap();
    let mut granted = BTreeSet::new();
    for s in statements {
        assert_eq!(s["Effect"], "Allow");
        let resource = s["Resource"].as_str().expect("one resource per statement");
        assert!(
            resource != "*" && resource.starts_with("arn:aws:"),
            "{resource}"
        );
        for a in actions(s) {
            assert!(!a.contains('*'), "wildcard action {a}");
            match a.as_str() {
                "s3:ListBucket" => assert!(
                    s["Condition"]["StringLike"]["s3:prefix"].is_array(),
                    "ListBucket limited to the AWSLogs/ prefix"
                ),
                "kms:Decrypt" => assert!(
                    s["Condition"]["StringEquals"]["kms:ViaService"].is_string(),
                    "Decrypt only through S3"
                ),
                "s3:GetObject" => assert!(resource.ends_with("/AWSLogs/*"), "{resource}"),
                _ => {}
            }
            granted.insert(a);
        }
    }
    let mut needed: BTreeSet<String> = calls_in_sources().iter().map(|s| s.to_string()).collect();
    assert!(needed.contains("s3:GetObject") && needed.contains("logs:FilterLogEvents"));
    needed.insert("kms:Decrypt".into()); // SSE-KMS trails: S3 asks KMS for us
    assert_eq!(
        granted, needed,
        "the policy must grant exactly what the sources call"
    );

    let exec = json("iam/execution-role-policy.json");
    for s in exec["Statement"].as_array().unwrap() {
        let star = s["Resource"] == "*";
        // ecr:GetAuthorizationToken has no resource-level permissions.
        assert!(!star || actions(s) == ["ecr:GetAuthorizationToken"], "{s}");
    }
}

/// The per-source task policies: each grants what its source calls and
/// nothing else (an SQS-only task cannot list buckets or read log groups),
/// with `kms:Decrypt` only through the service that holds encrypted data,
/// and together they are the all-sources policy.
#[test]
fn per_source_task_policies_grant_only_their_sources_calls() {
    let mut union = BTreeSet::new();
    for (name, code, also) in [
        // Polling lists and reads the bucket.
        ("s3", &["s3.rs"][..], &[][..]),
        // Notifications name objects the source reads (through the S3
        // reader), from a queue that may be KMS-encrypted.
        ("sqs", &["sqs.rs"][..], &["s3:GetObject"][..]),
        ("cloudwatch", &["cloudwatch.rs"][..], &[][..]),
    ] {
        let policy = json(&format!("iam/task-role-policy.{name}.json"));
        let mut granted = BTreeSet::new();
        let mut via = BTreeSet::new();
        for s in policy["Statement"].as_array().unwrap() {
            for a in actions(s) {
                if a == "kms:Decrypt" {
                    via.insert(
                        s["Condition"]["StringEquals"]["kms:ViaService"]
                            .as_str()
                            .expect("Decrypt only through a service")
                            .split('.')
                            .next()
                            .unwrap()
                            .to_owned(),
                    );
                } else {
                    granted.insert(a);
                }
            }
            union.insert(s.to_string());
        }
        let mut needed: BTreeSet<String> = calls_in(code).iter().map(|s| s.to_string()).collect();
        needed.extend(also.iter().map(|s| s.to_string()));
        assert_eq!(granted, needed, "{name}");
        let want_via: BTreeSet<String> = match name {
            "s3" => ["s3"].iter().map(|s| s.to_string()).collect(),
            "sqs" => ["s3", "sqs"].iter().map(|s| s.to_string()).collect(),
            _ => BTreeSet::new(),
        };
        assert_eq!(via, want_via, "{name}: kms:Decrypt through");
    }
    let all: BTreeSet<String> = json("iam/task-role-policy.json")["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(
        union, all,
        "the all-sources policy is the per-source ones together"
    );
}

/// The stack's template as JSON (cfn-lint's own decoder reads the short
/// `!Ref`/`!Sub` forms).
fn template() -> Value {
    let out = Command::new(python())
        .args([
            "-c",
            "import json, sys\n\
             from cfnlint.decode import decode\n\
             t, errs = decode(sys.argv[1])\n\
             assert not errs, errs\n\
             print(json.dumps(t, default=str))",
        ])
        .arg(deploy("cloudformation/trailwatch.yaml"))
        .output()
        .unwrap();
    serde_json::from_str(&ok(out, "decoding the template with cfnlint")).unwrap()
}

#[test]
fn cloudformation_stack_passes_cfn_lint_and_wires_the_task() {
    let lint = tool("cfn-lint", "cfn-lint from PyPI (in the test venv)");
    let out = Command::new(&lint)
        .arg(deploy("cloudformation/trailwatch.yaml"))
        .output()
        .unwrap();
    ok(out, "cfn-lint");

    let t = template();
    let r = &t["Resources"];
    let kinds: BTreeSet<&str> = r
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["Type"].as_str().unwrap())
        .collect();
    for k in [
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::Events::Rule",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::ECS::TaskDefinition",
        "AWS::ECS::Service",
        "AWS::EFS::FileSystem",
    ] {
        assert!(kinds.contains(k), "the stack has no {k}");
    }
    assert!(
        r["Queue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"].is_object(),
        "a dead-letter queue"
    );
    // A poison message in the dead-letter queue raises an alarm.
    let alarm = &r["DeadLetterQueueAlarm"]["Properties"];
    assert_eq!(r["DeadLetterQueueAlarm"]["Type"], "AWS::CloudWatch::Alarm");
    assert_eq!(alarm["Namespace"], "AWS/SQS");
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert!(
        alarm["Dimensions"][0]["Value"]
            .to_string()
            .contains("DeadLetterQueue"),
        "{}",
        alarm["Dimensions"]
    );
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(alarm["Threshold"], 0);
    // One writer of the state store: never two tasks at once.
    let dc = &r["Service"]["Properties"]["DeploymentConfiguration"];
    assert_eq!(dc["MaximumPercent"], 100);
    assert_eq!(r["Service"]["Properties"]["DesiredCount"], 1);

    let c = &r["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let names = |key: &str| -> BTreeSet<String> {
        c[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (env, secrets) = (names("Environment"), names("Secrets"));
    let config = read("ecs/trailwatch.toml");
    for v in required_vars(&config) {
        assert!(
            env.contains(&v) || secrets.contains(&v),
            "the stack's task does not set {v}"
        );
    }
    assert!(secrets.contains("TRAILWATCH_SMTP_PASSWORD"));
    assert!(c["StopTimeout"].as_u64().unwrap() > grace_secs(&config));
    assert_eq!(
        c["HealthCheck"]["Command"],
        serde_json::json!(["CMD", "/usr/local/bin/trailwatch", "healthcheck"])
    );

    // The stack's task role grants what deploy/iam/task-role-policy.json
    // grants for the SQS route (no listing, no CloudWatch Logs) plus EFS.
    let policy = &r["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let text = policy.to_string();
    for a in [
        "s3:GetObject",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "kms:Decrypt",
    ] {
        assert!(text.contains(a), "task role lacks {a}");
    }
    assert!(!text.contains("s3:ListBucket") && !text.contains("\"*\""));
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let analyze = tool("systemd-analyze", "Debian's systemd package");
    let unit = read("systemd/trailwatch.service");
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=trailwatch",
        "Restart=always",
        "DynamicUser=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    let pre = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPre="))
        .expect("ExecStartPre");
    assert!(pre.contains("trailwatch config check"), "{pre}");
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(stop > grace_secs(&read("systemd/trailwatch.toml")));

    // systemd checks that the binary exists: point the copy at ours.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("trailwatch.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/trailwatch",
            env!("CARGO_BIN_EXE_trailwatch"),
        ),
    )
    .unwrap();
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = ok(out, "systemd-analyze verify");
    assert!(
        !text.contains("trailwatch.service:"),
        "systemd warns about the unit:\n{text}"
    );
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = ok(out, "systemd-analyze security");
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for trailwatch.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} (0 best, 10 worst)");
}

#[test]
fn dockerfile_builds_an_unprivileged_image_with_an_exec_health_check() {
    let text = read("Dockerfile");
    let lines: Vec<String> = text
        .replace("\\\n", " ")
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let runtime = &lines[last_from..];
    assert!(runtime[0].contains("distroless"), "{}", runtime[0]);
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    // Exec form (distroless has no shell), pointing at the copied binary.
    let hc = runtime
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .unwrap();
    let cmd: Vec<String> = serde_json::from_str(hc.split(" CMD ").nth(1).unwrap()).unwrap();
    assert_eq!(cmd[1], "healthcheck");
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY --from=builder") && l.ends_with(&format!(" {}", cmd[0]))),
        "the health check runs {} but the image does not hold it",
        cmd[0]
    );
    assert!(text.contains("cargo chef cook --release --locked"));
    // The config the image points at is copied, and is the ECS one.
    let cfg = runtime
        .iter()
        .find_map(|l| l.strip_prefix("ENV TRAILWATCH_CONFIG="))
        .unwrap();
    assert!(
        runtime
            .iter()
            .any(|l| *l == format!("COPY deploy/ecs/trailwatch.toml {cfg}"))
    );
    // Everything copied from the context passes the .dockerignore.
    let ignore = read("Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l == "!deploy/ecs/trailwatch.toml"));
    for needed in ["!Cargo.lock", "!src/", "!rules/", "!build.rs", "!benches/"] {
        assert!(
            ignore.lines().any(|l| l == needed),
            "{needed} missing from the .dockerignore"
        );
    }
    for label in ["title", "version", "licenses"] {
        assert!(text.contains(&format!("org.opencontainers.image.{label}=")));
    }
}

/// The actions a policy file grants, and the IAM actions of the AWS calls
/// made in `files` of `dir`.
fn granted_and_called(
    policy: &str,
    dir: &str,
    files: &[&str],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let granted = json(policy)["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(actions)
        .collect();
    let called = calls_in_dir(dir, files)
        .iter()
        .map(|s| s.to_string())
        .collect();
    (granted, called)
}

/// `trailwatch verify`'s policy grants exactly the calls it makes: read
/// and list the bucket, and CloudTrail's ListPublicKeys. Nothing that
/// writes: a verifier must not be able to alter what it verifies.
#[test]
fn the_verify_policy_grants_only_what_verify_calls() {
    let (granted, needed) = granted_and_called(
        "iam/verify-policy.json",
        "src/integrity",
        &["mod.rs", "keys.rs", "verify.rs", "chain.rs"],
    );
    assert_eq!(granted, needed);
    assert!(needed.contains("cloudtrail:ListPublicKeys"), "{needed:?}");
}

/// The daemon's optional integrity statement grants what online digest
/// validation calls beyond the S3 source's reads: the signing keys.
#[test]
fn the_integrity_policy_grants_only_what_online_validation_calls() {
    let (granted, needed) = granted_and_called(
        "iam/task-role-policy.integrity.json",
        "src/integrity",
        &["online.rs", "keys.rs"],
    );
    assert_eq!(granted, needed);
}

/// `trailwatch posture`'s policy grants exactly the IAM reads it makes,
/// and nothing that writes.
#[test]
fn the_posture_policy_grants_only_what_posture_calls() {
    let (granted, needed) =
        granted_and_called("iam/posture-policy.json", "src/posture", &["iam.rs"]);
    assert_eq!(granted, needed);
    assert!(granted.iter().all(|a| a.starts_with("iam:Get")
        || a.starts_with("iam:List")
        || a == "iam:GenerateCredentialReport"));
}
