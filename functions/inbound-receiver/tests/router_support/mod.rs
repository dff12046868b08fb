//! Requests and an app on an in-memory publisher, shared by the router and log tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use enrichment_runtime::pubsub::MemoryPublisher;
use http_body_util::BodyExt;
use inbound_receiver::config::{AuthConfig, Secret};
use inbound_receiver::{AppState, Config, router};
use serde_json::Value;
use standardwebhooks::Webhook;
use tower::ServiceExt;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const FULL_RESULT: &str = r#"{"input_email":"jane.doe@example.com","work_email":"jane@acme.io","phone_number":"+1234567890","linkedin_url":"https://linkedin.com/in/user","name":"Jane Doe","company_domain":"company.com"}"#;

pub fn config(auth: AuthConfig) -> Config {
    Config {
        port: 8080,
        project: "test-project".into(),
        partner_id: "acme".into(),
        results_topic: "projects/test-project/topics/results".into(),
        auth,
        max_body_bytes: 65536,
        pubsub_emulator: None,
        publish_timeout: Duration::from_secs(10),
    }
}

pub fn signature_auth() -> AuthConfig {
    AuthConfig::Signature {
        secrets: vec![Secret::new(SECRET)],
        tolerance: Duration::from_secs(300),
    }
}

pub fn app(auth: AuthConfig) -> (Router, Arc<MemoryPublisher>) {
    let publisher = Arc::new(MemoryPublisher::new());
    let state = AppState::new(&config(auth), publisher.clone());
    (router(state), publisher)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Builds a signed `POST /` with `Content-Type: application/json`.
pub fn signed(secret: &str, id: &str, timestamp: i64, body: &str) -> Request<Body> {
    let signature = Webhook::new(secret)
        .unwrap()
        .sign(id, timestamp, body.as_bytes())
        .unwrap();
    Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub fn unsigned(content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "body is not JSON: {:?}",
            String::from_utf8_lossy(bytes.as_ref())
        )
    });
    (status, headers, body)
}
