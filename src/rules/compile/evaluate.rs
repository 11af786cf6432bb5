//! Evaluating a compiled rule against a record: the conditions, then each
//! detection item's tests on the record's values.

use std::collections::HashSet;

use super::{
    CmpOp, Cond, Det, Item, Shape, Test, Value, det_paths, item_substrings, item_values, required,
};
use crate::parse::{Kind, Record};
use crate::rules::Matcher;
use crate::rules::pattern::Pattern;

impl Matcher {
    /// Literals one of which any match requires in the field at `path`.
    pub(crate) fn required_substrings(&self, path: &str) -> Option<Vec<String>> {
        required(&self.cond, &self.dets, &|it| item_substrings(it, path))
    }

    /// Every field path the rule tests.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.dets.iter().for_each(|d| det_paths(d, &mut out));
        out.sort();
        out.dedup();
        out
    }

    /// Exact values (lowercased) of the field at `path`, one of which any
    /// match requires; `None` when the rule does not pin that field.
    pub fn required(&self, path: &str) -> Option<HashSet<String>> {
        required(&self.cond, &self.dets, &|it| item_values(it, path)).map(HashSet::from_iter)
    }

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
    let Some(path) = &it.path else {
        return true;
    };
    let one = |t: &Test| -> bool {
        match t {
            Test::Null => {
                let mut present = false;
                r.any_path(path, &mut |v| {
                    present = !v.is_null();
                    present
                });
                !present
            }
            // Present means present with a value: null counts as absent.
            Test::Exists(want) => r.any_path(path, &mut |v| !v.is_null()) == *want,
            _ => r.any_path(path, &mut |v| test_value(t, v, r)),
        }
    };
    let hit = if it.all {
        it.tests.iter().all(one)
    } else {
        it.tests.iter().any(one)
    };
    hit != it.neq
}

/// A scalar as text, the way Sigma string matchers see numbers and booleans.
fn with_text<R>(v: Value<'_, '_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match v.kind() {
        Kind::String => Some(f(v.as_str().unwrap_or(""))),
        Kind::Number => Some(match v.as_i64() {
            Some(n) => f(&n.to_string()),
            None => f(&v.as_f64().unwrap_or(f64::NAN).to_string()),
        }),
        Kind::Bool => Some(f(if v.as_bool() == Some(true) {
            "true"
        } else {
            "false"
        })),
        _ => None,
    }
}

fn number_of(v: Value<'_, '_>) -> Option<f64> {
    match v.kind() {
        Kind::Number => v.as_f64(),
        Kind::String => v.as_str().and_then(|s| s.parse::<f64>().ok()),
        _ => None,
    }
}

fn test_value(t: &Test, v: Value<'_, '_>, r: &Record<'_, '_>) -> bool {
    match t {
        Test::Str(p) => with_text(v, |s| p.matches(s)).unwrap_or(false),
        Test::AnyStr(ps) => with_text(v, |s| ps.iter().any(|p| p.matches(s))).unwrap_or(false),
        Test::Regex(re) => with_text(v, |s| re.is_match(s)).unwrap_or(false),
        Test::Cidr(net) => v
            .as_str()
            .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| net.contains(&ip)),
        Test::Num(n) => number_of(v) == Some(*n),
        Test::Bool(b) => match v.kind() {
            Kind::Bool => v.as_bool() == Some(*b),
            Kind::String => match v.as_str().unwrap_or("").to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => *b,
                "false" | "0" | "no" => !*b,
                _ => false,
            },
            _ => false,
        },
        Test::Cmp(op, n) => number_of(v).is_some_and(|x| match op {
            CmpOp::Gt => x > *n,
            CmpOp::Gte => x >= *n,
            CmpOp::Lt => x < *n,
            CmpOp::Lte => x <= *n,
        }),
        Test::FieldRef { path, shape, cased } => {
            let mut other = None;
            r.any_path(path, &mut |o| {
                other = Some(o);
                true
            });
            other.is_some_and(|o| field_ref(v, o, *shape, *cased))
        }
        Test::Null | Test::Exists(_) => unreachable!("handled per item"),
    }
}

/// `a|fieldref: b`: equal values (strings case-insensitively unless
/// `cased`), or with a shape, `b`'s text found in `a` that way.
fn field_ref(v: Value<'_, '_>, other: Value<'_, '_>, shape: Shape, cased: bool) -> bool {
    let fold = |s: &str| {
        if cased {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    match (v.as_str(), other.as_str()) {
        (Some(a), Some(b)) => {
            let (a, b) = (fold(a), fold(b));
            match shape {
                Shape::Exact => a == b,
                Shape::Contains => a.contains(&b),
                Shape::Prefix => a.starts_with(&b),
                Shape::Suffix => a.ends_with(&b),
            }
        }
        _ if shape == Shape::Exact => v.to_json() == other.to_json(),
        _ => false,
    }
}
