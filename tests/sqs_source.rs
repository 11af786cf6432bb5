//! The SQS notification source against moto on loopback: every message
//! format, S3's test event, a malformed message, a digest key, URL-encoded
//! keys, redelivery; messages are deleted once their objects are committed.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::{Value, json};

fn keys_of(alerts: &[Value]) -> BTreeSet<(String, String)> {
    alerts
        .iter()
        .map(|a| {
            let what = if a["correlation"].is_string() {
                a["group"].to_string()
            } else {
                a["event_id"].as_str().unwrap_or("").to_string()
            };
            (a["rule_id"].as_str().unwrap().to_string(), what)
        })
        .collect()
}

fn run(moto: &moto::Moto, dir: &Path, queue_url: &str) -> String {
    moto.run_once(
        dir,
        &format!("[[sources.sqs]]\nqueue_url = {queue_url:?}\nwait_time_secs = 1"),
    )
}

/// Every message was deleted: a receive finds the queue empty.
fn assert_queue_empty(rt: &tokio::runtime::Runtime, sqs: &aws_sdk_sqs::Client, queue_url: &str) {
    let left = rt.block_on(async {
        sqs.receive_message()
            .queue_url(queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
    });
    assert!(left.messages().is_empty(), "{:?}", left.messages());
}

fn s3_event(bucket: &str, encoded_key: &str) -> String {
    json!({"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
        "s3":{"bucket":{"name":bucket},"object":{"key":encoded_key}}}]})
    .to_string()
}

#[test]
fn every_notification_format_once_and_messages_deleted() {
    let moto = moto::Moto::start();
    let (s3, sqs) = (moto.s3(), moto.sqs());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "trail";
    let logs = shared_data().join("cloudtrail/logs/stratus-red-team");
    let names = [
        "aws.credential-access.ec2-get-password-data.json.gz",
        "aws.persistence.iam-create-admin-user.json.gz",
        "aws.execution.ec2-launch-unusual-instances.json.gz",
        "aws.persistence.iam-create-user-login-profile.json.gz",
    ];
    let prefix = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/20/";
    let keys: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{prefix}111111111111_CloudTrail_us-east-1_2026:11:20_{i}_{n}"))
        .collect();
    let queue_url = rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for (k, n) in keys.iter().zip(names) {
            s3.put_object()
                .bucket(bucket)
                .key(k)
                .body(std::fs::read(logs.join(n)).unwrap().into())
                .send()
                .await
                .unwrap();
        }
        let q = sqs.create_queue().queue_name("notes").send().await.unwrap();
        let url = q.queue_url().unwrap().to_string();
        let encoded = |k: &str| k.replace(':', "%3A");
        let bodies = vec![
            // S3 event notification, key URL-encoded as S3 sends it.
            s3_event(bucket, &encoded(&keys[0])),
            // The same, through SNS.
            json!({"Type":"Notification","MessageId":"1","Message": s3_event(bucket, &encoded(&keys[1]))}).to_string(),
            // EventBridge "Object Created".
            json!({"version":"0","source":"aws.s3","detail-type":"Object Created",
                   "detail":{"bucket":{"name":bucket},"object":{"key":keys[2]}}})
            .to_string(),
            // CloudTrail's own SNS notification, with a digest key beside.
            json!({"Type":"Notification","Message": json!({"s3Bucket":bucket,"s3ObjectKey":[
                keys[3].clone(),
                "AWSLogs/111111111111/CloudTrail-Digest/us-east-1/2026/11/20/x_CloudTrail-Digest_y.json.gz"
            ]}).to_string()})
            .to_string(),
            json!({"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":bucket}).to_string(),
            "this is not a notification".to_string(),
        ];
        for b in bodies {
            sqs.send_message().queue_url(&url).message_body(b).send().await.unwrap();
        }
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let stderr = run(&moto, dir.path(), &queue_url);
    assert!(stderr.contains("objects=4"), "{stderr}");
    assert!(stderr.contains("skipping malformed message"), "{stderr}");
    let got = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let files: Vec<_> = names.iter().map(|n| logs.join(n)).collect();
    let out = trailwatch().arg("scan").args(&files).output().unwrap();
    assert_eq!(keys_of(&got), keys_of(&alerts(&out.stdout)));
    // Nothing twice (a burst group fires once per window: its first event
    // tells the windows apart).
    let identities: BTreeSet<String> = got
        .iter()
        .map(|a| format!("{}|{}|{}", a["rule_id"], a["event_id"], a["event_ids"][0]))
        .collect();
    assert_eq!(got.len(), identities.len(), "nothing twice");
    assert!(
        got.iter()
            .any(|a| a["source"].as_str().unwrap().contains("2026:11:20_0_")),
        "decoded key"
    );

    // Every message, malformed and test ones included, was deleted.
    assert_queue_empty(&rt, &sqs, &queue_url);

    // Redelivery of an already processed object: deleted, no new alert.
    rt.block_on(async {
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(s3_event(bucket, &keys[1]))
            .send()
            .await
            .unwrap();
    });
    let stderr = run(&moto, dir.path(), &queue_url);
    assert!(
        stderr.contains("objects=0") && stderr.contains("already_processed=1"),
        "{stderr}"
    );
    assert_eq!(
        alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap()).len(),
        got.len()
    );
    assert_queue_empty(&rt, &sqs, &queue_url);
}

