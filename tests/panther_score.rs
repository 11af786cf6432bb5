//! Scores the built-in pack against panther-analysis' labeled CloudTrail
//! cases (../shared/data/cloudtrail/labeled): for every Panther rule that one
//! of ours corresponds to, each labeled event is run through the pack and
//! our verdict compared with Panther's. Every disagreement must be listed
//! below with the reason our semantics differ on purpose; any other
//! disagreement fails the test. The printed table is in docs/rules.md.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;
use trailwatch::pipeline::evaluate_document;
use trailwatch::rules::RuleSet;

/// Panther rule → our rule names (a match of any counts).
const MAP: &[(&str, &[&str])] = &[
    ("AWS.Console.RootLogin", &["root_console_login"]),
    (
        "AWS.Console.RootLoginFailed",
        &["root_console_login_failed"],
    ),
    (
        "AWS.CloudTrail.RootAccessKeyCreated",
        &["root_access_key_created"],
    ),
    ("AWS.Root.Activity", &["root_usage"]),
    (
        "AWS.Console.LoginWithoutMFA",
        &[
            "console_login_without_mfa",
            "root_console_login_without_mfa",
        ],
    ),
    ("AWS.IAM.CreateUser", &["iam_user_created"]),
    ("AWS.IAM.AttachAdminUserPolicy", &["admin_policy_attached"]),
    ("AWS.IAM.AttachAdminRolePolicy", &["admin_policy_attached"]),
    (
        "AWS.IAM.Backdoor.User.Keys",
        &["access_key_created_for_other_user"],
    ),
    (
        "AWS.User.Login.Profile.Modified",
        &["login_profile_for_other_user"],
    ),
    ("AWS.CloudTrail.Stopped", &["cloudtrail_tampering"]),
    (
        "AWS.CloudTrail.EventSelectorsDisabled",
        &["cloudtrail_tampering"],
    ),
    ("AWS.ConfigService.DisabledDeleted", &["config_tampering"]),
    ("AWS.CloudTrail.AttemptToLeaveOrg", &["leave_organization"]),
    ("AWS.CloudTrail.UnauthorizedAPICall", &["access_denied"]),
    ("AWS.IAMUser.ReconAccessDenied", &["access_denied"]),
    ("AWS.CloudTrail.RootPasswordChanged", &["root_usage"]),
    (
        "AWS.CloudTrail.LoginProfileCreatedOrModified",
        &["login_profile_for_other_user"],
    ),
    (
        "AWS.CloudTrail.SecurityConfigurationChange",
        &[
            "cloudtrail_tampering",
            "config_tampering",
            "guardduty_tampering",
        ],
    ),
    (
        "AWS.IAM.BackdoorRole",
        &[
            "role_trusts_any_principal",
            "role_created_trusting_other_account",
        ],
    ),
    ("Standard.NewUserAccountCreated", &["iam_user_created"]),
    (
        "AWS.CloudTrail.IAMEntityCreatedWithoutCloudFormation",
        &["iam_user_created"],
    ),
];

/// (Panther rule, test name) where we differ on purpose, and why.
const DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "AWS.CloudTrail.LoginProfileCreatedOrModified",
        "ChangeOwnPassword",
        "as for AWS.User.Login.Profile.Modified: 'own' is inferred from a role session name \
         the caller chooses",
    ),
    (
        "AWS.CloudTrail.IAMEntityCreatedWithoutCloudFormation",
        "IAM Entity Created Automatically",
        "Panther's rule carries a site allowlist (CloudFormation and approved role \
         patterns); trailwatch alerts on every new user and leaves the allowlist to a \
         Sigma filter (rules.filters), where a team can see and review it",
    ),
    (
        "AWS.CloudTrail.IAMEntityCreatedWithoutCloudFormation",
        "IAM Entity Created Manually With Approved Role Pattern",
        "the same site allowlist, as a filter in trailwatch",
    ),
    (
        "Standard.NewUserAccountCreated",
        "User Account Created - CloudTrail",
        "the labeled event is partial (no eventSource, a mocked label); a real CreateUser \
         carries iam.amazonaws.com, which iam_user_created requires so a look-alike name \
         from another service cannot raise it",
    ),
    (
        "AWS.Root.Activity",
        "Root Read-Only Enumeration",
        "root_usage flags any use of root, reads included: AWS advises no routine root use at all",
    ),
    (
        "AWS.Root.Activity",
        "Root User Failed Activity",
        "a failed root action is still someone holding root credentials (or trying them)",
    ),
    (
        "AWS.User.Login.Profile.Modified",
        "ChangeOwnPassword",
        "Panther infers 'own' from the role session name, which the caller chooses when \
         assuming a role; an attacker could name a session after the victim. Only an IAM \
         user's userName counts as self here",
    ),
];

#[test]
fn pack_against_panther_labels() {
    let rules = RuleSet::builtin();
    let name_to_id: BTreeMap<String, String> = rules
        .rules()
        .iter()
        .filter_map(|r| r.meta.name.clone().map(|n| (n, r.meta.id.clone())))
        .collect();
    let labeled = std::fs::read_to_string(
        shared_data().join("cloudtrail/labeled/panther-analysis_rule-tests.jsonl"),
    )
    .unwrap();
    // Panther rule → [tp, fp, fn, tn]
    let mut table: BTreeMap<&str, [u32; 4]> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for line in labeled.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let rule = case["rule"].as_str().unwrap();
        let Some((panther, ours)) = MAP.iter().find(|(p, _)| *p == rule) else {
            continue;
        };
        let expected = case["expected"].as_bool().unwrap();
        let (_, matched) = evaluate_document(case["event"].to_string().as_bytes(), &rules);
        let got = ours.iter().any(|n| matched.contains(&name_to_id[*n]));
        let cell = table.entry(panther).or_default();
        cell[match (got, expected) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        }] += 1;
        let test_name = case["test_name"].as_str().unwrap_or("");
        if got != expected
            && !DIFFERENCES
                .iter()
                .any(|(p, t, _)| p == panther && *t == test_name)
        {
            unexplained.push(format!(
                "{panther} / {test_name:?}: Panther {expected}, ours {got} (mocks: {})",
                case["has_mocks"]
            ));
        }
    }
    println!("| Panther rule | trailwatch rule(s) | TP | FP | FN | TN |");
    println!("|---|---|---|---|---|---|");
    for (panther, ours) in MAP {
        let c = table.get(panther).copied().unwrap_or_default();
        println!(
            "| {panther} | {} | {} | {} | {} | {} |",
            ours.join(", "),
            c[0],
            c[1],
            c[2],
            c[3]
        );
    }
    let total = table.values().fold([0u32; 4], |mut t, c| {
        for i in 0..4 {
            t[i] += c[i];
        }
        t
    });
    println!(
        "| **all** | | **{}** | **{}** | **{}** | **{}** |",
        total[0], total[1], total[2], total[3]
    );
    let ratio = |a: u32, b: u32| f64::from(a) / f64::from(a + b);
    println!(
        "\nprecision {:.2}, recall {:.2} ({} cases)",
        ratio(total[0], total[1]),
        ratio(total[0], total[2]),
        total.iter().sum::<u32>()
    );
    assert!(
        table.len() == MAP.len(),
        "every mapped Panther rule has cases"
    );
    println!();
    for (p, t, why) in DIFFERENCES {
        println!("- {p} / {t}: {why}");
    }
    assert!(unexplained.is_empty(), "\n{}", unexplained.join("\n"));
}
