//! The simulated partner: an HTTP server that takes the sender's signed
//! `{"tenant_id", "input_email"}` requests, fails a chosen share of them on purpose, and for
//! each accepted request calls the receiver back, signed, after a delay.
//!
//! The partner de-duplicates by `webhook-id`, which the sender keeps stable for one email of one
//! upload, so a repeated request gets 202 again without a second callback. Its callbacks reuse the
//! request's `webhook-id`, so a stored result's `delivery_id` names the delivery it answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use standardwebhooks::Webhook;
use tokio::sync::watch;

use crate::enrichment;

/// Errors from creating the partner.
#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    #[error("invalid {which} secret: {message}")]
    InvalidSecret {
        which: &'static str,
        message: String,
    },
    #[error("the failure rate must be between 0 and 1, not {0}")]
    InvalidFailureRate(f64),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Settings of the simulated partner.
#[derive(Clone)]
pub struct PartnerConfig {
    /// Secret (`whsec_...`) that the sender signs with; requests without a valid signature get
    /// 401. `None` accepts unsigned requests.
    pub request_secret: Option<String>,
    /// The receiver's URL that callbacks go to.
    pub callback_url: String,
    /// Secret (`whsec_...`) that callbacks are signed with.
    pub callback_secret: String,
    /// Wait between accepting a request and calling back.
    pub callback_delay: Duration,
    /// Share of request attempts, from 0 to 1, that fail on purpose with 500 or 429.
    pub failure_rate: f64,
    /// Seed of the failure choice: the same seed fails the same attempts.
    pub seed: u64,
    /// Callback attempts before the partner gives up on one result.
    pub callback_max_attempts: u32,
    /// Wait before the second callback attempt, doubled for each later one.
    pub callback_retry_base: Duration,
}

impl std::fmt::Debug for PartnerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PartnerConfig")
            .field(
                "request_secret",
                &self.request_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("callback_url", &self.callback_url)
            .field("callback_secret", &"<redacted>")
            .field("callback_delay", &self.callback_delay)
            .field("failure_rate", &self.failure_rate)
            .field("seed", &self.seed)
            .field("callback_max_attempts", &self.callback_max_attempts)
            .field("callback_retry_base", &self.callback_retry_base)
            .finish()
    }
}

/// A failure the partner injects into one request attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 Internal Server Error.
    ServerError,
    /// 429 Too Many Requests with `Retry-After: 1`.
    RateLimited,
}

/// Chooses whether attempt `attempt` (1-based) of the request for `tenant_id` and
/// `input_email` fails: a fixed function of the seed, the tenant, the email and the attempt,
/// true for about `failure_rate` of all attempts. It does not depend on the `webhook-id`, which
/// changes with every upload, so a run on the same file with the same seed fails the same
/// attempts.
pub fn fault_for(
    seed: u64,
    tenant_id: &str,
    input_email: &str,
    attempt: u64,
    failure_rate: f64,
) -> Option<Fault> {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_be_bytes());
    hasher.update(tenant_id.as_bytes());
    hasher.update([0]);
    hasher.update(input_email.as_bytes());
    hasher.update(attempt.to_be_bytes());
    let digest = hasher.finalize();

    let draw = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    // 53 bits give an exact f64 in [0, 1).
    let uniform = (draw >> 11) as f64 / (1u64 << 53) as f64;
    if uniform >= failure_rate {
        return None;
    }
    if digest[8].is_multiple_of(2) {
        Some(Fault::ServerError)
    } else {
        Some(Fault::RateLimited)
    }
}

/// Counts since the partner started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartnerStats {
    /// Requests received, including retries and rejected ones.
    pub requests: u64,
    /// Requests rejected with 401 (missing or invalid signature).
    pub unauthorized: u64,
    /// Requests rejected with 400 (body not the outbound contract).
    pub bad_requests: u64,
    /// Requests answered 500 on purpose.
    pub injected_server_errors: u64,
    /// Requests answered 429 on purpose.
    pub injected_rate_limits: u64,
    /// Distinct requests accepted; each gets one callback.
    pub accepted: u64,
    /// Repeats of an accepted request, answered 202 without a callback.
    pub repeats: u64,
    /// Callbacks the receiver answered with a 2xx.
    pub callbacks_accepted: u64,
    /// Callback attempts answered with an error status or not answered.
    pub callback_errors: u64,
    /// Callbacks given up after a permanent error or the last attempt.
    pub callbacks_abandoned: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    unauthorized: AtomicU64,
    bad_requests: AtomicU64,
    injected_server_errors: AtomicU64,
    injected_rate_limits: AtomicU64,
    accepted: AtomicU64,
    repeats: AtomicU64,
    callbacks_accepted: AtomicU64,
    callback_errors: AtomicU64,
    callbacks_abandoned: AtomicU64,
}

