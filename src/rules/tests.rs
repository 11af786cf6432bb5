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

/// Dry run: a rule marked `dry_run: true` in its file, or named in
/// `rules.dry_run`, still matches (it is counted and written) but its
/// alerts say so; a filter in dry run removes nothing and counts what it
/// would have removed, in its own metric; a name nothing answers to is an
/// error, not a silent no-op; a wrong-typed key names its line.
#[test]
fn dry_run_rules_still_match_and_dry_run_filters_remove_nothing() {
    let rule = |id: &str, extra: &str| {
        format!(
            "title: Keys {id}\nid: {id}\nname: keys_{id}\n{extra}logsource: {{product: aws, service: cloudtrail}}\n\
             detection:\n  sel:\n    eventName: CreateAccessKey\n  condition: sel\n"
        )
    };
    let filter = "title: Terraform may\nid: f-tf\nname: terraform_may\ndry_run: true\n\
                  logsource: {product: aws, service: cloudtrail}\n\
                  filter:\n  rules:\n    - r-one\n  selection:\n    userIdentity.userName: terraform\n  condition: selection\n";
    let mut set = RuleSet::from_texts([
        (
            "one.yml",
            rule(
                "r-one",
                "runbook: |\n  Revoke the key.\n  Ask the owner.\ndry_run: true\n",
            )
            .as_str(),
        ),
        ("two.yml", rule("r-two", "").as_str()),
        ("f.yml", filter),
    ]);
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    let one = &set.rules()[0].meta;
    assert!(one.dry_run);
    assert_eq!(
        one.runbook.as_deref(),
        Some("Revoke the key.\nAsk the owner.")
    );
    assert!(!set.rules()[1].meta.dry_run);
    assert!(set.filters()[0].dry_run);
    let event = r#"{"eventName":"CreateAccessKey","eventID":"e1","userIdentity":{"type":"IAMUser","userName":"terraform"}}"#;
    let (alerts, ids) = crate::pipeline::evaluate_document(event.as_bytes(), &set);
    assert_eq!(ids, ["r-one", "r-two"], "a dry-run filter removes nothing");
    assert!(alerts[0].rule.dry_run && !alerts[1].rule.dry_run);
    let json = serde_json::to_value(&alerts[0]).unwrap();
    assert_eq!(json["rule"]["dry_run"], true);
    let m = crate::metrics::Metrics::new(&[]);
    m.filters(&set);
    let text = m.render();
    assert!(
        text.contains("trailwatch_filter_dry_run_total{filter=\"f-tf\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("trailwatch_filtered_total{filter=\"f-tf\"} 1"),
        "{text}"
    );

    // By name from the configuration, for rules, correlations and filters.
    set.set_dry_run("keys_r-two").unwrap();
    assert!(set.rules()[1].meta.dry_run);
    let mut builtin = RuleSet::builtin();
    builtin.set_dry_run("access_denied_burst").unwrap();
    assert!(
        builtin
            .correlations()
            .iter()
            .any(|c| c.meta.name.as_deref() == Some("access_denied_burst") && c.meta.dry_run)
    );
    assert_eq!(
        set.set_dry_run("no-such-rule").unwrap_err().to_string(),
        "no rule, correlation rule or filter has the id or name `no-such-rule`"
    );

    // A file whose YAML breaks after a first document loads what it can,
    // and reading the keys stops at the break (the YAML reader repeats a
    // parse error for ever if asked for the next document).
    let broken = format!("{}---\ntitle: [unclosed\n", rule("r-ok", "dry_run: true\n"));
    let set = RuleSet::from_texts([("broken.yml", broken.as_str())]);
    assert!(!set.errors.is_empty());

    // A runbook too long to read in a mail is refused, at its line, not
    // cut mid-step.
    let long = format!("runbook: {}\n", "step. ".repeat(400));
    let set = RuleSet::from_texts([("long.yml", rule("r-long", &long).as_str())]);
    assert!(
        set.errors.iter().any(|e| e.path == "long.yml"
            && e.line == Some(4)
            && e.message
                .starts_with("`runbook` is 2399 bytes, at most 2048")),
        "{:?}",
        set.errors
    );

    // A wrong-typed key is a problem of its file, at its line.
    let set = RuleSet::from_texts([("bad.yml", rule("r-bad", "dry_run: sometimes\n").as_str())]);
    assert!(
        set.errors.iter().any(|e| e.path == "bad.yml"
            && e.line == Some(4)
            && e.message == "`dry_run` must be true or false"),
        "{:?}",
        set.errors
    );
}

/// Every built-in rule and correlation carries a runbook (the mail's
/// "what to do first"), and none is in dry run.
#[test]
fn every_builtin_rule_has_a_runbook() {
    let set = RuleSet::builtin();
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    let metas = set
        .rules()
        .iter()
        .map(|r| &r.meta)
        .chain(set.correlations().iter().map(|c| &c.meta));
    let mut n = 0;
    for m in metas {
        n += 1;
        let r = m.runbook.as_deref().unwrap_or_default();
        assert!(r.len() > 40, "{} ({}) has no runbook", m.title, m.path);
        assert!(!m.dry_run, "{} is in dry run", m.title);
    }
    assert!(n >= 35, "{n}");
}
