//! The message bodies a queue carries, as serde types: S3 event
//! notifications (sent directly, wrapped by SNS, or as EventBridge "Object
//! Created" events), CloudTrail's own SNS notices (`s3Bucket` +
//! `s3ObjectKey`), and S3's `s3:TestEvent`.
//!
//! Every byte of a message may be an attacker's (anyone who may publish to
//! the topic or queue): a body is parsed once, into borrowed fields where it
//! can; SNS wrapping is followed at most [`MAX_DEPTH`] levels; an object
//! named without a bucket or a key is refused, never guessed.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use thiserror::Error;

/// How many SNS wrappings are followed (one is usual; SNS → SNS → S3 is
/// already odd).
pub const MAX_DEPTH: u8 = 3;

/// An object a notification names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notified {
    pub bucket: String,
    pub key: String,
    pub etag: Option<String>,
    pub size: Option<i64>,
}

/// What a message body is.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Objects(Vec<Notified>),
    /// S3's `s3:TestEvent`, sent when a notification is configured.
    TestEvent,
}

/// Why a message body is refused (it is then counted as malformed, logged
/// and deleted: it would never become valid).
#[derive(Debug, Error)]
pub enum NotificationError {
    /// Not JSON, or JSON whose fields have the wrong types.
    #[error("{what} is not a valid notification: {source}")]
    Invalid {
        /// Which layer: "message", "SNS Message", "EventBridge detail".
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("notifications nested too deep (over {MAX_DEPTH} SNS wrappings)")]
    TooDeep,
    #[error("S3 event record without bucket name or object key")]
    S3RecordIncomplete,
    #[error("EventBridge event without bucket name or object key")]
    EventBridgeIncomplete,
    #[error("not an S3, EventBridge or CloudTrail notification")]
    Unrecognised,
}

/// Every shape's top-level fields at once: which are present says what
/// the message is (the shapes share no field that matters).
#[derive(Deserialize)]
struct Envelope<'a> {
    /// SNS: `"Notification"`, with the wrapped body in `Message`.
    #[serde(rename = "Type", borrow, default)]
    sns_type: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    sns_message: Option<Cow<'a, str>>,
    /// S3's test event: `"s3:TestEvent"`.
    #[serde(rename = "Event", borrow, default)]
    event: Option<Cow<'a, str>>,
    /// S3 event notification records.
    #[serde(rename = "Records", default)]
    records: Option<Vec<S3Record<'a>>>,
    /// EventBridge.
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(rename = "detail-type", borrow, default)]
    detail_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
    /// CloudTrail's SNS notice.
    #[serde(rename = "s3Bucket", borrow, default)]
    s3_bucket: Option<Cow<'a, str>>,
    #[serde(rename = "s3ObjectKey", borrow, default)]
    s3_object_key: Option<Vec<Option<Cow<'a, str>>>>,
}

#[derive(Deserialize)]
struct S3Record<'a> {
    #[serde(rename = "eventName", borrow, default)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    s3: Option<S3Entity<'a>>,
}

#[derive(Deserialize)]
struct S3Entity<'a> {
    #[serde(borrow, default)]
    bucket: Option<Named<'a>>,
    #[serde(borrow, default)]
    object: Option<S3Obj<'a>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

/// An object in an S3 record (`eTag`) or an EventBridge detail (`etag`).
#[derive(Deserialize)]
struct S3Obj<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    size: Option<i64>,
    #[serde(rename = "eTag", alias = "etag", borrow, default)]
    etag: Option<Cow<'a, str>>,
}

/// The `detail` of an EventBridge "Object Created" event.
#[derive(Deserialize)]
struct S3Detail<'a> {
    #[serde(borrow, default)]
    bucket: Option<Named<'a>>,
    #[serde(borrow, default)]
    object: Option<S3Obj<'a>>,
}

/// Parse one message body.
pub fn parse(body: &str) -> Result<Parsed, NotificationError> {
    parse_at(body, "message", 0)
}

fn parse_at(body: &str, what: &'static str, depth: u8) -> Result<Parsed, NotificationError> {
    let v: Envelope<'_> =
        serde_json::from_str(body).map_err(|source| NotificationError::Invalid { what, source })?;
    // SNS wraps the real message as a JSON string.
    if v.sns_type.as_deref() == Some("Notification")
        && let Some(inner) = &v.sns_message
    {
        if depth >= MAX_DEPTH {
            return Err(NotificationError::TooDeep);
        }
        return parse_at(inner, "SNS Message", depth + 1);
    }
    if v.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Parsed::TestEvent);
    }
    if let Some(records) = v.records {
        let mut out = Vec::new();
        for r in records {
            let created = r
                .event_name
                .as_deref()
                .is_some_and(|n| n.starts_with("ObjectCreated"));
            if !created {
                continue;
            }
            let (bucket, object) = r.s3.map(|s| (s.bucket, s.object)).unwrap_or((None, None));
            let o = named(bucket, object).ok_or(NotificationError::S3RecordIncomplete)?;
            // S3 event keys are URL-encoded, `+` for space.
            out.push(Notified {
                key: url_decode(&o.key),
                ..o
            });
        }
        return Ok(Parsed::Objects(out));
    }
    if v.source.as_deref() == Some("aws.s3") && v.detail_type.as_deref() == Some("Object Created") {
        let detail: S3Detail<'_> = match v.detail {
            Some(d) => {
                serde_json::from_str(d.get()).map_err(|source| NotificationError::Invalid {
                    what: "EventBridge detail",
                    source,
                })?
            }
            None => return Err(NotificationError::EventBridgeIncomplete),
        };
        // EventBridge keys are not URL-encoded.
        let o =
            named(detail.bucket, detail.object).ok_or(NotificationError::EventBridgeIncomplete)?;
        return Ok(Parsed::Objects(vec![o]));
    }
    if let (Some(bucket), Some(keys)) = (v.s3_bucket.filter(|b| !b.is_empty()), v.s3_object_key) {
        return Ok(Parsed::Objects(
            keys.into_iter()
                .flatten()
                .filter(|k| !k.is_empty())
                .map(|k| Notified {
                    bucket: bucket.clone().into_owned(),
                    key: k.into_owned(),
                    etag: None,
                    size: None,
                })
                .collect(),
        ));
    }
    Err(NotificationError::Unrecognised)
}

