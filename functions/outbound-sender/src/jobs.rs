//! From input rows to delivery jobs: tenant resolution, email validation, per-file
//! de-duplication and the stable `webhook-id`.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use chrono::{DateTime, Utc};
use enrichment_payload::email::{dedupe_key, normalize_email};
use enrichment_payload::record::rfc3339_micros;
use enrichment_payload::validation::ErrorCode;
use enrichment_payload::{DeliveryRow, DeliveryStatus, OutboundRequest};
use enrichment_runtime::pii;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::input::{InputRow, RowContent};

/// Longest accepted tenant id, in characters.
pub const MAX_TENANT_CHARS: usize = 128;
/// The metadata key and column name that carry a tenant id.
pub const TENANT_ID_KEY: &str = "tenant_id";

/// One object generation: the unit that `webhook-id`s and delivery rows refer to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceObject {
    pub bucket: String,
    pub name: String,
    pub generation: i64,
}

/// One email to deliver to the partner. This is also the JSON body of a Cloud Tasks task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The Standard Webhooks `webhook-id`, stable for (bucket, object, generation, tenant,
    /// email) so that the partner can drop a repeated request.
    pub webhook_id: String,
    pub partner_id: String,
    pub tenant_id: String,
    /// The normalised email that is sent.
    pub input_email: String,
    pub source_bucket: String,
    pub source_object: String,
    pub source_generation: i64,
    /// Line of the email in the input file.
    pub line: u64,
    /// When the sender read the email from the file.
    #[serde(with = "rfc3339_micros")]
    pub created_at: DateTime<Utc>,
}

impl Job {
    /// Returns the exact request body, `{"tenant_id":"...","input_email":"..."}`.
    pub fn body(&self) -> Vec<u8> {
        OutboundRequest::new(self.tenant_id.as_str(), self.input_email.as_str()).to_json_bytes()
    }

    pub fn source(&self) -> SourceObject {
        SourceObject {
            bucket: self.source_bucket.clone(),
            name: self.source_object.clone(),
            generation: self.source_generation,
        }
    }

    /// Builds the delivery row of the final outcome.
    pub fn outcome_row(
        &self,
        status: DeliveryStatus,
        attempts: u32,
        last_http_status: Option<u16>,
        error: Option<String>,
        finished_at: DateTime<Utc>,
    ) -> DeliveryRow {
        DeliveryRow {
            delivery_id: self.webhook_id.clone(),
            tenant_id: Some(self.tenant_id.clone()),
            partner_id: self.partner_id.clone(),
            source_bucket: self.source_bucket.clone(),
            source_object: self.source_object.clone(),
            source_generation: self.source_generation,
            input_email: self.input_email.clone(),
            input_email_hash: pii::hash(&self.input_email),
            status,
            attempts,
            last_http_status,
            error,
            created_at: self.created_at,
            finished_at,
        }
    }
}

/// Computes the `webhook-id` of an email: `msg_` and the hex SHA-256 of the bucket, object,
/// generation, tenant and de-duplication key of the email. Each field is length-prefixed, so
/// no two different field lists hash the same bytes.
pub fn webhook_id(source: &SourceObject, tenant_id: &str, email_key: &str) -> String {
    let generation = source.generation.to_string();
    let digest = hash_fields(&[
        &source.bucket,
        &source.name,
        &generation,
        tenant_id,
        email_key,
    ]);
    format!("msg_{}", hex::encode(digest))
}

/// Computes the id of a row that was never sent: `row_` and the hex SHA-256 of the bucket,
/// object, generation and line. It is the insertAll `insertId` of that row.
pub fn row_id(source: &SourceObject, line: u64) -> String {
    let generation = source.generation.to_string();
    let line = line.to_string();
    let digest = hash_fields(&["row", &source.bucket, &source.name, &generation, &line]);
    format!("row_{}", hex::encode(digest))
}

