//! The versioned record published to the results topic and read back by the results sink.
//!
//! Data: `{"schema_version":1,"partner_id":"...","delivery_id":"...","received_at":"<RFC
//! 3339>","result":{the six fields and tenant_id, null when absent},"extra":{...}}`.
//! Attributes: `partner_id`, `schema_version` and `delivery_id`, so subscribers can filter
//! without decoding the data.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::result::{EnrichmentResult, KNOWN_FIELDS};
use crate::validation::ValidationErrors;

/// The record layout this crate writes and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Attribute names set on every results message.
pub const ATTRIBUTE_PARTNER_ID: &str = "partner_id";
pub const ATTRIBUTE_SCHEMA_VERSION: &str = "schema_version";
pub const ATTRIBUTE_DELIVERY_ID: &str = "delivery_id";

/// The normalised result fields inside a record. Absent fields serialise as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultFields {
    pub input_email: String,
    pub work_email: Option<String>,
    pub phone_number: Option<String>,
    pub linkedin_url: Option<String>,
    pub name: Option<String>,
    pub company_domain: Option<String>,
    pub tenant_id: Option<String>,
}

/// One enrichment result as it travels through Pub/Sub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub schema_version: u32,
    pub partner_id: String,
    /// The inbound `webhook-id`, or a UUID the receiver generated when there was none.
    pub delivery_id: String,
    /// When the receiver accepted the callback.
    #[serde(with = "rfc3339_micros")]
    pub received_at: DateTime<Utc>,
    pub result: ResultFields,
    /// Unknown top-level fields of the callback, kept as sent.
    pub extra: Map<String, Value>,
}

/// Failure to decode message data into a valid [`ResultRecord`]. Every variant is permanent
/// because the same bytes fail the same way on redelivery, so the sink quarantines them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("message data is not valid JSON: {0}")]
    NotJson(String),
    #[error("unknown record schema_version {0}; this build reads only version {SCHEMA_VERSION}")]
    UnknownSchemaVersion(u64),
    /// Valid JSON that lacks the record's shape (a missing or mistyped envelope field).
    #[error("malformed record: {0}")]
    Malformed(String),
    #[error("record result failed validation: {0}")]
    InvalidFields(ValidationErrors),
}

impl RecordError {
    /// Returns a short stable reason, for quarantine object names and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::NotJson(_) => "not_json",
            RecordError::UnknownSchemaVersion(_) => "unknown_schema_version",
            RecordError::Malformed(_) => "malformed",
            RecordError::InvalidFields(_) => "invalid_fields",
        }
    }
}

impl ResultRecord {
    /// Wraps a validated result for publishing. `received_at` is truncated to microseconds,
    /// the precision of the serialised form and of BigQuery.
    pub fn new(
        partner_id: impl Into<String>,
        delivery_id: impl Into<String>,
        received_at: DateTime<Utc>,
        result: EnrichmentResult,
    ) -> Self {
        let EnrichmentResult {
            input_email,
            work_email,
            phone_number,
            linkedin_url,
            name,
            company_domain,
            tenant_id,
            extra,
        } = result;
        Self {
            schema_version: SCHEMA_VERSION,
            partner_id: partner_id.into(),
            delivery_id: delivery_id.into(),
            received_at: received_at.trunc_subsecs(6),
            result: ResultFields {
                input_email,
                work_email,
                phone_number,
                linkedin_url,
                name,
                company_domain,
                tenant_id,
            },
            extra,
        }
    }

