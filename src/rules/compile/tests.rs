use super::*;
use crate::parse::Record;

fn rule(detection: &str) -> Result<Matcher, CompileError> {
    let yaml = format!(
        "title: t\nlogsource: {{product: aws, service: cloudtrail}}\ndetection:\n{detection}"
    );
    let c = rsigma_parser::parse_sigma_yaml(&yaml).expect("yaml");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    compile(&c.rules[0])
}

#[test]
fn regex_prefilter_literal_is_only_what_every_match_contains() {
    let lit =
        |p: &str, i| required_literal(p, i, false, false).map(|l| String::from_utf8(l).unwrap());
    assert_eq!(
        lit(".+:assumed-role/aws:.+", false).as_deref(),
        Some(":assumed-role/aws:")
    );
    assert_eq!(lit("^(abc)d+xyz$", false).as_deref(), Some("abc"));
    assert_eq!(lit("ab(cd)ef", false).as_deref(), Some("abcdef"));
    assert_eq!(lit("abc|xyz", false), None); // either, neither required
    assert_eq!(lit("a(bc)?d", false), None); // optional part breaks the run
    assert_eq!(lit("AbC.+", true), None); // case-insensitive: classes
    assert_eq!(lit("(?i)AbC.+", false), None);
    // The prefilter never changes a verdict.
    let m = rule("  sel:\n    userIdentity.arn|re: '.+:assumed-role/aws:.+'\n  condition: sel")
        .unwrap();
    assert!(matches(
        &m,
        r#"{"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1"}}"#
    ));
    assert!(!matches(
        &m,
        r#"{"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/app/x"}}"#
    ));
    assert!(!matches(
        &m,
        r#"{"userIdentity":{"arn":":assumed-role/aws:"}}"#
    ));
}

fn matches(m: &Matcher, event: &str) -> bool {
    let mut bytes = event.as_bytes().to_vec();
    let tape = simd_json::to_tape(&mut bytes).unwrap();
    let r = Record::new(Value::new(&tape.0)).unwrap();
    m.matches(&r)
}

