//! HTTP handlers: `POST /` takes object events, `POST /deliver` makes one delivery attempt.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::Instrument;

use crate::AppState;
use crate::deliver::{Decision, TASK_RETRY_COUNT_HEADER};
use crate::jobs::Job;
use crate::process::{self, FileSummary, ProcessError};
use crate::queue::local::delivery_span;
use crate::trigger::{self, ObjectEvent, TriggerKind};

/// Handles a trigger request. Every outcome but a retryable failure gets a 2xx,
/// because Eventarc and Pub/Sub redeliver anything else.
pub async fn handle_trigger(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let event = match trigger::read_trigger(&headers, &body) {
        TriggerKind::Object(event) => event,
        TriggerKind::Ignored { event_id, reason } => {
            tracing::info!(event_id, reason, "ignoring the event");
            return StatusCode::NO_CONTENT.into_response();
        }
        TriggerKind::Malformed { reason } => {
            tracing::warn!(
                reason,
                "discarding a trigger request that is not a valid object event"
            );
            return StatusCode::NO_CONTENT.into_response();
        }
    };

    let config = state.config();
    if !event.name.starts_with(&config.input_prefix) {
        tracing::info!(
            event_id = %event.event_id,
            bucket = %event.bucket,
            object = %event.name,
            input_prefix = %config.input_prefix,
            "ignoring an object outside the input prefix"
        );
        return StatusCode::NO_CONTENT.into_response();
    }

    let span = tracing::info_span!(
        "object_event",
        event_id = %event.event_id,
        partner_id = %config.partner_id,
        bucket = %event.bucket,
        object = %event.name,
        generation = event.generation,
    );
    process_event(&state, &event).instrument(span).await
}

async fn process_event(state: &AppState, event: &ObjectEvent) -> Response {
    let config = state.config();
    let result = process::process_object(
        state.store(),
        state.queue(),
        &state.core().recorder,
        &config.partner_id,
        &config.input_prefix,
        event,
    )
    .await;
    match result {
        Ok(summary) => {
            log_summary(&summary);
            (StatusCode::OK, Json(summary_body(&summary))).into_response()
        }
        Err(error @ ProcessError::Gone { .. }) => {
            tracing::info!(%error, "nothing to read");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, "reading the object failed; responding with 503 so the event is redelivered");
            let body = json!({"status": "error", "message": error.to_string()});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "the object cannot be read; the event is dropped");
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

fn log_summary(summary: &FileSummary) {
    tracing::info!(
        format = summary.format.unwrap_or_default(),
        rows = summary.rows,
        enqueued = summary.enqueue.enqueued,
        already_queued = summary.enqueue.already_queued,
        invalid_email = summary.invalid_email,
        missing_tenant = summary.missing_tenant,
        duplicate = summary.duplicate,
        "file read"
    );
}

fn summary_body(summary: &FileSummary) -> serde_json::Value {
    json!({
        "status": "enqueued",
        "format": summary.format,
        "rows": summary.rows,
        "enqueued": summary.enqueue.enqueued,
        "already_queued": summary.enqueue.already_queued,
        "invalid_email": summary.invalid_email,
        "missing_tenant": summary.missing_tenant,
        "duplicate": summary.duplicate,
    })
}

/// Handles one delivery attempt, as Cloud Tasks dispatches it.
///
/// Responds with 200 when the outcome is final (delivered, or failed for good) so the task
/// ends, and with 503 and the partner's `Retry-After` when a retry can help. A body that is not
/// a job of this partner gets 200 too, since retrying it cannot help.
pub async fn handle_deliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let job: Job = match serde_json::from_slice(&body) {
        Ok(job) => job,
        Err(error) => {
            // serde messages quote the offending value, which may be an email, so only the
            // error's category and position are logged.
            tracing::warn!(
                category = ?error.classify(),
                line = error.line(),
                column = error.column(),
                "discarding a /deliver request whose body is not a job"
            );
            let body = json!({"status": "discarded", "message": format!("the body is not a job: {error}")});
            return (StatusCode::OK, Json(body)).into_response();
        }
    };
    let config = state.config();
    if job.partner_id != config.partner_id {
        tracing::warn!(
            webhook_id = %job.webhook_id,
            job_partner_id = %job.partner_id,
            partner_id = %config.partner_id,
            "discarding a job for another partner"
        );
        let body = json!({"status": "discarded", "message": "the job is for another partner"});
        return (StatusCode::OK, Json(body)).into_response();
    }

    let retry_count = retry_count(&headers);
    let span = delivery_span(&job);
    let (attempt, decision) = state
        .core()
        .deliver_once(&job, retry_count)
        .instrument(span)
        .await;
    match decision {
        Decision::Final(row) => {
            let body = json!({
                "status": row.status,
                "attempts": row.attempts,
                "http_status": row.last_http_status,
                "error": row.error,
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        Decision::RetryLater { retry_after } => {
            let body = json!({
                "status": "retry",
                "attempts": retry_count + 1,
                "http_status": attempt.http_status(),
                "error": attempt.error_text(),
            });
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            // NOTE: Cloud Tasks schedules the task's retry from the queue's retry config
            // (min_backoff doubled per retry: 2, 4 and 8 s by default) and does not promise to
            // honour this Retry-After for the task. Its HttpRequest reference
            // (google-cloud-tasks-v2 1.13.0) states only that Retry-After is considered when it
            // throttles the whole queue after 429 and 503 responses. The `local` queue does not
            // use this route and waits for the partner's Retry-After itself.
            if let Some(delay) = retry_after {
                // Whole seconds, rounded up so the partner's wish is never cut short.
                let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    }
}

/// Reads `X-CloudTasks-TaskRetryCount`; a missing or unreadable header means a first attempt.
pub fn retry_count(headers: &HeaderMap) -> u32 {
    headers
        .get(TASK_RETRY_COUNT_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}