fn hash_fields(fields: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

/// Returns the tenant named by the object's path, `<prefix><tenant_id>/<file>`.
pub fn tenant_from_path(name: &str, input_prefix: &str) -> Option<String> {
    let rest = name.strip_prefix(input_prefix)?;
    let (tenant, file) = rest.split_once('/')?;
    if file.is_empty() {
        return None;
    }
    valid_tenant(tenant)
}

/// Returns the `tenant_id` of the object's custom metadata (key in any case).
pub fn tenant_from_metadata(metadata: &BTreeMap<String, String>) -> Option<String> {
    let value = metadata.get(TENANT_ID_KEY).or_else(|| {
        metadata
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(TENANT_ID_KEY))
            .map(|(_, value)| value)
    })?;
    valid_tenant(value)
}

/// Returns the trimmed tenant id when it is usable: 1 to [`MAX_TENANT_CHARS`] characters
/// without control characters.
pub fn valid_tenant(value: &str) -> Option<String> {
    let value = value.trim();
    let valid = !value.is_empty()
        && value.chars().count() <= MAX_TENANT_CHARS
        && !value.chars().any(char::is_control);
    valid.then(|| value.to_string())
}

/// A row that is recorded but not sent, with its insertAll `insertId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    pub insert_id: String,
    pub row: DeliveryRow,
}

/// The decision for one input row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Send(Job),
    Skip(SkippedRow),
}

/// The (tenant, email) pairs seen in one file, as 16-byte hashes.
///
/// The set is split into 256 shards by the hash's top byte. A single table doubles its
/// allocation when it grows, and old and new tables exist at once while it moves the entries:
/// at a million entries that peak is about 53 MiB. A shard grows alone, so the peak stays near
/// the steady size of about 36 MiB per million unique pairs.
#[derive(Debug)]
struct SeenSet {
    shards: Vec<HashSet<u128, BuildHasherDefault<LowBitsHasher>>>,
}

impl SeenSet {
    const SHARDS: usize = 256;

    fn new() -> Self {
        Self {
            shards: (0..Self::SHARDS).map(|_| HashSet::default()).collect(),
        }
    }

    /// Adds `key` and returns whether it was new.
    fn insert(&mut self, key: u128) -> bool {
        let shard = (key >> 120) as usize;
        self.shards[shard].insert(key)
    }

    fn len(&self) -> usize {
        self.shards.iter().map(HashSet::len).sum()
    }
}

/// Hashes a `u128` key to its low 64 bits: the keys are SHA-256 output, already uniform, so
/// hashing them again would only cost time.
#[derive(Default)]
struct LowBitsHasher(u64);

impl Hasher for LowBitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

/// Turns the rows of one object generation into jobs and skipped rows.
///
/// Memory grows by one 16-byte hash per unique (tenant, email) of the file (about 36 MiB per
/// million, table overhead included).
#[derive(Debug)]
pub struct Planner {
    source: SourceObject,
    partner_id: String,
    file_tenant: Option<String>,
    seen: SeenSet,
}

impl Planner {
    /// `file_tenant` is the tenant of rows without their own: the object's metadata, else its
    /// path (see [`tenant_from_metadata`] and [`tenant_from_path`]).
    pub fn new(source: SourceObject, partner_id: &str, file_tenant: Option<String>) -> Self {
        Self {
            source,
            partner_id: partner_id.to_string(),
            file_tenant,
            seen: SeenSet::new(),
        }
    }

    pub fn source(&self) -> &SourceObject {
        &self.source
    }

    /// Returns the number of unique (tenant, email) pairs planned so far.
    pub fn unique_count(&self) -> usize {
        self.seen.len()
    }

