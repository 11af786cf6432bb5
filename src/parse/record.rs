//! The `Record` view: one CloudTrail record as a slice of the simd-json tape,
//! queried by field path without copying or building owned values.
//!
//! Building a DOM per record (owned or borrowed values) costs 3-5x more than
//! the tape; rules only read a handful of fields, so they walk the tape.
//! One pass over the top-level keys indexes the fields every rule and every
//! alert reads (`eventName`, `userIdentity`, ...) and checks their types.

use std::cell::Cell;

use simd_json::{Node, StaticNode};

thread_local! {
    /// Set when a lookup ([`Value::get`]) met its key twice in one object;
    /// read and cleared per record ([`take_duplicate_keys`]).
    static DUPLICATE_SEEN: Cell<bool> = const { Cell::new(false) };
}

/// Whether a lookup on this thread met a duplicate key since the last call
/// (and clear it): the pipeline asks once per record, after its rules ran.
pub(crate) fn take_duplicate_keys() -> bool {
    DUPLICATE_SEEN.with(|d| d.replace(false))
}

/// A JSON value inside a tape: the node slice starting at the value's node.
#[derive(Clone, Copy, Debug)]
pub struct Value<'t, 'i>(&'t [Node<'i>]);

/// The JSON type of a value, for messages and type checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

/// Number of tape nodes a value spans, header included.
#[inline]
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

