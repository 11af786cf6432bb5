//! The built-in rules against their SigmaHQ counterparts
//! (`../shared/data/sigma/rules`), run by the same engine over every real
//! CloudTrail event in `../shared` (the logs and the labeled cases' events):
//! how often each pair agrees, and every event where they do not, named.
//! There are no labeled SigmaHQ cases, so this is agreement, not accuracy;
//! the disagreements are listed with the reason in docs/rules.md, and the
//! table below is pinned so a change to either side shows up here.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;
use trailwatch::pipeline::evaluate_document;
use trailwatch::rules::RuleSet;

/// SigmaHQ rule file → our rule names (a match of any counts).
const PAIRS: &[(&str, &[&str])] = &[
    (
        "aws_cloudtrail_console_login_failed_authentication.yml",
        &["console_login_failed", "root_console_login_failed"],
    ),
    (
        "aws_cloudtrail_console_login_success_without_mfa.yml",
        &[
            "console_login_without_mfa",
            "root_console_login_without_mfa",
        ],
    ),
    (
        "aws_cloudtrail_disable_logging.yml",
        &["cloudtrail_tampering"],
    ),
    (
        "aws_cloudtrail_guardduty_detector_deleted_or_updated.yml",
        &["guardduty_tampering"],
    ),
    ("aws_guardduty_disruption.yml", &["guardduty_tampering"]),
    ("aws_config_disable_recording.yml", &["config_tampering"]),
    (
        "aws_iam_backdoor_users_keys.yml",
        &["access_key_created_for_other_user"],
    ),
    ("aws_root_account_usage.yml", &["root_usage"]),
    (
        "aws_update_login_profile.yml",
        &["login_profile_for_other_user"],
    ),
];

/// (both, ours only, theirs only) per pair, over every event.
const PINNED: &[(&str, [u32; 3])] = &[
    (
        "aws_cloudtrail_console_login_failed_authentication.yml",
        [3, 4, 0],
    ),
    (
        "aws_cloudtrail_console_login_success_without_mfa.yml",
        [10, 1, 5],
    ),
    ("aws_cloudtrail_disable_logging.yml", [4, 1, 3]),
    (
        "aws_cloudtrail_guardduty_detector_deleted_or_updated.yml",
        [0, 0, 0],
    ),
    ("aws_guardduty_disruption.yml", [0, 0, 0]),
    ("aws_config_disable_recording.yml", [2, 0, 0]),
    ("aws_iam_backdoor_users_keys.yml", [3, 0, 2]),
    ("aws_root_account_usage.yml", [14, 0, 0]),
    ("aws_update_login_profile.yml", [3, 1, 0]),
];

#[test]
fn builtin_rules_against_their_sigmahq_counterparts() {
    let ours = RuleSet::builtin();
    let theirs = RuleSet::load(&[shared_data().join("sigma/rules")]).unwrap();
    let id_in =
        |set: &RuleSet, pred: &dyn Fn(&trailwatch::rules::RuleMeta) -> bool| -> Vec<String> {
            set.rules()
                .iter()
                .map(|r| &r.meta)
                .filter(|m| pred(m))
                .map(|m| m.id.clone())
                .collect()
        };
    let events = shared_events();
    assert!(events.len() > 900, "{} events", events.len());
    let mut table: BTreeMap<&str, [u32; 3]> = BTreeMap::new();
    let mut differ: Vec<String> = Vec::new();
    for (file, names) in PAIRS {
        let their_ids = id_in(&theirs, &|m| m.path.ends_with(file));
        assert_eq!(their_ids.len(), 1, "{file} not loaded");
        let our_ids = id_in(&ours, &|m| names.contains(&m.name.as_deref().unwrap_or("")));
        assert_eq!(our_ids.len(), names.len(), "{names:?}");
        let cell = table.entry(file).or_default();
        for e in &events {
            let doc = e.to_string();
            let (_, a) = evaluate_document(doc.as_bytes(), &ours);
            let (_, b) = evaluate_document(doc.as_bytes(), &theirs);
            let us = our_ids.iter().any(|i| a.contains(i));
            let them = b.contains(&their_ids[0]);
            match (us, them) {
                (true, true) => cell[0] += 1,
                (true, false) => cell[1] += 1,
                (false, true) => cell[2] += 1,
                (false, false) => continue,
            }
            if us != them {
                let f = |v: &Value| {
                    v.as_str()
                        .unwrap_or("-")
                        .chars()
                        .take(40)
                        .collect::<String>()
                };
                differ.push(format!(
                    "{file}: {} only: {} type={} arn={} user={} target={} error={} result={} mfa={} saml={}",
                    if us { "ours" } else { "theirs" },
                    f(&e["eventName"]),
                    f(&e["userIdentity"]["type"]),
                    f(&e["userIdentity"]["arn"]),
                    f(&e["userIdentity"]["userName"]),
                    f(&e["requestParameters"]["userName"]),
                    f(&e["errorCode"]),
                    f(&e["responseElements"]["ConsoleLogin"]),
                    f(&e["additionalEventData"]["MFAUsed"]),
                    f(&e["additionalEventData"]["SamlProviderArn"]),
                ));
            }
        }
    }
    println!("| SigmaHQ rule | trailwatch rule(s) | both | ours only | theirs only |");
    println!("|---|---|---|---|---|");
    for (file, names) in PAIRS {
        let c = table[file];
        println!(
            "| `{}` | {} | {} | {} | {} |",
            file.trim_end_matches(".yml"),
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            c[0],
            c[1],
            c[2]
        );
    }
    println!();
    for d in &differ {
        println!("- {d}");
    }
    assert_eq!(PINNED.len(), PAIRS.len());
    for (file, want) in PINNED {
        assert_eq!(
            table[file], *want,
            "{file}: update the table in docs/rules.md"
        );
    }
}
