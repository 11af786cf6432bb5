//! The message bodies a queue carries, as serde types: S3 event
//! notifications (sent directly, wrapped by SNS, or as EventBridge "Object
//! Created" events), CloudTrail's own SNS notices (`s3Bucket` +
//! `s3ObjectKey`), S3's `s3:TestEvent`, and CloudTrail events themselves
//! as EventBridge delivers them within seconds (every `… via CloudTrail`
//! detail-type: API calls, console sign-ins and actions, service events,
//! Insights), raw or wrapped by SNS.
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
pub(crate) const MAX_DEPTH: u8 = 3;

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
    /// A CloudTrail event EventBridge delivered.
    Event(CloudTrailEvent),
}

/// A CloudTrail record from an EventBridge event's `detail`.
#[derive(Debug, PartialEq, Eq)]
pub struct CloudTrailEvent {
    /// The EventBridge detail-type (`AWS API Call via CloudTrail`, …).
    pub detail_type: String,
    /// The record's `eventID`, when it has one: the same event arrives
    /// again in the trail's S3 file, and is known by it.
    pub event_id: Option<String>,
    /// The record, as JSON text exactly as it came.
    pub record: String,
}

/// Whether an EventBridge detail-type carries a CloudTrail record: `AWS
/// API Call via CloudTrail`, `AWS Console Sign In via CloudTrail` (and the
/// `Signin` spelling), `AWS Console Action via CloudTrail`, `AWS Service
/// Event via CloudTrail`, `AWS Insight via CloudTrail`, and whatever else
/// CloudTrail sends under that suffix.
pub(crate) fn is_cloudtrail_detail_type(detail_type: &str) -> bool {
    detail_type.ends_with(" via CloudTrail")
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
    #[error("EventBridge CloudTrail event whose detail is not a record (a JSON object)")]
    EventBridgeNotARecord,
    /// Only AWS may send events whose source starts with `aws.`
    /// (PutEvents refuses it): anything else calling itself CloudTrail is a
    /// forgery.
    #[error("EventBridge CloudTrail event not from an AWS source (`aws.*`)")]
    EventBridgeNotFromAws,
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

/// An object's bucket and entry: an S3 record's `s3`, and an EventBridge
/// "Object Created" event's `detail`, share this shape.
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

/// The one field of a CloudTrail record the queue needs.
#[derive(Deserialize)]
struct RecordId<'a> {
    #[serde(rename = "eventID", borrow, default)]
    event_id: Option<Cow<'a, str>>,
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
        let detail: S3Entity<'_> = match v.detail {
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
    if let Some(detail_type) = v.detail_type.as_deref()
        && is_cloudtrail_detail_type(detail_type)
    {
        if !v.source.as_deref().is_some_and(|s| s.starts_with("aws.")) {
            return Err(NotificationError::EventBridgeNotFromAws);
        }
        let record = v
            .detail
            .filter(|d| d.get().starts_with('{'))
            .ok_or(NotificationError::EventBridgeNotARecord)?;
        let probe: RecordId<'_> =
            serde_json::from_str(record.get()).map_err(|source| NotificationError::Invalid {
                what: "EventBridge detail",
                source,
            })?;
        return Ok(Parsed::Event(CloudTrailEvent {
            detail_type: detail_type.to_owned(),
            event_id: probe
                .event_id
                .filter(|id| !id.is_empty())
                .map(Cow::into_owned),
            record: record.get().to_owned(),
        }));
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

    /// An EventBridge envelope as AWS documents it ("CloudTrail events
    /// delivered to EventBridge"), around `detail`.
    pub(crate) fn envelope(detail_type: &str, source: &str, detail: &serde_json::Value) -> String {
        serde_json::json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type,
            "source": source,
            "account": "111122223333",
            "time": "2026-11-20T10:05:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail
        })
        .to_string()
    }

    /// Every CloudTrail detail-type, raw and wrapped by SNS: the record
    /// comes out as it went in, with its event id.
    #[test]
    fn eventbridge_cloudtrail_events_of_every_detail_type() {
        let api = serde_json::json!({"eventVersion":"1.09","userIdentity":{"type":"IAMUser","userName":"alice"},
            "eventTime":"2026-11-20T10:04:58Z","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey",
            "awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2",
            "requestParameters":{"userName":"bob"},"responseElements":null,
            "eventID":"0b1e8d3c-0000-4000-8000-000000000001","eventType":"AwsApiCall","managementEvent":true,
            "recipientAccountId":"111122223333","eventCategory":"Management"});
        let signin = serde_json::json!({"eventVersion":"1.09","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root"},
            "eventTime":"2026-11-20T10:04:59Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin",
            "responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"MFAUsed":"No"},
            "eventID":"0b1e8d3c-0000-4000-8000-000000000002","eventType":"AwsConsoleSignIn"});
        let action = serde_json::json!({"eventName":"CreateNotebookInstance","eventType":"AwsConsoleAction",
            "eventID":"0b1e8d3c-0000-4000-8000-000000000003"});
        let service = serde_json::json!({"eventName":"SharedSnapshotVolumeCreated","eventType":"AwsServiceEvent",
            "userIdentity":{"accountId":"123456789012","invokedBy":"ec2.amazonaws.com"},
            "eventID":"0b1e8d3c-0000-4000-8000-000000000004"});
        let insight = serde_json::json!({"eventVersion":"1.08","eventTime":"2026-11-20T10:00:00Z","awsRegion":"us-east-1",
            "eventID":"0b1e8d3c-0000-4000-8000-000000000005","eventType":"AwsCloudTrailInsight",
            "recipientAccountId":"111122223333","sharedEventID":"s","insightDetails":{"state":"Start",
            "eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","insightType":"ApiCallRateInsight"},
            "eventCategory":"Insight"});
        let cases = [
            ("AWS API Call via CloudTrail", "aws.iam", &api),
            ("AWS Console Sign In via CloudTrail", "aws.signin", &signin),
            ("AWS Console Signin via CloudTrail", "aws.signin", &signin),
            (
                "AWS Console Action via CloudTrail",
                "aws.sagemaker",
                &action,
            ),
            ("AWS Service Event via CloudTrail", "aws.ec2", &service),
            ("AWS Insight via CloudTrail", "aws.cloudtrail", &insight),
        ];
        for (detail_type, source, detail) in cases {
            let raw = envelope(detail_type, source, detail);
            let sns = serde_json::json!({"Type":"Notification","MessageId":"m","Message":raw})
                .to_string();
            for body in [&raw, &sns] {
                let Parsed::Event(e) = parse(body).unwrap() else {
                    panic!("{detail_type}: not an event")
                };
                assert_eq!(e.detail_type, detail_type);
                assert_eq!(e.event_id.as_deref(), detail["eventID"].as_str());
                let back: serde_json::Value = serde_json::from_str(&e.record).unwrap();
                assert_eq!(&back, detail, "{detail_type}: the record as it came");
            }
        }
        // Not a record: refused, not guessed.
        for detail in [
            serde_json::json!("text"),
            serde_json::json!([1]),
            serde_json::Value::Null,
        ] {
            let body = envelope("AWS API Call via CloudTrail", "aws.iam", &detail);
            assert!(
                matches!(parse(&body), Err(NotificationError::EventBridgeNotARecord)),
                "{body}"
            );
        }
        // A custom event calling itself CloudTrail (PutEvents refuses
        // `aws.*` sources to anyone but AWS).
        for source in ["my.app", "", "awsiam"] {
            let body = envelope("AWS API Call via CloudTrail", source, &api);
            assert!(
                matches!(parse(&body), Err(NotificationError::EventBridgeNotFromAws)),
                "{body}"
            );
        }
        let missing =
            serde_json::json!({"detail-type":"AWS API Call via CloudTrail","source":"aws.iam"})
                .to_string();
        assert!(matches!(
            parse(&missing),
            Err(NotificationError::EventBridgeNotARecord)
        ));
        // Another EventBridge event: not ours.
        let other = envelope(
            "EC2 Instance State-change Notification",
            "aws.ec2",
            &serde_json::json!({"state":"running"}),
        );
        assert!(matches!(
            parse(&other),
            Err(NotificationError::Unrecognised)
        ));
    }

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("a%2Fb+c%"), "a/b c%");
        assert_eq!(url_decode("%E2%82%AC"), "€");
        assert_eq!(url_decode("%zz"), "%zz");
    }
}