impl<'t, 'i> Value<'t, 'i> {
    /// Wrap a node slice whose first node is the value.
    pub fn new(nodes: &'t [Node<'i>]) -> Self {
        Value(&nodes[..span(&nodes[0])])
    }

    pub fn kind(&self) -> Kind {
        match self.0[0] {
            Node::String(_) => Kind::String,
            Node::Object { .. } => Kind::Object,
            Node::Array { .. } => Kind::Array,
            Node::Static(StaticNode::Null) => Kind::Null,
            Node::Static(StaticNode::Bool(_)) => Kind::Bool,
            Node::Static(_) => Kind::Number,
        }
    }

    pub fn as_str(&self) -> Option<&'i str> {
        match self.0[0] {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.0[0] {
            Node::Static(StaticNode::Bool(b)) => Some(b),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.0[0], Node::Static(StaticNode::Null))
    }

    /// The number as f64 (integers beyond 2^53 lose precision; CloudTrail
    /// numbers are ports, sizes and counts).
    pub fn as_f64(&self) -> Option<f64> {
        match self.0[0] {
            Node::Static(StaticNode::I64(n)) => Some(n as f64),
            Node::Static(StaticNode::U64(n)) => Some(n as f64),
            Node::Static(StaticNode::F64(n)) => Some(n),
            _ => None,
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self.0[0] {
            Node::Static(StaticNode::I64(n)) => Some(n),
            Node::Static(StaticNode::U64(n)) => i64::try_from(n).ok(),
            _ => None,
        }
    }

    /// Object members as (key, value), in document order.
    pub fn entries(&self) -> Entries<'t, 'i> {
        match self.0[0] {
            Node::Object { len, .. } => Entries {
                nodes: &self.0[1..],
                left: len,
            },
            _ => Entries {
                nodes: &[],
                left: 0,
            },
        }
    }

    /// Array elements, in order.
    pub fn elements(&self) -> Elements<'t, 'i> {
        match self.0[0] {
            Node::Array { len, .. } => Elements {
                nodes: &self.0[1..],
                left: len,
            },
            _ => Elements {
                nodes: &[],
                left: 0,
            },
        }
    }

    /// Member `key` of an object, else `None`. With duplicate keys the
    /// last wins, as in JSON.parse, jq, Python and serde_json (and so in
    /// the event attached to an alert): a rule and every other reader of
    /// the event see the same value. Meeting a duplicate is noted
    /// ([`take_duplicate_keys`]).
    pub fn get(&self, key: &str) -> Option<Value<'t, 'i>> {
        let mut found = None;
        for (k, v) in self.entries() {
            if k == key {
                if found.is_some() {
                    DUPLICATE_SEEN.with(|d| d.set(true));
                }
                found = Some(v);
            }
        }
        found
    }

    /// Serialize back to JSON text (for alert bodies; not on the hot path).
    pub(crate) fn to_json(self) -> serde_json::Value {
        match self.kind() {
            Kind::Null => serde_json::Value::Null,
            Kind::Bool => serde_json::Value::Bool(self.as_bool().unwrap_or(false)),
            Kind::Number => match self.0[0] {
                Node::Static(StaticNode::I64(n)) => n.into(),
                Node::Static(StaticNode::U64(n)) => n.into(),
                _ => serde_json::Number::from_f64(self.as_f64().unwrap_or(0.0))
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
            },
            Kind::String => serde_json::Value::String(self.as_str().unwrap_or("").to_owned()),
            Kind::Array => serde_json::Value::Array(self.elements().map(|v| v.to_json()).collect()),
            Kind::Object => serde_json::Value::Object(
                self.entries()
                    .map(|(k, v)| (k.to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Iterator over an object's members.
pub struct Entries<'t, 'i> {
    nodes: &'t [Node<'i>],
    left: usize,
}

impl<'t, 'i> Iterator for Entries<'t, 'i> {
    type Item = (&'i str, Value<'t, 'i>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let Node::String(key) = self.nodes[0] else {
            // simd-json only writes string keys; stop rather than misread.
            self.left = 0;
            return None;
        };
        let n = span(&self.nodes[1]);
        let value = Value(&self.nodes[1..1 + n]);
        self.nodes = &self.nodes[1 + n..];
        Some((key, value))
    }
}

/// Iterator over an array's elements.
pub struct Elements<'t, 'i> {
    nodes: &'t [Node<'i>],
    left: usize,
}

impl<'t, 'i> Iterator for Elements<'t, 'i> {
    type Item = Value<'t, 'i>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let n = span(&self.nodes[0]);
        let value = Value(&self.nodes[..n]);
        self.nodes = &self.nodes[n..];
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

macro_rules! top_fields {
    ($( $variant:ident = $name:literal : $($kind:ident)|+ ),* $(,)?) => {
        /// Top-level CloudTrail fields that are indexed once per record, with
        /// the JSON types CloudTrail gives them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Top { $($variant),* }

        impl Top {
            pub(crate) const ALL: &'static [Top] = &[$(Top::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Top::$variant => $name),* }
            }

            /// Types a well-formed record may carry here (`null` is always
            /// tolerated: CloudTrail writes it for absent parameters).
            fn accepts(self, kind: Kind) -> bool {
                kind == Kind::Null || match self { $(Top::$variant => matches!(kind, $(Kind::$kind)|+)),* }
            }
        }
    };
}

top_fields! {
    EventVersion = "eventVersion": String,
    EventTime = "eventTime": String,
    EventSource = "eventSource": String,
    EventName = "eventName": String,
    AwsRegion = "awsRegion": String,
    SourceIpAddress = "sourceIPAddress": String,
    UserAgent = "userAgent": String,
    UserIdentity = "userIdentity": Object,
    RequestParameters = "requestParameters": Object,
    ResponseElements = "responseElements": Object | String,
    AdditionalEventData = "additionalEventData": Object,
    Resources = "resources": Array,
    ErrorCode = "errorCode": String,
    ErrorMessage = "errorMessage": String,
    EventId = "eventID": String,
    EventType = "eventType": String,
    RecipientAccountId = "recipientAccountId": String,
    ReadOnly = "readOnly": Bool,
}

const TOP_COUNT: usize = Top::ALL.len();

impl Top {
    /// Called for every top-level key of every record, so it avoids a chain
    /// of string comparisons: a guess from the length and one or two bytes
    /// leaves a single candidate, confirmed by one comparison.
    #[inline]
    pub(crate) fn from_name(name: &str) -> Option<Top> {
        let b = name.as_bytes();
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let guess = match (b.len(), at(0)) {
            (7, b'e') => Top::EventId,
            (8, b'r') => Top::ReadOnly,
            (9, b'e') => match (at(1), at(5), at(6)) {
                (b'r', _, _) => Top::ErrorCode,
                (_, b'N', _) => Top::EventName,
                (_, _, b'i') => Top::EventTime,
                _ => Top::EventType,
            },
            (9, b'a') => Top::AwsRegion,
            (9, b'u') => Top::UserAgent,
            (9, b'r') => Top::Resources,
            (11, b'e') => Top::EventSource,
            (12, b'e') if at(1) == b'r' => Top::ErrorMessage,
            (12, b'e') => Top::EventVersion,
            (12, b'u') => Top::UserIdentity,
            (15, b's') => Top::SourceIpAddress,
            (16, b'r') => Top::ResponseElements,
            (17, b'r') => Top::RequestParameters,
            (18, b'r') => Top::RecipientAccountId,
            (19, b'a') => Top::AdditionalEventData,
            _ => return None,
        };
        same_bytes(guess.name().as_bytes(), b).then_some(guess)
    }
}

/// Equality of two short byte strings without a `memcmp` call (top-level
/// keys are 7 to 19 bytes; this runs for every key of every record): two
/// or three overlapping 8-byte loads per side, or two 4-byte ones.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        if n < 4 {
            return a == b;
        }
        // Two overlapping 4-byte loads (`eventID`, `type`, `userName`...).
        let word =
            |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
        return word(a, 0) == word(b, 0) && word(a, n - 4) == word(b, n - 4);
    }
    if n > 24 {
        // Three 8-byte loads cover 24 bytes at most.
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let mid = (n / 2).saturating_sub(4);
    word(a, 0) == word(b, 0) && word(a, mid) == word(b, mid) && word(a, n - 8) == word(b, n - 8)
}

/// Members of `userIdentity` indexed along with the top-level fields: the
/// rule index reads `type` for every record, alerts read `arn` and
/// `accountId`, and many rules read these; a lookup by key costs a walk
/// over the object's members each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Ident {
    Type,
    Arn,
    AccountId,
    PrincipalId,
    UserName,
    InvokedBy,
    SessionContext,
}