/// The object a bucket and an object entry name, if both name something.
fn named(bucket: Option<Named<'_>>, object: Option<S3Obj<'_>>) -> Option<Notified> {
    let bucket = bucket?.name.filter(|b| !b.is_empty())?;
    let object = object?;
    let key = object.key.filter(|k| !k.is_empty())?;
    Some(Notified {
        bucket: bucket.into_owned(),
        key: key.into_owned(),
        etag: object.etag.map(Cow::into_owned),
        size: object.size,
    })
}

/// Decode S3 event keys: URL-encoded, `+` for space.
pub(crate) fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(body: &str) -> Vec<Notified> {
        match parse(body).unwrap() {
            Parsed::Objects(o) => o,
            other => panic!("{other:?}"),
        }
    }

    const S3_EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
        "s3":{"bucket":{"name":"trail"},"object":{"key":"AWSLogs/1/CloudTrail/us-east-1/2026/11/20/a%3Ab+c.json.gz","size":12,"eTag":"abc"}}}]}"#;

    #[test]
    fn every_notification_shape() {
        let direct = objects(S3_EVENT);
        assert_eq!(
            direct[0].key,
            "AWSLogs/1/CloudTrail/us-east-1/2026/11/20/a:b c.json.gz"
        );
        assert_eq!(
            (direct[0].bucket.as_str(), direct[0].etag.as_deref()),
            ("trail", Some("abc"))
        );
        assert_eq!(direct[0].size, Some(12));

        let sns = serde_json::json!({"Type":"Notification","MessageId":"m","Message":S3_EVENT})
            .to_string();
        assert_eq!(objects(&sns), direct);

        let eb = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3",
            "detail":{"bucket":{"name":"trail"},"object":{"key":"k/x+y.json.gz","size":5,"etag":"e1"}}}"#;
        let eb = objects(eb);
        assert_eq!(
            (eb[0].key.as_str(), eb[0].etag.as_deref(), eb[0].size),
            ("k/x+y.json.gz", Some("e1"), Some(5)),
            "EventBridge keys are taken as they are"
        );

        let ct = serde_json::json!({"Type":"Notification","Message":
            serde_json::json!({"s3Bucket":"trail","s3ObjectKey":["k/1.json.gz","k/2.json.gz", "", null]}).to_string()}).to_string();
        assert_eq!(objects(&ct).len(), 2);

        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"trail"}"#;
        assert_eq!(parse(test).unwrap(), Parsed::TestEvent);

        let removed = S3_EVENT.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert!(objects(&removed).is_empty());
    }

    #[test]
    fn refusals_say_why() {
        type Expect = fn(&NotificationError) -> bool;
        let cases: [(&str, Expect); 8] = [
            ("not json", |e| {
                matches!(
                    e,
                    NotificationError::Invalid {
                        what: "message",
                        ..
                    }
                )
            }),
            ("{}", |e| matches!(e, NotificationError::Unrecognised)),
            (r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#, |e| {
                matches!(e, NotificationError::S3RecordIncomplete)
            }),
            (
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":""},"object":{"key":"k"}}}]}"#,
                |e| matches!(e, NotificationError::S3RecordIncomplete),
            ),
            (
                r#"{"source":"aws.s3","detail-type":"Object Created"}"#,
                |e| matches!(e, NotificationError::EventBridgeIncomplete),
            ),
            (
                r#"{"source":"aws.s3","detail-type":"Object Created","detail":[1]}"#,
                |e| {
                    matches!(
                        e,
                        NotificationError::Invalid {
                            what: "EventBridge detail",
                            ..
                        }
                    )
                },
            ),
            (r#"{"Type":"Notification","Message":"{oops"}"#, |e| {
                matches!(
                    e,
                    NotificationError::Invalid {
                        what: "SNS Message",
                        ..
                    }
                )
            }),
            // A wrong-typed field is a refusal, not a guess.
            (r#"{"Records":"many"}"#, |e| {
                matches!(e, NotificationError::Invalid { .. })
            }),
        ];
        for (body, expected) in cases {
            let e = parse(body).unwrap_err();
            assert!(expected(&e), "{body}: {e:?}");
        }
    }

    #[test]
    fn sns_wrapping_is_followed_only_so_deep() {
        let mut body = S3_EVENT.to_string();
        for _ in 0..MAX_DEPTH {
            body = serde_json::json!({"Type":"Notification","Message":body}).to_string();
        }
        assert_eq!(objects(&body).len(), 1);
        let deeper = serde_json::json!({"Type":"Notification","Message":body}).to_string();
        assert!(matches!(parse(&deeper), Err(NotificationError::TooDeep)));
    }

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("a%2Fb+c%"), "a/b c%");
        assert_eq!(url_decode("%E2%82%AC"), "€");
        assert_eq!(url_decode("%zz"), "%zz");
    }
}
