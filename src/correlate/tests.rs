//! The correlation stage's unit tests.
use super::snapshot::SnapshotError;
use super::*;
use crate::rules::RuleMeta;

/// The compact id set answers like a map through its growth past a
/// few ids and its shrinking back, times included.
#[test]
fn seen_ids_answer_like_a_map_at_any_size() {
    assert!(std::mem::size_of::<Seen>() <= 32, "a group pays it inline");
    let mut s = Seen::default();
    let mut m: HashMap<IdKey, i64> = HashMap::new();
    let key = |i: i64| IdKey::of(&format!("e{i}"));
    for i in 0..20i64 {
        s.insert(key(i), i);
        m.insert(key(i), i);
        assert_eq!(s.len(), m.len());
        match i {
            0 => assert!(matches!(s, Seen::One(..))),
            1..8 => assert!(matches!(s, Seen::Few(_))),
            _ => {}
        }
    }
    assert!(matches!(s, Seen::Many(_)));
    for i in 0..25 {
        assert_eq!(s.contains_key(&key(i)), i < 20);
    }
    s.retain(|t| t >= 15);
    assert!(matches!(s, Seen::Few(_)));
    let mut left: Vec<i64> = s.iter().map(|(_, t)| t).collect();
    left.sort();
    assert_eq!(left, [15, 16, 17, 18, 19]);
    assert!(!s.contains_key(&key(3)) && s.contains_key(&key(19)));
    s.retain(|t| t == 19);
    assert!(matches!(s, Seen::One(_, 19)));
    s.insert(key(19), 21);
    assert_eq!(s.iter().collect::<Vec<_>>(), [(key(19), 21)]);
    s.retain(|_| false);
    assert!(s.is_empty() && matches!(s, Seen::Empty));
}

/// Keys read back as their parts, two different lists never make one
/// key, and keys sort as their lists do.
#[test]
fn group_keys_are_injective_and_ordered_as_lists() {
    let lists: Vec<Vec<&str>> = vec![
        vec![],
        vec![""],
        vec!["", ""],
        vec!["a:b", "c"],
        vec!["a", "b:c"],
        vec!["1:a"],
        vec!["1", "a"],
        vec!["ü", "12:x"],
        vec!["arn:aws:iam::1:user/x"],
    ];
    for a in &lists {
        let k = GroupKey::new(a);
        assert_eq!(k.parts().collect::<Vec<_>>(), *a);
        for b in &lists {
            let j = GroupKey::new(b);
            assert_eq!(k == j, a == b, "{a:?} {b:?}");
            assert_eq!(k.cmp(&j), a.cmp(b), "{a:?} {b:?}");
        }
    }
}

/// CloudTrail's ids (lowercase UUIDs) are kept exactly; other text is
/// digested; the saved form reads back.
#[test]
fn event_ids_become_exact_or_digested_keys() {
    let uuid = "3f1c6e2a-9b7d-4c1e-8a2f-0123456789ab";
    let k = IdKey::of(uuid);
    assert_eq!(k.to_hex(), uuid.replace('-', ""));
    assert_eq!(IdKey::from_hex(&k.to_hex()), Some(k));
    // The same digits in another shape are other ids.
    for other in [
        "3F1C6E2A-9B7D-4C1E-8A2F-0123456789AB",
        "3f1c6e2a9b7d4c1e8a2f0123456789ab",
        "{3f1c6e2a-9b7d-4c1e-8a2f-0123456789ab}",
        "3f1c6e2a-9b7d-4c1e-8a2f-0123456789ag",
    ] {
        assert_ne!(IdKey::of(other), k, "{other}");
    }
    assert_ne!(IdKey::of("a"), IdKey::of("b"));
    assert_eq!(IdKey::of("some id"), IdKey::of("some id"));
    assert_eq!(IdKey::from_hex("zz"), None);
    assert_eq!(IdKey::from_hex(&"g".repeat(32)), None);
}

fn meta() -> Arc<RuleMeta> {
    Arc::new(RuleMeta::example("c"))
}

fn corr(
    kind: CorrelationType,
    rules: Vec<u32>,
    preds: Vec<(ConditionOperator, u64)>,
) -> Correlation {
    Correlation {
        meta: meta(),
        kind,
        rule_names: rules.iter().map(|r| vec![format!("r{r}")]).collect(),
        rules,
        group_names: vec!["g".into()],
        timespan_ms: 60_000,
        predicates: preds,
        expr: None,
    }
}