const IDENT_COUNT: usize = 7;

impl Ident {
    fn name(self) -> &'static str {
        match self {
            Ident::Type => "type",
            Ident::Arn => "arn",
            Ident::AccountId => "accountId",
            Ident::PrincipalId => "principalId",
            Ident::UserName => "userName",
            Ident::InvokedBy => "invokedBy",
            Ident::SessionContext => "sessionContext",
        }
    }

    /// As [`Top::from_name`]: a guess from the length and first byte, then
    /// one comparison.
    #[inline]
    pub(crate) fn from_name(name: &str) -> Option<Ident> {
        let b = name.as_bytes();
        let guess = match (b.len(), b.first().copied().unwrap_or(0)) {
            (3, b'a') => Ident::Arn,
            (4, b't') => Ident::Type,
            (8, b'u') => Ident::UserName,
            (9, b'a') => Ident::AccountId,
            (9, b'i') => Ident::InvokedBy,
            (11, b'p') => Ident::PrincipalId,
            (14, b's') => Ident::SessionContext,
            _ => return None,
        };
        same_bytes(guess.name().as_bytes(), b).then_some(guess)
    }
}

/// A dotted field path, split and with its first key resolved against the
/// indexed top-level fields once, when a rule is compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldPath {
    keys: Vec<Box<str>>,
    top: Option<Top>,
    /// `userIdentity.<indexed member>...`: that member.
    ident: Option<Ident>,
}

impl FieldPath {
    pub fn new(dotted: &str) -> FieldPath {
        let keys: Vec<Box<str>> = dotted.split('.').map(Into::into).collect();
        let top = Top::from_name(&keys[0]);
        let ident = keys
            .get(1)
            .filter(|_| top == Some(Top::UserIdentity))
            .and_then(|k| Ident::from_name(k));
        FieldPath { keys, top, ident }
    }

    pub fn keys(&self) -> &[Box<str>] {
        &self.keys
    }

    /// The path as written.
    pub fn dotted(&self) -> String {
        self.keys.join(".")
    }
}

/// A field that exists but has a type CloudTrail never writes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongType {
    pub field: Top,
    pub found: Kind,
}