/// The partner's shared state; clone it to hand out handles.
#[derive(Debug, Clone)]
pub struct SimulatedPartner {
    inner: Arc<Inner>,
}

struct Inner {
    config: PartnerConfig,
    request_verifier: Option<Webhook>,
    callback_signer: Webhook,
    client: reqwest::Client,
    /// Attempts seen per `webhook-id`, and whether one was accepted.
    requests: Mutex<HashMap<String, RequestState>>,
    counters: Counters,
    pending_callbacks: watch::Sender<u64>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SimulatedPartner")
            .field("config", &self.config)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct RequestState {
    attempts: u64,
    accepted: bool,
}

/// The outbound contract, exactly: any other field is a 400.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundBody {
    tenant_id: String,
    input_email: String,
}

impl SimulatedPartner {
    pub fn new(config: PartnerConfig) -> Result<Self, PartnerError> {
        if !(0.0..=1.0).contains(&config.failure_rate) {
            return Err(PartnerError::InvalidFailureRate(config.failure_rate));
        }
        let request_verifier = config
            .request_secret
            .as_deref()
            .map(Webhook::new)
            .transpose()
            .map_err(|error| PartnerError::InvalidSecret {
                which: "request signing",
                message: error.to_string(),
            })?;
        let callback_signer =
            Webhook::new(&config.callback_secret).map_err(|error| PartnerError::InvalidSecret {
                which: "callback signing",
                message: error.to_string(),
            })?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| PartnerError::Client(error.to_string()))?;

        Ok(Self {
            inner: Arc::new(Inner {
                config,
                request_verifier,
                callback_signer,
                client,
                requests: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                pending_callbacks: watch::Sender::new(0),
            }),
        })
    }

    /// Builds the partner's webhook router: `POST /`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", post(handle_request))
            .with_state(self.clone())
    }

    pub fn stats(&self) -> PartnerStats {
        let counters = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PartnerStats {
            requests: load(&counters.requests),
            unauthorized: load(&counters.unauthorized),
            bad_requests: load(&counters.bad_requests),
            injected_server_errors: load(&counters.injected_server_errors),
            injected_rate_limits: load(&counters.injected_rate_limits),
            accepted: load(&counters.accepted),
            repeats: load(&counters.repeats),
            callbacks_accepted: load(&counters.callbacks_accepted),
            callback_errors: load(&counters.callback_errors),
            callbacks_abandoned: load(&counters.callbacks_abandoned),
        }
    }

    /// Callbacks scheduled and not yet finished.
    pub fn pending_callbacks(&self) -> u64 {
        *self.inner.pending_callbacks.borrow()
    }

    /// Waits until every scheduled callback has finished.
    pub async fn wait_idle(&self) {
        let mut pending = self.inner.pending_callbacks.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = pending.wait_for(|count| *count == 0).await;
    }

    /// Records one attempt of `webhook_id` and returns its 1-based number and whether an
    /// earlier attempt was accepted.
    fn record_attempt(&self, webhook_id: &str) -> (u64, bool) {
        let mut requests = self
            .inner
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = requests.entry(webhook_id.to_string()).or_default();
        state.attempts += 1;
        (state.attempts, state.accepted)
    }

    fn mark_accepted(&self, webhook_id: &str) {
        let mut requests = self
            .inner
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        requests.entry(webhook_id.to_string()).or_default().accepted = true;
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn handle_request(
    State(partner): State<SimulatedPartner>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let counters = &partner.inner.counters;
    counters.requests.fetch_add(1, Ordering::Relaxed);

    if let Some(verifier) = &partner.inner.request_verifier
        && let Err(error) = verifier.verify(&body, &headers)
    {
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, "simulated partner rejected a request signature");
        return json_response(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"status": "error", "message": format!("webhook signature: {error}")}),
        );
    }

    let request: OutboundBody = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "simulated partner rejected a request body");
            return json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({
                    "status": "error",
                    "message": format!("expected {{\"tenant_id\", \"input_email\"}}: {error}"),
                }),
            );
        }
    };

    let webhook_id = headers
        .get(standardwebhooks::HEADER_WEBHOOK_ID)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    let (attempt, already_accepted) = partner.record_attempt(&webhook_id);
    if already_accepted {
        counters.repeats.fetch_add(1, Ordering::Relaxed);
        return accepted_response(&webhook_id);
    }

    let config = &partner.inner.config;
    let fault = fault_for(
        config.seed,
        &request.tenant_id,
        &request.input_email,
        attempt,
        config.failure_rate,
    );
    match fault {
        Some(Fault::ServerError) => {
            counters
                .injected_server_errors
                .fetch_add(1, Ordering::Relaxed);
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"status": "error", "message": "injected failure"}),
            );
        }
        Some(Fault::RateLimited) => {
            counters
                .injected_rate_limits
                .fetch_add(1, Ordering::Relaxed);
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({"status": "error", "message": "injected rate limit"}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        None => {}
    }

    partner.mark_accepted(&webhook_id);
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    partner
        .inner
        .pending_callbacks
        .send_modify(|count| *count += 1);
    let callback_partner = partner.clone();
    let callback_id = webhook_id.clone();
    tokio::spawn(async move {
        let inner = &callback_partner.inner;
        tokio::time::sleep(inner.config.callback_delay).await;
        let body = enrichment::callback_body(&request.input_email, &request.tenant_id);
        send_callback(inner, &callback_id, &body).await;
        inner.pending_callbacks.send_modify(|count| *count -= 1);
    });

    accepted_response(&webhook_id)
}

