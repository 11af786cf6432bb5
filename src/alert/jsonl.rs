//! JSON lines and human-readable text output of alerts.
//!
//! JSON lines are what log shippers (ECS awslogs, Vector, Fluent Bit) read;
//! serde_json escapes every string, so event text cannot break a line or
//! forge another alert. The text form is for people at a terminal: control
//! characters (newlines, ANSI escape sequences) are shown escaped so that an
//! event cannot rewrite the screen or fake extra lines.

use std::io::{self, Write};

use super::Alert;

/// Output formats of alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
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
            if let (Some(kind), Some(count)) = (alert.correlation, alert.count) {
                let group: Vec<String> = alert
                    .group
                    .iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", clean(Some(v))))
                    .collect();
                write!(w, "[{kind} x{count} {}] ", group.join(" "))?;
            }
            writeln!(
                w,
                "{time} {level:<13} {title} | principal={principal} account={account} region={region} ip={ip} event={event} id={id} source={source}#{record}",
                time = clean(alert.event_time.as_deref()),
                level = alert.level,
                title = clean(Some(&alert.rule_title)),
                principal = clean(alert.principal.as_deref()),
                account = clean(alert.account.as_deref()),
                region = clean(alert.region.as_deref()),
                ip = clean(alert.source_ip.as_deref()),
                event = clean(alert.event_name.as_deref()),
                id = clean(alert.event_id.as_deref()),
                source = clean(Some(&alert.source)),
                record = alert.record,
            )
        }
    }
}

/// Escape control characters (and the separators we print) for a terminal.
pub fn clean(s: Option<&str>) -> String {
    let Some(s) = s else { return "-".into() };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
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

    #[test]
    fn text_escapes_control_characters() {
        let mut out = Vec::new();
        write(&mut out, &alert("\x1b[2J"), Format::Text).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.contains(r"arn:x\r\nFake: header"));
        assert!(!text.contains('\x1b'));
    }
}