fn hit(rule: u32, t_sec: i64, group: &str, id: &str) -> Hit {
    let time = t_sec.to_string();
    let mut fields = [None; crate::alert::FIELDS];
    fields[0] = Some(id);
    fields[3] = Some(time.as_str());
    Hit {
        rule,
        time_ms: Some(t_sec * 1000),
        keys: vec![(0, GroupKey::new([group]), None)],
        ctx: HitContext::Owned(Arc::new(Context::from_fields(fields, Arc::from("test"), 0))),
    }
}

fn ids(a: &Alert) -> Vec<String> {
    a.event_ids.clone().unwrap()
}

#[test]
fn upper_bounded_conditions_are_decided_when_windows_close() {
    // "Fewer than 3 events in a minute": decided at close, not at once.
    let c = corr(
        CorrelationType::EventCount,
        vec![0],
        vec![(ConditionOperator::Lt, 3)],
    );
    let mut k = Correlator::new(vec![c], 0, 100);
    assert!(k.push(&hit(0, 0, "quiet", "q1")).is_empty());
    for (i, t) in [0, 10, 20].iter().enumerate() {
        assert!(k.push(&hit(0, *t, "busy", &format!("b{i}"))).is_empty());
    }
    // Nothing has closed yet; the end of input closes everything.
    let fired = k.finish();
    assert_eq!(fired.len(), 2, "{fired:?}");
    let groups: Vec<_> = fired
        .iter()
        .map(|a| a.group.clone().unwrap()["g"].clone())
        .collect();
    // "busy" had 3 in its first window (no), then windows of 2 and 1 (yes).
    assert!(groups.contains(&"quiet".to_string()));
    assert!(groups.contains(&"busy".to_string()));
    let busy = fired
        .iter()
        .find(|a| a.group.as_ref().unwrap()["g"] == "busy")
        .unwrap();
    assert_eq!(ids(busy), ["b1", "b2"]);
}

/// A window decided at close (an upper bound) closes when its own
/// group's time moves past it, or when the group goes idle (behind the
/// rule's newest time and untouched for a while): never because
/// another group's time moved (a backlog of another account).
#[test]
fn ranges_and_windows_close_as_their_groups_time_advances() {
    let c = corr(
        CorrelationType::EventCount,
        vec![0],
        vec![(ConditionOperator::Gt, 1), (ConditionOperator::Lte, 2)],
    );
    let mut k = Correlator::new(vec![c], 0, 100);
    k.push(&hit(0, 0, "g", "a"));
    k.push(&hit(0, 5, "g", "b"));
    k.push(&hit(0, 0, "idle", "i1"));
    k.push(&hit(0, 5, "idle", "i2"));
    // Another group far ahead in time: neither window closes yet.
    let mut fired = Vec::new();
    for i in 0..1100 {
        fired.extend(k.push(&hit(0, 10_000 + i, "other", &format!("x{i}"))));
    }
    assert!(
        fired
            .iter()
            .all(|a| a.group.as_ref().unwrap()["g"] == "other")
    );
    // The group's own time moves past its window: it is decided.
    for i in 0..1100 {
        fired.extend(k.push(&hit(0, 10_000 + i, "g", &format!("g{i}"))));
    }
    let g: Vec<_> = fired
        .iter()
        .filter(|a| a.group.as_ref().unwrap()["g"] == "g")
        .collect();
    assert_eq!(g.len(), 1);
    assert_eq!(ids(g[0]), ["a", "b"]);
    // The idle group is decided once it has gone untouched long enough.
    for i in 0..IDLE_HITS as i64 + 2048 {
        fired.extend(k.push(&hit(
            0,
            20_000 + i,
            &format!("n{}", i % 50),
            &format!("n{i}"),
        )));
    }
    let idle: Vec<_> = fired
        .iter()
        .filter(|a| a.group.as_ref().unwrap()["g"] == "idle")
        .collect();
    assert_eq!(idle.len(), 1);
    assert_eq!(ids(idle[0]), ["i1", "i2"]);
}