fn accepted_response(webhook_id: &str) -> Response {
    json_response(
        StatusCode::ACCEPTED,
        serde_json::json!({"status": "accepted", "webhook_id": webhook_id}),
    )
}

/// Whether a callback answered with `status` is worth another attempt.
fn callback_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Posts one signed callback, retrying connection errors, timeouts, 408, 429 and 5xx.
async fn send_callback(inner: &Inner, webhook_id: &str, body: &serde_json::Value) {
    let counters = &inner.counters;
    let payload = body.to_string();
    let max_attempts = inner.config.callback_max_attempts.max(1);

    for attempt in 1..=max_attempts {
        // Signed per attempt: the timestamp must be fresh for the receiver's tolerance.
        let timestamp = chrono::Utc::now().timestamp();
        let signature = inner
            .callback_signer
            .sign(webhook_id, timestamp, payload.as_bytes())
            .expect("a JSON body is UTF-8");
        let sent = inner
            .client
            .post(&inner.config.callback_url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, webhook_id)
            .header(
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                timestamp.to_string(),
            )
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(payload.clone())
            .send()
            .await;

        let retryable = match sent {
            Ok(response) if response.status().is_success() => {
                counters.callbacks_accepted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(response) => {
                counters.callback_errors.fetch_add(1, Ordering::Relaxed);
                let status = response.status();
                tracing::warn!(
                    webhook_id,
                    attempt,
                    status = status.as_u16(),
                    "receiver rejected a callback"
                );
                callback_retryable(status)
            }
            Err(error) => {
                counters.callback_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(webhook_id, attempt, %error, "callback to the receiver failed");
                true
            }
        };
        if !retryable || attempt == max_attempts {
            break;
        }
        let doublings = (attempt - 1).min(10);
        tokio::time::sleep(inner.config.callback_retry_base * (1 << doublings)).await;
    }

    counters.callbacks_abandoned.fetch_add(1, Ordering::Relaxed);
    tracing::error!(webhook_id, "simulated partner gave up on a callback");
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use pretty_assertions::assert_eq;
    use tower::ServiceExt as _;

    use super::*;

    const REQUEST_SECRET: &str = "whsec_cmVxdWVzdC1zZWNyZXQtZm9yLXRlc3RzLTAxMjM0NTY3";
    const CALLBACK_SECRET: &str = "whsec_Y2FsbGJhY2stc2VjcmV0LWZvci10ZXN0cy0wMTIzNDU2";

    /// A receiver on 127.0.0.1:0 that records verified callbacks and answers from a script.
    #[derive(Clone, Default)]
    struct Receiver {
        bodies: Arc<StdMutex<Vec<(String, serde_json::Value)>>>,
        script: Arc<StdMutex<Vec<StatusCode>>>,
    }

    async fn receive(
        State(receiver): State<Receiver>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        if Webhook::new(CALLBACK_SECRET)
            .unwrap()
            .verify(&body, &headers)
            .is_err()
        {
            return StatusCode::UNAUTHORIZED;
        }
        let mut script = receiver.script.lock().unwrap();
        if !script.is_empty() {
            return script.remove(0);
        }
        let id = headers["webhook-id"].to_str().unwrap().to_string();
        let json = serde_json::from_slice(&body).unwrap();
        receiver.bodies.lock().unwrap().push((id, json));
        StatusCode::OK
    }

    async fn start_receiver(script: Vec<StatusCode>) -> (String, Receiver) {
        let receiver = Receiver {
            script: Arc::new(StdMutex::new(script)),
            ..Receiver::default()
        };
        let router = Router::new()
            .route("/", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (url, receiver)
    }

    fn partner(callback_url: &str, failure_rate: f64) -> SimulatedPartner {
        SimulatedPartner::new(PartnerConfig {
            request_secret: Some(REQUEST_SECRET.to_string()),
            callback_url: callback_url.to_string(),
            callback_secret: CALLBACK_SECRET.to_string(),
            callback_delay: Duration::from_millis(1),
            failure_rate,
            seed: 7,
            callback_max_attempts: 3,
            callback_retry_base: Duration::from_millis(5),
        })
        .unwrap()
    }

    fn signed_request(webhook_id: &str, body: &str) -> Request<Body> {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = Webhook::new(REQUEST_SECRET)
            .unwrap()
            .sign(webhook_id, timestamp, body.as_bytes())
            .unwrap();
        Request::post("/")
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    async fn status_and_body(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    const BODY: &str = r#"{"tenant_id":"tenant-a","input_email":"jane.doe@example.com"}"#;

    #[test]
    fn fault_share_follows_rate() {
        let failures = (0..10_000)
            .filter(|index| fault_for(1, "t", &format!("{index}@example.com"), 1, 0.3).is_some())
            .count();
        assert!((2_800..=3_200).contains(&failures), "{failures} of 10000");
    }

    #[test]
    fn fault_is_deterministic_per_seed() {
        let draws = |seed| -> Vec<Option<Fault>> {
            (0..50)
                .map(|index| fault_for(seed, "t", &format!("{index}@example.com"), 1, 0.5))
                .collect()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[test]
    fn fault_rate_bounds() {
        assert_eq!(fault_for(1, "t", "a@example.com", 1, 0.0), None);
        let kinds: Vec<Fault> = (0..64)
            .filter_map(|attempt| fault_for(1, "t", "a@example.com", attempt, 1.0))
            .collect();
        assert_eq!(kinds.len(), 64);
        assert!(kinds.contains(&Fault::ServerError));
        assert!(kinds.contains(&Fault::RateLimited));
    }

    #[tokio::test]
    async fn accepted_request_calls_back_signed() {
        let (url, receiver) = start_receiver(vec![]).await;
        let partner = partner(&url, 0.0);

        let response = partner
            .router()
            .oneshot(signed_request("msg_one", BODY))
            .await
            .unwrap();
        let (status, body) = status_and_body(response).await;
        partner.wait_idle().await;

        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            body,
            serde_json::json!({"status": "accepted", "webhook_id": "msg_one"})
        );
        let bodies = receiver.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0].0, "msg_one");
        assert_eq!(
            bodies[0].1,
            enrichment::callback_body("jane.doe@example.com", "tenant-a")
        );
        assert_eq!(
            partner.stats(),
            PartnerStats {
                requests: 1,
                accepted: 1,
                callbacks_accepted: 1,
                ..PartnerStats::default()
            }
        );
    }

    #[tokio::test]
    async fn repeated_request_gets_one_callback() {
        let (url, receiver) = start_receiver(vec![]).await;
        let partner = partner(&url, 0.0);

        for _ in 0..2 {
            let response = partner
                .router()
                .oneshot(signed_request("msg_twice", BODY))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
        partner.wait_idle().await;

        assert_eq!(receiver.bodies.lock().unwrap().len(), 1);
        assert_eq!(partner.stats().repeats, 1);
        assert_eq!(partner.stats().accepted, 1);
    }

    #[tokio::test]
    async fn bad_signature_is_401() {
        let partner = partner("http://127.0.0.1:9/", 0.0);
        let mut request = signed_request("msg_sig", BODY);
        request.headers_mut().insert(
            "webhook-signature",
            HeaderValue::from_static("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        );

        let response = partner.router().oneshot(request).await.unwrap();
        let (status, body) = status_and_body(response).await;

        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            serde_json::json!({"status": "error", "message": "webhook signature: signature invalid"})
        );
        assert_eq!(partner.stats().unauthorized, 1);
        assert_eq!(partner.pending_callbacks(), 0);
    }

    #[tokio::test]
    async fn extra_field_is_400() {
        let partner = partner("http://127.0.0.1:9/", 0.0);
        let body = r#"{"tenant_id":"t","input_email":"a@example.com","name":"x"}"#;

        let response = partner
            .router()
            .oneshot(signed_request("msg_extra", body))
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(partner.stats().bad_requests, 1);
    }

    #[tokio::test]
    async fn injected_faults_then_success() {
        let (url, receiver) = start_receiver(vec![]).await;
        let partner = partner(&url, 0.5);
        // Find an email whose first attempt fails and second succeeds under seed 7.
        let email = (0..1000)
            .map(|index| format!("user{index}@example.com"))
            .find(|email| {
                fault_for(7, "tenant-a", email, 1, 0.5) == Some(Fault::RateLimited)
                    && fault_for(7, "tenant-a", email, 2, 0.5).is_none()
            })
            .unwrap();
        let body = format!(r#"{{"tenant_id":"tenant-a","input_email":"{email}"}}"#);
        let webhook_id = "msg_faulty";

        let first = partner
            .router()
            .oneshot(signed_request(webhook_id, &body))
            .await
            .unwrap();
        assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(first.headers()["retry-after"], "1");

        let second = partner
            .router()
            .oneshot(signed_request(webhook_id, &body))
            .await
            .unwrap();
        assert_eq!(second.status(), StatusCode::ACCEPTED);
        partner.wait_idle().await;

        assert_eq!(receiver.bodies.lock().unwrap().len(), 1);
        let stats = partner.stats();
        assert_eq!(stats.injected_rate_limits, 1);
        assert_eq!(stats.accepted, 1);
    }

    #[tokio::test]
    async fn callback_retries_server_errors() {
        let (url, receiver) = start_receiver(vec![
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::INTERNAL_SERVER_ERROR,
        ])
        .await;
        let partner = partner(&url, 0.0);

        partner
            .router()
            .oneshot(signed_request("msg_retry", BODY))
            .await
            .unwrap();
        partner.wait_idle().await;

        assert_eq!(receiver.bodies.lock().unwrap().len(), 1);
        let stats = partner.stats();
        assert_eq!(stats.callback_errors, 2);
        assert_eq!(stats.callbacks_accepted, 1);
        assert_eq!(stats.callbacks_abandoned, 0);
    }

    #[tokio::test]
    async fn callback_gives_up_on_400() {
        let (url, receiver) = start_receiver(vec![StatusCode::BAD_REQUEST]).await;
        let partner = partner(&url, 0.0);

        partner
            .router()
            .oneshot(signed_request("msg_bad", BODY))
            .await
            .unwrap();
        partner.wait_idle().await;

        assert_eq!(receiver.bodies.lock().unwrap().len(), 0);
        let stats = partner.stats();
        assert_eq!(stats.callback_errors, 1);
        assert_eq!(stats.callbacks_abandoned, 1);
    }
}
