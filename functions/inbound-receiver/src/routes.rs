//! HTTP routes: `POST /` receives a partner's result, `GET /healthz` reports liveness.
//!
//! `POST /` checks, in order: the method (405), the body size (413), authentication, which
//! needs the raw bytes (401), the content type (415), and the payload (400). It then publishes
//! the record and returns 200 only once Pub/Sub has stored it, or 503 when it has not.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use enrichment_payload::{EnrichmentResult, ErrorCode, FieldError, ResultRecord, ValidationErrors};
use enrichment_runtime::pii;
use enrichment_runtime::pubsub::Publisher;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::Value;
use standardwebhooks::HEADER_WEBHOOK_ID;
use tracing::{Instrument, Span, field};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::ApiError;

/// Longest accepted `webhook-id`, in characters. The id becomes the record's `delivery_id`.
pub const MAX_WEBHOOK_ID_CHARS: usize = 128;

/// State shared by the handlers: the partner, the authenticator, the body limit and the
/// publisher.
#[derive(Clone)]
pub struct AppState {
    pub partner_id: Arc<str>,
    pub authenticator: Arc<Authenticator>,
    pub max_body_bytes: usize,
    pub publisher: Arc<dyn Publisher>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("partner_id", &self.partner_id)
            .field("authenticator", &self.authenticator)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(config: &Config, publisher: Arc<dyn Publisher>) -> Self {
        AppState {
            partner_id: Arc::from(config.partner_id.as_str()),
            authenticator: Arc::new(Authenticator::new(&config.auth)),
            max_body_bytes: config.max_body_bytes,
            publisher,
        }
    }
}

/// Builds the receiver's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", post(receive).fallback(method_not_allowed))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), request_span))
        .with_state(state)
}

/// The 200 body. Field order is part of the documented response.
#[derive(Debug, Serialize)]
struct SuccessBody {
    status: &'static str,
    message: &'static str,
    input_email: String,
    message_id: String,
}

/// Runs each request in one span with the partner, delivery, message and hashed email ids,
/// and logs one line when it completes.
async fn request_span(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        partner_id = %state.partner_id,
        delivery_id = field::Empty,
        message_id = field::Empty,
        input_email_hash = field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;

    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms,
            "request completed"
        );
    });
    response
}

async fn healthz() -> Json<Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match accept_result(&state, &headers, body).await {
        Ok(success) => Json(success).into_response(),
        Err(err) => {
            log_rejection(&err);
            err.into_response()
        }
    }
}

/// Logs a rejected request once. Bad input is the partner's to fix, so it is logged at `info`
/// with a reason but no submitted values. A publish failure was already logged where it
/// happened.
fn log_rejection(err: &ApiError) {
    match err {
        ApiError::Unavailable => {}
        ApiError::Unauthorized(auth) => {
            tracing::info!(status = 401, reason = auth.reason(), "request rejected")
        }
        ApiError::Invalid(errors) => {
            let fields: Vec<String> = errors
                .errors()
                .iter()
                .map(|error| format!("{}:{}", error.field, error.code))
                .collect();
            tracing::info!(
                status = 400,
                reason = "invalid_result",
                fields = fields.join(","),
                "request rejected"
            );
        }
        other => tracing::info!(
            status = other.status().as_u16(),
            reason = %other,
            "request rejected"
        ),
    }
}

async fn accept_result(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<SuccessBody, ApiError> {
    let span = Span::current();

    let body = read_body(headers, body, state.max_body_bytes).await?;
    state
        .authenticator
        .verify(headers, &body, chrono::Utc::now().timestamp())
        .map_err(ApiError::Unauthorized)?;
    if !is_json_content_type(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }

    let delivery_id = delivery_id(headers).map_err(ApiError::Invalid)?;
    span.record("delivery_id", delivery_id.as_str());

    let (result, input_email) = parse_result(&body).map_err(ApiError::Invalid)?;
    span.record("input_email_hash", pii::hash(&input_email));

    let record = ResultRecord::new(
        state.partner_id.as_ref(),
        delivery_id,
        chrono::Utc::now(),
        result,
    );
    let message_id = state
        .publisher
        .publish(record.to_json_bytes(), record.attributes())
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "publish to the results topic failed");
            ApiError::Unavailable
        })?;
    span.record("message_id", message_id.as_str());
    tracing::debug!("result published");

    Ok(SuccessBody {
        status: "success",
        message: "Enrichment data received and processed",
        input_email,
        message_id,
    })
}

/// Reads the whole body, rejecting it as soon as it exceeds `limit` bytes. A `Content-Length`
/// above the limit is rejected before any byte is read.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }

    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(err) => {
            tracing::info!(error = %err, "failed to read the request body");
            Err(ApiError::BodyRead)
        }
    }
}

