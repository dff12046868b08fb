//! Turning a trigger request into the object it announces.
//!
//! Two forms announce a finalized object:
//! - an Eventarc CloudEvent of type `google.cloud.storage.object.v1.finalized` whose data is the
//!   object resource;
//! - a Cloud Storage Pub/Sub notification, pushed by a subscription (or wrapped by Eventarc in a
//!   `messagePublished` CloudEvent), with attributes `eventType=OBJECT_FINALIZE`, `bucketId`,
//!   `objectId`, `objectGeneration` and the object resource as data (`payloadFormat=JSON_API_V1`)
//!   or no data (`payloadFormat=NONE`).

use std::collections::BTreeMap;

use enrichment_runtime::envelope::{
    self, CloudEvent, EnvelopeError, PUBSUB_MESSAGE_PUBLISHED, PubsubMessage,
    STORAGE_OBJECT_FINALIZED, StorageObjectData, Trigger,
};

/// A finalized object that may hold emails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub bucket: String,
    pub name: String,
    pub generation: i64,
    pub size: Option<u64>,
    pub content_encoding: Option<String>,
    /// Custom metadata from the event, such as `tenant_id`.
    pub metadata: BTreeMap<String, String>,
    /// The CloudEvent id or Pub/Sub message id, for logs.
    pub event_id: String,
}

/// The kind of a trigger request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerKind {
    /// A finalized object to read.
    Object(ObjectEvent),
    /// A well-formed event the sender does not handle, such as a deleted object.
    Ignored { event_id: String, reason: String },
    /// A request that can never be handled, however often it is redelivered.
    Malformed { reason: String },
}

/// Pub/Sub notification attribute values of Cloud Storage.
const OBJECT_FINALIZE: &str = "OBJECT_FINALIZE";

/// Reads a trigger request. An envelope that cannot be decoded is [`TriggerKind::Malformed`]
/// rather than an error, so the caller acknowledges it and it is not redelivered.
pub fn read_trigger(headers: &http::HeaderMap, body: &[u8]) -> TriggerKind {
    let trigger = match envelope::decode_trigger(headers, body) {
        Ok(trigger) => trigger,
        Err(error) => return malformed(&error),
    };
    match trigger {
        Trigger::CloudEvent(event) if event.ty == STORAGE_OBJECT_FINALIZED => {
            from_cloud_event(&event)
        }
        Trigger::CloudEvent(event) if event.ty == PUBSUB_MESSAGE_PUBLISHED => {
            match event.pubsub_envelope() {
                Ok(envelope) => from_notification(&envelope.message),
                Err(error) => malformed(&error),
            }
        }
        Trigger::CloudEvent(event) => TriggerKind::Ignored {
            reason: format!("event type {} is not {STORAGE_OBJECT_FINALIZED}", event.ty),
            event_id: event.id,
        },
        Trigger::PubsubPush { message, .. } => from_notification(&message),
    }
}

fn malformed(error: &EnvelopeError) -> TriggerKind {
    TriggerKind::Malformed {
        reason: error.to_string(),
    }
}

fn from_cloud_event(event: &CloudEvent) -> TriggerKind {
    match event.storage_object() {
        Ok(object) => object_event(object, event.id.clone()),
        Err(error) => malformed(&error),
    }
}

fn object_event(object: StorageObjectData, event_id: String) -> TriggerKind {
    if let Some(malformed) = check_generation(object.generation, &event_id) {
        return malformed;
    }
    TriggerKind::Object(ObjectEvent {
        bucket: object.bucket,
        name: object.name,
        generation: object.generation,
        size: object.size,
        content_encoding: object.content_encoding,
        metadata: object.metadata,
        event_id,
    })
}

/// Rejects a generation that no object can have. Cloud Storage generations are positive, and
/// a read with generation 0 returns the live object (google-cloud-storage 1.21 against
/// fake-gcs-server), so such an event would resend a file under new `webhook-id`s.
fn check_generation(generation: i64, event_id: &str) -> Option<TriggerKind> {
    (generation <= 0).then(|| TriggerKind::Malformed {
        reason: format!(
            "event {event_id} has generation {generation}, but object generations are positive"
        ),
    })
}

