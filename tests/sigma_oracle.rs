//! Differential tests: trailwatch's own matcher against rsigma-eval, the
//! reference Sigma evaluator, on the SigmaHQ CloudTrail pack in ../shared.
//!
//! Known, documented differences (none is exercised by this pack):
//! `base64offset` follows pySigma's trimming (rsigma-eval keeps one
//! alignment-dependent character), and wildcards match across line breaks
//! (rsigma-eval's anchored `^.*x.*$` regexes never match multi-line values).

mod common;
#[path = "common/sigma_gen.rs"]
mod sigma_gen;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::*;
use rsigma_eval::Engine;
use rsigma_eval::event::JsonEvent;
use serde_json::Value;
use trailwatch::pipeline::{Limits, process_object};
use trailwatch::rules::RuleSet;

fn sigma_dir() -> PathBuf {
    shared_data().join("sigma/rules")
}

fn rule_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(sigma_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    v.sort();
    v
}

fn oracle() -> Engine {
    let mut engine = Engine::new();
    for f in rule_files() {
        let c = rsigma_parser::parse_sigma_yaml(&std::fs::read_to_string(&f).unwrap()).unwrap();
        engine.add_collection(&c).unwrap();
    }
    engine
}

fn oracle_verdict(engine: &Engine, event: &Value) -> BTreeSet<String> {
    engine
        .evaluate(&JsonEvent::borrow(event))
        .into_iter()
        .map(|m| m.header.rule_id.unwrap_or(m.header.rule_title))
        .collect()
}

fn our_verdict(rules: &RuleSet, event: &Value) -> BTreeSet<String> {
    let report = process_object(
        "event",
        event.to_string().as_bytes(),
        rules,
        Limits::default(),
    );
    report
        .alerts
        .iter()
        .map(|m| rules.rule(m.rule).meta.id.clone())
        .collect()
}

#[test]
fn all_sigmahq_cloudtrail_rules_load() {
    let rules = RuleSet::load(&[sigma_dir()]).unwrap();
    assert!(rules.errors.is_empty(), "{:#?}", rules.errors);
    assert_eq!(rules.len(), rule_files().len());
    assert_eq!(rules.len(), 57);
}

#[test]
fn same_verdicts_as_rsigma_on_every_real_event() {
    let engine = oracle();
    let rules = RuleSet::load(&[sigma_dir()]).unwrap();
    let events = shared_events();
    assert!(events.len() > 900, "{} events", events.len());
    let mut matched = 0;
    let mut disagreements = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let (ours, theirs) = (our_verdict(&rules, ev), oracle_verdict(&engine, ev));
        matched += usize::from(!theirs.is_empty());
        if ours != theirs {
            disagreements.push(format!(
                "event {i} ({}): ours {ours:?} rsigma {theirs:?}",
                ev["eventName"]
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(matched > 50, "only {matched} events matched anything");
}

#[test]
fn each_rule_matches_a_satisfying_event_and_rejects_a_near_miss() {
    let engine = oracle();
    let all = RuleSet::load(&[sigma_dir()]).unwrap();
    let mut failures = Vec::new();
    for f in rule_files() {
        let c = rsigma_parser::parse_sigma_yaml(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let rule = &c.rules[0];
        let id = rule.id.clone().unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let generated = sigma_gen::satisfying_event(rule);
        let pos = &generated.event;
        if !oracle_verdict(&engine, pos).contains(&id) {
            failures.push(format!("{name}: generator made no satisfying event: {pos}"));
            continue;
        }
        if !our_verdict(&all, pos).contains(&id) {
            failures.push(format!("{name}: ours misses {pos}"));
        }
        if our_verdict(&all, pos) != oracle_verdict(&engine, pos) {
            failures.push(format!("{name}: verdict sets differ on {pos}"));
        }
        let near = sigma_gen::near_misses(&generated)
            .into_iter()
            .find(|e| !oracle_verdict(&engine, e).contains(&id));
        let Some(near) = near else {
            failures.push(format!("{name}: no near miss found"));
            continue;
        };
        if our_verdict(&all, &near).contains(&id) {
            failures.push(format!("{name}: ours matches the near miss {near}"));
        }
        if our_verdict(&all, &near) != oracle_verdict(&engine, &near) {
            failures.push(format!("{name}: verdict sets differ on near miss {near}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn retired_count_rules_are_refused_clearly() {
    let dir = shared_data().join("sigma/unsupported");
    let rules = RuleSet::load(std::slice::from_ref(&dir)).unwrap();
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, 8);
    assert_eq!(rules.len(), 0);
    assert_eq!(rules.errors.len(), files, "{:#?}", rules.errors);
    for e in &rules.errors {
        assert!(e.message.contains("correlation rule"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
}