/// Accepts one `Content-Type: application/json` header with no charset or `charset=utf-8`,
/// since JSON on the wire is UTF-8 (RFC 8259).
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(mime) = value
        .to_str()
        .ok()
        .and_then(|text| text.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    let charset_ok = mime
        .get_param(mime::CHARSET)
        .is_none_or(|charset| charset.as_str().eq_ignore_ascii_case("utf-8"));
    mime.type_() == mime::APPLICATION
        && mime.subtype() == mime::JSON
        && mime.suffix().is_none()
        && charset_ok
}

/// Returns the `webhook-id` header as the delivery id, or a new UUID v4 when it is absent.
fn delivery_id(headers: &HeaderMap) -> Result<String, ValidationErrors> {
    let Some(value) = headers.get(HEADER_WEBHOOK_ID) else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let not_visible_ascii = || {
        ValidationErrors::from(FieldError::new(
            HEADER_WEBHOOK_ID,
            ErrorCode::ControlCharacters,
            "The webhook-id header may contain only visible ASCII characters.",
        ))
    };
    let id = value.to_str().map_err(|_| not_visible_ascii())?.trim();
    if id.is_empty() {
        return Ok(uuid::Uuid::new_v4().to_string());
    }
    if id.chars().count() > MAX_WEBHOOK_ID_CHARS {
        return Err(FieldError::new(
            HEADER_WEBHOOK_ID,
            ErrorCode::TooLong,
            format!("The webhook-id header is longer than {MAX_WEBHOOK_ID_CHARS} characters."),
        )
        .into());
    }
    if !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(not_visible_ascii());
    }
    Ok(id.to_string())
}

/// Validates the body and returns the result with `input_email` as the partner sent it,
/// trimmed, for the response.
fn parse_result(body: &[u8]) -> Result<(EnrichmentResult, String), ValidationErrors> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        // The payload crate words the invalid-JSON error, so the body goes through it again.
        let result = EnrichmentResult::from_slice(body)?;
        let input_email = result.input_email.clone();
        return Ok((result, input_email));
    };

    let result = EnrichmentResult::from_json(&value)?;
    let input_email = value
        .get("input_email")
        .and_then(Value::as_str)
        .map_or_else(|| result.input_email.clone(), |raw| raw.trim().to_string());
    Ok((result, input_email))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use pretty_assertions::assert_eq;

    #[test]
    fn content_type_cases() {
        let cases: &[(Option<&str>, bool)] = &[
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON; charset=UTF-8"), true),
            (Some("application/json;charset=\"utf-8\""), true),
            (Some("application/json; charset=utf-16"), false),
            (Some("text/plain"), false),
            (Some("application/x-www-form-urlencoded"), false),
            (Some("application/cloudevents+json"), false),
            (Some("json"), false),
            (None, false),
        ];
        for (content_type, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(value) = content_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            }
            assert_eq!(
                is_json_content_type(&headers),
                *expected,
                "content type {content_type:?}"
            );
        }
    }

    #[test]
    fn content_type_repeated_rejected() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.append(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json_content_type(&headers));
    }

    #[test]
    fn delivery_id_from_header_or_uuid() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_WEBHOOK_ID, HeaderValue::from_static(" msg_1 "));
        assert_eq!(delivery_id(&headers), Ok("msg_1".to_string()));

        let generated = delivery_id(&HeaderMap::new()).unwrap();
        let parsed = uuid::Uuid::parse_str(&generated).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn delivery_id_rejects_bad_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HEADER_WEBHOOK_ID,
            HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        );
        assert_eq!(
            delivery_id(&headers).unwrap_err().codes_for("webhook-id"),
            vec![ErrorCode::TooLong]
        );
        headers.insert(HEADER_WEBHOOK_ID, HeaderValue::from_static("msg 1"));
        assert_eq!(
            delivery_id(&headers).unwrap_err().codes_for("webhook-id"),
            vec![ErrorCode::ControlCharacters]
        );
        headers.insert(
            HEADER_WEBHOOK_ID,
            HeaderValue::from_bytes(b"msg_\xc2\x84").unwrap(),
        );
        assert_eq!(
            delivery_id(&headers).unwrap_err().codes_for("webhook-id"),
            vec![ErrorCode::ControlCharacters]
        );
    }

    #[test]
    fn parse_result_echoes_trimmed_input() {
        let body = br#"{"input_email":"  Jane.Doe@Example.COM "}"#;
        let (result, echoed) = parse_result(body).unwrap();
        assert_eq!(echoed, "Jane.Doe@Example.COM");
        assert_eq!(result.input_email, "Jane.Doe@example.com");
    }

    #[test]
    fn parse_result_invalid_json() {
        let errors = parse_result(b"{not json").unwrap_err();
        assert_eq!(errors.codes_for("body"), vec![ErrorCode::InvalidJson]);
    }
}
