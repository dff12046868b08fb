//! The HTTP handler: one Pub/Sub message in, one BigQuery row and one archive object out.
//!
//! Responses, chosen for Pub/Sub push and Eventarc, which redeliver on anything but 2xx:
//!
//! | status | when |
//! |---|---|
//! | 204 | the row was inserted and the archive object exists (written now or by an earlier delivery) |
//! | 204 | the message can never be stored; it was written to `rejected/<message_id>.json` |
//! | 400 | the request is not a Pub/Sub delivery: no message id, or not a push envelope or CloudEvent |
//! | 503 | a write failed in a way a retry can fix; Pub/Sub delivers the message again |
//! | 500 | a write failed in a way that needs an operator (permissions, missing table or bucket) |

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use enrichment_payload::{RecordError, ResultRecord, ResultRow};
use enrichment_runtime::bigquery::{InsertError, InsertRow, RowInserter};
use enrichment_runtime::envelope::{self, EnvelopeError, PushEnvelope};
use enrichment_runtime::pii;
use enrichment_runtime::storage::{ObjectStore, StorageError, WriteOutcome};
use serde_json::json;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::archive::{self, JSON_CONTENT_TYPE, RejectedMessage};
use crate::batch::Batcher;
use crate::config::Config;

/// Largest request body accepted. Pub/Sub messages are at most 10 MB, which base64 turns into
/// about 13.4 MB, and the envelope adds little. A larger limit would only accept requests that
/// did not come from Pub/Sub.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Shared state of the handler: the backends and the insert batcher.
#[derive(Debug, Clone)]
pub struct SinkState {
    inner: Arc<Inner>,
}

struct Inner {
    archive_bucket: String,
    store: Arc<dyn ObjectStore>,
    batcher: Batcher,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("archive_bucket", &self.archive_bucket)
            .finish_non_exhaustive()
    }
}

impl SinkState {
    /// Builds the state from the configuration and the backends. It starts the insert batcher,
    /// so it must be called inside a Tokio runtime.
    pub fn new(
        config: &Config,
        store: Arc<dyn ObjectStore>,
        inserter: Arc<dyn RowInserter>,
    ) -> Self {
        let batcher = Batcher::spawn(
            inserter,
            config.results_table.clone(),
            config.batch_max_rows,
            config.batch_max_wait,
        );
        Self {
            inner: Arc::new(Inner {
                archive_bucket: config.archive_bucket.clone(),
                store,
                batcher,
            }),
        }
    }
}

/// Builds the sink's router: `POST /` takes a Pub/Sub push envelope or a `messagePublished`
/// CloudEvent.
pub fn router(state: SinkState) -> Router {
    Router::new()
        .route("/", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Outcome of one request, which sets the response status.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Stored,
    Rejected,
    NotPubsub(String),
    RetryLater,
    NeedsOperator,
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        match self {
            Outcome::Stored | Outcome::Rejected => StatusCode::NO_CONTENT.into_response(),
            Outcome::NotPubsub(message) => error_response(StatusCode::BAD_REQUEST, &message),
            Outcome::RetryLater => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "The message could not be stored yet; deliver it again.",
            ),
            Outcome::NeedsOperator => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The message could not be stored because of a configuration problem.",
            ),
        }
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "message": message})),
    )
        .into_response()
}

async fn receive(State(state): State<SinkState>, headers: HeaderMap, body: Bytes) -> Outcome {
    let trigger = envelope::decode_trigger(&headers, &body);
    match trigger.and_then(envelope::Trigger::into_push_envelope) {
        Ok(envelope) => {
            let span = message_span(&envelope.message.message_id);
            span.record("delivery_attempt", envelope.delivery_attempt);
            state.inner.process(envelope).instrument(span).await
        }
        Err(EnvelopeError::InvalidMessage {
            message_id,
            raw_message,
            reason,
        }) => {
            let rejected = RejectedMessage {
                message_id: message_id.clone(),
                reason: "invalid_message".to_string(),
                error: reason.clone(),
                subscription: None,
                delivery_attempt: None,
                rejected_at: Utc::now(),
                message: *raw_message,
            };
            state
                .inner
                .reject(rejected, &reason)
                .instrument(message_span(&message_id))
                .await
        }
        // Pub/Sub gives every message an id, so a request without one did not come from a
        // push subscription or Eventarc. Such a request has no id to name a `rejected/`
        // object after, so the sink returns 400 with the reason to its sender.
        Err(error) => {
            tracing::warn!(error = %error, "request is not a Pub/Sub delivery");
            Outcome::NotPubsub(format!("The request is not a Pub/Sub delivery: {error}."))
        }
    }
}

fn message_span(message_id: &str) -> tracing::Span {
    tracing::info_span!(
        "message",
        message_id = %message_id,
        partner_id = Empty,
        delivery_id = Empty,
        input_email_hash = Empty,
        delivery_attempt = Empty,
    )
}