#[test]
fn visibility_is_extended_while_objects_are_in_progress() {
    let moto = moto::Moto::start();
    let (s3, sqs) = (moto.s3(), moto.sqs());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let local = tempfile::tempdir().unwrap();
    corpus(local.path(), 20, 3000);
    let bucket = "slow";
    let mut keys = Vec::new();
    let queue_url = rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for e in std::fs::read_dir(local.path()).unwrap() {
            let p = e.unwrap().path();
            let key = format!("AWSLogs/1/CloudTrail/us-east-1/2026/11/20/{}", p.file_name().unwrap().to_string_lossy());
            s3.put_object().bucket(bucket).key(&key).body(std::fs::read(&p).unwrap().into()).send().await.unwrap();
            keys.push(key);
        }
        let url = sqs.create_queue().queue_name("slow").send().await.unwrap().queue_url().unwrap().to_string();
        let body = json!({"Type":"Notification","Message": json!({"s3Bucket":bucket,"s3ObjectKey":keys}).to_string()});
        sqs.send_message().queue_url(&url).message_body(body.to_string()).send().await.unwrap();
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = moto.config(
        dir.path(),
        &format!("[[sources.sqs]]\nqueue_url = {queue_url:?}\nwait_time_secs = 1\nvisibility_timeout_secs = 2"),
        "[limits]\nobjects_in_flight = 1\n",
    );
    let mut child = moto
        .daemon(&["run", "--once"], &cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A competing consumer: once the daemon holds the message (its first
    // alerts are written), the message must stay hidden until it is done.
    let started = std::time::Instant::now();
    let alerts_path = dir.path().join("alerts.jsonl");
    while std::fs::metadata(&alerts_path).map_or(0, |m| m.len()) == 0
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut stolen = 0;
    while child.try_wait().unwrap().is_none() {
        let got = rt.block_on(async {
            sqs.receive_message()
                .queue_url(&queue_url)
                .visibility_timeout(0)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap()
        });
        stolen += got.messages().len();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let took = started.elapsed();
    assert!(child.wait().unwrap().success());
    assert!(
        took > std::time::Duration::from_secs(3),
        "the work must outlast the 2 s timeout ({took:?})"
    );
    assert_eq!(stolen, 0, "the message became visible while in progress");
    assert_eq!(
        alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap()).len(),
        20 * 300
    );
}

#[test]
fn sigterm_cuts_a_long_poll_short() {
    let moto = moto::Moto::start();
    let sqs = moto.sqs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(async {
        sqs.create_queue()
            .queue_name("quiet")
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = moto.config(
        dir.path(),
        &format!("[[sources.sqs]]\nqueue_url = {url:?}\nwait_time_secs = 20"),
        "",
    );
    let mut child = moto
        .daemon(&["run"], &cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3)); // inside a 20 s long poll
    let t = std::time::Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("signal received, all committed"), "{err}");
}

/// What a queue brings that is not an object is counted where Prometheus
/// sees it (S3's test event, a malformed message), and a healthy daemon
/// shows every error series at zero from the start, not "no data".
#[test]
fn test_events_and_malformed_messages_are_metrics_and_error_series_start_at_zero() {
    let moto = moto::Moto::start();
    let sqs = moto.sqs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queue_url = rt.block_on(async {
        let q = sqs.create_queue().queue_name("quiet").send().await.unwrap();
        let url = q.queue_url().unwrap().to_string();
        for b in [
            json!({"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}).to_string(),
            "not a notification".to_string(),
            "{\"Records\": 5}".to_string(),
            // Valid, naming nothing to read: a removal, a digest file.
            s3_event("b", "AWSLogs/1/CloudTrail/us-east-1/2026/12/02/x.json.gz")
                .replace("ObjectCreated:Put", "ObjectRemoved:Delete"),
            json!({"s3Bucket":"b","s3ObjectKey":[
                "AWSLogs/111111111111/CloudTrail-Digest/us-east-1/2026/12/02/111111111111_CloudTrail-Digest_us-east-1_trail_us-east-1_20261202T000000Z.json.gz"
            ]})
            .to_string(),
        ] {
            sqs.send_message()
                .queue_url(&url)
                .message_body(b)
                .send()
                .await
                .unwrap();
        }
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = moto.config(
        dir.path(),
        &format!("[[sources.sqs]]\nqueue_url = {queue_url:?}\nwait_time_secs = 1"),
        "",
    );
    moto::listen_on(&cfg, port);
    let mut child = moto
        .daemon(&["run"], &cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let series = |outcome: &str| {
        format!("trailwatch_sqs_messages_total{{outcome=\"{outcome}\",source=\"sqs:quiet\"}}")
    };
    let metrics = wait_for("the messages counted", 60, || {
        let (_, body) = http_get(&addr, "/metrics")?;
        (sample(&body, &series("test_event")) == Some(1.0)
            && sample(&body, &series("malformed")) == Some(2.0)
            && sample(&body, &series("nothing_to_read")) == Some(2.0)
            && sample(&body, &series("deleted")) == Some(5.0))
        .then_some(body)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(sample(&metrics, &series("received")), Some(5.0));
    assert_eq!(sample(&metrics, &series("cloudtrail_event")), Some(0.0));
    for kind in ["gzip", "invalid_json", "too_large", "read", "truncated"] {
        assert_eq!(
            sample(
                &metrics,
                &format!("trailwatch_input_errors_total{{kind=\"{kind}\",source=\"sqs:quiet\"}}")
            ),
            Some(0.0),
            "{kind}"
        );
    }
}

/// A notification for an object that is gone is a poison message: each
/// attempt costs one short line naming the object and the AWS error code
/// (not the SDK's 2,000-character dump), is counted as a failed object,
/// and after the queue's maxReceiveCount the message moves to the
/// dead-letter queue instead of cycling forever.
#[test]
fn a_poison_message_costs_a_short_line_each_time_then_goes_to_the_dead_letter_queue() {
    let moto = moto::Moto::start();
    let (s3, sqs) = (moto.s3(), moto.sqs());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/20/gone.json.gz";
    let (queue_url, dlq_url) = rt.block_on(async {
        s3.create_bucket().bucket("trail").send().await.unwrap();
        let dlq = sqs.create_queue().queue_name("dead").send().await.unwrap();
        let dlq_url = dlq.queue_url().unwrap().to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        let q = sqs
            .create_queue()
            .queue_name("notes")
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": arn, "maxReceiveCount": "2"}).to_string(),
            )
            .send()
            .await
            .unwrap();
        let url = q.queue_url().unwrap().to_string();
        sqs.send_message()
            .queue_url(&url)
            .message_body(s3_event("trail", key))
            .send()
            .await
            .unwrap();
        (url, dlq_url)
    });
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "[[sources.sqs]]\nqueue_url = {queue_url:?}\nwait_time_secs = 1\nvisibility_timeout_secs = 1"
    );
    let mut failures = Vec::new();
    for _ in 0..4 {
        let stderr = moto.run_once(dir.path(), &source);
        failures.extend(
            stderr
                .lines()
                .filter(|l| l.contains("gone.json.gz"))
                .map(str::to_owned),
        );
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
    assert!(!failures.is_empty(), "the failure is logged");
    for l in &failures {
        assert!(l.contains("s3://trail/") && l.contains("NoSuchKey"), "{l}");
        assert!(l.len() < 600, "{} characters: {l}", l.len());
    }
    let in_dlq = rt.block_on(async {
        sqs.receive_message()
            .queue_url(&dlq_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(
        in_dlq.messages().len(),
        1,
        "the poison message is in the dead-letter queue"
    );
    assert!(
        in_dlq.messages()[0]
            .body()
            .unwrap()
            .contains("gone.json.gz")
    );
}

/// A CloudTrail record as EventBridge's `detail` and a log file both carry
/// it.
fn record(event_name: &str, user: &str, n: usize, extra: Value) -> Value {
    // Two minutes ago, a second apart: inside the burst windows.
    let time =
        trailwatch::time::iso_time(trailwatch::time::now_event_ms() - 120_000 + n as i64 * 1000);
    let mut r = json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "userName": user, "accountId": "111111111111",
            "arn": format!("arn:aws:iam::111111111111:user/{user}"),
            "principalId": "AIDAEXAMPLE", "accessKeyId": "AKIAEXAMPLE"},
        "eventTime": time,
        "eventSource": "iam.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "aws-cli/2.15",
        "eventID": format!("00000000-0000-4000-8000-{:012}", n),
        "eventType": "AwsApiCall",
        "recipientAccountId": "111111111111",
        "eventCategory": "Management"
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

/// The EventBridge envelope of a CloudTrail record, as AWS documents it.
fn eventbridge(detail_type: &str, detail: &Value) -> String {
    json!({"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":detail_type,
        "source":"aws.iam","account":"111111111111","time":detail["eventTime"],"region":"us-east-1",
        "resources":[],"detail":detail})
    .to_string()
}

/// Real time through EventBridge, then the same events in the trail's log
/// file (through an S3 notification on the same queue): each alerts once,
/// and the burst windows count each event once. Principal `prober` has 6
/// denials through EventBridge and the same 6 again in the file: counted
/// twice they would reach the burst's 10. Principal `mixed` has 6 through
/// EventBridge and 4 other ones only in the file: 10 distinct events, so
/// the windows do join both paths and the burst fires.
#[test]
fn eventbridge_events_alert_once_beside_their_log_file() {
    let moto = moto::Moto::start();
    let (s3, sqs) = (moto.s3(), moto.sqs());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "trail";
    let denied = json!({"errorCode": "AccessDenied", "errorMessage": "not authorized"});
    let mut eb: Vec<(&str, Value)> = Vec::new();
    let mut file: Vec<Value> = Vec::new();
    let root = record(
        "ConsoleLogin",
        "root",
        0,
        json!({"userIdentity": {"type": "Root", "arn": "arn:aws:iam::111111111111:root",
                "accountId": "111111111111", "principalId": "111111111111"},
               "eventSource": "signin.amazonaws.com", "eventType": "AwsConsoleSignIn",
               "responseElements": {"ConsoleLogin": "Success"},
               "additionalEventData": {"MFAUsed": "No"}}),
    );
    eb.push(("AWS Console Sign In via CloudTrail", root.clone()));
    file.push(root);
    for n in 1..=6 {
        let r = record("ListUsers", "prober", n, denied.clone());
        eb.push(("AWS API Call via CloudTrail", r.clone()));
        file.push(r);
    }
    for n in 11..=16 {
        eb.push((
            "AWS API Call via CloudTrail",
            record("ListRoles", "mixed", n, denied.clone()),
        ));
    }
    for n in 17..=20 {
        file.push(record("ListRoles", "mixed", n, denied.clone()));
    }
    let key = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/12/02/111111111111_CloudTrail_us-east-1_20261202T0000Z_eb.json.gz";
    let gz = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(json!({ "Records": file }).to_string().as_bytes())
            .unwrap();
        enc.finish().unwrap()
    };
    let queue_url = rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(gz.into())
            .send()
            .await
            .unwrap();
        let q = sqs.create_queue().queue_name("live").send().await.unwrap();
        let url = q.queue_url().unwrap().to_string();
        for (i, (detail_type, r)) in eb.iter().enumerate() {
            let raw = eventbridge(detail_type, r);
            // Raw delivery and SNS-wrapped delivery, alternately.
            let body = if i % 2 == 0 {
                raw
            } else {
                json!({"Type":"Notification","MessageId":format!("sns-{i}"),"Message":raw})
                    .to_string()
            };
            sqs.send_message()
                .queue_url(&url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        // EventBridge delivers at least once: a repeat of the root login.
        sqs.send_message()
            .queue_url(&url)
            .message_body(eventbridge("AWS Console Sign In via CloudTrail", &eb[0].1))
            .send()
            .await
            .unwrap();
        sqs.send_message()
            .queue_url(&url)
            .message_body(s3_event(bucket, key))
            .send()
            .await
            .unwrap();
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let stderr = run(&moto, dir.path(), &queue_url);
    assert!(!stderr.contains("malformed"), "{stderr}");
    let got = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let count = |rule: &str, user: &str| {
        got.iter()
            .filter(|a| {
                a["rule_title"].as_str().unwrap_or("").contains(rule)
                    && a["principal"].as_str().unwrap_or("").contains(user)
            })
            .count()
    };
    let root_logins = got
        .iter()
        .filter(|a| a["event_name"] == "ConsoleLogin" && a["correlation"].is_null())
        .count();
    assert!(root_logins >= 1, "the root login alerts: {got:#?}");
    // Each event's alerts once, whichever path brought it first.
    let per_event: BTreeSet<String> = got
        .iter()
        .filter(|a| a["correlation"].is_null())
        .map(|a| format!("{}|{}", a["rule_id"], a["event_id"]))
        .collect();
    assert_eq!(
        per_event.len(),
        got.iter().filter(|a| a["correlation"].is_null()).count(),
        "an alert twice: {got:#?}"
    );
    assert_eq!(count("API Call Denied", "prober"), 6, "{got:#?}");
    assert_eq!(count("API Call Denied", "mixed"), 10, "{got:#?}");
    assert_eq!(
        count("Burst of Denied", "prober"),
        0,
        "6 events seen twice were counted twice: {got:#?}"
    );
    assert_eq!(
        count("Burst of Denied", "mixed"),
        1,
        "6 + 4 distinct events across both paths: {got:#?}"
    );
    // EventBridge events name the queue and message they came from.
    assert!(
        got.iter()
            .any(|a| a["source"].as_str().unwrap().starts_with(&queue_url)),
        "{got:#?}"
    );
    // Every message was deleted (the repeat of an event already known too).
    assert_queue_empty(&rt, &sqs, &queue_url);
}

/// One message naming the same object many times (an attacker's, or a
/// buggy relay's) costs one read: 200 copies of one S3 record, one object
/// processed, the message deleted.
#[test]
fn an_object_named_many_times_in_one_message_is_read_once() {
    let moto = moto::Moto::start();
    let (s3, sqs) = (moto.s3(), moto.sqs());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "trail";
    let key = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/12/02/111111111111_CloudTrail_us-east-1_20261202T0000Z_many.json.gz";
    let record: Value = serde_json::from_str(&s3_event(bucket, key)).unwrap();
    let many = json!({"Records": vec![record["Records"][0].clone(); 200]}).to_string();
    let queue_url = rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(b"{\"Records\":[]}".to_vec().into())
            .send()
            .await
            .unwrap();
        let q = sqs.create_queue().queue_name("many").send().await.unwrap();
        let url = q.queue_url().unwrap().to_string();
        sqs.send_message()
            .queue_url(&url)
            .message_body(many)
            .send()
            .await
            .unwrap();
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let stderr = run(&moto, dir.path(), &queue_url);
    assert!(
        stderr.contains("objects=1 ") && stderr.contains("already_processed=0"),
        "{stderr}"
    );
    assert_queue_empty(&rt, &sqs, &queue_url);
}