    /// Serialises the message data.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record of strings and JSON values always serialises")
    }

    /// Returns the message attributes: `partner_id`, `schema_version` and `delivery_id`.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (ATTRIBUTE_PARTNER_ID.to_owned(), self.partner_id.clone()),
            (
                ATTRIBUTE_SCHEMA_VERSION.to_owned(),
                self.schema_version.to_string(),
            ),
            (ATTRIBUTE_DELIVERY_ID.to_owned(), self.delivery_id.clone()),
        ])
    }

    /// Returns the result as an [`EnrichmentResult`] (the inverse of [`ResultRecord::new`]).
    pub fn to_enrichment_result(&self) -> EnrichmentResult {
        let fields = self.result.clone();
        EnrichmentResult {
            input_email: fields.input_email,
            work_email: fields.work_email,
            phone_number: fields.phone_number,
            linkedin_url: fields.linkedin_url,
            name: fields.name,
            company_domain: fields.company_domain,
            tenant_id: fields.tenant_id,
            extra: self.extra.clone(),
        }
    }

    /// Decodes message data and validates the result again with the inbound rules, so a
    /// message that did not come from a current receiver cannot reach the tables.
    ///
    /// The schema version is checked before anything else, so a newer layout is reported as
    /// [`RecordError::UnknownSchemaVersion`] rather than as malformed.
    pub fn from_slice(data: &[u8]) -> Result<Self, RecordError> {
        let value: Value = serde_json::from_slice(data)
            .map_err(|error| RecordError::NotJson(error.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(RecordError::Malformed(
                "the record is not a JSON object".to_owned(),
            ));
        };

        let schema_version = match object.get("schema_version") {
            Some(Value::Number(number)) => number.as_u64().ok_or_else(|| {
                RecordError::Malformed("schema_version must be a non-negative integer".to_owned())
            })?,
            Some(_) => {
                return Err(RecordError::Malformed(
                    "schema_version must be a number".to_owned(),
                ));
            }
            None => {
                return Err(RecordError::Malformed(
                    "schema_version is missing".to_owned(),
                ));
            }
        };
        if schema_version != u64::from(SCHEMA_VERSION) {
            return Err(RecordError::UnknownSchemaVersion(schema_version));
        }

        let partner_id = take_non_empty_string(&mut object, "partner_id")?;
        let delivery_id = take_non_empty_string(&mut object, "delivery_id")?;
        let received_at = take_non_empty_string(&mut object, "received_at")?;
        let received_at = DateTime::parse_from_rfc3339(&received_at)
            .map_err(|_| {
                RecordError::Malformed(
                    "received_at must be an RFC 3339 time such as 2024-05-01T12:00:00Z".to_owned(),
                )
            })?
            .with_timezone(&Utc);

        let result = take_object(&mut object, "result")?;
        let extra = take_object(&mut object, "extra")?;
        if let Some(key) = result
            .keys()
            .find(|key| !KNOWN_FIELDS.contains(&key.as_str()))
        {
            return Err(RecordError::Malformed(format!(
                "result has the unexpected field {key:?}"
            )));
        }

        let result =
            EnrichmentResult::from_parts(&result, extra).map_err(RecordError::InvalidFields)?;
        Ok(Self::new(partner_id, delivery_id, received_at, result))
    }
}

fn take_non_empty_string(
    object: &mut Map<String, Value>,
    key: &str,
) -> Result<String, RecordError> {
    match object.remove(key) {
        Some(Value::String(value)) if !value.trim().is_empty() => Ok(value),
        Some(Value::String(_)) => Err(RecordError::Malformed(format!("{key} is empty"))),
        Some(_) => Err(RecordError::Malformed(format!("{key} must be a string"))),
        None => Err(RecordError::Malformed(format!("{key} is missing"))),
    }
}

fn take_object(
    object: &mut Map<String, Value>,
    key: &str,
) -> Result<Map<String, Value>, RecordError> {
    match object.remove(key) {
        Some(Value::Object(value)) => Ok(value),
        Some(_) => Err(RecordError::Malformed(format!("{key} must be an object"))),
        None => Err(RecordError::Malformed(format!("{key} is missing"))),
    }
}