impl Inner {
    /// Stores one message: validates the record, then inserts the row and writes the archive
    /// object at the same time.
    async fn process(&self, envelope: PushEnvelope) -> Outcome {
        let PushEnvelope {
            message,
            subscription,
            delivery_attempt,
        } = envelope;
        let span = tracing::Span::current();

        let record = match ResultRecord::from_slice(&message.data) {
            Ok(record) => record,
            Err(error) => {
                let rejected = RejectedMessage {
                    message_id: message.message_id.clone(),
                    reason: error.reason().to_string(),
                    error: error.to_string(),
                    subscription,
                    delivery_attempt,
                    rejected_at: Utc::now(),
                    message: archive::message_as_pushed(&message),
                };
                return self.reject(rejected, &loggable_record_error(&error)).await;
            }
        };
        span.record("partner_id", record.partner_id.as_str());
        span.record("delivery_id", record.delivery_id.as_str());
        span.record(
            "input_email_hash",
            pii::hash(&record.result.input_email).as_str(),
        );

        let stored_at = Utc::now();
        // Pub/Sub always sets the publish time; the fallback keeps the REQUIRED column filled
        // for a hand-written envelope without one.
        let published_at = message.publish_time.unwrap_or(stored_at);
        let row = ResultRow::from_record(&record, &message.message_id, published_at, stored_at);
        let insert_row = InsertRow {
            insert_id: row.insert_id().to_string(),
            json: row.to_json(),
        };
        let object_name = archive::result_object_name(&record, &message.message_id);

        // NOTE: when only the archive write fails (a missing bucket, for example), the row is
        // already inserted and each redelivery inserts it again. BigQuery's insertId
        // de-duplication is best effort, so the table can contain several rows of one message.
        // The `latest_results` view keeps the first row of each message_id.
        let (archived, inserted) = tokio::join!(
            self.store.write_if_absent(
                &self.archive_bucket,
                &object_name,
                Bytes::from(message.data),
                JSON_CONTENT_TYPE,
            ),
            self.batcher.insert(insert_row),
        );

        let archive_outcome = self.archive_outcome(&object_name, archived);
        let insert_outcome = insert_outcome(inserted);
        match (archive_outcome, insert_outcome) {
            (Outcome::Stored, Outcome::Stored) => {
                tracing::info!(object = %object_name, "result stored");
                Outcome::Stored
            }
            (Outcome::NeedsOperator, _) | (_, Outcome::NeedsOperator) => Outcome::NeedsOperator,
            _ => Outcome::RetryLater,
        }
    }

    fn archive_outcome(
        &self,
        object_name: &str,
        archived: Result<WriteOutcome, StorageError>,
    ) -> Outcome {
        match archived {
            Ok(WriteOutcome::Created) => Outcome::Stored,
            Ok(WriteOutcome::AlreadyExists) => {
                tracing::info!(
                    object = %object_name,
                    "archive object already exists from an earlier delivery"
                );
                Outcome::Stored
            }
            Err(error) if error.is_retryable() => {
                tracing::warn!(
                    error = %error,
                    bucket = %self.archive_bucket,
                    object = %object_name,
                    "archive write failed; Pub/Sub will deliver the message again"
                );
                Outcome::RetryLater
            }
            Err(error) => {
                tracing::error!(
                    error = %error,
                    bucket = %self.archive_bucket,
                    object = %object_name,
                    "archive write failed and needs an operator; Pub/Sub will keep delivering \
                     the message"
                );
                Outcome::NeedsOperator
            }
        }
    }

    /// Writes a message that can never be stored to `rejected/` and acknowledges it.
    /// `log_error` is the error text without personal data.
    async fn reject(&self, rejected: RejectedMessage, log_error: &str) -> Outcome {
        let object_name = archive::rejected_object_name(&rejected.message_id);
        let written = self
            .store
            .write_if_absent(
                &self.archive_bucket,
                &object_name,
                Bytes::from(rejected.to_json_bytes()),
                JSON_CONTENT_TYPE,
            )
            .await;

        match written {
            Ok(_) => {
                tracing::warn!(
                    reason = %rejected.reason,
                    error = %log_error,
                    object = %object_name,
                    "message rejected: it can never be stored, so it was moved to rejected/"
                );
                Outcome::Rejected
            }
            Err(error) if error.is_retryable() => {
                tracing::warn!(
                    reason = %rejected.reason,
                    error = %error,
                    object = %object_name,
                    "writing a rejected message failed; Pub/Sub will deliver it again"
                );
                Outcome::RetryLater
            }
            Err(error) => {
                tracing::error!(
                    reason = %rejected.reason,
                    error = %error,
                    object = %object_name,
                    "writing a rejected message failed and needs an operator"
                );
                Outcome::NeedsOperator
            }
        }
    }
}

fn insert_outcome(inserted: Result<(), InsertError>) -> Outcome {
    match inserted {
        Ok(()) => Outcome::Stored,
        Err(error) if error.is_retryable() => {
            tracing::warn!(
                error = %error,
                details = %insert_error_details(&error),
                "BigQuery insert failed; Pub/Sub will deliver the message again"
            );
            Outcome::RetryLater
        }
        Err(error) => {
            tracing::error!(
                error = %error,
                details = %insert_error_details(&error),
                "BigQuery insert failed and needs an operator; Pub/Sub will keep delivering the \
                 message"
            );
            Outcome::NeedsOperator
        }
    }
}

/// Returns the reason and location of each rejected row, which the error's `Display` leaves
/// out. Row messages read `<reason> at <location>: <text>`, and only the part before `: ` is
/// kept, because BigQuery's text may quote the row's values.
fn insert_error_details(error: &InsertError) -> String {
    match error {
        InsertError::Rows { errors } => errors
            .iter()
            .map(|row| row.message.split(": ").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("; "),
        InsertError::Request { .. } => String::new(),
    }
}

/// Describes a record error for the logs. Field errors are listed as `field:code` only,
/// because their messages may quote the submitted values.
fn loggable_record_error(error: &RecordError) -> String {
    match error {
        RecordError::InvalidFields(errors) => {
            let fields: Vec<String> = errors
                .errors()
                .iter()
                .map(|field| format!("{}:{}", field.field, field.code))
                .collect();
            format!("record result failed validation: {}", fields.join(", "))
        }
        other => other.to_string(),
    }
}
