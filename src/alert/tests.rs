use super::*;

#[test]
fn alerts_round_trip_through_json() {
    let mut a = Alert::example(Arc::new(RuleMeta::example("r1")));
    a.correlation = Some("event_count");
    a.event = Some(EventJson::from_json(r#"{"eventName":"X"}"#.into()));
    let back: Alert = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(back, a);
}

/// Matches of one batch share its text but read only their own fields;
/// a popped match (a hidden rule's) leaves nothing behind.
#[test]
fn a_batch_gives_each_match_its_own_fields() {
    let mut doc = br#"[
        {"eventID":"e1","eventName":"A","userIdentity":{"type":"Root","arn":"arn:1"},"userAgent":""},
        {"eventID":"e2","eventName":"B","recipientAccountId":"2"},
        {"eventID":"e3","eventName":"C","userIdentity":{"type":"AWSService","accountId":"3"}}
    ]"#
    .to_vec();
    let tape = simd_json::to_tape(&mut doc).unwrap();
    let root = crate::parse::Value::new(&tape.0);
    let records: Vec<Record<'_, '_>> = root.elements().filter_map(Record::new).collect();
    let meta = Arc::new(RuleMeta::example("r"));
    let mut batch = MatchBatch::default();
    let mut alone = Vec::new();
    let src: Arc<str> = Arc::from("src");
    for (i, r) in records.iter().enumerate() {
        batch.push(7, r, i, None);
        let c = batch.last_context(&src).unwrap();
        assert_eq!(
            c.to_alert(&meta),
            Match::new(7, r, i, false).to_alert(&meta, "src")
        );
        if i == 1 {
            // Hidden: only its alert was wanted.
            batch.pop();
        } else {
            alone.push(Match::new(7, r, i, false));
        }
    }
    let got = batch.finish();
    assert_eq!(got, alone);
    assert_eq!(got[0].event_id(), Some("e1"));
    assert_eq!(got[1].event_id(), Some("e3"));
    let a0 = got[0].to_alert(&meta, "src");
    assert_eq!(a0.principal.as_deref(), Some("arn:1"));
    assert_eq!(a0.user_agent.as_deref(), Some(""), "empty is not absent");
    assert_eq!(a0.account, None);
    let a1 = got[1].to_alert(&meta, "src");
    assert_eq!(
        (a1.account.as_deref(), a1.principal.as_deref()),
        (Some("3"), Some("AWSService"))
    );
    assert_eq!(a1.user_agent, None);
    assert!(Arc::ptr_eq(&got[0].text, &got[1].text));
    assert_eq!(got[0].text.len(), got[1].fields.ends[FIELDS - 1] as usize);
}

/// A record with a huge member: its event keeps the small members and
/// a note for the big one, and the big one is never built (the bound
/// holds without a tree of the record).
#[test]
fn events_are_bounded_from_the_tape() {
    let big = "a".repeat(4 << 20);
    let text = format!(
        r#"{{"eventName":"X","userAgent":"{big}","eventName":"Y","deep":{}1{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let mut bytes = text.into_bytes();
    let tape = simd_json::to_tape(&mut bytes).unwrap();
    let r = Record::new(crate::parse::Value::new(&tape.0)).unwrap();
    let e = EventJson::of(&r);
    assert!(e.len() <= MAX_EVENT_BYTES, "{}", e.len());
    let v = e.to_value();
    assert_eq!(v["eventName"], "Y", "the last of duplicate keys");
    assert!(v["userAgent"].as_str().unwrap().contains("bytes omitted"));
    assert!(e.get().contains("levels omitted"));
}

#[test]
fn big_events_keep_their_small_fields() {
    let e = serde_json::json!({
        "eventName": "PutObject",
        "requestParameters": {"x": "a".repeat(100_000)},
    });
    let b = bound_event(e);
    assert!(serde_json::to_vec(&b).unwrap().len() <= MAX_EVENT_BYTES);
    assert_eq!(b["eventName"], "PutObject");
    assert!(
        b["requestParameters"]
            .as_str()
            .unwrap()
            .contains("bytes omitted")
    );
}

#[test]
fn deep_events_are_cut_so_the_outbox_can_read_them_back() {
    let mut e = serde_json::json!(1);
    for _ in 0..500 {
        e = serde_json::json!({ "a": [e] });
    }
    let mut a = Alert::example(Arc::new(RuleMeta::example("r")));
    let bounded = bound_event(serde_json::json!({"eventName": "X", "deep": e}));
    a.event = Some(EventJson::from_json(bounded.to_string()));
    let text = serde_json::to_string(&a).unwrap();
    let back: Alert = serde_json::from_str(&text).expect("readable back");
    assert_eq!(back.event.as_ref().unwrap().to_value()["eventName"], "X");
    assert!(text.contains("levels omitted"));
}

#[test]
fn bound_cuts_on_char_boundary_and_says_so() {
    assert_eq!(bound("short"), "short");
    let long = "é".repeat(MAX_FIELD_BYTES); // 2 bytes each
    let b = bound(&long);
    assert!(b.len() < MAX_FIELD_BYTES + 40);
    assert!(b.ends_with(&format!(
        "…[{} bytes truncated]",
        long.len() - MAX_FIELD_BYTES
    )));
}
