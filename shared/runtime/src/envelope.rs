//! Decoding of the HTTP requests that trigger the functions: Pub/Sub push envelopes and
//! CloudEvents (Eventarc).
//!
//! A Pub/Sub push request wraps the message in a JSON envelope:
//! `{"message": {"data", "attributes", "messageId", "publishTime", "orderingKey"},
//! "subscription", "deliveryAttempt"}`, where `deliveryAttempt` is present only when the
//! subscription has a dead-letter policy. Some senders, the Pub/Sub emulator among them, repeat
//! the id and time as `message_id` and `publish_time`, so both spellings are read and merged.
//! Unknown fields such as `@type` are ignored.
//!
//! NOTE: a push subscription with `noWrapper` sends the raw message data as the body and the
//! message id in the `x-goog-pubsub-message-id` header. That form is not decoded here: the push
//! subscriptions of this product must keep the default wrapper.
//!
//! Eventarc sends CloudEvents in HTTP binary mode (`ce-*` headers, JSON body); the structured
//! mode (`Content-Type: application/cloudevents+json`) is decoded too. For the Pub/Sub event type
//! [`PUBSUB_MESSAGE_PUBLISHED`], the event data has the push-envelope shape.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use cloudevents::AttributesReader as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// CloudEvent type of a message published to a Pub/Sub topic (Eventarc).
pub const PUBSUB_MESSAGE_PUBLISHED: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// CloudEvent type of a Cloud Storage object that was created or overwritten (Eventarc).
pub const STORAGE_OBJECT_FINALIZED: &str = "google.cloud.storage.object.v1.finalized";

/// Standard base64 as Pub/Sub writes it; padding is accepted but not required.
const PUBSUB_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One Pub/Sub message, with its data already base64-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubMessage {
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub message_id: String,
    pub publish_time: Option<DateTime<Utc>>,
    /// Present only for messages published with an ordering key.
    pub ordering_key: Option<String>,
}

/// A decoded Pub/Sub push request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEnvelope {
    pub message: PubsubMessage,
    /// Full subscription path, `projects/P/subscriptions/S`.
    pub subscription: Option<String>,
    /// 1 on the first delivery. Pub/Sub sets it only on subscriptions with a dead-letter policy.
    pub delivery_attempt: Option<u32>,
}

/// A CloudEvent with the attributes the functions read and its data parsed as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    /// The `type` attribute, such as [`STORAGE_OBJECT_FINALIZED`].
    pub ty: String,
    pub source: String,
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    /// `None` when the request had no body.
    pub data: Option<Value>,
    /// Extension attributes (for Eventarc storage events: `bucket`), as strings.
    pub extensions: BTreeMap<String, String>,
}

