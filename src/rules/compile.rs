//! Compiles a parsed Sigma detection (rsigma-parser's AST) into a matcher
//! over [`Record`] views, and evaluates it.
//!
//! All string work happens here, once per rule: field paths are split,
//! needles lowercased, wildcard shapes classified, selectors (`1 of sel*`)
//! expanded to the detections they name. Matching then only walks the tape.

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Modifier, Quantifier, SigmaRule, SigmaValue,
};

use super::pattern::Pattern;
use crate::parse::{FieldPath, Value};

/// A compiled rule body: the condition over the detections it names.
#[derive(Debug, Clone)]
pub struct Matcher {
    cond: Cond,
    dets: Vec<Det>,
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
    /// The field; `None` for a keyword item (always true here).
    path: Option<FieldPath>,
    tests: Vec<Test>,
    /// `all` modifier: every value must match (default: any).
    all: bool,
    /// `neq` modifier: the item matches when its values do not.
    neq: bool,
}

/// A compiled `|re` and the literal every match must contain, if it has
/// one: SigmaHQ writes `.+:assumed-role/aws:.+` and tests it on every
/// record; a memmem for `:assumed-role/aws:` rejects nearly all of them
/// before the regex engine runs.
#[derive(Debug, Clone)]
struct Re {
    re: regex::Regex,
    required: Option<memchr::memmem::Finder<'static>>,
}

impl Re {
    fn is_match(&self, s: &str) -> bool {
        self.required
            .as_ref()
            .is_none_or(|f| f.find(s.as_bytes()).is_some())
            && self.re.is_match(s)
    }
}

/// The longest run of literal bytes a match of `pattern` must contain:
/// consecutive literals at the top level of its concatenation (inside
/// capture groups too). Case-insensitive parts parse to classes, not
/// literals, so they never yield one.
fn required_literal(pattern: &str, i: bool, m: bool, s: bool) -> Option<Vec<u8>> {
    use regex_syntax::hir::{Hir, HirKind};
    fn strip(h: &Hir) -> &Hir {
        match h.kind() {
            HirKind::Capture(c) => strip(&c.sub),
            _ => h,
        }
    }
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(i)
        .multi_line(m)
        .dot_matches_new_line(s)
        .build()
        .parse(pattern)
        .ok()?;
    let hir = strip(&hir);
    let parts: Vec<&Hir> = match hir.kind() {
        HirKind::Concat(c) => c.iter().map(strip).collect(),
        _ => vec![hir],
    };
    let mut best: Vec<u8> = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    for p in parts {
        if let HirKind::Literal(l) = p.kind() {
            run.extend_from_slice(&l.0);
        } else {
            run.clear();
        }
        if run.len() > best.len() {
            best = run.clone();
        }
    }
    (best.len() >= 2).then_some(best)
}