/// One CloudTrail record: its root object plus an index of its top-level
/// fields, built in one pass over the keys.
#[derive(Clone, Copy, Debug)]
pub struct Record<'t, 'i> {
    root: Value<'t, 'i>,
    /// Node offset (inside `root`) of each indexed field; 0 = absent.
    top: [u32; TOP_COUNT],
    /// Node offset (inside `root`) of each indexed `userIdentity` member;
    /// 0 = absent. Only when `userIdentity` is an object (else all 0 and
    /// `ident_ok` false: paths through it are walked).
    ident: [u32; IDENT_COUNT],
    ident_ok: bool,
    wrong_type: Option<WrongType>,
    duplicate_keys: bool,
}

impl<'t, 'i> Record<'t, 'i> {
    /// Index a record. `None` when the value is not an object.
    ///
    /// With duplicate keys (at the top level or in `userIdentity`) the last
    /// wins, as in [`Value::get`], and the record says so
    /// ([`Record::duplicate_keys`]).
    pub fn new(root: Value<'t, 'i>) -> Option<Self> {
        if root.kind() != Kind::Object {
            return None;
        }
        let mut top = [0u32; TOP_COUNT];
        let mut ident = [0u32; IDENT_COUNT];
        let mut duplicate_keys = false;
        let base = root.0.as_ptr();
        // Offset arithmetic without unsafe: both pointers are into `root.0`.
        let offset = |v: &Value<'_, '_>| {
            (v.0.as_ptr() as usize - base as usize) / std::mem::size_of::<Node<'_>>()
        };
        // Keys not indexed, to notice their duplicates too (a record has a
        // handful; past 16 they are not checked).
        let mut others: [&str; 16] = [""; 16];
        let mut n_others = 0;
        // Bit `f` set: the value now held for field `f` has a type
        // CloudTrail never writes there (checked per key, as it is met;
        // a later duplicate replaces the verdict with its own).
        let mut wrong: u32 = 0;
        for (key, value) in root.entries() {
            if let Some(field) = Top::from_name(key) {
                let slot = &mut top[field as usize];
                duplicate_keys |= *slot != 0;
                *slot = offset(&value) as u32;
                let bit = 1u32 << field as u32;
                if field.accepts(value.kind()) {
                    wrong &= !bit;
                } else {
                    wrong |= bit;
                }
            } else if n_others < others.len() {
                duplicate_keys |= others[..n_others].contains(&key);
                others[n_others] = key;
                n_others += 1;
            }
        }
        let wrong_type = (wrong != 0).then(|| {
            let field = Top::ALL[wrong.trailing_zeros() as usize];
            let off = top[field as usize] as usize;
            WrongType {
                field,
                found: Value::new(&root.0[off..]).kind(),
            }
        });
        let user = top[Top::UserIdentity as usize];
        let ident_ok = user != 0 && Value::new(&root.0[user as usize..]).kind() == Kind::Object;
        if ident_ok {
            for (k, v) in Value::new(&root.0[user as usize..]).entries() {
                if let Some(i) = Ident::from_name(k) {
                    duplicate_keys |= ident[i as usize] != 0;
                    ident[i as usize] = offset(&v) as u32;
                }
            }
        }
        Some(Record {
            root,
            top,
            ident,
            ident_ok,
            wrong_type,
            duplicate_keys,
        })
    }

    /// Whether the record repeats a key at its top level or in
    /// `userIdentity` (the last one counts; see [`Record::new`]).
    pub(crate) fn duplicate_keys(&self) -> bool {
        self.duplicate_keys
    }

    /// The root object.
    pub fn root(&self) -> Value<'t, 'i> {
        self.root
    }

    /// The first indexed field whose type is wrong, if any.
    pub fn wrong_type(&self) -> Option<WrongType> {
        self.wrong_type
    }

    /// An indexed top-level field.
    #[inline]
    pub fn top(&self, field: Top) -> Option<Value<'t, 'i>> {
        match self.top[field as usize] {
            0 => None,
            off => Some(Value::new(&self.root.0[off as usize..])),
        }
    }

