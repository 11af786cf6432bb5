//! Stratus Red Team's AWS techniques that work through IAM or STS (new
//! credentials, new trust paths, new ways in), each with the built-in rules
//! that catch it, or why it is out of scope. Where `../shared` holds the
//! technique's real detonation log (`cloudtrail/logs/stratus-red-team`), the
//! test runs it through the built-in pack and requires every listed rule to
//! fire on it; techniques without a recording are covered by their rules'
//! own fixtures (`rules/**/NAME.tests.jsonl`), which the test checks exist.
//! The printed table is the one in docs/rules.md.

mod common;

use common::*;
use trailwatch::pipeline::evaluate_document;
use trailwatch::rules::RuleSet;

/// What becomes of one technique.
enum Cover {
    /// These built-in rules (by name) all fire on it.
    Rules(&'static [&'static str]),
    /// Out of scope for a CloudTrail rule pack, and why.
    OutOfScope(&'static str),
}

/// (Stratus technique id, what it does, coverage).
const CATALOGUE: &[(&str, &str, Cover)] = &[
    (
        "aws.persistence.iam-backdoor-role",
        "add an outside account to a role's trust policy",
        Cover::Rules(&["role_trust_policy_changed"]),
    ),
    (
        "aws.persistence.iam-backdoor-user",
        "create an access key for an existing user",
        Cover::Rules(&["access_key_created_for_other_user", "access_key_created"]),
    ),
    (
        "aws.persistence.iam-create-admin-user",
        "create a user, attach AdministratorAccess, create its key",
        Cover::Rules(&[
            "iam_user_created",
            "admin_policy_attached",
            "policy_attached_to_user",
            "access_key_created",
        ]),
    ),
    (
        "aws.persistence.iam-create-backdoor-role",
        "create an administrator role trusting an outside account",
        Cover::Rules(&[
            "role_created_trusting_other_account",
            "admin_policy_attached",
        ]),
    ),
    (
        "aws.persistence.iam-create-user-login-profile",
        "give an existing user a console password",
        Cover::Rules(&["login_profile_for_other_user"]),
    ),
    (
        "aws.privilege-escalation.iam-update-user-login-profile",
        "change another user's console password",
        Cover::Rules(&["login_profile_for_other_user"]),
    ),
    (
        "aws.persistence.rolesanywhere-create-trust-anchor",
        "register an outside certificate authority with IAM Roles Anywhere",
        Cover::Rules(&["rolesanywhere_trust_anchor_created"]),
    ),
    (
        "aws.persistence.sts-federation-token",
        "mint federation tokens that outlive the access key",
        Cover::Rules(&["federation_token_created"]),
    ),
    (
        "aws.initial-access.console-login-without-mfa",
        "sign in to the console with a password alone",
        Cover::Rules(&["console_login_without_mfa"]),
    ),
    (
        "aws.credential-access.ec2-steal-instance-credentials",
        "use an instance role's credentials from outside the instance",
        Cover::OutOfScope(
            "the calls are the role's own, from an address CloudTrail cannot tie to the \
             instance; GuardDuty's InstanceCredentialExfiltration finding uses VPC \
             knowledge trailwatch does not have",
        ),
    ),
    (
        "aws.defense-evasion.organizations-leave",
        "take the account out of the organization (and its SCPs)",
        Cover::Rules(&["leave_organization"]),
    ),
    (
        "aws.defense-evasion.cloudtrail-stop",
        "stop the trail",
        Cover::Rules(&["cloudtrail_tampering"]),
    ),
    (
        "aws.defense-evasion.cloudtrail-delete",
        "delete the trail",
        Cover::Rules(&["cloudtrail_tampering"]),
    ),
    (
        "aws.defense-evasion.cloudtrail-event-selectors",
        "stop logging management events through event selectors",
        Cover::Rules(&["cloudtrail_tampering"]),
    ),
    (
        "aws.defense-evasion.cloudtrail-lifecycle-rule",
        "expire the trail's S3 objects after a day",
        Cover::OutOfScope(
            "an S3 PutBucketLifecycleConfiguration on the trail's bucket: a data event \
             of a bucket trailwatch does not know is the trail's; trailwatch's own \
             answer is log-file integrity validation (digests), which names deleted logs",
        ),
    ),
];

#[test]
fn every_iam_technique_raises_an_alert_or_says_why_not() {
    let rules = RuleSet::builtin();
    let recordings = shared_data().join("cloudtrail/logs/stratus-red-team");
    let id_of = |name: &str| -> String {
        rules
            .rules()
            .iter()
            .map(|r| &r.meta)
            .chain(rules.correlations().iter().map(|c| &c.meta))
            .find(|m| m.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no built-in rule named {name}"))
            .id
            .clone()
    };
    let fixtures: Vec<std::path::PathBuf> =
        walkdir::WalkDir::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .collect();
    let mut recorded = 0;
    println!("| Stratus Red Team technique | what it does | caught by | evidence |");
    println!("|---|---|---|---|");
    for (technique, what, cover) in CATALOGUE {
        let file = recordings.join(format!("{technique}.json.gz"));
        let (caught, evidence) = match cover {
            Cover::OutOfScope(why) => (format!("out of scope: {why}"), "-".to_string()),
            Cover::Rules(names) => {
                let evidence = if file.exists() {
                    recorded += 1;
                    let doc = serde_json::json!({ "Records": records_of(&file) });
                    let (_, matched) = evaluate_document(doc.to_string().as_bytes(), &rules);
                    for name in *names {
                        assert!(
                            matched.contains(&id_of(name)),
                            "{technique}: {name} did not fire on the recording (fired: {matched:?})"
                        );
                    }
                    "the recording".to_string()
                } else {
                    for name in *names {
                        id_of(name);
                        assert!(
                            fixtures.iter().any(|p| p
                                .file_name()
                                .is_some_and(|f| f == format!("{name}.tests.jsonl").as_str())),
                            "{technique}: {name} has no fixtures"
                        );
                    }
                    "the rules' fixtures".to_string()
                };
                (
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    evidence,
                )
            }
        };
        println!("| `{technique}` | {what} | {caught} | {evidence} |");
    }
    assert!(recorded >= 5, "{recorded} recordings found");
}
