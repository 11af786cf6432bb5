//! The webhook sink end to end: a receiver on 127.0.0.1 (a small HTTP/1.1
//! server in this test, answering 500 to the first requests) gets every
//! alert exactly once despite the failures, as Slack-compatible JSON with
//! event text defused.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{Value, json};

/// Bodies a receiver accepted, shared with its thread.
type Bodies = Arc<Mutex<Vec<Value>>>;

/// Accept POSTs; answer 500 to the first `fail` of them, then 200; keep the
/// bodies of the accepted ones. Returns the port, the bodies and the count
/// of requests.
fn receiver(fail: usize) -> (u16, Bodies, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(0usize));
    let (acc, reqs) = (Arc::clone(&accepted), Arc::clone(&requests));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let n = {
                let mut r = reqs.lock().unwrap();
                *r += 1;
                *r
            };
            let status = if n <= fail {
                "500 Internal Server Error"
            } else {
                acc.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (port, accepted, requests)
}

fn config(dir: &Path, storm: &str) -> std::path::PathBuf {
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n\
             [output]\njsonl_path = {:?}\n[shutdown]\ngrace_secs = 20\n\
             [webhook]\nurl_env = \"TW_WEBHOOK_URL\"\nmin_level = \"informational\"\n[webhook.storm]\n{storm}",
            dir.join("state"),
            dir.join("in"),
            dir.join("alerts.jsonl"),
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn every_alert_arrives_once_through_failures_with_mentions_defused() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("in");
    std::fs::create_dir_all(&into).unwrap();
    let mut records = records_of(
        &fixtures()
            .join("cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json"),
    );
    for r in &mut records {
        r["userIdentity"]["arn"] = json!("<!channel> <https://evil.example|login here>");
    }
    std::fs::write(
        into.join("f.json"),
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
    )
    .unwrap();
    let (port, accepted, requests) = receiver(3);
    let url = format!("http://127.0.0.1:{port}/hooks/T000/B000/XXXXSECRETXXXX");
    let cfg = config(
        dir.path(),
        "suppress_secs = 0\nretry_initial_secs = 1\nretry_max_secs = 1\n",
    );
    let out = trailwatch()
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .env("TW_WEBHOOK_URL", &url)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("delivery failed"), "{log}");
    assert!(
        !log.contains("XXXXSECRETXXXX"),
        "the URL is a secret: {log}"
    );

    let alerts = alerts(&std::fs::read(dir.path().join("alerts.jsonl")).unwrap());
    let accepted = accepted.lock().unwrap();
    assert_eq!(*requests.lock().unwrap(), accepted.len() + 3);
    let mut seqs = Vec::new();
    let mut got = Vec::new();
    for body in accepted.iter() {
        let text = body["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(text.contains("&lt;!channel&gt;"));
        for a in body["trailwatch"]["alerts"].as_array().unwrap() {
            seqs.push(a["seq"].as_u64().unwrap());
            got.push(a["alert"].clone());
        }
    }
    let mut unique = seqs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seqs.len(), "an alert posted twice");
    let key = |a: &Value| (a["rule_id"].to_string(), a["event_id"].to_string());
    let mut want: Vec<_> = alerts.iter().map(key).collect();
    let mut have: Vec<_> = got.iter().map(key).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
}
