//! Compiles a parsed Sigma detection (rsigma-parser's AST) into a matcher
//! over [`Record`] views, and evaluates it.
//!
//! All string work happens here, once per rule: field paths are split,
//! needles lowercased, wildcard shapes classified, selectors (`1 of sel*`)
//! expanded to the detections they name. Matching then only walks the tape.

use std::collections::HashSet;

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Modifier, Quantifier, SigmaRule, SigmaValue,
};

use super::pattern::Pattern;
use crate::parse::{Kind, Record, Value};

/// A compiled rule body: the condition over the detections it names.
#[derive(Debug, Clone)]
pub struct Matcher {
    cond: Cond,
    dets: Vec<Det>,
    /// eventName values (lowercased) of which one must be present for any
    /// match; `None` when the rule does not pin eventName. Used to index.
    pub event_names: Option<HashSet<String>>,
}

#[derive(Debug, Clone)]
enum Cond {
    Det(usize),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    AtLeast(usize, Vec<Cond>),
}

#[derive(Debug, Clone)]
enum Det {
    /// Every item must match (a YAML mapping).
    All(Vec<Item>),
    /// One sub-detection must match (a YAML list of mappings).
    Any(Vec<Det>),
    /// Every sub-detection must match (a mapping mixing items and blocks).
    And(Vec<Det>),
    /// Field-less keywords: one must match some string anywhere.
    Keywords(Vec<Pattern>),
}

#[derive(Debug, Clone)]
struct Item {
    /// Dotted path split into keys.
    path: Vec<Box<str>>,
    tests: Vec<Test>,
    /// `all` modifier: every value must match (default: any).
    all: bool,
}

#[derive(Debug, Clone)]
enum Test {
    Str(Pattern),
    /// A number in the rule: equal as a number, or as text to a string.
    Num(f64, Pattern),
    Bool(bool),
    /// `null`: the field is absent or null.
    Null,
    Exists(bool),
    Cmp(CmpOp, f64),
}

#[derive(Debug, Clone, Copy)]
enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// Why a detection cannot be compiled (the loader adds the file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    /// Text to look for in the rule file to point at the line.
    pub near: Option<String>,
}

fn err(message: impl Into<String>, near: Option<&str>) -> CompileError {
    CompileError {
        message: message.into(),
        near: near.map(str::to_owned),
    }
}

/// Compile a rule's detection section.
pub fn compile(rule: &SigmaRule) -> Result<Matcher, CompileError> {
    let det = &rule.detection;
    if det.timeframe.is_some() {
        return Err(err(
            "`timeframe` with `count()` aggregations is the retired Sigma form; \
             express it as a correlation rule (event_count) instead",
            Some("timeframe"),
        ));
    }
    let mut names: Vec<&String> = det.named.keys().collect();
    names.sort();
    let mut dets = Vec::with_capacity(names.len());
    for name in &names {
        dets.push(compile_det(&det.named[*name], name)?);
    }
    let conds = det
        .conditions
        .iter()
        .map(|c| compile_cond(c, &names))
        .collect::<Result<Vec<_>, _>>()?;
    let cond = match conds.len() {
        0 => return Err(err("detection has no condition", Some("detection"))),
        1 => conds.into_iter().next().expect("one"),
        _ => Cond::Or(conds),
    };
    let event_names = required_event_names(&cond, &dets);
    Ok(Matcher {
        cond,
        dets,
        event_names,
    })
}

