//! Object names and contents in the archive bucket.
//!
//! - `results/partner=<partner_id>/dt=<YYYY-MM-DD>/<message_id>.json`: the record as published,
//!   with the date of `received_at` in UTC (Hive-style partition folders).
//! - `rejected/<message_id>.json`: a message that can never be stored, with the reason.
//!
//! Both are written with `ifGenerationMatch=0`, so a redelivered message leaves the first
//! object in place.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use enrichment_payload::ResultRecord;
use enrichment_runtime::envelope::PubsubMessage;
use serde::Serialize;
use serde_json::Value;

/// Content type of every object the sink writes.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Returns the archive object name of a stored record.
pub fn result_object_name(record: &ResultRecord, message_id: &str) -> String {
    format!(
        "results/partner={}/dt={}/{}.json",
        path_segment(&record.partner_id),
        record.received_at.format("%Y-%m-%d"),
        path_segment(message_id)
    )
}

/// Returns the object name of a rejected message.
pub fn rejected_object_name(message_id: &str) -> String {
    format!("rejected/{}.json", path_segment(message_id))
}

/// Percent-encodes every byte outside `A-Z a-z 0-9 - _ .`, and a leading `.`, so that an id
/// from a message cannot add folders or form `..`. Pub/Sub message ids and the partner ids of
/// this product use only the allowed characters and pass unchanged.
fn path_segment(value: &str) -> String {
    let mut segment = String::with_capacity(value.len());
    for (position, byte) in value.bytes().enumerate() {
        let allowed = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
        if allowed && !(position == 0 && byte == b'.') {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    segment
}

/// The content of a `rejected/` object: the message as received and why it was rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedMessage {
    pub message_id: String,
    /// A short stable code, such as `not_json` or `invalid_fields`.
    pub reason: String,
    /// The full error, for a human.
    pub error: String,
    pub subscription: Option<String>,
    pub delivery_attempt: Option<u32>,
    #[serde(with = "enrichment_payload::record::rfc3339_micros")]
    pub rejected_at: DateTime<Utc>,
    /// The Pub/Sub message in its push form: `data` base64-encoded, `attributes`,
    /// `messageId`, `publishTime`.
    pub message: Value,
}

impl RejectedMessage {
    /// Serialises the object content.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a map of strings and JSON values serialises")
    }
}

/// Rebuilds the push form of a decoded message, with its data base64-encoded again.
pub fn message_as_pushed(message: &PubsubMessage) -> Value {
    let mut object = serde_json::Map::new();
    object.insert(
        "data".to_string(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(&message.data)),
    );
    let attributes: serde_json::Map<String, Value> = message
        .attributes
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect();
    object.insert("attributes".to_string(), Value::Object(attributes));
    object.insert(
        "messageId".to_string(),
        Value::String(message.message_id.clone()),
    );
    if let Some(publish_time) = message.publish_time {
        object.insert(
            "publishTime".to_string(),
            Value::String(enrichment_payload::record::rfc3339_micros::format(
                &publish_time,
            )),
        );
    }
    if let Some(ordering_key) = &message.ordering_key {
        object.insert(
            "orderingKey".to_string(),
            Value::String(ordering_key.clone()),
        );
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::collections::BTreeMap;

    #[test]
    fn path_segment_cases() {
        let cases = [
            ("11751538227409473", "11751538227409473"),
            ("acme", "acme"),
            ("acme-data_2.io", "acme-data_2.io"),
            ("a/b", "a%2Fb"),
            ("..", "%2E."),
            (".hidden", "%2Ehidden"),
            ("a b", "a%20b"),
            ("é", "%C3%A9"),
            ("", ""),
        ];
        for (value, expected) in cases {
            assert_eq!(path_segment(value), expected, "value {value:?}");
        }
    }

    #[test]
    fn rejected_name_encodes_id() {
        assert_eq!(rejected_object_name("42"), "rejected/42.json");
        assert_eq!(rejected_object_name("../x"), "rejected/%2E.%2Fx.json");
    }

    #[test]
    fn message_as_pushed_round_trip() {
        let message = PubsubMessage {
            data: b"hello".to_vec(),
            attributes: BTreeMap::from([("partner_id".to_string(), "acme".to_string())]),
            message_id: "7".to_string(),
            publish_time: Some(
                DateTime::parse_from_rfc3339("2024-05-02T10:15:30.123Z")
                    .unwrap()
                    .with_timezone(&Utc),
            ),
            ordering_key: None,
        };

        assert_eq!(
            message_as_pushed(&message),
            serde_json::json!({
                "data": "aGVsbG8=",
                "attributes": {"partner_id": "acme"},
                "messageId": "7",
                "publishTime": "2024-05-02T10:15:30.123000Z",
            })
        );
    }
}
