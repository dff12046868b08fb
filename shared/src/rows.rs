//! BigQuery rows in the JSON shape of `tabledata.insertAll`.
//!
//! Each type matches a schema file in `shared/schemas/bigquery/` (a test keeps them in step).
//! Absent values serialise as `null`, timestamps as RFC 3339 strings in UTC with
//! microseconds, and the `JSON` column `extra` as a JSON-encoded string, the form insertAll
//! takes for JSON columns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{ResultRecord, rfc3339_micros};

/// One row of the `results` table: one enrichment result per Pub/Sub message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRow {
    /// The Pub/Sub message id, also the insertAll `insertId`.
    pub message_id: String,
    pub partner_id: String,
    /// The tenant the partner echoed, or `None` when it echoed none.
    pub tenant_id: Option<String>,
    pub input_email: String,
    pub work_email: Option<String>,
    pub phone_number: Option<String>,
    pub linkedin_url: Option<String>,
    pub name: Option<String>,
    pub company_domain: Option<String>,
    /// The unknown callback fields as a JSON-encoded object.
    pub extra: String,
    pub delivery_id: String,
    #[serde(with = "rfc3339_micros")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "rfc3339_micros")]
    pub published_at: DateTime<Utc>,
    #[serde(with = "rfc3339_micros")]
    pub stored_at: DateTime<Utc>,
}

impl ResultRow {
    /// Builds the row for `record`, delivered as Pub/Sub message `message_id` that was
    /// published at `published_at` and is stored at `stored_at`.
    pub fn from_record(
        record: &ResultRecord,
        message_id: impl Into<String>,
        published_at: DateTime<Utc>,
        stored_at: DateTime<Utc>,
    ) -> Self {
        let result = &record.result;
        Self {
            message_id: message_id.into(),
            partner_id: record.partner_id.clone(),
            tenant_id: result.tenant_id.clone(),
            input_email: result.input_email.clone(),
            work_email: result.work_email.clone(),
            phone_number: result.phone_number.clone(),
            linkedin_url: result.linkedin_url.clone(),
            name: result.name.clone(),
            company_domain: result.company_domain.clone(),
            extra: Value::Object(record.extra.clone()).to_string(),
            delivery_id: record.delivery_id.clone(),
            received_at: record.received_at,
            published_at,
            stored_at,
        }
    }

    /// Returns the insertAll `insertId`: the message id, so that a redelivered message is
    /// dropped by BigQuery's best-effort de-duplication (and by the view otherwise).
    pub fn insert_id(&self) -> &str {
        &self.message_id
    }

    /// Serialises the row as an insertAll `json` object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a row of strings and times always serialises")
    }
}

/// Final outcome of one outbound email, the `status` column of `deliveries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The partner returned a 2xx status.
    Delivered,
    /// Retries ran out or the partner returned a permanent error.
    Failed,
    /// The file's email is not a valid address, so nothing was sent.
    InvalidEmail,
    /// The same email already appeared for the same tenant in this file.
    Duplicate,
    /// No tenant id could be found for the email, so nothing was sent.
    MissingTenant,
}

impl DeliveryStatus {
    /// Returns the serialised form, for example `missing_tenant`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::InvalidEmail => "invalid_email",
            DeliveryStatus::Duplicate => "duplicate",
            DeliveryStatus::MissingTenant => "missing_tenant",
        }
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the `deliveries` table: the outcome of one email of an input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRow {
    /// The outbound `webhook-id`, stable for one (object generation, tenant, email).
    pub delivery_id: String,
    /// `None` when no tenant id was found (status `missing_tenant`).
    pub tenant_id: Option<String>,
    pub partner_id: String,
    pub source_bucket: String,
    pub source_object: String,
    pub source_generation: i64,
    /// The email as it appeared in the file, trimmed (it may be invalid).
    pub input_email: String,
    /// The keyed hash of the email that the logs carry, to join rows with log lines.
    pub input_email_hash: String,
    pub status: DeliveryStatus,
    /// HTTP requests made to the partner for this email (0 when nothing was sent).
    pub attempts: u32,
    /// Status code of the last partner response, or `None` when no response arrived.
    pub last_http_status: Option<u16>,
    /// One-line reason the delivery did not succeed, or `None` on success.
    pub error: Option<String>,
    #[serde(with = "rfc3339_micros")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_micros")]
    pub finished_at: DateTime<Utc>,
}

