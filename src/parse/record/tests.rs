use super::*;

#[test]
fn top_names_need_every_byte_to_match() {
    for t in Top::ALL {
        assert_eq!(Top::from_name(t.name()), Some(*t));
        let name = t.name().as_bytes();
        for i in 0..name.len() {
            let mut near = name.to_vec();
            near[i] ^= 0x01;
            let near = String::from_utf8(near).unwrap();
            assert_eq!(Top::from_name(&near), None, "{near}");
        }
    }
}

#[test]
fn same_bytes_is_equality_at_every_length() {
    for n in 0..40usize {
        let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
        assert!(same_bytes(&a, &a.clone()));
        assert!(!same_bytes(&a, &a[..n.saturating_sub(1)]) || n == 0);
        for i in 0..n {
            let mut b = a.clone();
            b[i] ^= 0x20;
            assert!(!same_bytes(&a, &b), "n={n} i={i}");
        }
    }
}

fn with_record(json: &str, f: impl FnOnce(Record<'_, '_>)) {
    let mut bytes = json.as_bytes().to_vec();
    let tape = simd_json::to_tape(&mut bytes).unwrap();
    let rec = Record::new(Value::new(&tape.0)).unwrap();
    f(rec)
}

/// The `userIdentity` index gives what a walk by key gives: the last
/// of duplicate keys, arrays flattened, and a walk when `userIdentity`
/// is not an object at all.
#[test]
fn identity_index_agrees_with_a_walk() {
    let docs = [
        r#"{"userIdentity":{"type":"Root","type":"IAMUser","arn":["a","b"],"accountId":1}}"#,
        r#"{"userIdentity":[{"x":1},{"type":"InArray","sessionContext":{"sessionIssuer":{"type":"Role"}}}]}"#,
        r#"{"userIdentity":"text","eventName":"X"}"#,
        r#"{"userIdentity":{"sessionContext":{"sessionIssuer":{"type":"Role"}},"invokedBy":"s3.amazonaws.com","userName":"u","principalId":"p"},"userIdentity":{"type":"Second"}}"#,
        r#"{"eventName":"NoIdentity"}"#,
    ];
    let members = [
        Ident::Type,
        Ident::Arn,
        Ident::AccountId,
        Ident::PrincipalId,
        Ident::UserName,
        Ident::InvokedBy,
        Ident::SessionContext,
    ];
    let walked = |r: &Record<'_, '_>, keys: &[&str]| -> Vec<String> {
        let mut out = Vec::new();
        if let Some(u) = r.root().get("userIdentity") {
            walk(u, keys, &mut |v| {
                out.push(format!("{:?}", v.to_json()));
                false
            });
        }
        out
    };
    for doc in docs {
        with_record(doc, |r| {
            for m in members {
                let mut first = None;
                if let Some(u) = r.root().get("userIdentity") {
                    walk(u, &[m.name()], &mut |v| {
                        first = v.as_str();
                        first.is_some()
                    });
                }
                assert_eq!(r.ident_str(m), first, "{doc} {m:?}");
                let path = FieldPath::new(&format!("userIdentity.{}", m.name()));
                let mut got = Vec::new();
                r.any_path(&path, &mut |v| {
                    got.push(format!("{:?}", v.to_json()));
                    false
                });
                assert_eq!(got, walked(&r, &[m.name()]), "{doc} {m:?}");
            }
            let deep = FieldPath::new("userIdentity.sessionContext.sessionIssuer.type");
            let mut got = Vec::new();
            r.any_path(&deep, &mut |v| {
                got.push(format!("{:?}", v.to_json()));
                false
            });
            assert_eq!(
                got,
                walked(&r, &["sessionContext", "sessionIssuer", "type"]),
                "{doc}"
            );
        });
    }
    with_record(docs[0], |r| {
        assert_eq!(r.ident_str(Ident::Type), Some("IAMUser"));
        assert!(r.duplicate_keys());
    });
    with_record(docs[2], |r| assert!(!r.duplicate_keys()));
    with_record(docs[1], |r| {
        assert_eq!(r.ident_str(Ident::Type), Some("InArray"));
    });
    for name in [
        "type",
        "arn",
        "accountId",
        "principalId",
        "userName",
        "invokedBy",
        "sessionContext",
    ] {
        let m = Ident::from_name(name).unwrap();
        assert_eq!(m.name(), name);
        for i in 0..name.len() {
            let mut near = name.as_bytes().to_vec();
            near[i] ^= 1;
            assert_eq!(Ident::from_name(std::str::from_utf8(&near).unwrap()), None);
        }
    }
}