/// The same event (by id) counts once per group, whatever brings it
/// again: a duplicate delivery, a re-read, another source, the look-back
/// after a restart (the ids are saved with the windows).
#[test]
fn an_event_counts_once_across_repeats_and_restarts() {
    let c = corr(
        CorrelationType::EventCount,
        vec![0],
        vec![(ConditionOperator::Gte, 10)],
    );
    let mut k = Correlator::new(vec![c.clone()], DEFAULT_LATENESS_MS, 100);
    for i in 0..6 {
        assert!(k.push(&hit(0, i, "p", &format!("e{i}"))).is_empty());
    }
    // Delivered again, then the daemon restarts and reads them again.
    for i in 0..6 {
        assert!(k.push(&hit(0, i, "p", &format!("e{i}"))).is_empty());
    }
    assert_eq!(k.stats.duplicates, 6);
    let saved = k.save();
    let mut k = Correlator::new(vec![c], DEFAULT_LATENESS_MS, 100);
    k.restore(&saved).unwrap();
    for i in 0..6 {
        assert!(k.push(&hit(0, i, "p", &format!("e{i}"))).is_empty(), "{i}");
    }
    assert_eq!(k.stats.duplicates, 6, "after the restart too");
    // Four new events make ten: one burst, each id once.
    let mut fired = Vec::new();
    for i in 6..10 {
        fired.extend(k.push(&hit(0, i, "p", &format!("e{i}"))));
    }
    assert_eq!(fired.len(), 1);
    let got = ids(&fired[0]);
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(got.len(), 10);
    assert_eq!(unique.len(), 10);
}

/// Windows saved by the previous version (format 3: counted ids as the
/// events' own text) are read: their ids still make repeats repeats.
#[test]
fn windows_saved_in_format_3_are_read() {
    let c = corr(
        CorrelationType::EventCount,
        vec![0],
        vec![(ConditionOperator::Gte, 10)],
    );
    let mut k = Correlator::new(vec![c.clone()], DEFAULT_LATENESS_MS, 100);
    let uuid = "3f1c6e2a-9b7d-4c1e-8a2f-0123456789ab";
    for (i, id) in [(0, "e0"), (1, uuid)] {
        k.push(&hit(0, i, "p", id));
    }
    let mut v: serde_json::Value = serde_json::from_slice(&k.save()).unwrap();
    assert_eq!(v["version"], 4);
    v["version"] = 3.into();
    let seen = &mut v["rules"][0]["groups"][0]["seen"];
    let mut times: Vec<i64> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_i64().unwrap())
        .collect();
    times.sort();
    *seen = serde_json::json!([["e0", times[0]], [uuid, times[1]]]);
    let mut k = Correlator::new(vec![c], DEFAULT_LATENESS_MS, 100);
    assert_eq!(k.restore(&serde_json::to_vec(&v).unwrap()).unwrap(), 1);
    // Another format, or damage: a typed error, nothing restored.
    let mut other = serde_json::json!({"version": 2});
    assert!(matches!(
        Correlator::new(vec![], 0, 1).restore(&serde_json::to_vec(&other).unwrap()),
        Err(SnapshotError::Version(2))
    ));
    other["version"] = 4.into();
    assert!(matches!(
        Correlator::new(vec![], 0, 1).restore(&serde_json::to_vec(&other).unwrap()),
        Err(SnapshotError::Damaged(_))
    ));
    k.push(&hit(0, 0, "p", "e0"));
    k.push(&hit(0, 1, "p", uuid));
    assert_eq!(k.stats.duplicates, 2);
    k.push(&hit(0, 2, "p", "e2"));
    assert_eq!(k.stats.duplicates, 2, "a new id counts");
}

/// One event dated far in the future is dropped and counted; it moves
/// no horizon, so later real events still make their burst (and
/// lateness is judged per group: another group's newer times make
/// nothing late).
#[test]
fn a_future_event_or_another_groups_time_silences_nothing() {
    fn clock() -> i64 {
        100_000_000
    }
    let c = corr(
        CorrelationType::EventCount,
        vec![0],
        vec![(ConditionOperator::Gte, 3)],
    );
    let mut k = Correlator::new(vec![c], 1000, 100).with_clock(clock);
    let year_2099 = 4_000_000_000; // seconds
    assert!(k.push(&hit(0, year_2099, "p", "future")).is_empty());
    assert_eq!(k.stats.future, 1);
    // Another account's events, much newer than this group's.
    assert!(k.push(&hit(0, 90_000, "other", "o1")).is_empty());
    let mut fired = Vec::new();
    for i in 0..3 {
        fired.extend(k.push(&hit(0, 10 + i, "p", &format!("p{i}"))));
    }
    assert_eq!(fired.len(), 1, "{:?}", k.stats);
    assert_eq!(k.stats.late, 0);
}