/// (detection YAML, event, expected)
const CASES: &[(&str, &str, bool)] = &[
    // Maps are AND, lists are OR, value lists are OR.
    (
        "  s:\n    eventName: A\n    errorCode: X\n  condition: s",
        r#"{"eventName":"a","errorCode":"x"}"#,
        true,
    ),
    (
        "  s:\n    eventName: A\n    errorCode: X\n  condition: s",
        r#"{"eventName":"a"}"#,
        false,
    ),
    (
        "  s:\n    - eventName: A\n    - errorCode: X\n  condition: s",
        r#"{"errorCode":"X"}"#,
        true,
    ),
    (
        "  s:\n    eventName: [A, B]\n  condition: s",
        r#"{"eventName":"B"}"#,
        true,
    ),
    // Conditions.
    (
        "  a:\n    eventName: A\n  b:\n    errorCode: X\n  condition: a and not b",
        r#"{"eventName":"A","errorCode":"X"}"#,
        false,
    ),
    (
        "  a:\n    eventName: A\n  b:\n    errorCode: X\n  condition: a and not b",
        r#"{"eventName":"A"}"#,
        true,
    ),
    (
        "  a:\n    eventName: A\n  b:\n    errorCode: X\n  condition: (a or b) and not a",
        r#"{"errorCode":"X"}"#,
        true,
    ),
    (
        "  sel_1:\n    eventName: A\n  sel_2:\n    errorCode: X\n  condition: 1 of sel_*",
        r#"{"errorCode":"X"}"#,
        true,
    ),
    (
        "  sel_1:\n    eventName: A\n  sel_2:\n    errorCode: X\n  condition: all of sel_*",
        r#"{"errorCode":"X"}"#,
        false,
    ),
    (
        "  sel_1:\n    eventName: A\n  sel_2:\n    errorCode: X\n  condition: all of them",
        r#"{"eventName":"A","errorCode":"X"}"#,
        true,
    ),
    // `them` ignores identifiers starting with an underscore.
    (
        "  a:\n    eventName: A\n  _b:\n    errorCode: X\n  condition: all of them",
        r#"{"eventName":"A"}"#,
        true,
    ),
    // Nested paths, through arrays.
    (
        "  s:\n    userIdentity.type: Root\n  condition: s",
        r#"{"userIdentity":{"type":"Root"}}"#,
        true,
    ),
    (
        "  s:\n    resources.ARN|endswith: ':trail/x'\n  condition: s",
        r#"{"resources":[{"ARN":"a"},{"ARN":"arn:trail/x"}]}"#,
        true,
    ),
    (
        "  s:\n    tags: b\n  condition: s",
        r#"{"tags":["a","b"]}"#,
        true,
    ),
    // Modifiers.
    (
        "  s:\n    userAgent|contains: Boto3\n  condition: s",
        r#"{"userAgent":"x boto3/1.2"}"#,
        true,
    ),
    (
        "  s:\n    userAgent|startswith: aws-cli\n  condition: s",
        r#"{"userAgent":"AWS-CLI/2"}"#,
        true,
    ),
    (
        "  s:\n    userAgent|contains|all: [a, z]\n  condition: s",
        r#"{"userAgent":"abc"}"#,
        false,
    ),
    (
        "  s:\n    userAgent|contains|all: [a, c]\n  condition: s",
        r#"{"userAgent":"abc"}"#,
        true,
    ),
    (
        "  s:\n    userAgent|cased: ABC\n  condition: s",
        r#"{"userAgent":"abc"}"#,
        false,
    ),
    (
        "  s:\n    errorCode|exists: false\n  condition: s",
        r#"{"eventName":"x"}"#,
        true,
    ),
    (
        "  s:\n    errorCode|exists: true\n  condition: s",
        r#"{"errorCode":""}"#,
        true,
    ),
    (
        "  s:\n    requestParameters.minimumPasswordLength|lt: 14\n  condition: s",
        r#"{"requestParameters":{"minimumPasswordLength":8}}"#,
        true,
    ),
    (
        "  s:\n    requestParameters.minimumPasswordLength|lt: 14\n  condition: s",
        r#"{"requestParameters":{"minimumPasswordLength":14}}"#,
        false,
    ),
    // Types: numbers, booleans, null.
    (
        "  s:\n    requestParameters.port|startswith: 2\n  condition: s",
        r#"{"requestParameters":{"port":"22"}}"#,
        true,
    ),
    (
        "  s:\n    requestParameters.port|startswith: 2\n  condition: s",
        r#"{"requestParameters":{"port":22}}"#,
        true,
    ),
    (
        "  s:\n    requestParameters.port|endswith: 3\n  condition: s",
        r#"{"requestParameters":{"port":22}}"#,
        false,
    ),
    (
        "  s:\n    requestParameters.port: 22\n  condition: s",
        r#"{"requestParameters":{"port":22}}"#,
        true,
    ),
    (
        "  s:\n    requestParameters.port: 22\n  condition: s",
        r#"{"requestParameters":{"port":"22"}}"#,
        true,
    ),
    (
        "  s:\n    readOnly: false\n  condition: s",
        r#"{"readOnly":false}"#,
        true,
    ),
    (
        "  s:\n    readOnly: false\n  condition: s",
        r#"{"readOnly":true}"#,
        false,
    ),
    (
        "  s:\n    errorCode: null\n  condition: s",
        r#"{"errorCode":null}"#,
        true,
    ),
    ("  s:\n    errorCode: null\n  condition: s", r#"{}"#, true),
    (
        "  s:\n    errorCode: null\n  condition: s",
        r#"{"errorCode":"X"}"#,
        false,
    ),
    // Keywords search every string.
    (
        "  k:\n    - evilcorp\n  condition: k",
        r#"{"requestParameters":{"a":["x","EvilCorp.com"]}}"#,
        true,
    ),
    (
        "  k:\n    - evilcorp\n  condition: k",
        r#"{"requestParameters":{"a":["x"]}}"#,
        false,
    ),
];

#[test]
fn table() {
    for (det, event, want) in CASES {
        let m = rule(det).unwrap_or_else(|e| panic!("{det}: {e:?}"));
        assert_eq!(matches(&m, event), *want, "\n{det}\n{event}");
    }
}

#[test]
fn event_name_index_is_derived_only_when_required() {
    let names = |d: &str| {
        rule(d).unwrap().required("eventName").map(|s| {
            let mut v: Vec<_> = s.into_iter().collect();
            v.sort();
            v
        })
    };
    assert_eq!(
        names("  s:\n    eventName: [CreateUser, CreateAccessKey]\n  condition: s"),
        Some(vec!["createaccesskey".into(), "createuser".into()])
    );
    assert_eq!(
        names("  a:\n    eventName: A\n  b:\n    errorCode: X\n  condition: a and not b"),
        Some(vec!["a".into()])
    );
    // Wildcards, negation and an unpinned alternative disable indexing.
    assert_eq!(names("  s:\n    eventName: Create*\n  condition: s"), None);
    assert_eq!(names("  s:\n    eventName: A\n  condition: not s"), None);
    assert_eq!(
        names("  a:\n    eventName: A\n  b:\n    errorCode: X\n  condition: a or b"),
        None
    );
}

#[test]
fn unsupported_forms_are_refused_with_a_message() {
    let refused = |det: &str, needle: &str| {
        let e = rule(det).expect_err(det);
        assert!(e.message.contains(needle), "{det}: {e:?}");
        e
    };
    let e = refused("  s:\n    eventTime|hour: 3\n  condition: s", "|hour");
    assert_eq!(e.near.as_deref(), Some("eventTime"));
    refused("  s:\n    eventName: A\n  condition: s and t", "`t`");
    refused(
        "  s:\n    eventName: A\n  condition: 1 of x*",
        "matches no detection",
    );
    refused(
        "  s:\n    a|contains|re: x\n  condition: s",
        "conflicting modifiers",
    );
    refused(
        "  s:\n    a|re|base64: x\n  condition: s",
        "value transformations",
    );
    refused(
        "  s:\n    a|base64|base64offset: x\n  condition: s",
        "exclusive",
    );
    refused("  s:\n    a|wide: x\n  condition: s", "UTF-16");
    refused("  s:\n    a|contains|i: x\n  condition: s", "need |re");
    refused(
        "  s:\n    a|contains|all: x\n  condition: s",
        "more than one value",
    );
    refused(
        "  s:\n    a|re: '('\n  condition: s",
        "invalid regular expression",
    );
    refused(
        "  s:\n    a|cidr: 10.0.0.300/8\n  condition: s",
        "invalid CIDR",
    );
    refused("  s:\n    a|gt: lots\n  condition: s", "needs a number");
}

/// Modifiers beyond the basic string shapes.
const MORE: &[(&str, &str, bool)] = &[
    (
        "  s:\n    userAgent|re: '^aws-cli/[0-9]+'\n  condition: s",
        r#"{"userAgent":"aws-cli/2.1"}"#,
        true,
    ),
    // re is case-sensitive unless |i.
    (
        "  s:\n    userAgent|re: '^AWS'\n  condition: s",
        r#"{"userAgent":"aws-cli/2.1"}"#,
        false,
    ),
    (
        "  s:\n    userAgent|re|i: '^AWS'\n  condition: s",
        r#"{"userAgent":"aws-cli/2.1"}"#,
        true,
    ),
    (
        "  s:\n    userAgent|re|s: 'a.b'\n  condition: s",
        r#"{"userAgent":"a\nb"}"#,
        true,
    ),
    (
        "  s:\n    userAgent|re: 'a.b'\n  condition: s",
        r#"{"userAgent":"a\nb"}"#,
        false,
    ),
    (
        "  s:\n    userAgent|re|m: '^b$'\n  condition: s",
        r#"{"userAgent":"a\nb"}"#,
        true,
    ),
    (
        "  s:\n    sourceIPAddress|cidr: 10.0.0.0/8\n  condition: s",
        r#"{"sourceIPAddress":"10.2.3.4"}"#,
        true,
    ),
    (
        "  s:\n    sourceIPAddress|cidr: 10.0.0.0/8\n  condition: s",
        r#"{"sourceIPAddress":"11.2.3.4"}"#,
        false,
    ),
    (
        "  s:\n    sourceIPAddress|cidr: 10.0.0.0/8\n  condition: s",
        r#"{"sourceIPAddress":"iam.amazonaws.com"}"#,
        false,
    ),
    (
        "  s:\n    sourceIPAddress|cidr: '2001:db8::/32'\n  condition: s",
        r#"{"sourceIPAddress":"2001:db8::1"}"#,
        true,
    ),
    // base64 of "admin" is YWRtaW4=
    (
        "  s:\n    requestParameters.userData|base64: admin\n  condition: s",
        r#"{"requestParameters":{"userData":"YWRtaW4="}}"#,
        true,
    ),
    (
        "  s:\n    requestParameters.userData|base64offset|contains: curl\n  condition: s",
        r#"{"requestParameters":{"userData":"IyEvYmluL2Jhc2gKY3VybCBodHRwOi8vZXZpbA=="}}"#,
        true,
    ),
    (
        "  s:\n    requestParameters.userData|base64offset|contains: wget\n  condition: s",
        r#"{"requestParameters":{"userData":"IyEvYmluL2Jhc2gKY3VybCBodHRwOi8vZXZpbA=="}}"#,
        false,
    ),
    (
        "  s:\n    a|windash|contains: ' -enc '\n  condition: s",
        r#"{"a":"powershell /enc x"}"#,
        true,
    ),
    (
        "  s:\n    a|windash|contains: ' -enc '\n  condition: s",
        r#"{"a":"powershell +enc x"}"#,
        false,
    ),
    (
        "  s:\n    userIdentity.userName|fieldref: requestParameters.userName\n  condition: s",
        r#"{"userIdentity":{"userName":"Alice"},"requestParameters":{"userName":"alice"}}"#,
        true,
    ),
    (
        "  s:\n    userIdentity.userName|fieldref: requestParameters.userName\n  condition: s",
        r#"{"userIdentity":{"userName":"alice"},"requestParameters":{"userName":"bob"}}"#,
        false,
    ),
    (
        "  s:\n    userIdentity.userName|fieldref: requestParameters.userName\n  condition: s",
        r#"{"userIdentity":{"userName":"alice"}}"#,
        false,
    ),
    (
        "  s:\n    a|fieldref|contains: b\n  condition: s",
        r#"{"a":"xxhixx","b":"HI"}"#,
        true,
    ),
    (
        "  s:\n    eventName|neq: ListUsers\n  condition: s",
        r#"{"eventName":"GetUser"}"#,
        true,
    ),
    (
        "  s:\n    eventName|neq: [ListUsers, GetUser]\n  condition: s",
        r#"{"eventName":"GetUser"}"#,
        false,
    ),
    (
        "  s:\n    errorCode|exists: true\n  condition: s",
        r#"{"errorCode":null}"#,
        false,
    ),
    ("  s:\n    n: 22\n  condition: s", r#"{"n":"22.0"}"#, true),
    ("  s:\n    n|gte: 1.5\n  condition: s", r#"{"n":"2"}"#, true),
];

#[test]
fn more_modifiers() {
    for (det, event, want) in MORE {
        let m = rule(det).unwrap_or_else(|e| panic!("{det}: {e:?}"));
        assert_eq!(matches(&m, event), *want, "\n{det}\n{event}");
    }
}

#[test]
fn base64_offsets_and_windash_expansions() {
    // The specification's example: "/bin/bash" at the three alignments.
    assert_eq!(
        base64_offsets(b"/bin/bash"),
        ["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]
    );
    let w = windash("-a -b").unwrap();
    assert_eq!(w.len(), 25);
    assert!(w.contains(&"/a \u{2014}b".to_string()));
    assert!(windash(&"-".repeat(9)).is_err());
    assert_eq!(utf16(b"A", Modifier::Wide), [0x41, 0]);
    assert_eq!(utf16(b"A", Modifier::Utf16be), [0, 0x41]);
    assert_eq!(utf16(b"A", Modifier::Utf16), [0xFF, 0xFE, 0x41, 0]);
}
