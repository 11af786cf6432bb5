//! Builds, from a Sigma rule's AST (rsigma-parser's, not trailwatch's
//! compiled form), an event that satisfies the rule, and near misses: the
//! same event with one field changed. The oracle (rsigma-eval) decides
//! which near misses really miss; trailwatch must then agree.

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Modifier, Quantifier, SigmaRule, SigmaValue,
    SpecialChar, StringPart,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub struct Generated {
    pub event: Value,
    /// Paths set to satisfy positive parts, in the order they were set.
    pub positive_paths: Vec<String>,
}

#[derive(Default)]
struct Gen {
    event: Map<String, Value>,
    set: Vec<String>,
    positive: Vec<String>,
}

impl Gen {
    fn is_set(&self, path: &str) -> bool {
        self.set.iter().any(|p| p == path)
    }

    fn put(&mut self, path: &str, v: Option<Value>, positive: bool) {
        self.set.push(path.to_owned());
        if positive {
            self.positive.push(path.to_owned());
        }
        put(&mut self.event, path, v);
    }
}

/// Set (or, with `None`, remove) a dotted path in a JSON object.
pub fn put(obj: &mut Map<String, Value>, path: &str, v: Option<Value>) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().expect("non-empty path");
    let mut cur = obj;
    for k in keys {
        let next = cur.entry(k.to_owned()).or_insert_with(|| json!({}));
        if !next.is_object() {
            *next = json!({});
        }
        cur = next.as_object_mut().expect("object");
    }
    match v {
        Some(v) => {
            cur.insert(last.to_owned(), v);
        }
        None => {
            cur.remove(last);
        }
    }
}

fn text_of(v: &SigmaValue) -> String {
    match v {
        SigmaValue::String(s) => s
            .parts
            .iter()
            .map(|p| match p {
                StringPart::Plain(t) => t.clone(),
                StringPart::Special(SpecialChar::WildcardMulti) => "x".into(),
                StringPart::Special(SpecialChar::WildcardSingle) => "y".into(),
            })
            .collect(),
        SigmaValue::Integer(n) => n.to_string(),
        SigmaValue::Float(f) => f.to_string(),
        SigmaValue::Bool(b) => b.to_string(),
        SigmaValue::Null => String::new(),
    }
}

/// Text a simple regex matches: metacharacters of the forms SigmaHQ uses
/// replaced by literal text.
fn regex_example(re: &str) -> String {
    re.trim_start_matches('^')
        .trim_end_matches('$')
        .replace(".+", "x")
        .replace(".*", "x")
        .replace("\\.", ".")
}

fn item_value(item: &DetectionItem, g: &mut Gen) -> Option<Value> {
    let mods = &item.field.modifiers;
    let has = |m: Modifier| mods.contains(&m);
    let v = item.values.first()?;
    if has(Modifier::Exists) {
        return matches!(v, SigmaValue::Bool(true)).then(|| json!("present"));
    }
    if has(Modifier::FieldRef) {
        let other = text_of(v);
        let same = json!("same-value");
        g.put(&other, Some(same.clone()), true);
        return Some(same);
    }
    if has(Modifier::Re) {
        return Some(json!(regex_example(&text_of(v))));
    }
    if has(Modifier::Cidr) {
        let net: ipnet::IpNet = text_of(v).parse().ok()?;
        return Some(json!(net.network().to_string()));
    }
    if has(Modifier::Gt) || has(Modifier::Gte) {
        return Some(json!(text_of(v).parse::<f64>().ok()? + 1.0));
    }
    if has(Modifier::Lt) || has(Modifier::Lte) {
        return Some(json!(text_of(v).parse::<f64>().ok()? - 1.0));
    }
    let texts: Vec<String> = if has(Modifier::All) {
        item.values.iter().map(text_of).collect()
    } else {
        vec![text_of(v)]
    };
    let body = texts.join(" ");
    let shaped = if has(Modifier::Contains) {
        format!("pre {body} post")
    } else if has(Modifier::StartsWith) {
        format!("{body} post")
    } else if has(Modifier::EndsWith) {
        format!("pre {body}")
    } else {
        match v {
            SigmaValue::Integer(n) => return Some(json!(n)),
            SigmaValue::Float(f) => return Some(json!(f)),
            SigmaValue::Bool(b) => return Some(json!(b)),
            SigmaValue::Null => return None,
            SigmaValue::String(_) => body,
        }
    };
    Some(json!(shaped))
}