fn from_notification(message: &PubsubMessage) -> TriggerKind {
    let event_id = message.message_id.clone();
    let Some(event_type) = message.attributes.get("eventType") else {
        return TriggerKind::Malformed {
            reason: format!(
                "Pub/Sub message {event_id} has no eventType attribute, so it is not a Cloud \
                 Storage notification"
            ),
        };
    };
    if event_type != OBJECT_FINALIZE {
        return TriggerKind::Ignored {
            reason: format!("notification eventType {event_type} is not {OBJECT_FINALIZE}"),
            event_id,
        };
    }

    if !message.data.is_empty() {
        return match StorageObjectData::from_json_slice(&message.data) {
            Ok(object) => object_event(object, event_id),
            Err(error) => TriggerKind::Malformed {
                reason: format!("notification {event_id} data is not an object resource: {error}"),
            },
        };
    }

    // With `payloadFormat=NONE` the attributes are all there is.
    let attribute = |name: &str| message.attributes.get(name).filter(|v| !v.is_empty());
    let (Some(bucket), Some(name), Some(generation)) = (
        attribute("bucketId"),
        attribute("objectId"),
        attribute("objectGeneration"),
    ) else {
        return TriggerKind::Malformed {
            reason: format!(
                "notification {event_id} has no data and lacks bucketId, objectId or \
                 objectGeneration"
            ),
        };
    };
    let Ok(generation) = generation.trim().parse::<i64>() else {
        return TriggerKind::Malformed {
            reason: format!("notification {event_id} has objectGeneration {generation:?}"),
        };
    };
    if let Some(malformed) = check_generation(generation, &event_id) {
        return malformed;
    }
    TriggerKind::Object(ObjectEvent {
        bucket: bucket.clone(),
        name: name.clone(),
        generation,
        size: None,
        content_encoding: None,
        metadata: BTreeMap::new(),
        event_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use http::{HeaderMap, HeaderValue};
    use pretty_assertions::assert_eq;

    fn object_resource(
        generation: serde_json::Value,
        size: serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({
            "kind": "storage#object",
            "id": "input-bucket/incoming/t-1/emails.csv/1712345678901234",
            "selfLink": "https://www.googleapis.com/storage/v1/b/input-bucket/o/incoming%2Ft-1%2Femails.csv",
            "name": "incoming/t-1/emails.csv",
            "bucket": "input-bucket",
            "generation": generation,
            "metageneration": "1",
            "contentType": "text/csv",
            "timeCreated": "2024-04-05T12:00:00.123Z",
            "updated": "2024-04-05T12:00:00.123Z",
            "storageClass": "STANDARD",
            "size": size,
            "md5Hash": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "crc32c": "AAAAAA==",
            "etag": "CPLx2Kbxv4UDEAE=",
            "metadata": {"tenant_id": "t-1"}
        })
    }

    fn expected_event(event_id: &str) -> ObjectEvent {
        ObjectEvent {
            bucket: "input-bucket".into(),
            name: "incoming/t-1/emails.csv".into(),
            generation: 1_712_345_678_901_234,
            size: Some(52),
            content_encoding: None,
            metadata: BTreeMap::from([("tenant_id".to_string(), "t-1".to_string())]),
            event_id: event_id.into(),
        }
    }

    fn cloud_event_headers(ty: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let pairs = [
            ("ce-specversion", "1.0"),
            ("ce-id", "8842021412345"),
            (
                "ce-source",
                "//storage.googleapis.com/projects/_/buckets/input-bucket",
            ),
            ("ce-type", ty),
            ("ce-subject", "objects/incoming/t-1/emails.csv"),
            ("ce-time", "2024-04-05T12:00:00.123Z"),
            ("ce-bucket", "input-bucket"),
            ("content-type", "application/json"),
        ];
        for (name, value) in pairs {
            headers.insert(name, HeaderValue::from_static(value));
        }
        headers
    }

    fn push_body(attributes: serde_json::Value, data: &[u8]) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        serde_json::to_vec(&serde_json::json!({
            "message": {
                "attributes": attributes,
                "data": encoded,
                "messageId": "11223344",
                "message_id": "11223344",
                "publishTime": "2024-04-05T12:00:01.000Z",
                "publish_time": "2024-04-05T12:00:01.000Z"
            },
            "subscription": "projects/p/subscriptions/sender"
        }))
        .unwrap()
    }

    fn notification_attributes(event_type: &str) -> serde_json::Value {
        serde_json::json!({
            "eventType": event_type,
            "bucketId": "input-bucket",
            "objectId": "incoming/t-1/emails.csv",
            "objectGeneration": "1712345678901234",
            "payloadFormat": "JSON_API_V1",
            "eventTime": "2024-04-05T12:00:00.123Z"
        })
    }

    #[test]
    fn cloud_event_with_string_numbers() {
        let body = object_resource("1712345678901234".into(), "52".into()).to_string();
        let kind = read_trigger(
            &cloud_event_headers(STORAGE_OBJECT_FINALIZED),
            body.as_bytes(),
        );
        assert_eq!(kind, TriggerKind::Object(expected_event("8842021412345")));
    }

    #[test]
    fn cloud_event_with_json_numbers() {
        let body = object_resource(1_712_345_678_901_234_i64.into(), 52.into()).to_string();
        let kind = read_trigger(
            &cloud_event_headers(STORAGE_OBJECT_FINALIZED),
            body.as_bytes(),
        );
        assert_eq!(kind, TriggerKind::Object(expected_event("8842021412345")));
    }

    #[test]
    fn cloud_event_other_type_is_ignored() {
        let body = object_resource("1712345678901234".into(), "52".into()).to_string();
        let kind = read_trigger(
            &cloud_event_headers("google.cloud.storage.object.v1.deleted"),
            body.as_bytes(),
        );
        assert_eq!(
            kind,
            TriggerKind::Ignored {
                event_id: "8842021412345".into(),
                reason: "event type google.cloud.storage.object.v1.deleted is not \
                         google.cloud.storage.object.v1.finalized"
                    .into(),
            }
        );
    }

    #[test]
    fn cloud_event_without_generation_is_malformed() {
        let body = r#"{"bucket":"input-bucket","name":"incoming/a.csv"}"#;
        let kind = read_trigger(
            &cloud_event_headers(STORAGE_OBJECT_FINALIZED),
            body.as_bytes(),
        );
        assert!(matches!(kind, TriggerKind::Malformed { .. }), "{kind:?}");
    }

    #[test]
    fn cloud_event_generation_not_positive_is_malformed() {
        for generation in ["0", "-1"] {
            let body = object_resource(generation.into(), "52".into()).to_string();
            let kind = read_trigger(
                &cloud_event_headers(STORAGE_OBJECT_FINALIZED),
                body.as_bytes(),
            );
            assert_eq!(
                kind,
                TriggerKind::Malformed {
                    reason: format!(
                        "event 8842021412345 has generation {generation}, but object \
                         generations are positive"
                    ),
                },
            );
        }
    }

    #[test]
    fn notification_generation_not_positive_is_malformed() {
        for generation in ["0", "-1"] {
            let mut attributes = notification_attributes("OBJECT_FINALIZE");
            attributes["objectGeneration"] = generation.into();
            let without_payload = push_body(attributes, b"");
            let data = object_resource(generation.into(), "52".into()).to_string();
            let with_resource =
                push_body(notification_attributes("OBJECT_FINALIZE"), data.as_bytes());
            let expected = TriggerKind::Malformed {
                reason: format!(
                    "event 11223344 has generation {generation}, but object generations are \
                     positive"
                ),
            };
            assert_eq!(
                read_trigger(&HeaderMap::new(), &without_payload),
                expected,
                "payloadFormat=NONE"
            );
            assert_eq!(
                read_trigger(&HeaderMap::new(), &with_resource),
                expected,
                "JSON_API_V1"
            );
        }
    }

    #[test]
    fn notification_push_with_resource() {
        let data = object_resource("1712345678901234".into(), "52".into()).to_string();
        let body = push_body(notification_attributes("OBJECT_FINALIZE"), data.as_bytes());
        let kind = read_trigger(&HeaderMap::new(), &body);
        assert_eq!(kind, TriggerKind::Object(expected_event("11223344")));
    }

    #[test]
    fn notification_push_without_payload() {
        let body = push_body(notification_attributes("OBJECT_FINALIZE"), b"");
        let kind = read_trigger(&HeaderMap::new(), &body);
        let expected = ObjectEvent {
            size: None,
            metadata: BTreeMap::new(),
            ..expected_event("11223344")
        };
        assert_eq!(kind, TriggerKind::Object(expected));
    }

    #[test]
    fn notification_delete_is_ignored() {
        let data = object_resource("1712345678901234".into(), "52".into()).to_string();
        let body = push_body(notification_attributes("OBJECT_DELETE"), data.as_bytes());
        let kind = read_trigger(&HeaderMap::new(), &body);
        assert_eq!(
            kind,
            TriggerKind::Ignored {
                event_id: "11223344".into(),
                reason: "notification eventType OBJECT_DELETE is not OBJECT_FINALIZE".into(),
            }
        );
    }

    #[test]
    fn notification_in_eventarc_pubsub_event() {
        let data = object_resource("1712345678901234".into(), "52".into()).to_string();
        let body = push_body(notification_attributes("OBJECT_FINALIZE"), data.as_bytes());
        let kind = read_trigger(&cloud_event_headers(PUBSUB_MESSAGE_PUBLISHED), &body);
        assert_eq!(kind, TriggerKind::Object(expected_event("11223344")));
    }

    #[test]
    fn malformed_requests() {
        let not_notification = push_body(serde_json::json!({"other": "x"}), b"{}");
        let bad_data = push_body(notification_attributes("OBJECT_FINALIZE"), b"not json");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty body", Vec::new()),
            ("not json", b"<html>".to_vec()),
            ("no message", br#"{"subscription":"s"}"#.to_vec()),
            ("not a notification", not_notification),
            ("data not a resource", bad_data),
        ];
        for (case, body) in cases {
            let kind = read_trigger(&HeaderMap::new(), &body);
            assert!(
                matches!(kind, TriggerKind::Malformed { .. }),
                "{case}: {kind:?}"
            );
        }
    }
}
