//! JSON lines and human-readable text output of alerts.
//!
//! JSON lines are what log shippers (ECS awslogs, Vector, Fluent Bit) read;
//! serde_json escapes every string, so event text cannot break a line or
//! forge another alert. The text form is for people at a terminal: control
//! characters (newlines, ANSI escape sequences) are shown escaped so that an
//! event cannot rewrite the screen or fake extra lines.

use std::io::{self, Write};

use super::{Alert, Match};
use crate::rules::RuleMeta;

/// Output formats of alerts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    /// One JSON object per line.
    Json,
    /// One readable line per alert.
    Text,
}

/// Write one alert in the given format, newline-terminated.
pub fn write(w: &mut dyn Write, alert: &Alert, format: Format) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *w, alert)?;
            w.write_all(b"\n")
        }
        Format::Text => {
            // Time and level first on every line, in fixed columns, so a
            // column of alerts reads down; what kind of alert it is (a
            // burst, a dry run) comes after them, before the title.
            let mut marks = String::new();
            if let (Some(kind), Some(count)) = (alert.correlation, alert.count) {
                let group: Vec<String> = alert
                    .group
                    .iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", field(Some(v))))
                    .collect();
                marks.push_str(&format!("[{kind} x{count} {}] ", group.join(" ")));
            }
            if alert.rule.dry_run {
                marks.push_str("[dry run] ");
            }
            writeln!(
                w,
                "{time:<20} {level:<13} {marks}{title} | principal={principal} account={account} region={region} ip={ip} event={event} id={id} source={source}#{record}",
                time = field(alert.event_time.as_deref()),
                level = alert.level.as_str(),
                title = clean(Some(&alert.rule_title)),
                principal = field(alert.principal.as_deref()),
                account = field(alert.account_label().as_deref()),
                region = field(alert.region.as_deref()),
                ip = field(alert.source_ip.as_deref()),
                event = field(alert.event_name.as_deref()),
                id = field(alert.event_id.as_deref()),
                source = field(Some(&alert.source)),
                record = alert.record,
            )
        }
    }
}

/// The parts of an alert's JSON line that come from its rule, rendered
/// once per rule rather than once per match: with a noisy rule, serializing
/// the rule's description, references and false positives again for every
/// line was most of `scan`'s output cost.
#[derive(Debug, Clone)]
pub(crate) struct RuleJson {
    /// The rule itself, for the text format (which builds the alert).
    meta: std::sync::Arc<RuleMeta>,
    /// `{"rule_id":…,"rule_name":…,"rule_title":…,"level":…`
    head: String,
    /// `,"tags":[…]`
    tags: String,
    /// `,"rule":{…}}` and the line's end.
    tail_line: String,
}

impl RuleJson {
    pub fn new(rule: &std::sync::Arc<RuleMeta>) -> RuleJson {
        let mut head = format!("{{\"rule_id\":{}", j(&rule.id));
        if let Some(name) = &rule.name {
            head.push_str(&format!(",\"rule_name\":{}", j(name)));
        }
        head.push_str(&format!(
            ",\"rule_title\":{},\"level\":{}",
            j(&rule.title),
            j(&rule.level)
        ));
        RuleJson {
            meta: std::sync::Arc::clone(rule),
            head,
            tags: format!(",\"tags\":{}", j(&rule.tags)),
            tail_line: format!(",\"rule\":{}}}\n", j(rule)),
        }
    }
}