impl DeliveryRow {
    /// Serialises the row as an insertAll `json` object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a row of strings, numbers and times always serialises")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::result::EnrichmentResult;

    fn time(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, second).unwrap()
    }

    #[test]
    fn result_row_from_record() {
        let result = EnrichmentResult::from_json(&json!({
            "input_email": "jane.doe@example.com",
            "linkedin_url": "linkedin.com/in/jane",
            "score": 0.5
        }))
        .unwrap();
        let record = ResultRecord::new("acme", "msg_1", time(1), result);
        let row = ResultRow::from_record(&record, "1234567890", time(2), time(3));

        assert_eq!(row.insert_id(), "1234567890");
        assert_eq!(
            row.to_json(),
            json!({
                "message_id": "1234567890",
                "partner_id": "acme",
                "tenant_id": null,
                "input_email": "jane.doe@example.com",
                "work_email": null,
                "phone_number": null,
                "linkedin_url": "https://linkedin.com/in/jane",
                "name": null,
                "company_domain": null,
                "extra": "{\"score\":0.5}",
                "delivery_id": "msg_1",
                "received_at": "2024-05-01T12:00:01.000000Z",
                "published_at": "2024-05-01T12:00:02.000000Z",
                "stored_at": "2024-05-01T12:00:03.000000Z"
            })
        );
    }

    #[test]
    fn result_row_empty_extra_is_object() {
        let result = EnrichmentResult::from_json(&json!({"input_email": "a@example.com"})).unwrap();
        let record = ResultRecord::new("acme", "msg_1", time(1), result);
        let row = ResultRow::from_record(&record, "1", time(2), time(3));
        assert_eq!(row.extra, "{}");
    }

    #[test]
    fn result_row_deserialises_own_json() {
        let result = EnrichmentResult::from_json(&json!({"input_email": "a@example.com"})).unwrap();
        let record = ResultRecord::new("acme", "msg_1", time(1), result);
        let row = ResultRow::from_record(&record, "1", time(2), time(3));
        let parsed: ResultRow = serde_json::from_value(row.to_json()).unwrap();
        assert_eq!(parsed, row);
    }

    #[test]
    fn delivery_row_json_shape() {
        let row = DeliveryRow {
            delivery_id: "msg_abc".to_owned(),
            tenant_id: Some("tenant-1".to_owned()),
            partner_id: "acme".to_owned(),
            source_bucket: "uploads".to_owned(),
            source_object: "incoming/tenant-1/batch.csv".to_owned(),
            source_generation: 1_714_564_800_123_456,
            input_email: "jane.doe@example.com".to_owned(),
            input_email_hash: "3f2a9c1b".to_owned(),
            status: DeliveryStatus::Failed,
            attempts: 4,
            last_http_status: Some(503),
            error: Some("partner answered 503 after 4 attempts".to_owned()),
            created_at: time(0),
            finished_at: time(30),
        };
        assert_eq!(
            row.to_json(),
            json!({
                "delivery_id": "msg_abc",
                "tenant_id": "tenant-1",
                "partner_id": "acme",
                "source_bucket": "uploads",
                "source_object": "incoming/tenant-1/batch.csv",
                "source_generation": 1_714_564_800_123_456_i64,
                "input_email": "jane.doe@example.com",
                "input_email_hash": "3f2a9c1b",
                "status": "failed",
                "attempts": 4,
                "last_http_status": 503,
                "error": "partner answered 503 after 4 attempts",
                "created_at": "2024-05-01T12:00:00.000000Z",
                "finished_at": "2024-05-01T12:00:30.000000Z"
            })
        );
    }

    #[test]
    fn delivery_status_names() {
        let cases = [
            (DeliveryStatus::Delivered, "delivered"),
            (DeliveryStatus::Failed, "failed"),
            (DeliveryStatus::InvalidEmail, "invalid_email"),
            (DeliveryStatus::Duplicate, "duplicate"),
            (DeliveryStatus::MissingTenant, "missing_tenant"),
        ];
        for (status, expected) in cases {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(expected));
            assert_eq!(status.as_str(), expected);
            assert_eq!(status.to_string(), expected);
        }
    }
}
