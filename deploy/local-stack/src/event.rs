//! The storage event that starts the sender: an Eventarc CloudEvent in HTTP binary mode of type
//! `google.cloud.storage.object.v1.finalized`, shaped like the ones Eventarc sends.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// CloudEvent type of a finished object upload.
pub const OBJECT_FINALIZED: &str = "google.cloud.storage.object.v1.finalized";

/// The facts of the uploaded object that the event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedObject {
    pub bucket: String,
    pub name: String,
    pub generation: i64,
    pub size: u64,
    pub content_type: String,
    pub updated: DateTime<Utc>,
}

/// A CloudEvent in binary mode: `ce-*` headers plus a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryEvent {
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

/// Builds the `object.v1.finalized` event for `object`. As in production, `generation`,
/// `metageneration` and `size` are JSON strings.
pub fn object_finalized(object: &UploadedObject) -> BinaryEvent {
    let time = object.updated.to_rfc3339_opts(SecondsFormat::Micros, true);
    let generation = object.generation.to_string();
    let body = json!({
        "kind": "storage#object",
        "id": format!("{}/{}/{generation}", object.bucket, object.name),
        "selfLink": format!(
            "https://www.googleapis.com/storage/v1/b/{}/o/{}",
            object.bucket,
            encode_object_name(&object.name)
        ),
        "name": object.name,
        "bucket": object.bucket,
        "generation": generation,
        "metageneration": "1",
        "contentType": object.content_type,
        "timeCreated": time,
        "updated": time,
        "storageClass": "STANDARD",
        "timeStorageClassUpdated": time,
        "size": object.size.to_string(),
    });
    let headers = vec![
        ("ce-specversion", "1.0".to_string()),
        // One finalize event per generation, so the generation is a unique event id.
        ("ce-id", generation.clone()),
        (
            "ce-source",
            format!(
                "//storage.googleapis.com/projects/_/buckets/{}",
                object.bucket
            ),
        ),
        ("ce-type", OBJECT_FINALIZED.to_string()),
        ("ce-subject", format!("objects/{}", object.name)),
        ("ce-time", time),
        ("content-type", "application/json".to_string()),
    ];
    BinaryEvent { headers, body }
}

/// Percent-encodes an object name for a URL path segment, as the JSON API's `selfLink` does.
fn encode_object_name(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn finalized_event_shape() {
        let object = UploadedObject {
            bucket: "local-input".to_string(),
            name: "incoming/acme/contacts.csv".to_string(),
            generation: 1714557600123456789,
            size: 1234,
            content_type: "text/csv".to_string(),
            updated: DateTime::parse_from_rfc3339("2024-05-01T10:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
        };

        let event = object_finalized(&object);

        assert_eq!(
            event.headers,
            vec![
                ("ce-specversion", "1.0".to_string()),
                ("ce-id", "1714557600123456789".to_string()),
                (
                    "ce-source",
                    "//storage.googleapis.com/projects/_/buckets/local-input".to_string()
                ),
                ("ce-type", OBJECT_FINALIZED.to_string()),
                (
                    "ce-subject",
                    "objects/incoming/acme/contacts.csv".to_string()
                ),
                ("ce-time", "2024-05-01T10:00:00.500000Z".to_string()),
                ("content-type", "application/json".to_string()),
            ]
        );
        assert_eq!(
            event.body,
            json!({
                "kind": "storage#object",
                "id": "local-input/incoming/acme/contacts.csv/1714557600123456789",
                "selfLink": "https://www.googleapis.com/storage/v1/b/local-input/o/incoming%2Facme%2Fcontacts.csv",
                "name": "incoming/acme/contacts.csv",
                "bucket": "local-input",
                "generation": "1714557600123456789",
                "metageneration": "1",
                "contentType": "text/csv",
                "timeCreated": "2024-05-01T10:00:00.500000Z",
                "updated": "2024-05-01T10:00:00.500000Z",
                "storageClass": "STANDARD",
                "timeStorageClassUpdated": "2024-05-01T10:00:00.500000Z",
                "size": "1234",
            })
        );
    }
}