#[derive(Debug, Clone)]
enum Test {
    Str(Pattern),
    /// Several encodings of one value (`base64offset`, `windash`): any.
    AnyStr(Vec<Pattern>),
    /// `re`, unanchored (search), with the i/m/s flags given.
    Regex(Box<Re>),
    /// `cidr`: the value parses as an IP address inside the network.
    Cidr(ipnet::IpNet),
    /// `fieldref`: compare with the value of another field of the event.
    FieldRef {
        path: FieldPath,
        shape: Shape,
        cased: bool,
    },
    /// A number in the rule: equal as a number (strings are parsed).
    Num(f64),
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
pub(crate) struct CompileError {
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
pub(crate) fn compile(rule: &SigmaRule) -> Result<Matcher, CompileError> {
    compile_detections(&rule.detection)
}

/// Compile a detection section (a rule's, or a filter's).
pub(crate) fn compile_detections(det: &rsigma_parser::Detections) -> Result<Matcher, CompileError> {
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
    Ok(Matcher { cond, dets })
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

/// Modifiers of one detection item, collected before values are compiled.
#[derive(Default)]
struct Mods {
    contains: bool,
    startswith: bool,
    endswith: bool,
    all: bool,
    cased: bool,
    exists: bool,
    re: bool,
    cidr: bool,
    fieldref: bool,
    neq: bool,
    base64: bool,
    base64offset: bool,
    windash: bool,
    /// `wide`/`utf16le`, `utf16be` or `utf16` (with BOM).
    utf16: Option<Modifier>,
    cmp: Option<CmpOp>,
    re_i: bool,
    re_m: bool,
    re_s: bool,
}

impl Mods {
    fn shape(&self) -> Shape {
        if self.contains {
            Shape::Contains
        } else if self.startswith {
            Shape::Prefix
        } else if self.endswith {
            Shape::Suffix
        } else {
            Shape::Exact
        }
    }
}

fn modifier_name(m: &Modifier) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{m:?}").to_lowercase())
}

fn compile_item(item: &DetectionItem, det_name: &str) -> Result<Item, CompileError> {
    let Some(field) = item.field.name.as_deref() else {
        return Ok(Item {
            path: None,
            tests: Vec::new(),
            all: false,
            neq: false,
        });
    };
    let near = Some(field);
    let bad = |msg: String| err(format!("`{field}` in `{det_name}`: {msg}"), near);
    let mut m = Mods::default();
    for modifier in &item.field.modifiers {
        match modifier {
            Modifier::Contains => m.contains = true,
            Modifier::StartsWith => m.startswith = true,
            Modifier::EndsWith => m.endswith = true,
            Modifier::All => m.all = true,
            Modifier::Cased => m.cased = true,
            Modifier::Exists => m.exists = true,
            Modifier::Re => m.re = true,
            Modifier::Cidr => m.cidr = true,
            Modifier::FieldRef => m.fieldref = true,
            Modifier::Neq => m.neq = true,
            Modifier::Base64 => m.base64 = true,
            Modifier::Base64Offset => m.base64offset = true,
            Modifier::WindAsh => m.windash = true,
            Modifier::Wide | Modifier::Utf16be | Modifier::Utf16 => {
                if let Some(prev) = m.utf16 {
                    return Err(bad(format!(
                        "|{} and |{} are different UTF-16 encodings; pick one",
                        modifier_name(&prev),
                        modifier_name(modifier)
                    )));
                }
                m.utf16 = Some(*modifier)
            }
            Modifier::Gt => m.cmp = Some(CmpOp::Gt),
            Modifier::Gte => m.cmp = Some(CmpOp::Gte),
            Modifier::Lt => m.cmp = Some(CmpOp::Lt),
            Modifier::Lte => m.cmp = Some(CmpOp::Lte),
            Modifier::IgnoreCase => m.re_i = true,
            Modifier::Multiline => m.re_m = true,
            Modifier::DotAll => m.re_s = true,
            other => {
                return Err(bad(format!(
                    "modifier |{} is not supported (it does not apply to CloudTrail's JSON, \
                     or needs configuration trailwatch does not have)",
                    modifier_name(other)
                )));
            }
        }
    }
    // One operator per item, as the specification and rsigma-eval require:
    // a second one would be silently ignored otherwise.
    let string_ops = [m.contains, m.startswith, m.endswith]
        .iter()
        .filter(|b| **b)
        .count();
    let operators = string_ops * usize::from(!m.fieldref)
        + usize::from(m.re)
        + usize::from(m.cidr)
        + usize::from(m.exists)
        + usize::from(m.cmp.is_some())
        + usize::from(m.fieldref && string_ops <= 1);
    if operators > 1 || (m.fieldref && string_ops > 1) {
        return Err(bad(
            "conflicting modifiers: at most one operator (contains, startswith, \
             endswith, re, cidr, exists, fieldref, gt/gte/lt/lte) per field"
                .into(),
        ));
    }
    let non_string_op = m.re || m.cidr || m.exists || m.fieldref || m.cmp.is_some();
    let transforms = m.base64 || m.base64offset || m.windash || m.utf16.is_some();
    if non_string_op && transforms {
        return Err(bad(
            "value transformations (base64, base64offset, windash, utf16) \
             only apply to string matching"
                .into(),
        ));
    }
    if m.base64 && m.base64offset {
        return Err(bad(
            "|base64 and |base64offset are exclusive; pick one".into()
        ));
    }
    if m.utf16.is_some() && !(m.base64 || m.base64offset) {
        return Err(bad(
            "UTF-16 modifiers only make sense with |base64 or |base64offset \
             in JSON logs (the text itself is never UTF-16)"
                .into(),
        ));
    }
    if !m.re && (m.re_i || m.re_m || m.re_s) {
        return Err(bad("regex flags (i, m, s) need |re".into()));
    }
    if m.all && item.values.len() < 2 {
        return Err(bad("|all needs more than one value".into()));
    }
    let shape = m.shape();
    let mut tests = Vec::with_capacity(item.values.len());
    for v in &item.values {
        tests.push(compile_value(v, &m, shape).map_err(|e| bad(e.to_string()))?);
    }
    if m.exists {
        // One verdict for the field, whatever the number of values.
        tests.truncate(1);
    }
    Ok(Item {
        path: Some(FieldPath::new(field)),
        tests,
        all: m.all,
        neq: m.neq,
    })
}

/// The value as plain text (numbers and booleans as written), for
/// modifiers that take text.
fn plain_text(v: &SigmaValue) -> Option<String> {
    match v {
        SigmaValue::String(s) => Some(s.as_plain().unwrap_or_else(|| s.original.clone())),
        SigmaValue::Integer(n) => Some(n.to_string()),
        SigmaValue::Float(f) => Some(f.to_string()),
        SigmaValue::Bool(b) => Some(b.to_string()),
        SigmaValue::Null => None,
    }
}

/// Why a value cannot be compiled under its modifiers (the rule is then
/// refused, naming the field).
#[derive(Debug, thiserror::Error)]
enum ValueError {
    #[error("null cannot be used with this modifier")]
    Null,
    #[error("|exists needs true or false")]
    ExistsNeedsBool,
    #[error("a field reference cannot hold wildcards")]
    FieldRefWildcard,
    #[error("null is not a field name")]
    FieldRefNull,
    #[error("invalid regular expression: {0}")]
    Regex(#[from] regex::Error),
    #[error("invalid CIDR `{text}`: {source}")]
    Cidr {
        text: String,
        #[source]
        source: ipnet::AddrParseError,
    },
    #[error("|windash value has {0} dashes (at most 8)")]
    TooManyDashes(usize),
    #[error("comparison needs a number{}", .0.as_ref().map(|t| format!(", got `{t}`")).unwrap_or_default())]
    NotANumber(Option<String>),
}

fn compile_value(v: &SigmaValue, m: &Mods, shape: Shape) -> Result<Test, ValueError> {
    let text = || plain_text(v).ok_or(ValueError::Null);
    if m.exists {
        return match v {
            SigmaValue::Bool(b) => Ok(Test::Exists(*b)),
            SigmaValue::String(s) => match s.as_plain().as_deref() {
                Some("true" | "yes") => Ok(Test::Exists(true)),
                Some("false" | "no") => Ok(Test::Exists(false)),
                _ => Err(ValueError::ExistsNeedsBool),
            },
            _ => Err(ValueError::ExistsNeedsBool),
        };
    }
    if m.fieldref {
        let name = match v {
            SigmaValue::String(s) => s.as_plain().ok_or(ValueError::FieldRefWildcard)?,
            other => plain_text(other).ok_or(ValueError::FieldRefNull)?,
        };
        return Ok(Test::FieldRef {
            path: FieldPath::new(&name),
            shape,
            cased: m.cased,
        });
    }
    if m.re {
        let re = regex::RegexBuilder::new(&text()?)
            .case_insensitive(m.re_i)
            .multi_line(m.re_m)
            .dot_matches_new_line(m.re_s)
            .build()?;
        let required = required_literal(&text()?, m.re_i, m.re_m, m.re_s)
            .map(|l| memchr::memmem::Finder::new(&l).into_owned());
        return Ok(Test::Regex(Box::new(Re { re, required })));
    }
    if m.cidr {
        let t = text()?;
        return t
            .parse::<ipnet::IpNet>()
            .map(Test::Cidr)
            .map_err(|source| ValueError::Cidr { text: t, source });
    }
    if let Some(op) = m.cmp {
        let n = match v {
            SigmaValue::Integer(n) => *n as f64,
            SigmaValue::Float(f) => *f,
            SigmaValue::String(s) => {
                let t = s.as_plain().unwrap_or_else(|| s.original.clone());
                t.parse().map_err(|_| ValueError::NotANumber(Some(t)))?
            }
            _ => return Err(ValueError::NotANumber(None)),
        };
        return Ok(Test::Cmp(op, n));
    }
    match v {
        SigmaValue::Integer(n) => return Ok(number_test(*n as f64, &n.to_string(), shape)),
        SigmaValue::Float(f) => return Ok(number_test(*f, &f.to_string(), shape)),
        SigmaValue::Bool(b) => return Ok(Test::Bool(*b)),
        SigmaValue::Null => return Ok(Test::Null),
        SigmaValue::String(_) => {}
    }
    let SigmaValue::String(s) = v else {
        unreachable!("other kinds returned above")
    };
    if m.base64 || m.base64offset {
        use base64::Engine as _;
        let mut bytes = s
            .as_plain()
            .unwrap_or_else(|| s.original.clone())
            .into_bytes();
        if let Some(enc) = m.utf16 {
            bytes = utf16(&bytes, enc);
        }
        if m.base64 {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            return Ok(Test::Str(literal(&encoded, shape, m.cased)));
        }
        // base64offset implies contains: the encoded value sits inside a
        // longer base64 string at an unknown alignment.
        return Ok(Test::AnyStr(
            base64_offsets(&bytes)
                .iter()
                .map(|p| literal(p, Shape::Contains, m.cased))
                .collect(),
        ));
    }
    if m.windash {
        let plain = s.as_plain().unwrap_or_else(|| s.original.clone());
        return Ok(Test::AnyStr(
            windash(&plain)?
                .iter()
                .map(|p| literal(p, shape, m.cased))
                .collect(),
        ));
    }
    Ok(Test::Str(Pattern::new(&shape.apply(s), m.cased)))
}

/// A pattern matching `text` literally (no wildcards) in the given shape.
fn literal(text: &str, shape: Shape, cased: bool) -> Pattern {
    let raw = rsigma_parser::SigmaString::from_raw(text);
    Pattern::new(&shape.apply(&raw), cased)
}

fn utf16(bytes: &[u8], enc: Modifier) -> Vec<u8> {
    let s = String::from_utf8_lossy(bytes);
    let mut out = Vec::with_capacity(s.len() * 2 + 2);
    if enc == Modifier::Utf16 {
        out.extend_from_slice(&[0xFF, 0xFE]); // little-endian BOM
    }
    for u in s.encode_utf16() {
        out.extend_from_slice(&if enc == Modifier::Utf16be {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    out
}

/// The three base64 encodings of `value` at byte offsets 0, 1 and 2 of a
/// 3-byte group, trimmed at both ends to the characters that do not depend
/// on the surrounding bytes (pySigma's construction, as the specification
/// describes it; rsigma-eval keeps one alignment-dependent character at the
/// end, which can miss real matches).
fn base64_offsets(value: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    (0..3usize)
        .filter_map(|offset| {
            let mut padded = vec![b' '; offset];
            padded.extend_from_slice(value);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&padded);
            let end = encoded.len() - END_TRIM[(value.len() + offset) % 3];
            (START[offset] < end).then(|| encoded[START[offset]..end].to_owned())
        })
        .collect()
}

/// Every variant of `text` with each `-` replaced by one of the dashes
/// Windows command lines accept. Bounded: 5^8 variants at most.
fn windash(text: &str) -> Result<Vec<String>, ValueError> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let n = text.matches('-').count();
    if n > 8 {
        return Err(ValueError::TooManyDashes(n));
    }
    let mut out = vec![String::new()];
    for c in text.chars() {
        if c == '-' {
            out = out
                .iter()
                .flat_map(|p| DASHES.iter().map(move |d| format!("{p}{d}")))
                .collect();
        } else {
            out.iter_mut().for_each(|p| p.push(c));
        }
    }
    Ok(out)
}

fn number_test(n: f64, text: &str, shape: Shape) -> Test {
    match shape {
        Shape::Exact => Test::Num(n),
        _ => Test::Str(Pattern::parse(&shape.wrap(text))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// What a condition requires, built from what single items require: a
/// conjunct's requirement is the whole's, a disjunction requires one of its
/// branches' (so every branch must have one), a negation requires nothing
/// usable. `item` says what one detection item requires, if anything.
fn required(
    cond: &Cond,
    dets: &[Det],
    item: &dyn Fn(&Item) -> Option<Vec<String>>,
) -> Option<Vec<String>> {
    match cond {
        Cond::Det(i) => det_required(&dets[*i], item),
        Cond::And(v) => v.iter().find_map(|c| required(c, dets, item)),
        Cond::AtLeast(0, _) | Cond::Not(_) => None,
        Cond::Or(v) | Cond::AtLeast(_, v) => {
            let mut all = Vec::new();
            for c in v {
                all.extend(required(c, dets, item)?);
            }
            Some(all)
        }
    }
}

fn det_required(d: &Det, item: &dyn Fn(&Item) -> Option<Vec<String>>) -> Option<Vec<String>> {
    match d {
        Det::All(items) => items.iter().find_map(item),
        Det::Any(subs) => {
            let mut all = Vec::new();
            for s in subs {
                all.extend(det_required(s, item)?);
            }
            Some(all)
        }
        Det::And(subs) => subs.iter().find_map(|s| det_required(s, item)),
        Det::Keywords(_) => None,
    }
}

/// Does the item test the field at `path` (and not negated)?
fn tests_path(it: &Item, path: &str) -> bool {
    !it.neq
        && it
            .path
            .as_ref()
            .is_some_and(|p| p.keys().iter().map(|k| &**k).eq(path.split('.')))
}

/// Exact (folded) values an item requires of the field at `path`.
fn item_values(it: &Item, path: &str) -> Option<Vec<String>> {
    if !tests_path(it, path) || it.all && it.tests.len() > 1 {
        return None;
    }
    it.tests
        .iter()
        .map(|t| match t {
            Test::Str(p) => p.exact().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// Literals an item requires inside the field at `path` (see
/// [`Pattern::prefilter_literal`]).
fn item_substrings(it: &Item, path: &str) -> Option<Vec<String>> {
    if !tests_path(it, path) || it.tests.is_empty() {
        return None;
    }
    // With |all every value must match, so the first one's literal is
    // required; otherwise one of them.
    let tests = if it.all {
        &it.tests[..1]
    } else {
        &it.tests[..]
    };
    let mut out = Vec::new();
    for t in tests {
        match t {
            Test::Str(p) => out.push(p.prefilter_literal()?),
            Test::AnyStr(ps) => {
                for p in ps {
                    out.push(p.prefilter_literal()?)
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

fn det_paths(d: &Det, out: &mut Vec<String>) {
    match d {
        Det::All(items) => out.extend(
            items
                .iter()
                .filter_map(|i| i.path.as_ref().map(FieldPath::dotted)),
        ),
        Det::Any(subs) | Det::And(subs) => subs.iter().for_each(|s| det_paths(s, out)),
        Det::Keywords(_) => {}
    }
}

mod evaluate;

#[cfg(test)]
mod tests;