    /// Decides one row: a job for a valid first occurrence, otherwise a skipped row with
    /// status `invalid_email`, `missing_tenant` or `duplicate`.
    pub fn plan(&mut self, row: InputRow, now: DateTime<Utc>) -> Planned {
        let line = row.line;
        let (raw_email, row_tenant) = match row.content {
            RowContent::Email { email, tenant_id } => (email, tenant_id),
            RowContent::Unreadable { raw, reason } => {
                return self.skip(line, &raw, None, DeliveryStatus::InvalidEmail, reason, now);
            }
        };

        let email = match normalize_email(&raw_email) {
            Ok(email) => email,
            Err(code) => {
                let tenant = row_tenant.as_deref().and_then(valid_tenant);
                let reason = invalid_email_reason(code);
                return self.skip(
                    line,
                    &raw_email,
                    tenant,
                    DeliveryStatus::InvalidEmail,
                    reason,
                    now,
                );
            }
        };

        let tenant = match row_tenant.as_deref().map(str::trim) {
            Some(given) if !given.is_empty() => valid_tenant(given).ok_or_else(|| {
                format!(
                    "the row's tenant_id is invalid: it must be 1 to {MAX_TENANT_CHARS} \
                     characters without control characters"
                )
            }),
            _ => self.file_tenant.clone().ok_or_else(|| {
                "no tenant_id in the row, the object metadata or the object path \
                 (incoming/<tenant_id>/<file>)"
                    .to_string()
            }),
        };
        let tenant = match tenant {
            Ok(tenant) => tenant,
            Err(reason) => {
                return self.skip(
                    line,
                    &email,
                    None,
                    DeliveryStatus::MissingTenant,
                    reason,
                    now,
                );
            }
        };

        let key = dedupe_key(&email);
        let webhook_id = webhook_id(&self.source, &tenant, &key);
        let seen_key = seen_key(&tenant, &key);
        if !self.seen.insert(seen_key) {
            // The row names the delivery of the first occurrence, but keeps an insertId of its
            // own so BigQuery does not drop it as a copy of that delivery's row.
            let row = DeliveryRow {
                delivery_id: webhook_id,
                error: Some("the same email already appeared for this tenant in this file".into()),
                ..self.skipped_row(&email, Some(tenant), DeliveryStatus::Duplicate, now)
            };
            return Planned::Skip(SkippedRow {
                insert_id: row_id(&self.source, line),
                row,
            });
        }

        Planned::Send(Job {
            webhook_id,
            partner_id: self.partner_id.clone(),
            tenant_id: tenant,
            input_email: email,
            source_bucket: self.source.bucket.clone(),
            source_object: self.source.name.clone(),
            source_generation: self.source.generation,
            line,
            created_at: now,
        })
    }

    fn skipped_row(
        &self,
        email: &str,
        tenant_id: Option<String>,
        status: DeliveryStatus,
        now: DateTime<Utc>,
    ) -> DeliveryRow {
        DeliveryRow {
            delivery_id: String::new(),
            tenant_id,
            partner_id: self.partner_id.clone(),
            source_bucket: self.source.bucket.clone(),
            source_object: self.source.name.clone(),
            source_generation: self.source.generation,
            input_email: email.to_string(),
            input_email_hash: pii::hash(email),
            status,
            attempts: 0,
            last_http_status: None,
            error: None,
            created_at: now,
            finished_at: now,
        }
    }