fn compile_cond(c: &ConditionExpr, names: &[&String]) -> Result<Cond, CompileError> {
    Ok(match c {
        ConditionExpr::Identifier(id) => match names.iter().position(|n| *n == id) {
            Some(i) => Cond::Det(i),
            None => {
                return Err(err(
                    format!("condition names `{id}`, which is not a detection"),
                    Some("condition"),
                ));
            }
        },
        ConditionExpr::And(v) => Cond::And(
            v.iter()
                .map(|c| compile_cond(c, names))
                .collect::<Result<_, _>>()?,
        ),
        ConditionExpr::Or(v) => Cond::Or(
            v.iter()
                .map(|c| compile_cond(c, names))
                .collect::<Result<_, _>>()?,
        ),
        ConditionExpr::Not(c) => Cond::Not(Box::new(compile_cond(c, names)?)),
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let picked: Vec<Cond> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| pattern.matches_detection_name(n))
                .map(|(i, _)| Cond::Det(i))
                .collect();
            if picked.is_empty() {
                return Err(err(
                    format!("selector `{pattern}` matches no detection"),
                    Some("condition"),
                ));
            }
            match quantifier {
                Quantifier::Any => Cond::Or(picked),
                Quantifier::All => Cond::And(picked),
                Quantifier::Count(n) => Cond::AtLeast(*n as usize, picked),
            }
        }
    })
}

fn compile_det(d: &Detection, name: &str) -> Result<Det, CompileError> {
    Ok(match d {
        Detection::AllOf(items) => Det::All(
            items
                .iter()
                .map(|i| compile_item(i, name))
                .collect::<Result<_, _>>()?,
        ),
        Detection::AnyOf(subs) => Det::Any(
            subs.iter()
                .map(|s| compile_det(s, name))
                .collect::<Result<_, _>>()?,
        ),
        Detection::Keywords(values) => Det::Keywords(
            values
                .iter()
                .map(|v| match v {
                    // A plain keyword is found anywhere in a value (full-text
                    // search, as rsigma-eval and SIEM backends do); one with
                    // wildcards is matched as written.
                    SigmaValue::String(s) if s.is_plain() => {
                        Ok(Pattern::new(&Shape::Contains.apply(s), false))
                    }
                    SigmaValue::String(s) => Ok(Pattern::new(s, false)),
                    SigmaValue::Integer(n) => {
                        Ok(Pattern::parse(&Shape::Contains.wrap(&n.to_string())))
                    }
                    other => Err(err(
                        format!("keyword `{other:?}` in `{name}` is not a string"),
                        Some(name),
                    )),
                })
                .collect::<Result<_, _>>()?,
        ),
        Detection::And(subs) => Det::And(
            subs.iter()
                .map(|s| compile_det(s, name))
                .collect::<Result<_, _>>()?,
        ),
        Detection::ArrayMatch { field, .. } => {
            return Err(err(
                format!("array-scope blocks (`{field}[any]`) are not supported"),
                Some(field),
            ));
        }
        Detection::Conditional { .. } => {
            return Err(err(
                format!("element-scoped conditions in `{name}` are not supported"),
                Some(name),
            ));
        }
    })
}

fn compile_item(item: &DetectionItem, det_name: &str) -> Result<Item, CompileError> {
    let Some(field) = item.field.name.as_deref() else {
        return Ok(Item {
            path: Vec::new(),
            tests: Vec::new(),
            all: false,
        });
    };
    let near = Some(field);
    let mut shape = Shape::Exact;
    let mut all = false;
    let mut cased = false;
    let mut exists = false;
    let mut cmp = None;
    for m in &item.field.modifiers {
        match m {
            Modifier::Contains => shape = Shape::Contains,
            Modifier::StartsWith => shape = Shape::Prefix,
            Modifier::EndsWith => shape = Shape::Suffix,
            Modifier::All => all = true,
            Modifier::Cased => cased = true,
            Modifier::Exists => exists = true,
            Modifier::Gt => cmp = Some(CmpOp::Gt),
            Modifier::Gte => cmp = Some(CmpOp::Gte),
            Modifier::Lt => cmp = Some(CmpOp::Lt),
            Modifier::Lte => cmp = Some(CmpOp::Lte),
            other => {
                return Err(err(
                    format!(
                        "modifier `{}` (on `{field}` in `{det_name}`) is not supported by this version",
                        serde_json::to_value(other)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| format!("{other:?}"))
                    ),
                    near,
                ));
            }
        }
    }
    let mut tests = Vec::with_capacity(item.values.len());
    for v in &item.values {
        let t = if exists {
            match v {
                SigmaValue::Bool(b) => Test::Exists(*b),
                _ => return Err(err(format!("`{field}|exists` needs true or false"), near)),
            }
        } else if let Some(op) = cmp {
            match v {
                SigmaValue::Integer(n) => Test::Cmp(op, *n as f64),
                SigmaValue::Float(f) => Test::Cmp(op, *f),
                _ => return Err(err(format!("`{field}` comparison needs a number"), near)),
            }
        } else {
            match v {
                SigmaValue::String(s) => Test::Str(Pattern::new(&shape.apply(s), cased)),
                // A number compares as a number unless a modifier makes it a
                // text pattern (`port|startswith: 2` matches 22 and "22").
                SigmaValue::Integer(n) => number_test(*n as f64, &n.to_string(), shape),
                SigmaValue::Float(f) => number_test(*f, &f.to_string(), shape),
                SigmaValue::Bool(b) => Test::Bool(*b),
                SigmaValue::Null => Test::Null,
            }
        };
        tests.push(t);
    }
    Ok(Item {
        path: field.split('.').map(Into::into).collect(),
        tests,
        all,
    })
}