fn det_true(d: &Detection, g: &mut Gen) {
    match d {
        Detection::AllOf(items) => {
            for item in items {
                if let Some(field) = &item.field.name {
                    let v = item_value(item, g);
                    g.put(field, v, true);
                }
            }
        }
        Detection::AnyOf(subs) => {
            if let Some(first) = subs.first() {
                det_true(first, g)
            }
        }
        Detection::And(subs) => subs.iter().for_each(|s| det_true(s, g)),
        Detection::Keywords(values) => {
            if let Some(v) = values.first() {
                g.put("keywordCarrier", Some(json!(text_of(v))), true)
            }
        }
        _ => {}
    }
}

fn det_false(d: &Detection, g: &mut Gen) {
    match d {
        Detection::AllOf(items) => {
            // One unset field made not to match is enough.
            if let Some(item) = items
                .iter()
                .find(|i| i.field.name.as_deref().is_some_and(|f| !g.is_set(f)))
            {
                let field = item.field.name.clone().expect("named");
                let absent_matches = item.values.iter().any(|v| matches!(v, SigmaValue::Null))
                    || item.field.modifiers.contains(&Modifier::Exists)
                        && matches!(item.values.first(), Some(SigmaValue::Bool(false)));
                let v = absent_matches.then(|| json!("zz-no-match"));
                g.put(&field, v, false);
            }
        }
        Detection::AnyOf(subs) | Detection::And(subs) => subs.iter().for_each(|s| det_false(s, g)),
        _ => {}
    }
}

fn pick<'a>(
    named: &'a HashMap<String, Detection>,
    pattern: &rsigma_parser::SelectorPattern,
) -> Vec<&'a Detection> {
    let mut names: Vec<&String> = named
        .keys()
        .filter(|n| pattern.matches_detection_name(n))
        .collect();
    names.sort();
    names.into_iter().map(|n| &named[n]).collect()
}

fn cond(c: &ConditionExpr, named: &HashMap<String, Detection>, want: bool, g: &mut Gen) {
    match (c, want) {
        (ConditionExpr::Identifier(id), true) => det_true(&named[id], g),
        (ConditionExpr::Identifier(id), false) => det_false(&named[id], g),
        (ConditionExpr::Not(x), w) => cond(x, named, !w, g),
        (ConditionExpr::And(v), true) | (ConditionExpr::Or(v), false) => {
            v.iter().for_each(|x| cond(x, named, want, g))
        }
        (ConditionExpr::And(v), false) | (ConditionExpr::Or(v), true) => {
            if let Some(x) = v.first() {
                cond(x, named, want, g)
            }
        }
        (
            ConditionExpr::Selector {
                quantifier,
                pattern,
            },
            w,
        ) => {
            let dets = pick(named, pattern);
            let all = matches!(quantifier, Quantifier::All);
            match (all, w) {
                (true, true) | (false, false) => dets
                    .iter()
                    .for_each(|d| if w { det_true(d, g) } else { det_false(d, g) }),
                (true, false) | (false, true) => {
                    if let Some(d) = dets.first() {
                        if w { det_true(d, g) } else { det_false(d, g) }
                    }
                }
            }
        }
    }
}

/// An event meant to satisfy the rule (the caller checks it with the oracle).
pub fn satisfying_event(rule: &SigmaRule) -> Generated {
    let mut g = Gen::default();
    put(&mut g.event, "eventVersion", Some(json!("1.09")));
    put(&mut g.event, "eventID", Some(json!("generated")));
    for c in &rule.detection.conditions {
        cond(c, &rule.detection.named, true, &mut g);
    }
    Generated {
        event: Value::Object(g.event),
        positive_paths: g.positive,
    }
}

/// The event with one positively-required field changed.
pub fn near_misses(generated: &Generated) -> Vec<Value> {
    generated
        .positive_paths
        .iter()
        .map(|path| {
            let mut e = generated.event.as_object().cloned().expect("object");
            put(&mut e, path, Some(json!("zz-near-miss")));
            Value::Object(e)
        })
        .collect()
}
