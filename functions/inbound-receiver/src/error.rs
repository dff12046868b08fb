//! Error responses: `{"status":"error","message":"...","errors":[...]}` with the status that fits.
//!
//! `errors` lists every failing field for a 400 and is empty otherwise. No message contains a
//! secret, a submitted value or internal error text.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use enrichment_payload::{FieldError, ValidationErrors};
use serde::Serialize;

use crate::auth::AuthError;

/// Seconds a partner should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u64 = 10;

/// A request the receiver did not accept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("no route for this path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("not authenticated: {0}")]
    Unauthorized(AuthError),
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("failed to read the request body")]
    BodyRead,
    #[error("invalid result: {0}")]
    Invalid(ValidationErrors),
    /// Pub/Sub did not take the message in time; the partner should retry.
    #[error("publish failed")]
    Unavailable,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyRead | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Returns the sentence sent to the partner.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::NotFound => "Not found; send results with POST /.".to_string(),
            ApiError::MethodNotAllowed => "Method not allowed; send results with POST.".to_string(),
            ApiError::PayloadTooLarge { limit } => {
                format!("The body is larger than the limit of {limit} bytes.")
            }
            ApiError::Unauthorized(err) => err.to_string(),
            ApiError::UnsupportedMediaType => {
                "Unsupported Content-Type; send the result as application/json.".to_string()
            }
            ApiError::BodyRead => "Failed to read the request body.".to_string(),
            ApiError::Invalid(_) => {
                "The enrichment result is invalid; errors lists each failing field.".to_string()
            }
            ApiError::Unavailable => {
                format!("The result could not be stored; retry after {RETRY_AFTER_SECS} seconds.")
            }
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    message: String,
    errors: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors = match &self {
            ApiError::Invalid(errors) => errors.errors(),
            _ => &[],
        };
        let body = ErrorBody {
            status: "error",
            message: self.public_message(),
            errors,
        };
        let mut response = (self.status(), Json(body)).into_response();

        let headers = response.headers_mut();
        match &self {
            ApiError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            ApiError::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized(err) if err.is_bearer() => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