    fn skip(
        &self,
        line: u64,
        email: &str,
        tenant_id: Option<String>,
        status: DeliveryStatus,
        reason: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Planned {
        let insert_id = row_id(&self.source, line);
        let row = DeliveryRow {
            delivery_id: insert_id.clone(),
            error: Some(reason.into()),
            ..self.skipped_row(email, tenant_id, status, now)
        };
        Planned::Skip(SkippedRow { insert_id, row })
    }
}

fn seen_key(tenant: &str, email_key: &str) -> u128 {
    let digest = hash_fields(&[tenant, email_key]);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

fn invalid_email_reason(code: ErrorCode) -> String {
    match code {
        ErrorCode::Missing => "the row has no email".to_string(),
        ErrorCode::TooLong => format!(
            "the email is longer than {} characters",
            enrichment_payload::email::MAX_EMAIL_CHARS
        ),
        _ => "the email is not a valid address (addr-spec with a dotted domain)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use pretty_assertions::assert_eq;

    fn source() -> SourceObject {
        SourceObject {
            bucket: "input".into(),
            name: "incoming/t-1/emails.csv".into(),
            generation: 1_712_345_678_901_234,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn row(line: u64, email: &str, tenant: Option<&str>) -> InputRow {
        InputRow {
            line,
            content: RowContent::Email {
                email: email.into(),
                tenant_id: tenant.map(str::to_string),
            },
        }
    }

    fn job(planned: Planned) -> Job {
        match planned {
            Planned::Send(job) => job,
            other => panic!("expected a job, got {other:?}"),
        }
    }

    fn skipped(planned: Planned) -> SkippedRow {
        match planned {
            Planned::Skip(skipped) => skipped,
            other => panic!("expected a skipped row, got {other:?}"),
        }
    }

    #[test]
    fn webhook_id_is_stable_and_distinct() {
        let id = webhook_id(&source(), "t-1", "jane@example.com");
        assert_eq!(id, webhook_id(&source(), "t-1", "jane@example.com"));
        assert!(id.starts_with("msg_"), "{id}");
        assert_eq!(id.len(), 4 + 64);
        assert!(id[4..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");

        let other_generation = SourceObject {
            generation: 2,
            ..source()
        };
        let variants = [
            webhook_id(&other_generation, "t-1", "jane@example.com"),
            webhook_id(&source(), "t-2", "jane@example.com"),
            webhook_id(&source(), "t-1", "john@example.com"),
            // Length prefixes keep field boundaries apart.
            webhook_id(&source(), "t-1j", "ane@example.com"),
        ];
        for variant in variants {
            assert_ne!(variant, id);
        }
    }

    #[test]
    fn tenant_from_path_table() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("incoming/t-1/emails.csv", "incoming/", Some("t-1")),
            ("incoming/t-1/sub/emails.csv", "incoming/", Some("t-1")),
            ("incoming/emails.csv", "incoming/", None),
            ("incoming/t-1/", "incoming/", None),
            ("other/t-1/emails.csv", "incoming/", None),
            ("t-9/emails.csv", "", Some("t-9")),
        ];
        for (name, prefix, expected) in cases {
            assert_eq!(
                tenant_from_path(name, prefix).as_deref(),
                *expected,
                "{name} with prefix {prefix:?}"
            );
        }
    }

    #[test]
    fn tenant_from_metadata_any_case() {
        let exact = BTreeMap::from([("tenant_id".to_string(), " t-7 ".to_string())]);
        let upper = BTreeMap::from([("Tenant_ID".to_string(), "t-8".to_string())]);
        let blank = BTreeMap::from([("tenant_id".to_string(), "  ".to_string())]);
        assert_eq!(tenant_from_metadata(&exact).as_deref(), Some("t-7"));
        assert_eq!(tenant_from_metadata(&upper).as_deref(), Some("t-8"));
        assert_eq!(tenant_from_metadata(&blank), None);
        assert_eq!(tenant_from_metadata(&BTreeMap::new()), None);
    }

    #[test]
    fn valid_row_becomes_job() {
        let mut planner = Planner::new(source(), "acme", Some("t-file".into()));
        let job = job(planner.plan(row(2, " Jane.Doe@Example.COM ", Some("t-1")), now()));
        assert_eq!(
            job,
            Job {
                webhook_id: webhook_id(&source(), "t-1", "jane.doe@example.com"),
                partner_id: "acme".into(),
                tenant_id: "t-1".into(),
                input_email: "Jane.Doe@example.com".into(),
                source_bucket: "input".into(),
                source_object: "incoming/t-1/emails.csv".into(),
                source_generation: 1_712_345_678_901_234,
                line: 2,
                created_at: now(),
            }
        );
        assert_eq!(
            String::from_utf8(job.body()).unwrap(),
            r#"{"tenant_id":"t-1","input_email":"Jane.Doe@example.com"}"#
        );
    }

    #[test]
    fn file_tenant_fills_rows_without_one() {
        let mut planner = Planner::new(source(), "acme", Some("t-file".into()));
        let job = job(planner.plan(row(2, "a@example.com", None), now()));
        assert_eq!(job.tenant_id, "t-file");
        let blank = job_tenant(planner.plan(row(3, "b@example.com", Some("  ")), now()));
        assert_eq!(blank, "t-file");
    }

    fn job_tenant(planned: Planned) -> String {
        job(planned).tenant_id
    }

    #[test]
    fn duplicates_per_tenant_and_case() {
        let mut planner = Planner::new(source(), "acme", None);
        let first = job(planner.plan(row(2, "jane@example.com", Some("t-1")), now()));
        let repeat = skipped(planner.plan(row(3, "JANE@example.com", Some("t-1")), now()));
        let other_tenant = job(planner.plan(row(4, "jane@example.com", Some("t-2")), now()));

        assert_eq!(repeat.row.status, DeliveryStatus::Duplicate);
        assert_eq!(repeat.row.delivery_id, first.webhook_id);
        assert_eq!(repeat.insert_id, row_id(&source(), 3));
        assert_eq!(repeat.row.input_email, "JANE@example.com");
        assert_eq!(repeat.row.tenant_id.as_deref(), Some("t-1"));
        assert_eq!(
            repeat.row.error.as_deref(),
            Some("the same email already appeared for this tenant in this file")
        );
        assert_ne!(other_tenant.webhook_id, first.webhook_id);
        assert_eq!(planner.unique_count(), 2);
    }

    #[test]
    fn invalid_rows_are_skipped_with_reasons() {
        let mut planner = Planner::new(source(), "acme", None);
        let cases: Vec<(InputRow, DeliveryStatus, &str)> = vec![
            (
                row(2, "not-an-email", Some("t-1")),
                DeliveryStatus::InvalidEmail,
                "the email is not a valid address (addr-spec with a dotted domain)",
            ),
            (
                row(3, "", Some("t-1")),
                DeliveryStatus::InvalidEmail,
                "the row has no email",
            ),
            (
                row(4, "a@example.com", None),
                DeliveryStatus::MissingTenant,
                "no tenant_id in the row, the object metadata or the object path \
                 (incoming/<tenant_id>/<file>)",
            ),
            (
                row(5, "b@example.com", Some("t\u{1}x")),
                DeliveryStatus::MissingTenant,
                "the row's tenant_id is invalid: it must be 1 to 128 characters without control \
                 characters",
            ),
            (
                InputRow {
                    line: 6,
                    content: RowContent::Unreadable {
                        raw: "{oops".into(),
                        reason: "the line is not JSON".into(),
                    },
                },
                DeliveryStatus::InvalidEmail,
                "the line is not JSON",
            ),
        ];
        for (input, status, reason) in cases {
            let line = input.line;
            let skipped = skipped(planner.plan(input, now()));
            assert_eq!(skipped.row.status, status, "line {line}");
            assert_eq!(skipped.row.error.as_deref(), Some(reason), "line {line}");
            assert_eq!(skipped.insert_id, row_id(&source(), line), "line {line}");
            assert_eq!(skipped.row.delivery_id, skipped.insert_id, "line {line}");
            assert_eq!(skipped.row.attempts, 0, "line {line}");
            assert_eq!(skipped.row.last_http_status, None, "line {line}");
            assert_eq!(skipped.row.created_at, now(), "line {line}");
        }
        assert_eq!(planner.unique_count(), 0);
    }

    #[test]
    fn job_json_round_trips() {
        let mut planner = Planner::new(source(), "acme", Some("t-1".into()));
        let job = job(planner.plan(row(2, "jane@example.com", None), now()));
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "webhook_id": job.webhook_id,
                "partner_id": "acme",
                "tenant_id": "t-1",
                "input_email": "jane@example.com",
                "source_bucket": "input",
                "source_object": "incoming/t-1/emails.csv",
                "source_generation": 1_712_345_678_901_234_i64,
                "line": 2,
                "created_at": "2024-05-01T12:00:00.000000Z",
            })
        );
        let parsed: Job = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, job);
    }
}