/// `v` as JSON (the rule's own strings: serialization cannot fail).
fn j<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Append one match to `out` as [`write`] would write its [`Alert`] (same
/// bytes in JSON), without building the alert. `source_json` is the
/// object's name as a JSON string, `source` as it is. The caller's buffer
/// is written out as it fills: with a noisy rule, per-field writes through
/// a writer and its formatting machinery were a tenth of `scan`'s time.
pub(crate) fn write_match(
    out: &mut Vec<u8>,
    m: &Match,
    rule: &RuleJson,
    source: &str,
    source_json: &str,
    format: Format,
) -> io::Result<()> {
    if format == Format::Text {
        return write(out, &m.to_alert(&rule.meta, source), format);
    }
    out.extend_from_slice(rule.head.as_bytes());
    // One check over the fields end to end; the usual match needs no
    // escaping at all.
    let clean = !needs_escape(m.fields_text().as_bytes());
    for (name, value) in m.named_json_keys() {
        out.extend_from_slice(name);
        match value {
            Some(v) if clean => {
                out.push(b'"');
                out.extend_from_slice(v.as_bytes());
                out.push(b'"');
            }
            Some(v) => push_json_str(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b",\"source\":");
    out.extend_from_slice(source_json.as_bytes());
    out.extend_from_slice(b",\"record\":");
    push_decimal(out, m.record as u64);
    out.extend_from_slice(rule.tags.as_bytes());
    if let Some(event) = &m.event {
        out.extend_from_slice(b",\"event\":");
        out.extend_from_slice(event.get().as_bytes());
    }
    out.extend_from_slice(rule.tail_line.as_bytes());
    Ok(())
}

/// `s` as a JSON string, the bytes serde_json writes (it escapes only `"`,
/// `\\` and control characters), without its per-byte path for the usual
/// string that needs no escape.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether `b` holds a byte JSON escapes (`"`, `\\`, below 0x20), eight
/// bytes at a time: the exact "has a byte less than n" and "has a zero
/// byte" word tests (bytes of 0x80 and above, UTF-8, never match).
fn needs_escape(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let word = |w: u64| {
        let less = w.wrapping_sub(LO * 0x20) & !w & HI;
        let q = w ^ (LO * b'"' as u64);
        let bs = w ^ (LO * b'\\' as u64);
        less | (q.wrapping_sub(LO) & !q & HI) | (bs.wrapping_sub(LO) & !bs & HI) != 0
    };
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        if word(u64::from_le_bytes(c.try_into().expect("8 bytes"))) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&x| x < 0x20 || x == b'"' || x == b'\\')
}

/// `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Escape what could fake a line or its layout on a terminal or in a log
/// viewer: control characters, Unicode's line and paragraph separators
/// (U+2028/2029, line breaks to many editors and web viewers), the bidi
/// controls that reorder what is displayed (U+202A-202E, U+2066-2069,
/// U+200E/200F, U+061C) and invisible characters (zero-width, BOM).
pub fn clean(s: Option<&str>) -> String {
    let Some(s) = s else { return "-".into() };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || deceptive(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{2028}'
            | '\u{2029}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'..='\u{200F}'
            | '\u{061C}'
            | '\u{FEFF}'
    )
}

/// One formatted log line (text or JSON) made safe to append to a log:
/// a line break before its end, a carriage return, another control
/// character (but a tab, and an escape, whose sequences tracing itself
/// defuses and colours use) and the characters [`clean`] calls deceptive
/// are written as `\n`, `\r`, `\u2028`: valid escapes in a JSON string too.
/// A file name or S3 key with a newline cannot forge a log line this way,
/// whichever log statement prints it.
pub fn escape_log_line(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match line.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (line, &b""[..]),
    };
    let suspicious = |b: &u8| {
        (*b < 0x20 && !matches!(*b, b'\t' | 0x1b)) || matches!(*b, 0xE2 | 0xD8 | 0xEF | 0xC2)
    };
    if !body.iter().any(suspicious) {
        return std::borrow::Cow::Borrowed(line);
    }
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' | '\u{1b}' => out.push(c),
            c if c.is_control() || deceptive(c) => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(end);
    std::borrow::Cow::Owned(bytes)
}

/// [`clean`] for a `key=value` field: a value that holds a space, `=`,
/// `|`, a quote or a backslash, or is empty, is quoted (with `"` and `\`
/// escaped), so no value can end its field early and fake another one.
pub fn field(s: Option<&str>) -> String {
    let c = clean(s);
    if !c.is_empty() && !c.contains([' ', '=', '|', '"', '\\']) {
        return c;
    }
    let mut out = String::with_capacity(c.len() + 2);
    out.push('"');
    for ch in c.chars() {
        if matches!(ch, '"' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(ua: &str) -> Alert {
        Alert {
            event_id: Some("e".into()),
            principal: Some("arn:x\r\nFake: header".into()),
            user_agent: Some(ua.into()),
            record: 3,
            ..Alert::example(std::sync::Arc::new(crate::rules::RuleMeta::example("id")))
        }
    }

    /// The word-at-a-time escape check agrees with the byte-wise one at
    /// every position, for every byte value.
    #[test]
    fn escape_check_agrees_with_bytes() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0u8..=255 {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    let want = v.iter().any(|&x| x < 0x20 || x == b'"' || x == b'\\');
                    assert_eq!(needs_escape(&v), want, "len {len} at {at} byte {b}");
                }
            }
        }
        let mut out = Vec::new();
        for s in ["plain", "é—", "q\"uote", "back\\slash", "tab\t", "\u{7f}"] {
            out.clear();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn json_line_stays_one_line() {
        let mut out = Vec::new();
        write(
            &mut out,
            &alert("ua\n{\"rule_id\":\"forged\"}"),
            Format::Json,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["rule_id"], "id");
        assert_eq!(back["user_agent"], "ua\n{\"rule_id\":\"forged\"}");
    }

    /// The text format is read by eye and by `grep`/`awk`: no field value
    /// may break the line (for a viewer), reorder it, or fake a field.
    #[test]
    fn text_line_cannot_be_forged_by_a_field() {
        let mut a = alert("ua");
        a.source_ip = Some(
            "1.2.3.4\u{2028} 2026-11-20T10:00:00Z critical Root login | principal=arn:aws:iam::9:root \u{202e}oi.elpmaxe\u{200b}"
                .into(),
        );
        a.principal = Some("x account=999999999999 region=".into());
        a.event_time = Some("2026-11-20T10:00:00Z critical".into());
        let mut out = Vec::new();
        write(&mut out, &a, Format::Text).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        for c in ['\u{2028}', '\u{202e}', '\u{200b}', '\r'] {
            assert!(!line.contains(c), "{c:?} in {line}");
        }
        // Exactly one `account=` and one `principal=` field outside quotes.
        let mut quoted = false;
        let mut escaped = false;
        let mut outside = String::new();
        for ch in line.chars() {
            match (quoted, escaped, ch) {
                (true, false, '\\') => escaped = true,
                (true, true, _) => escaped = false,
                (_, false, '"') => quoted = !quoted,
                (false, _, c) => outside.push(c),
                _ => {}
            }
        }
        assert_eq!(outside.matches(" account=").count(), 1, "{line}");
        assert_eq!(outside.matches("principal=").count(), 1, "{line}");
        assert!(outside.contains(" ip= event="), "{outside}");
        assert!(
            line.starts_with("\"2026-11-20T10:00:00Z critical\" "),
            "{line}"
        );
        assert!(
            line.contains(r#"principal="x account=999999999999 region=""#),
            "{line}"
        );
    }

    #[test]
    fn matches_write_the_same_bytes_as_their_alerts() {
        use crate::parse::{Sink, parse};
        let doc = br#"{"Records":[
            {"eventID":"e1","eventName":"ConsoleLogin","eventTime":"2026-01-01T00:00:00Z",
             "awsRegion":"us-east-1","sourceIPAddress":"1.2.3.4","userAgent":"ua\n\"x\"\u2028",
             "userIdentity":{"type":"Root","arn":"arn:aws:iam::1:root","accountId":"1"}},
            {"eventName":"X","userIdentity":{"type":"AWSService"}}
        ]}"#;
        struct Collect(std::sync::Mutex<Vec<Match>>);
        impl Sink for Collect {
            fn records(&self, first: usize, records: &[crate::parse::Record<'_, '_>]) {
                let mut v = self.0.lock().unwrap();
                for (i, r) in records.iter().enumerate() {
                    v.push(Match::new(0, r, first + i, i == 0));
                }
            }
            fn error(&self, e: crate::parse::ParseError) {
                panic!("{e}")
            }
        }
        let sink = Collect(Default::default());
        let mut buf = doc.to_vec();
        buf.resize(doc.len() + simd_json::INPUT_PADDING, 0);
        parse(&mut buf, doc.len(), &sink).unwrap();
        let matches = sink.0.into_inner().unwrap();
        assert_eq!(matches.len(), 2);
        for named in [false, true] {
            let mut meta = crate::rules::RuleMeta::example("r\"1");
            if named {
                meta.name = Some("n".into());
            }
            meta.tags = std::sync::Arc::from(vec!["attack.t1078".to_string()]);
            meta.description = Some("d\u{1b}".into());
            let meta = std::sync::Arc::new(meta);
            let rj = RuleJson::new(&meta);
            let source = "s3://b/k\"\n.json.gz";
            for m in &matches {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                let sj = serde_json::to_string(source).unwrap();
                write_match(&mut fast, m, &rj, source, &sj, Format::Json).unwrap();
                write(&mut slow, &m.to_alert(&meta, source), Format::Json).unwrap();
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(slow).unwrap()
                );
            }
        }
        let a = matches[1].to_alert(
            &std::sync::Arc::new(crate::rules::RuleMeta::example("r")),
            "s",
        );
        assert_eq!(a.principal.as_deref(), Some("AWSService"));
        assert_eq!(a.account, None);
        assert_eq!(a.record, 1);
    }

    #[test]
    fn text_escapes_control_characters() {
        let mut out = Vec::new();
        write(&mut out, &alert("\x1b[2J"), Format::Text).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(
            text.contains(r#"principal="arn:x\\r\\nFake: header""#),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
    }

    /// A log line carrying a hostile file name stays one line, and its
    /// JSON form stays JSON with the same text.
    #[test]
    fn log_lines_cannot_be_split_or_reordered() {
        let line =
            b"WARN bad input source=s3://b/a\nFAKE ERROR x\r\x07y \xe2\x80\xa8z \xe2\x80\xaeq\n";
        let out = escape_log_line(line);
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        assert_eq!(
            text,
            "WARN bad input source=s3://b/a\\nFAKE ERROR x\\r\\u0007y \\u2028z \\u202eq\n"
        );
        // Nothing to do: the very same bytes.
        let plain = b"INFO all well \xc3\xa9\t\x1b[0m\n";
        assert_eq!(escape_log_line(plain).as_ref(), plain);
        // JSON logs: serde escapes the controls; the separators it leaves
        // become JSON escapes of the same text.
        let json =
            serde_json::to_vec(&serde_json::json!({"source": "k\u{2028}x\u{202e}"})).unwrap();
        let mut json_line = json.clone();
        json_line.push(b'\n');
        let out = escape_log_line(&json_line);
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["source"], "k\u{2028}x\u{202e}");
        assert!(!std::str::from_utf8(&out).unwrap().contains('\u{2028}'));
    }
}