fn number_test(n: f64, text: &str, shape: Shape) -> Test {
    match shape {
        Shape::Exact => Test::Num(n, Pattern::parse(text)),
        _ => Test::Str(Pattern::parse(&shape.wrap(text))),
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Exact,
    Contains,
    Prefix,
    Suffix,
}

impl Shape {
    fn apply(self, s: &rsigma_parser::SigmaString) -> rsigma_parser::SigmaString {
        use rsigma_parser::{SpecialChar::WildcardMulti, StringPart::Special};
        let mut s = s.clone();
        if matches!(self, Shape::Contains | Shape::Suffix) {
            s.parts.insert(0, Special(WildcardMulti));
        }
        if matches!(self, Shape::Contains | Shape::Prefix) {
            s.parts.push(Special(WildcardMulti));
        }
        s
    }

    fn wrap(self, s: &str) -> String {
        match self {
            Shape::Exact => s.to_owned(),
            Shape::Contains => format!("*{s}*"),
            Shape::Prefix => format!("{s}*"),
            Shape::Suffix => format!("*{s}"),
        }
    }
}

/// The set of eventName values one of which any match requires, when the
/// condition pins them (to index the rule); `None` otherwise.
fn required_event_names(cond: &Cond, dets: &[Det]) -> Option<HashSet<String>> {
    match cond {
        Cond::Det(i) => det_event_names(&dets[*i]),
        // Any conjunct's requirement is a requirement of the whole.
        Cond::And(v) => v.iter().find_map(|c| required_event_names(c, dets)),
        Cond::Or(v) | Cond::AtLeast(_, v) => {
            let mut all = HashSet::new();
            for c in v {
                all.extend(required_event_names(c, dets)?);
            }
            Some(all)
        }
        Cond::Not(_) => None,
    }
}

fn det_event_names(d: &Det) -> Option<HashSet<String>> {
    match d {
        Det::All(items) => items.iter().find_map(|it| {
            if it.path.len() != 1 || &*it.path[0] != "eventName" || it.all && it.tests.len() > 1 {
                return None;
            }
            it.tests
                .iter()
                .map(|t| match t {
                    Test::Str(p) => p.exact().map(str::to_owned),
                    _ => None,
                })
                .collect()
        }),
        Det::Any(subs) => {
            let mut all = HashSet::new();
            for s in subs {
                all.extend(det_event_names(s)?);
            }
            Some(all)
        }
        Det::And(subs) => subs.iter().find_map(det_event_names),
        Det::Keywords(_) => None,
    }
}

impl Matcher {
    /// Does the record match?
    pub fn matches(&self, r: &Record<'_, '_>) -> bool {
        self.eval(&self.cond, r)
    }

    fn eval(&self, c: &Cond, r: &Record<'_, '_>) -> bool {
        match c {
            Cond::Det(i) => eval_det(&self.dets[*i], r),
            Cond::And(v) => v.iter().all(|c| self.eval(c, r)),
            Cond::Or(v) => v.iter().any(|c| self.eval(c, r)),
            Cond::Not(c) => !self.eval(c, r),
            Cond::AtLeast(n, v) => v.iter().filter(|c| self.eval(c, r)).take(*n).count() >= *n,
        }
    }
}

fn eval_det(d: &Det, r: &Record<'_, '_>) -> bool {
    match d {
        Det::All(items) => items.iter().all(|it| eval_item(it, r)),
        Det::Any(subs) => subs.iter().any(|s| eval_det(s, r)),
        Det::And(subs) => subs.iter().all(|s| eval_det(s, r)),
        Det::Keywords(pats) => pats.iter().any(|p| any_string(r.root(), p)),
    }
}

fn any_string(v: Value<'_, '_>, p: &Pattern) -> bool {
    match v.kind() {
        Kind::String => p.matches(v.as_str().unwrap_or("")),
        Kind::Object => v.entries().any(|(_, c)| any_string(c, p)),
        Kind::Array => v.elements().any(|c| any_string(c, p)),
        _ => false,
    }
}

fn eval_item(it: &Item, r: &Record<'_, '_>) -> bool {
    if it.path.is_empty() {
        return true;
    }
    let one = |t: &Test| -> bool {
        match t {
            Test::Null => {
                let mut present = false;
                r.any_at(&it.path, &mut |v| {
                    present = !v.is_null();
                    present
                });
                !present
            }
            Test::Exists(want) => r.any_at(&it.path, &mut |_| true) == *want,
            _ => r.any_at(&it.path, &mut |v| test_value(t, v)),
        }
    };
    if it.all {
        it.tests.iter().all(one)
    } else {
        it.tests.iter().any(one)
    }
}

fn test_value(t: &Test, v: Value<'_, '_>) -> bool {
    match t {
        Test::Str(p) => match v.kind() {
            Kind::String => p.matches(v.as_str().unwrap_or("")),
            Kind::Number => v.as_i64().map_or_else(
                || p.matches(&v.as_f64().unwrap_or(f64::NAN).to_string()),
                |n| p.matches(&n.to_string()),
            ),
            Kind::Bool => p.matches(if v.as_bool() == Some(true) {
                "true"
            } else {
                "false"
            }),
            _ => false,
        },
        Test::Num(n, text) => match v.kind() {
            Kind::Number => v.as_f64() == Some(*n),
            Kind::String => text.matches(v.as_str().unwrap_or("")),
            _ => false,
        },
        Test::Bool(b) => match v.kind() {
            Kind::Bool => v.as_bool() == Some(*b),
            Kind::String => v
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(if *b { "true" } else { "false" })),
            _ => false,
        },
        Test::Cmp(op, n) => {
            let x = match v.kind() {
                Kind::Number => v.as_f64(),
                Kind::String => v.as_str().and_then(|s| s.trim().parse::<f64>().ok()),
                _ => None,
            };
            x.is_some_and(|x| match op {
                CmpOp::Gt => x > *n,
                CmpOp::Gte => x >= *n,
                CmpOp::Lt => x < *n,
                CmpOp::Lte => x <= *n,
            })
        }
        Test::Null | Test::Exists(_) => unreachable!("handled per item"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(detection: &str) -> Result<Matcher, CompileError> {
        let yaml = format!(
            "title: t\nlogsource: {{product: aws, service: cloudtrail}}\ndetection:\n{detection}"
        );
        let c = rsigma_parser::parse_sigma_yaml(&yaml).expect("yaml");
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        compile(&c.rules[0])
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
            rule(d).unwrap().event_names.map(|s| {
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
        let e = rule("  s:\n    sourceIPAddress|cidr: 10.0.0.0/8\n  condition: s").unwrap_err();
        assert!(e.message.contains("cidr"), "{e:?}");
        assert_eq!(e.near.as_deref(), Some("sourceIPAddress"));
        let e = rule("  s:\n    eventName: A\n  condition: s and t").unwrap_err();
        assert!(e.message.contains("`t`"), "{e:?}");
        let e = rule("  s:\n    eventName: A\n  condition: 1 of x*").unwrap_err();
        assert!(e.message.contains("matches no detection"), "{e:?}");
    }
}