#[test]
fn paths_through_objects_and_arrays() {
    with_record(
        r#"{"eventName":"CreateAccessKey","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/a"},
           "resources":[{"ARN":"arn:1"},{"ARN":"arn:2"}],
           "additionalEventData":{"MFAUsed":"No"},"requestParameters":{"policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}}"#,
        |r| {
            assert_eq!(r.str(Top::EventName), Some("CreateAccessKey"));
            assert_eq!(r.str_at(&["userIdentity", "type"]), Some("IAMUser"));
            assert_eq!(r.str_at(&["additionalEventData", "MFAUsed"]), Some("No"));
            assert_eq!(
                r.str_at(&["requestParameters", "policyArn"]),
                Some("arn:aws:iam::aws:policy/AdministratorAccess")
            );
            let mut arns = vec![];
            r.any_at(&["resources", "ARN"], &mut |v| {
                arns.push(v.as_str().unwrap());
                false
            });
            assert_eq!(arns, ["arn:1", "arn:2"]);
            let by_text: Vec<_> = r
                .values_at("resources[].ARN")
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(by_text, ["arn:1", "arn:2"]);
            assert_eq!(
                r.values_at("additionalEventData.MFAUsed")[0].as_str(),
                Some("No")
            );
            assert!(r.str_at(&["userIdentity", "missing"]).is_none());
            assert!(r.wrong_type().is_none());
        },
    );
}

#[test]
fn wrong_types_are_flagged_not_fatal() {
    with_record(r#"{"eventName":42,"userIdentity":"root"}"#, |r| {
        let w = r.wrong_type().unwrap();
        assert_eq!((w.field, w.found), (Top::EventName, Kind::Number));
        assert_eq!(r.str(Top::EventName), None);
        assert_eq!(r.top(Top::UserIdentity).unwrap().as_str(), Some("root"));
    });
}

#[test]
fn nested_containers_are_skipped_correctly() {
    with_record(
        r#"{"a":{"b":[1,{"c":[2,3]}],"d":{}},"eventName":"X","z":[[],[[]]],"eventID":"id"}"#,
        |r| {
            assert_eq!(r.str(Top::EventName), Some("X"));
            assert_eq!(r.str(Top::EventId), Some("id"));
            assert_eq!(r.field("z").unwrap().elements().count(), 2);
        },
    );
}

#[test]
fn every_top_field_is_found_by_name_and_near_names_are_not() {
    for t in Top::ALL {
        assert_eq!(Top::from_name(t.name()), Some(*t), "{}", t.name());
        let mut upper = t.name().to_string();
        upper.make_ascii_uppercase();
        assert_eq!(Top::from_name(&upper), None);
        assert_eq!(Top::from_name(&t.name()[1..]), None);
    }
    for other in [
        "",
        "e",
        "eventid",
        "eventXame",
        "sharedEventID",
        "tlsDetails",
        "requestID",
    ] {
        assert_eq!(Top::from_name(other), None, "{other}");
    }
}

#[test]
fn non_objects_are_not_records() {
    let mut bytes = br#"[1,2]"#.to_vec();
    let tape = simd_json::to_tape(&mut bytes).unwrap();
    assert!(Record::new(Value::new(&tape.0)).is_none());
}

#[test]
fn to_json_roundtrips() {
    let src = r#"{"a":[1,-2,1.5,"s",null,true],"b":{"c":"d"}}"#;
    with_record(src, |r| {
        let expected: serde_json::Value = serde_json::from_str(src).unwrap();
        assert_eq!(r.root().to_json(), expected);
    });
}