/// RFC 3339 timestamps in UTC with microseconds, the precision of a BigQuery TIMESTAMP:
/// `2024-05-01T12:00:00.123456Z`.
pub mod rfc3339_micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Formats a time as RFC 3339 in UTC with microseconds.
    pub fn format(time: &DateTime<Utc>) -> String {
        time.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub fn serialize<S: Serializer>(
        time: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::validation::ErrorCode;

    fn received_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 15).unwrap()
            + chrono::Duration::microseconds(123_456)
    }

    fn sample_record() -> ResultRecord {
        let result = EnrichmentResult::from_json(&json!({
            "input_email": "jane.doe@example.com",
            "phone_number": "+1 (415) 555-2671",
            "name": "Jane Doe",
            "tenant_id": "tenant-1",
            "score": 0.9
        }))
        .unwrap();
        ResultRecord::new("acme", "msg_2fX", received_at(), result)
    }

    fn sample_json() -> Value {
        json!({
            "schema_version": 1,
            "partner_id": "acme",
            "delivery_id": "msg_2fX",
            "received_at": "2024-05-01T12:30:15.123456Z",
            "result": {
                "input_email": "jane.doe@example.com",
                "work_email": null,
                "phone_number": "+14155552671",
                "linkedin_url": null,
                "name": "Jane Doe",
                "company_domain": null,
                "tenant_id": "tenant-1"
            },
            "extra": {"score": 0.9}
        })
    }

    #[test]
    fn serialises_versioned_layout() {
        let bytes = sample_record().to_json_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value, sample_json());
    }

    #[test]
    fn attributes_carry_ids_and_version() {
        let expected = BTreeMap::from([
            ("delivery_id".to_owned(), "msg_2fX".to_owned()),
            ("partner_id".to_owned(), "acme".to_owned()),
            ("schema_version".to_owned(), "1".to_owned()),
        ]);
        assert_eq!(sample_record().attributes(), expected);
    }

    #[test]
    fn round_trip_is_exact() {
        let record = sample_record();
        assert_eq!(
            ResultRecord::from_slice(&record.to_json_bytes()),
            Ok(record)
        );
    }

    #[test]
    fn received_at_truncated_to_micros() {
        let with_nanos = received_at() + chrono::Duration::nanoseconds(789);
        let record = ResultRecord::new(
            "acme",
            "d",
            with_nanos,
            sample_record().to_enrichment_result(),
        );
        assert_eq!(record.received_at, received_at());
    }

    #[test]
    fn to_enrichment_result_inverts_new() {
        let result = EnrichmentResult::from_json(&json!({
            "input_email": "a@example.com",
            "company_domain": "example.org",
            "x": [1, 2]
        }))
        .unwrap();
        let record = ResultRecord::new("p", "d", received_at(), result.clone());
        assert_eq!(record.to_enrichment_result(), result);
    }

    #[test]
    fn decoding_normalises_again() {
        let mut data = sample_json();
        data["result"]["phone_number"] = json!("+1 415 555 2671");
        data["result"]["work_email"] = json!("");
        let record = ResultRecord::from_slice(data.to_string().as_bytes()).unwrap();
        assert_eq!(record.result.phone_number.as_deref(), Some("+14155552671"));
        assert_eq!(record.result.work_email, None);
    }

    #[test]
    fn invalid_result_fields_rejected() {
        let mut data = sample_json();
        data["result"]["phone_number"] = json!("+12");
        data["result"]["input_email"] = json!("a@b");
        let error = ResultRecord::from_slice(data.to_string().as_bytes()).unwrap_err();
        let RecordError::InvalidFields(errors) = &error else {
            panic!("expected InvalidFields, got {error:?}");
        };
        assert_eq!(
            errors.codes_for("input_email"),
            vec![ErrorCode::InvalidEmail]
        );
        assert_eq!(
            errors.codes_for("phone_number"),
            vec![ErrorCode::InvalidE164]
        );
        assert_eq!(errors.len(), 2);
        assert_eq!(error.reason(), "invalid_fields");
    }

    #[test]
    fn extra_limits_checked_on_decode() {
        let mut data = sample_json();
        let extra: Map<String, Value> = (0..51).map(|i| (format!("f{i}"), json!(i))).collect();
        data["extra"] = Value::Object(extra);
        let error = ResultRecord::from_slice(data.to_string().as_bytes()).unwrap_err();
        let RecordError::InvalidFields(errors) = error else {
            panic!("expected InvalidFields, got {error:?}");
        };
        assert_eq!(errors.codes_for("extra"), vec![ErrorCode::TooManyFields]);
    }

    #[test]
    fn unknown_schema_version_rejected() {
        for version in [0, 2, 99] {
            let mut data = sample_json();
            data["schema_version"] = json!(version);
            let error = ResultRecord::from_slice(data.to_string().as_bytes()).unwrap_err();
            assert_eq!(error, RecordError::UnknownSchemaVersion(version));
            assert_eq!(error.reason(), "unknown_schema_version");
        }

        // A newer layout is reported by its version even when the rest differs.
        let error = ResultRecord::from_slice(br#"{"schema_version":2,"payload":{}}"#).unwrap_err();
        assert_eq!(error, RecordError::UnknownSchemaVersion(2));
        assert_eq!(
            error.to_string(),
            "unknown record schema_version 2; this build reads only version 1"
        );
    }

    #[test]
    fn not_json_rejected() {
        let error = ResultRecord::from_slice(b"\x00\x01 not json").unwrap_err();
        assert!(matches!(error, RecordError::NotJson(_)), "{error:?}");
        assert_eq!(error.reason(), "not_json");
    }

    #[test]
    fn malformed_envelopes_rejected() {
        let without = |key: &str| {
            let mut data = sample_json();
            data.as_object_mut().unwrap().remove(key);
            data
        };
        let with = |key: &str, value: Value| {
            let mut data = sample_json();
            data[key] = value;
            data
        };
        let cases = [
            (json!([1]), "the record is not a JSON object"),
            (without("schema_version"), "schema_version is missing"),
            (
                with("schema_version", json!("1")),
                "schema_version must be a number",
            ),
            (
                with("schema_version", json!(-1)),
                "schema_version must be a non-negative integer",
            ),
            (without("partner_id"), "partner_id is missing"),
            (with("partner_id", json!(" ")), "partner_id is empty"),
            (
                with("delivery_id", json!(7)),
                "delivery_id must be a string",
            ),
            (without("result"), "result is missing"),
            (with("extra", json!([])), "extra must be an object"),
            (
                with("received_at", json!("yesterday")),
                "received_at must be an RFC 3339 time such as 2024-05-01T12:00:00Z",
            ),
        ];
        for (data, expected) in cases {
            let error = ResultRecord::from_slice(data.to_string().as_bytes()).unwrap_err();
            assert_eq!(error, RecordError::Malformed(expected.to_owned()), "{data}");
            assert_eq!(error.reason(), "malformed");
        }

        let mut data = sample_json();
        data["result"]["score"] = json!(1);
        let error = ResultRecord::from_slice(data.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            error,
            RecordError::Malformed("result has the unexpected field \"score\"".to_owned())
        );
    }

    #[test]
    fn received_at_offset_converted_to_utc() {
        let mut data = sample_json();
        data["received_at"] = json!("2024-05-01T14:30:15.123456+02:00");
        let record = ResultRecord::from_slice(data.to_string().as_bytes()).unwrap();
        assert_eq!(record.received_at, received_at());
    }
}
