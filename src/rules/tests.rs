use super::*;

fn ua_rule(id: &str, needle: &str) -> String {
    format!(
        "title: {id}\nid: {id}\nlogsource: {{product: aws, service: cloudtrail}}\n\
         detection:\n  sel:\n    userAgent|contains: '{needle}'\n  condition: sel\n"
    )
}

#[test]
fn the_substring_miss_cache_is_per_rule_set_and_per_value() {
    let a = RuleSet::from_texts([("a.yml", ua_rule("a", "zzzz").as_str())]);
    let b = RuleSet::from_texts([("b.yml", ua_rule("b", "abcd").as_str())]);
    assert!(a.errors.is_empty() && b.errors.is_empty());
    let event = br#"{"eventName":"X","userAgent":"xx-abcd-xx"}"#;
    // The same value, on the same thread: a misses (and remembers it),
    // b must still match, and so must a on a value that has its needle.
    for _ in 0..3 {
        assert!(crate::pipeline::evaluate_document(event, &a).1.is_empty());
        assert_eq!(crate::pipeline::evaluate_document(event, &b).1, ["b"]);
    }
    let hit = br#"{"eventName":"X","userAgent":"xx-ZZZZ-xx"}"#;
    assert_eq!(crate::pipeline::evaluate_document(hit, &a).1, ["a"]);
    assert!(crate::pipeline::evaluate_document(hit, &b).1.is_empty());
}

/// Sigma filters: a filter naming a rule by id, name or title removes that
/// rule's matches on the records its detection matches, and no other
/// rule's; a filter naming no rule applies to all; every removal is
/// counted; a filter naming a rule that is not loaded is a problem, not a
/// silent no-op.
#[test]
fn filters_remove_the_matches_they_name_and_count_them() {
    let rule = |id: &str, name: &str| {
        format!(
            "title: Keys for {name}\nid: {id}\nname: {name}\nlogsource: {{product: aws, service: cloudtrail}}\n\
             detection:\n  sel:\n    eventName: CreateAccessKey\n  condition: sel\n"
        )
    };
    let filter = |targets: &str, user: &str| {
        format!(
            "title: Terraform may {user}\nid: f-{user}\nlogsource: {{product: aws, service: cloudtrail}}\n\
             filter:\n  rules:\n{targets}  selection:\n    userIdentity.userName: {user}\n  condition: selection\n"
        )
    };
    let by_id = filter("    - r-one\n", "terraform");
    let by_title = filter("    - Keys for two\n", "deployer");
    let any = "title: Break glass\nid: f-any\nlogsource: {product: aws, service: cloudtrail}\n\
               filter:\n  rules: []\n  selection:\n    userIdentity.userName: breakglass\n  condition: selection\n";
    let set = RuleSet::from_texts([
        ("one.yml", rule("r-one", "one").as_str()),
        ("two.yml", rule("r-two", "two").as_str()),
        ("f1.yml", by_id.as_str()),
        ("f2.yml", by_title.as_str()),
        ("f3.yml", any),
    ]);
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    assert_eq!(set.filters().len(), 3);
    let event = |user: &str| {
        format!(
            r#"{{"eventName":"CreateAccessKey","eventID":"e-{user}","userIdentity":{{"type":"IAMUser","userName":"{user}"}}}}"#
        )
    };
    let matched = |user: &str| crate::pipeline::evaluate_document(event(user).as_bytes(), &set).1;
    assert_eq!(matched("alice"), ["r-one", "r-two"], "no filter applies");
    assert_eq!(matched("terraform"), ["r-two"], "r-one's exception only");
    assert_eq!(matched("deployer"), ["r-one"], "named by title");
    assert!(matched("breakglass").is_empty(), "a filter for every rule");
    let removed: Vec<(String, u64)> = set
        .filters()
        .iter()
        .map(|f| (f.id.clone(), f.take_removed()))
        .collect();
    assert_eq!(
        removed,
        [
            ("f-terraform".to_string(), 1),
            ("f-deployer".to_string(), 1),
            ("f-any".to_string(), 2)
        ]
    );

    // A filter naming a rule that is not loaded.
    let typo = filter("    - r-on\n", "terraform");
    let set = RuleSet::from_texts([
        ("one.yml", rule("r-one", "one").as_str()),
        ("f.yml", typo.as_str()),
    ]);
    assert!(
        set.errors
            .iter()
            .any(|e| e.path == "f.yml" && e.message.contains("`r-on`, which is not loaded")),
        "{:?}",
        set.errors
    );
}

/// `rules.filters`: filters added on top of a built set (the built-in
/// pack); a rule in a filters-only file is refused.
#[test]
fn filters_from_configuration_apply_on_top_of_the_builtin_pack() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mf_root_lab.yml"),
        "title: Lab account root logins\nid: mf-root-lab\nlogsource: {product: aws, service: cloudtrail}\n\
         filter:\n  rules: []\n  selection:\n    recipientAccountId: '999999999999'\n  condition: selection\n",
    )
    .unwrap();
    let root = |account: &str| {
        format!(
            r#"{{"eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com","eventID":"e-{account}","recipientAccountId":"{account}","userIdentity":{{"type":"Root","arn":"arn:aws:iam::{account}:root","accountId":"{account}"}},"responseElements":{{"ConsoleLogin":"Success"}},"additionalEventData":{{"MFAUsed":"No"}}}}"#
        )
    };
    let mut set = RuleSet::builtin();
    let before = crate::pipeline::evaluate_document(root("999999999999").as_bytes(), &set).1;
    assert!(!before.is_empty());
    set.add_filters(&[dir.path().to_path_buf()]).unwrap();
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    assert!(
        crate::pipeline::evaluate_document(root("999999999999").as_bytes(), &set)
            .1
            .is_empty()
    );
    assert_eq!(
        crate::pipeline::evaluate_document(root("111111111111").as_bytes(), &set).1,
        before,
        "other accounts untouched"
    );
    let m = crate::metrics::Metrics::new(&[]);
    m.filters(&set);
    assert!(
        m.render().contains(&format!(
            "trailwatch_filtered_total{{filter=\"mf-root-lab\"}} {}",
            before.len()
        )),
        "{}",
        m.render()
    );

    std::fs::write(dir.path().join("rule.yml"), ua_rule("sneaky", "x")).unwrap();
    let mut set = RuleSet::builtin();
    set.add_filters(&[dir.path().to_path_buf()]).unwrap();
    assert!(
        set.errors
            .iter()
            .any(|e| e.message.contains("holds rules, not only filters")),
        "{:?}",
        set.errors
    );
}