#[test]
fn temporal_needs_every_rule_or_its_expression() {
    let c = corr(
        CorrelationType::Temporal,
        vec![0, 1],
        vec![(ConditionOperator::Gte, 1)],
    );
    let mut k = Correlator::new(vec![c.clone()], DEFAULT_LATENESS_MS, 100);
    assert!(k.push(&hit(1, 30, "g", "second-rule-first")).is_empty());
    let fired = k.push(&hit(0, 40, "g", "first-rule"));
    assert_eq!(fired.len(), 1, "any order");
    assert_eq!(fired[0].correlation, Some("temporal"));

    let mut with_expr = c;
    with_expr.expr = Some(rsigma_parser::parse_condition("r0 and not r1").unwrap());
    let mut k = Correlator::new(vec![with_expr], DEFAULT_LATENESS_MS, 100);
    assert_eq!(k.push(&hit(0, 0, "g", "only-r0")).len(), 1);
}

/// An empty eventID is no id: ten distinct denials that all say `""` are
/// ten events (they used to count as one, and their alerts as one).
#[test]
fn an_empty_event_id_does_not_merge_distinct_events() {
    let rules = crate::rules::RuleSet::builtin();
    let events: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"eventID":"","eventName":"Op{i}","eventTime":"2026-11-20T10:00:0{i}Z","eventSource":"iam.amazonaws.com","errorCode":"AccessDenied","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::1:user/p"}}}}"#
            )
        })
        .collect();
    let doc = format!("{{\"Records\":[{}]}}", events.join(","));
    let (alerts, _) = crate::pipeline::evaluate_document(doc.as_bytes(), &rules);
    assert!(
        alerts
            .iter()
            .any(|a| a.rule_title.starts_with("Burst of Denied")),
        "{:?}",
        alerts.iter().map(|a| &a.rule_title).collect::<Vec<_>>()
    );
}

/// A burst alert names the API calls its window held, most frequent
/// first, at most MAX_CALLS names and the rest summed: what the caller was
/// trying to do, without opening each event.
#[test]
fn a_burst_names_the_calls_it_counted() {
    let mut rules = crate::rules::RuleSet::builtin();
    rules.set_threshold("access_denied_burst", 15).unwrap();
    let mut records = Vec::new();
    // 3 + 2 + 10 distinct names: 12 names for 15 events.
    let names: Vec<String> = (0..15)
        .map(|i| match i {
            0..3 => "GetSecretValue".to_string(),
            3..5 => "ListUsers".to_string(),
            n => format!("Describe{n}"),
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        records.push(format!(
            r#"{{"eventVersion":"1.09","eventTime":"2026-12-01T10:00:{i:02}Z","eventSource":"iam.amazonaws.com","eventName":"{name}","eventID":"e{i}","errorCode":"AccessDenied","sourceIPAddress":"203.0.113.9","recipientAccountId":"123456789012","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/probe"}}}}"#
        ));
    }
    let doc = format!(r#"{{"Records":[{}]}}"#, records.join(","));
    let (alerts, _) = crate::pipeline::evaluate_document(doc.as_bytes(), &rules);
    let burst = alerts
        .iter()
        .find(|a| a.rule_name.as_deref() == Some("access_denied_burst"))
        .expect("a burst");
    let calls = burst.calls.as_ref().unwrap();
    assert_eq!(calls[0], ("GetSecretValue".to_string(), 3));
    assert_eq!(calls[1], ("ListUsers".to_string(), 2));
    assert_eq!(calls.len(), MAX_CALLS + 1);
    assert_eq!(calls[MAX_CALLS], ("…".to_string(), 2), "{calls:?}");
    let total: u64 = calls.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 15);
    assert_eq!(burst.count, Some(15));
}
