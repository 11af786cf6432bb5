//! The credential inventory end to end: generated CloudTrail files
//! spanning months, read by the daemon in order, raise exactly the alerts
//! only a memory of credentials can raise, judged by event time (the files
//! are read in seconds; the ages are months): a key unused for 115 days
//! then used, the same key past its 90-day rotation, root's access key, a
//! console password dormant for 81 days, a cross-account role assumed from
//! a second account. Nothing is repeated when the daemon runs again, and
//! temporary keys, same-account role assumptions and recent uses raise
//! nothing.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

fn event(time: &str, id: &str, name: &str, who: Value, extra: Value) -> Value {
    let mut e = json!({
        "eventVersion": "1.09", "eventTime": time, "eventID": id, "eventName": name,
        "eventSource": "iam.amazonaws.com", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2",
        "recipientAccountId": "111111111111", "userIdentity": who,
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn user(name: &str, key: &str) -> Value {
    json!({"type": "IAMUser", "arn": format!("arn:aws:iam::111111111111:user/{name}"),
           "accountId": "111111111111", "userName": name, "accessKeyId": key})
}

fn write(dir: &Path, name: &str, records: Vec<Value>) {
    std::fs::write(
        dir.join(name),
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
    )
    .unwrap();
}

#[test]
fn the_inventory_raises_what_only_memory_of_credentials_can() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("in");
    std::fs::create_dir_all(&into).unwrap();
    let bob_key = "AKIAEXAMPLEBOB000001";
    let root = json!({"type": "Root", "arn": "arn:aws:iam::111111111111:root",
                      "accountId": "111111111111", "accessKeyId": "AKIAEXAMPLEROOT00001"});
    let carol = json!({"type": "IAMUser", "arn": "arn:aws:iam::111111111111:user/carol",
                       "accountId": "111111111111", "userName": "carol"});
    let login = |time: &str, id: &str, mfa: &str| {
        let mut e = event(
            time,
            id,
            "ConsoleLogin",
            carol.clone(),
            json!({
            "eventSource": "signin.amazonaws.com",
            "responseElements": {"ConsoleLogin": "Success"},
            "additionalEventData": {"MFAUsed": mfa}}),
        );
        e["eventSource"] = json!("signin.amazonaws.com");
        e
    };
    let assume = |time: &str, id: &str, from: &str| {
        event(
            time,
            id,
            "AssumeRole",
            json!({"type": "AWSAccount", "principalId": "X", "accountId": from}),
            json!({"eventSource": "sts.amazonaws.com",
                   "requestParameters": {"roleArn": "arn:aws:iam::111111111111:role/Deploy",
                                         "roleSessionName": "s"}}),
        )
    };
    write(
        &into,
        "a_2026-01.json",
        vec![
            event(
                "2026-01-05T10:00:00Z",
                "create",
                "CreateAccessKey",
                user("alice", "AKIAEXAMPLEALICE0001"),
                json!({"requestParameters": {"userName": "bob"},
                   "responseElements": {"accessKey": {"accessKeyId": bob_key, "userName": "bob",
                                                      "status": "Active"}}}),
            ),
            event(
                "2026-01-06T10:00:00Z",
                "bob-1",
                "GetUser",
                user("bob", bob_key),
                json!({}),
            ),
            login("2026-01-10T08:00:00Z", "carol-1", "Yes"),
            // A temporary key: not a long-term credential.
            event(
                "2026-01-11T08:00:00Z",
                "temp",
                "GetUser",
                user("dave", "ASIAEXAMPLETEMP00001"),
                json!({}),
            ),
        ],
    );
    write(
        &into,
        "b_2026-02.json",
        vec![
            assume("2026-02-01T00:00:00Z", "assume-1", "222222222222"),
            assume("2026-02-02T00:00:00Z", "assume-2", "333333333333"),
            assume("2026-02-03T00:00:00Z", "assume-3", "222222222222"),
            // The role's own account: not a trust in use.
            assume("2026-02-04T00:00:00Z", "assume-4", "111111111111"),
        ],
    );
    write(
        &into,
        "c_2026-03.json",
        vec![
            event(
                "2026-03-01T00:00:00Z",
                "root-1",
                "ListUsers",
                root.clone(),
                json!({}),
            ),
            event(
                "2026-03-01T05:00:00Z",
                "root-2",
                "ListRoles",
                root.clone(),
                json!({}),
            ),
        ],
    );
    write(
        &into,
        "d_2026-04.json",
        vec![login("2026-04-01T08:00:00Z", "carol-2", "No")],
    );
    // A use dated far ahead (a wrong clock, a forged file) would make every
    // real use after it look older: left out.
    write(
        &into,
        "d2_future.json",
        vec![event(
            "2099-01-01T00:00:00Z",
            "bob-future",
            "GetUser",
            user("bob", bob_key),
            json!({}),
        )],
    );
    write(
        &into,
        "e_2026-05.json",
        vec![
            event(
                "2026-05-01T10:00:00Z",
                "bob-2",
                "GetUser",
                user("bob", bob_key),
                json!({}),
            ),
            event(
                "2026-05-02T10:00:00Z",
                "bob-3",
                "GetUser",
                user("bob", bob_key),
                json!({}),
            ),
        ],
    );
    let cfg = dir.path().join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {:?}\n[[sources.files]]\npath = {:?}\n\
             [output]\njsonl_path = {:?}\n[rules]\ndirs = [{:?}]\n",
            dir.path().join("state"),
            into,
            dir.path().join("alerts.jsonl"),
            dir.path().join("no-rules"),
        ),
    )
    .unwrap();
    // No rules of the pack: only the inventory speaks.
    common::no_rules(dir.path());
    let found = || -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = written(dir.path())
            .iter()
            .map(|a| {
                (
                    a["rule_name"].as_str().unwrap().to_owned(),
                    a["event_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let log = run_once(&cfg, &[], &[]);
    let mut want: Vec<(String, String)> = [
        ("access_key_not_rotated_in_use", "bob-2"),
        ("dormant_access_key_used", "bob-2"),
        ("dormant_console_password_used", "carol-2"),
        ("role_assumed_from_new_account", "assume-2"),
        ("root_access_key_used", "root-1"),
    ]
    .iter()
    .map(|(r, e)| (r.to_string(), format!("{r}:{e}")))
    .collect();
    want.sort();
    assert_eq!(found(), want, "{log}");
    let alerts = written(dir.path());
    let dormant = alerts
        .iter()
        .find(|a| a["rule_name"] == "dormant_access_key_used")
        .unwrap();
    assert_eq!(dormant["level"], "high");
    assert_eq!(dormant["principal"], "arn:aws:iam::111111111111:user/bob");
    let why = dormant["rule"]["description"].as_str().unwrap();
    assert!(why.contains("115 days") && why.contains(bob_key), "{why}");
    assert_eq!(
        alerts
            .iter()
            .find(|a| a["rule_name"] == "root_access_key_used")
            .unwrap()["level"],
        "critical"
    );

    // Again, and with a later file: the old alerts are not repeated; the
    // key's next month past rotation is.
    write(
        &into,
        "f_2026-06.json",
        vec![event(
            "2026-06-03T10:00:00Z",
            "bob-4",
            "GetUser",
            user("bob", bob_key),
            json!({}),
        )],
    );
    run_once(&cfg, &[], &[]);
    want.push((
        "access_key_not_rotated_in_use".into(),
        "access_key_not_rotated_in_use:bob-4".into(),
    ));
    want.sort();
    assert_eq!(found(), want);
}
