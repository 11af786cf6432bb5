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