    /// An indexed member of `userIdentity`: `Err(())` when `userIdentity`
    /// is absent or not an object (walk the path instead).
    #[inline]
    fn ident(&self, member: Ident) -> Result<Option<Value<'t, 'i>>, ()> {
        if !self.ident_ok {
            return Err(());
        }
        Ok(match self.ident[member as usize] {
            0 => None,
            off => Some(Value::new(&self.root.0[off as usize..])),
        })
    }

    /// An indexed top-level field as a string (`None` if absent or not a string).
    #[inline]
    pub fn str(&self, field: Top) -> Option<&'i str> {
        self.top(field).and_then(|v| v.as_str())
    }

    /// Any top-level field, indexed or not.
    pub fn field(&self, name: &str) -> Option<Value<'t, 'i>> {
        match Top::from_name(name) {
            Some(t) => self.top(t),
            None => self.root.get(name),
        }
    }

    /// Visit every value at a dotted path (`resources.ARN`): arrays met on
    /// the way are flattened (any element may hold the rest of the path), and
    /// an array at the end yields its elements. Stops early when `f` returns
    /// true, and returns whether it did.
    pub(crate) fn any_at<P: AsRef<str>>(
        &self,
        path: &[P],
        f: &mut impl FnMut(Value<'t, 'i>) -> bool,
    ) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        if let Some((member, after)) = rest.split_first()
            && first.as_ref() == "userIdentity"
            && let Some(member) = Ident::from_name(member.as_ref())
            && let Ok(v) = self.ident(member)
        {
            return v.is_some_and(|v| walk(v, after, f));
        }
        match self.field(first.as_ref()) {
            Some(v) => walk(v, rest, f),
            None => false,
        }
    }

    #[cfg(test)]
    /// Every value at a path written as text: `userIdentity.type`, or
    /// `resources[].ARN` where `[]` marks an array (arrays are flattened
    /// either way). For tools and tests; rules use pre-split paths.
    pub(crate) fn values_at(&self, path: &str) -> Vec<Value<'t, 'i>> {
        let keys: Vec<&str> = path.split('.').map(|k| k.trim_end_matches("[]")).collect();
        let mut out = Vec::new();
        self.any_at(&keys, &mut |v| {
            out.push(v);
            false
        });
        out
    }

    /// [`Record::any_at`] for a pre-resolved path.
    #[inline]
    pub(crate) fn any_path(
        &self,
        path: &FieldPath,
        f: &mut impl FnMut(Value<'t, 'i>) -> bool,
    ) -> bool {
        if let Some(member) = path.ident
            && let Ok(v) = self.ident(member)
        {
            return v.is_some_and(|v| walk(v, &path.keys[2..], f));
        }
        let first = match path.top {
            Some(t) => self.top(t),
            None => self.root.get(&path.keys[0]),
        };
        first.is_some_and(|v| walk(v, &path.keys[1..], f))
    }

    /// The string at `userIdentity.<member>` (first one found, as
    /// [`Record::str_at`] would), through the index.
    pub fn ident_str(&self, member: Ident) -> Option<&'i str> {
        let mut found = None;
        let mut f = |v: Value<'t, 'i>| {
            found = v.as_str();
            found.is_some()
        };
        match self.ident(member) {
            Ok(Some(v)) => {
                walk::<&str>(v, &[], &mut f);
            }
            Ok(None) => {}
            Err(()) => {
                self.any_at(&["userIdentity", member.name()], &mut f);
            }
        }
        found
    }

    /// The string at a dotted path (first one found), for alert fields.
    pub fn str_at<P: AsRef<str>>(&self, path: &[P]) -> Option<&'i str> {
        let mut found = None;
        self.any_at(path, &mut |v| {
            found = v.as_str();
            found.is_some()
        });
        found
    }
}

fn walk<'t, 'i, P: AsRef<str>>(
    v: Value<'t, 'i>,
    path: &[P],
    f: &mut impl FnMut(Value<'t, 'i>) -> bool,
) -> bool {
    match v.kind() {
        Kind::Array => v.elements().any(|e| walk(e, path, f)),
        _ => match path.split_first() {
            None => f(v),
            Some((key, rest)) => match v.get(key.as_ref()) {
                Some(child) => walk(child, rest, f),
                None => false,
            },
        },
    }
}

#[cfg(test)]
mod tests;