/// The request that triggered a function.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    PubsubPush {
        message: PubsubMessage,
        subscription: Option<String>,
        delivery_attempt: Option<u32>,
    },
    CloudEvent(CloudEvent),
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("request body is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("push envelope has no `message` object")]
    MissingMessage,
    #[error("Pub/Sub message has neither `messageId` nor `message_id`")]
    MissingMessageId,
    /// The message id is known but another part of the message is malformed. `raw_message` is
    /// the message object as received, so a caller can quarantine it.
    #[error("Pub/Sub message {message_id} is malformed: {reason}")]
    InvalidMessage {
        message_id: String,
        raw_message: Box<Value>,
        reason: String,
    },
    #[error("invalid CloudEvent: {0}")]
    CloudEvent(#[source] cloudevents::message::Error),
    #[error("CloudEvent {id} data is not JSON: {source}")]
    CloudEventDataNotJson {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("CloudEvent {id} has type {actual}, expected {expected}")]
    UnexpectedEventType {
        id: String,
        expected: &'static str,
        actual: String,
    },
    #[error("CloudEvent {id} has no data")]
    MissingEventData { id: String },
    #[error("storage object data in CloudEvent {id} is invalid: {source}")]
    InvalidObjectData {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

impl EnvelopeError {
    /// Returns the Pub/Sub message id when decoding got far enough to read it.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            EnvelopeError::InvalidMessage { message_id, .. } => Some(message_id),
            _ => None,
        }
    }
}

/// Decodes a trigger request: a CloudEvent when the `ce-specversion` header is present or the
/// body is a structured-mode CloudEvent, otherwise a Pub/Sub push envelope.
pub fn decode_trigger(headers: &http::HeaderMap, body: &[u8]) -> Result<Trigger, EnvelopeError> {
    if is_cloud_event(headers) {
        return decode_cloud_event(headers, body).map(Trigger::CloudEvent);
    }

    let envelope = decode_push_envelope(body)?;
    Ok(Trigger::PubsubPush {
        message: envelope.message,
        subscription: envelope.subscription,
        delivery_attempt: envelope.delivery_attempt,
    })
}

impl Trigger {
    /// Returns the Pub/Sub push envelope carried by this trigger: the push itself, or the data of
    /// a [`PUBSUB_MESSAGE_PUBLISHED`] CloudEvent.
    pub fn into_push_envelope(self) -> Result<PushEnvelope, EnvelopeError> {
        match self {
            Trigger::PubsubPush {
                message,
                subscription,
                delivery_attempt,
            } => Ok(PushEnvelope {
                message,
                subscription,
                delivery_attempt,
            }),
            Trigger::CloudEvent(event) => event.pubsub_envelope(),
        }
    }
}

fn is_cloud_event(headers: &http::HeaderMap) -> bool {
    if headers.contains_key("ce-specversion") {
        return true;
    }
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/cloudevents+json"))
}

/// Decodes a CloudEvent in binary or structured HTTP mode. A missing required attribute (such
/// as `ce-id`) is an error.
pub fn decode_cloud_event(
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<CloudEvent, EnvelopeError> {
    let mut event = cloudevents::binding::http::to_event(headers, body.to_vec())
        .map_err(EnvelopeError::CloudEvent)?;

    let id = event.id().to_string();
    let extensions = event
        .iter_extensions()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let (_, _, data) = event.take_data();
    let data =
        match data {
            // In binary mode a JSON body arrives as `Data::Binary`; `try_from` parses it.
            Some(data) => Some(Value::try_from(data).map_err(|source| {
                EnvelopeError::CloudEventDataNotJson {
                    id: id.clone(),
                    source,
                }
            })?),
            None => None,
        };

    Ok(CloudEvent {
        id,
        ty: event.ty().to_string(),
        source: event.source().to_string(),
        subject: event.subject().map(str::to_string),
        time: event.time().copied(),
        data,
        extensions,
    })
}

impl CloudEvent {
    /// Extracts the Pub/Sub message from a [`PUBSUB_MESSAGE_PUBLISHED`] event, whose data has
    /// the push-envelope shape.
    pub fn pubsub_envelope(&self) -> Result<PushEnvelope, EnvelopeError> {
        let data = self.require_data(PUBSUB_MESSAGE_PUBLISHED)?;
        decode_push_envelope_value(data.clone())
    }

    /// Parses the object resource carried by a [`STORAGE_OBJECT_FINALIZED`] event.
    pub fn storage_object(&self) -> Result<StorageObjectData, EnvelopeError> {
        let data = self.require_data(STORAGE_OBJECT_FINALIZED)?;
        StorageObjectData::deserialize(data).map_err(|source| EnvelopeError::InvalidObjectData {
            id: self.id.clone(),
            source,
        })
    }

    fn require_data(&self, expected: &'static str) -> Result<&Value, EnvelopeError> {
        if self.ty != expected {
            return Err(EnvelopeError::UnexpectedEventType {
                id: self.id.clone(),
                expected,
                actual: self.ty.clone(),
            });
        }
        self.data
            .as_ref()
            .ok_or_else(|| EnvelopeError::MissingEventData {
                id: self.id.clone(),
            })
    }
}

/// Decodes the JSON body of a Pub/Sub push request.
pub fn decode_push_envelope(body: &[u8]) -> Result<PushEnvelope, EnvelopeError> {
    let value: Value = serde_json::from_slice(body).map_err(EnvelopeError::NotJson)?;
    decode_push_envelope_value(value)
}

fn decode_push_envelope_value(value: Value) -> Result<PushEnvelope, EnvelopeError> {
    let Value::Object(mut envelope) = value else {
        return Err(EnvelopeError::MissingMessage);
    };
    let raw_message = match envelope.remove("message") {
        Some(message @ Value::Object(_)) => message,
        _ => return Err(EnvelopeError::MissingMessage),
    };

    // Both spellings may be present at once, so the id is read before the typed parse and
    // every later failure can name it.
    let message_id = ["messageId", "message_id"]
        .iter()
        .filter_map(|key| raw_message.get(*key).and_then(Value::as_str))
        .find(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or(EnvelopeError::MissingMessageId)?;

    let message = parse_message(&raw_message, &message_id).map_err(|reason| {
        EnvelopeError::InvalidMessage {
            message_id: message_id.clone(),
            raw_message: Box::new(raw_message.clone()),
            reason,
        }
    })?;

    Ok(PushEnvelope {
        message,
        subscription: envelope
            .get("subscription")
            .and_then(Value::as_str)
            .map(str::to_string),
        delivery_attempt: envelope.get("deliveryAttempt").and_then(parse_u32),
    })
}

/// The wire form of a message. Each field is declared under both spellings instead of with
/// `serde(alias)`, because an alias fails with a duplicate-field error when both are present.
#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "publishTime")]
    publish_time_camel: Option<String>,
    #[serde(default)]
    publish_time: Option<String>,
    #[serde(default, rename = "orderingKey")]
    ordering_key_camel: Option<String>,
    #[serde(default)]
    ordering_key: Option<String>,
}

fn parse_message(raw_message: &Value, message_id: &str) -> Result<PubsubMessage, String> {
    let wire = WireMessage::deserialize(raw_message).map_err(|error| error.to_string())?;

    let data = match wire.data.as_deref() {
        None | Some("") => Vec::new(),
        Some(encoded) => PUBSUB_BASE64
            .decode(encoded)
            .map_err(|error| format!("`data` is not valid base64: {error}"))?,
    };

    let publish_time = match wire.publish_time_camel.or(wire.publish_time) {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(&text)
                .map_err(|error| {
                    format!("`publishTime` {text:?} is not an RFC 3339 time: {error}")
                })?
                .with_timezone(&Utc),
        ),
    };

    Ok(PubsubMessage {
        data,
        attributes: wire.attributes.unwrap_or_default(),
        message_id: message_id.to_string(),
        publish_time,
        ordering_key: wire
            .ordering_key_camel
            .or(wire.ordering_key)
            .filter(|key| !key.is_empty()),
    })
}

/// Reads a non-negative integer sent either as a JSON number or as a decimal string.
fn parse_u32(value: &Value) -> Option<u32> {
    match value {
        Value::Number(number) => number.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// The Cloud Storage object resource (JSON API v1) in a storage event or notification.
///
/// Production sends `generation`, `metageneration` and `size` as JSON strings; some samples send
/// numbers. Both are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageObjectData {
    pub bucket: String,
    pub name: String,
    #[serde(deserialize_with = "int_from_string_or_number")]
    pub generation: i64,
    #[serde(default, deserialize_with = "optional_int_from_string_or_number")]
    pub metageneration: Option<i64>,
    #[serde(default, deserialize_with = "optional_int_from_string_or_number")]
    pub size: Option<u64>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content_encoding: Option<String>,
    /// Custom metadata (`x-goog-meta-*`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub time_created: Option<DateTime<Utc>>,
}

impl StorageObjectData {
    /// Parses the object resource from JSON, such as the data of a Cloud Storage Pub/Sub
    /// notification (`payloadFormat=JSON_API_V1`).
    pub fn from_json_slice(data: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(data)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber<T> {
    Number(T),
    String(String),
}

fn int_from_string_or_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match StringOrNumber::<T>::deserialize(deserializer)? {
        StringOrNumber::Number(number) => Ok(number),
        StringOrNumber::String(text) => text.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn optional_int_from_string_or_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match Option::<StringOrNumber<T>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(StringOrNumber::Number(number)) => Ok(Some(number)),
        Some(StringOrNumber::String(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use pretty_assertions::assert_eq;

    const RECORD_JSON: &[u8] = br#"{"schema_version":1,"partner_id":"acme"}"#;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn storage_event_headers() -> HeaderMap {
        headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "11751538227409001"),
            (
                "ce-source",
                "//storage.googleapis.com/projects/_/buckets/enrichment-incoming",
            ),
            ("ce-type", STORAGE_OBJECT_FINALIZED),
            ("ce-subject", "objects/incoming/tenant-42/contacts.csv"),
            ("ce-time", "2024-05-02T10:15:30.871Z"),
            ("ce-bucket", "enrichment-incoming"),
            ("content-type", "application/json; charset=utf-8"),
        ])
    }

    fn pubsub_event_headers() -> HeaderMap {
        headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "11751538227409473"),
            (
                "ce-source",
                "//pubsub.googleapis.com/projects/enrichment-prod/topics/results",
            ),
            ("ce-type", PUBSUB_MESSAGE_PUBLISHED),
            ("ce-time", "2024-05-02T10:15:30.861Z"),
            ("content-type", "application/json"),
        ])
    }

    fn expected_attributes(delivery_id: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("delivery_id".to_string(), delivery_id.to_string()),
            ("partner_id".to_string(), "acme".to_string()),
            ("schema_version".to_string(), "1".to_string()),
        ])
    }

    #[test]
    fn push_emulator_style_with_both_spellings() {
        let trigger = decode_trigger(&HeaderMap::new(), &fixture("pubsub_push_emulator.json"))
            .expect("emulator envelope decodes");

        assert_eq!(
            trigger,
            Trigger::PubsubPush {
                message: PubsubMessage {
                    data: RECORD_JSON.to_vec(),
                    attributes: expected_attributes("msg_2fQxV9k3"),
                    message_id: "4".to_string(),
                    publish_time: Some(time("2024-05-02T10:15:30.123Z")),
                    ordering_key: None,
                },
                subscription: Some("projects/test-project/subscriptions/results-sink".to_string()),
                delivery_attempt: None,
            }
        );
    }

    #[test]
    fn push_production_style_with_delivery_attempt() {
        let envelope = decode_push_envelope(&fixture("pubsub_push_production.json"))
            .expect("production envelope decodes");

        assert_eq!(
            envelope,
            PushEnvelope {
                message: PubsubMessage {
                    data: RECORD_JSON.to_vec(),
                    attributes: expected_attributes("0b7f3a52-1c1e-4d0a-9a57-5f0c2d7e8a11"),
                    message_id: "11751538227409473".to_string(),
                    publish_time: Some(time("2024-05-02T10:15:30.861Z")),
                    ordering_key: Some("acme".to_string()),
                },
                subscription: Some(
                    "projects/enrichment-prod/subscriptions/results-sink-push".to_string()
                ),
                delivery_attempt: Some(3),
            }
        );
    }

    #[test]
    fn push_snake_case_only() {
        let body = br#"{"message":{"data":"aGVsbG8=","message_id":"77","publish_time":"2024-05-02T10:15:30Z"}}"#;

        let envelope = decode_push_envelope(body).unwrap();

        assert_eq!(envelope.message.message_id, "77");
        assert_eq!(envelope.message.data, b"hello".to_vec());
        assert_eq!(
            envelope.message.publish_time,
            Some(time("2024-05-02T10:15:30Z"))
        );
        assert_eq!(envelope.message.attributes, BTreeMap::new());
        assert_eq!(envelope.subscription, None);
    }

    #[test]
    fn push_data_without_padding() {
        let body = br#"{"message":{"data":"aGVsbG8","messageId":"78"}}"#;

        let envelope = decode_push_envelope(body).unwrap();

        assert_eq!(envelope.message.data, b"hello".to_vec());
        assert_eq!(envelope.message.publish_time, None);
    }

    #[test]
    fn push_without_data() {
        let body = br#"{"message":{"attributes":{"k":"v"},"messageId":"79"}}"#;

        let envelope = decode_push_envelope(body).unwrap();

        assert_eq!(envelope.message.data, Vec::<u8>::new());
        assert_eq!(
            envelope.message.attributes,
            BTreeMap::from([("k".to_string(), "v".to_string())])
        );
    }

    #[test]
    fn push_delivery_attempt_as_string() {
        let body = br#"{"message":{"messageId":"80"},"deliveryAttempt":"2"}"#;

        let envelope = decode_push_envelope(body).unwrap();

        assert_eq!(envelope.delivery_attempt, Some(2));
    }

    #[test]
    fn push_bad_base64_keeps_message_id() {
        let body = br#"{"message":{"data":"not base64!","messageId":"81","publishTime":"2024-05-02T10:15:30Z"}}"#;

        let error = decode_push_envelope(body).unwrap_err();

        assert_eq!(error.message_id(), Some("81"));
        let EnvelopeError::InvalidMessage {
            raw_message,
            reason,
            ..
        } = error
        else {
            panic!("expected InvalidMessage, got {error:?}");
        };
        assert_eq!(
            *raw_message,
            serde_json::json!({"data": "not base64!", "messageId": "81", "publishTime": "2024-05-02T10:15:30Z"})
        );
        assert!(
            reason.starts_with("`data` is not valid base64"),
            "reason: {reason}"
        );
    }

    #[test]
    fn push_bad_publish_time_keeps_message_id() {
        let body = br#"{"message":{"messageId":"82","publishTime":"yesterday"}}"#;

        let error = decode_push_envelope(body).unwrap_err();

        assert_eq!(error.message_id(), Some("82"));
    }

    #[test]
    fn push_non_string_attribute_keeps_message_id() {
        let body = br#"{"message":{"messageId":"83","attributes":{"n":1}}}"#;

        let error = decode_push_envelope(body).unwrap_err();

        assert_eq!(error.message_id(), Some("83"));
    }

    #[test]
    fn push_malformed_envelopes() {
        let cases: [(&[u8], &str); 5] = [
            (b"not json", "NotJson"),
            (b"[]", "MissingMessage"),
            (br#"{"subscription":"s"}"#, "MissingMessage"),
            (br#"{"message":"text"}"#, "MissingMessage"),
            (
                br#"{"message":{"data":"aGVsbG8=","messageId":""}}"#,
                "MissingMessageId",
            ),
        ];

        for (body, expected) in cases {
            let error = decode_push_envelope(body).unwrap_err();
            let actual = match error {
                EnvelopeError::NotJson(_) => "NotJson",
                EnvelopeError::MissingMessage => "MissingMessage",
                EnvelopeError::MissingMessageId => "MissingMessageId",
                other => panic!("unexpected error {other:?}"),
            };
            assert_eq!(actual, expected, "body {}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn cloud_event_storage_finalized_strings() {
        let trigger = decode_trigger(
            &storage_event_headers(),
            &fixture("cloudevent_storage_finalized.json"),
        )
        .unwrap();
        let Trigger::CloudEvent(event) = trigger else {
            panic!("expected a CloudEvent");
        };

        assert_eq!(event.id, "11751538227409001");
        assert_eq!(event.ty, STORAGE_OBJECT_FINALIZED);
        assert_eq!(
            event.source,
            "//storage.googleapis.com/projects/_/buckets/enrichment-incoming"
        );
        assert_eq!(
            event.subject.as_deref(),
            Some("objects/incoming/tenant-42/contacts.csv")
        );
        assert_eq!(event.time, Some(time("2024-05-02T10:15:30.871Z")));
        assert_eq!(
            event.extensions,
            BTreeMap::from([("bucket".to_string(), "enrichment-incoming".to_string())])
        );
        assert_eq!(
            event.storage_object().unwrap(),
            StorageObjectData {
                bucket: "enrichment-incoming".to_string(),
                name: "incoming/tenant-42/contacts.csv".to_string(),
                generation: 1_714_644_930_861_234,
                metageneration: Some(1),
                size: Some(2048),
                content_type: Some("text/csv".to_string()),
                content_encoding: None,
                metadata: BTreeMap::from([("tenant_id".to_string(), "tenant-42".to_string())]),
                time_created: Some(time("2024-05-02T10:15:30.871Z")),
            }
        );
    }

    #[test]
    fn cloud_event_storage_finalized_numbers() {
        let event = decode_cloud_event(
            &storage_event_headers(),
            &fixture("cloudevent_storage_finalized_numbers.json"),
        )
        .unwrap();

        assert_eq!(
            event.storage_object().unwrap(),
            StorageObjectData {
                bucket: "enrichment-incoming".to_string(),
                name: "incoming/tenant-42/contacts.csv".to_string(),
                generation: 1_714_644_930_861_234,
                metageneration: Some(1),
                size: Some(2048),
                content_type: Some("text/csv".to_string()),
                content_encoding: None,
                metadata: BTreeMap::new(),
                time_created: Some(time("2024-05-02T10:15:30.871Z")),
            }
        );
    }

    #[test]
    fn storage_object_bad_generation() {
        let body = br#"{"bucket":"b","name":"n","generation":"12x"}"#;
        let event = decode_cloud_event(&storage_event_headers(), body).unwrap();

        let error = event.storage_object().unwrap_err();

        assert!(
            matches!(error, EnvelopeError::InvalidObjectData { ref id, .. } if id == "11751538227409001"),
            "got {error:?}"
        );
    }

    #[test]
    fn cloud_event_pubsub_message_published() {
        let trigger = decode_trigger(
            &pubsub_event_headers(),
            &fixture("cloudevent_pubsub_published.json"),
        )
        .unwrap();

        let envelope = trigger.into_push_envelope().unwrap();

        assert_eq!(
            envelope,
            PushEnvelope {
                message: PubsubMessage {
                    data: RECORD_JSON.to_vec(),
                    attributes: expected_attributes("0b7f3a52-1c1e-4d0a-9a57-5f0c2d7e8a11"),
                    message_id: "11751538227409473".to_string(),
                    publish_time: Some(time("2024-05-02T10:15:30.861Z")),
                    ordering_key: None,
                },
                subscription: Some(
                    "projects/enrichment-prod/subscriptions/eventarc-europe-west1-results-sink-sub-418"
                        .to_string()
                ),
                delivery_attempt: None,
            }
        );
    }

    #[test]
    fn cloud_event_structured_mode() {
        let body = serde_json::json!({
            "specversion": "1.0",
            "id": "evt-1",
            "source": "//pubsub.googleapis.com/projects/p/topics/t",
            "type": PUBSUB_MESSAGE_PUBLISHED,
            "datacontenttype": "application/json",
            "data": {"message": {"messageId": "90", "data": "aGVsbG8="}}
        });
        let headers = headers(&[("content-type", "application/cloudevents+json")]);

        let event = decode_cloud_event(&headers, body.to_string().as_bytes()).unwrap();
        let envelope = event.pubsub_envelope().unwrap();

        assert_eq!(event.id, "evt-1");
        assert_eq!(envelope.message.message_id, "90");
        assert_eq!(envelope.message.data, b"hello".to_vec());
    }

    #[test]
    fn cloud_event_missing_id() {
        let mut headers = pubsub_event_headers();
        headers.remove("ce-id");

        let error =
            decode_trigger(&headers, &fixture("cloudevent_pubsub_published.json")).unwrap_err();

        assert!(
            matches!(error, EnvelopeError::CloudEvent(_)),
            "got {error:?}"
        );
        assert_eq!(
            error.to_string(),
            "invalid CloudEvent: Error while building the final event: Missing required attribute id"
        );
    }

    #[test]
    fn cloud_event_data_not_json() {
        let error = decode_cloud_event(&pubsub_event_headers(), b"plain text").unwrap_err();

        assert!(
            matches!(error, EnvelopeError::CloudEventDataNotJson { ref id, .. } if id == "11751538227409473"),
            "got {error:?}"
        );
    }

    #[test]
    fn cloud_event_wrong_type_for_pubsub() {
        let event = decode_cloud_event(
            &storage_event_headers(),
            &fixture("cloudevent_storage_finalized.json"),
        )
        .unwrap();

        let error = event.pubsub_envelope().unwrap_err();

        assert_eq!(
            error.to_string(),
            format!(
                "CloudEvent 11751538227409001 has type {STORAGE_OBJECT_FINALIZED}, expected {PUBSUB_MESSAGE_PUBLISHED}"
            )
        );
    }

    #[test]
    fn cloud_event_without_body() {
        let event = decode_cloud_event(&pubsub_event_headers(), b"").unwrap();

        assert_eq!(event.data, None);
        assert!(matches!(
            event.pubsub_envelope(),
            Err(EnvelopeError::MissingEventData { .. })
        ));
    }
}
