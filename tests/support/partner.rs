//! A partner's webhook endpoint for tests: a real HTTP server on `127.0.0.1:0` that records
//! every request and responds from a script.
//!
//! ```no_run
//! # async fn demo() {
//! use integration_tests::partner::{PartnerServer, ScriptedResponse};
//! let partner = PartnerServer::start().await;
//! partner.script([ScriptedResponse::status(500), ScriptedResponse::status(200)]);
//! // ... point the sender at partner.url() ...
//! let requests = partner.wait_for_requests(2, std::time::Duration::from_secs(10)).await;
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Notify, oneshot};

/// One response of the partner: a status, headers, a body, and an optional delay before it.
#[derive(Debug, Clone)]
pub struct ScriptedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// How long the server waits before responding. A delay longer than the client's timeout
    /// makes the request time out.
    pub delay: Duration,
}

impl ScriptedResponse {
    /// Builds a response with `status`, a JSON body `{"status":"accepted"}` and no delay.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: r#"{"status":"accepted"}"#.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// Builds a 429 with `Retry-After: <seconds>`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::status(429).with_header("retry-after", &retry_after_secs.to_string())
    }

    /// Builds a 200 sent only after `delay`, to make the client time out.
    pub fn hang(delay: Duration) -> Self {
        Self::status(200).with_delay(delay)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_body(mut self, body: &str) -> Self {
        self.body = body.to_string();
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request as the partner received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the server started handling the request (monotonic clock).
    pub received_at: Instant,
    /// The same moment on the wall clock.
    pub received_at_wall: SystemTime,
    /// The status of the server's response (sent too late for a request that timed out).
    pub response_status: u16,
}

impl RecordedRequest {
    /// Returns a header as a string, or `None` when it is missing or not UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Parses the body as JSON, panicking with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "partner request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Verifies the Standard Webhooks signature with `secret` (`whsec_...`), against the
    /// current time as the `standardwebhooks` crate requires.
    pub fn verify_signature(&self, secret: &str) -> Result<(), String> {
        let webhook = standardwebhooks::Webhook::new(secret).map_err(|e| e.to_string())?;
        // The crate takes `http` 1.x headers, which are the ones axum uses.
        webhook
            .verify(&self.body, &self.headers)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct Shared {
    script: Mutex<VecDeque<ScriptedResponse>>,
    default_response: Mutex<ScriptedResponse>,
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Notify,
}

/// The running partner server. It stops when dropped.
#[derive(Debug)]
pub struct PartnerServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl PartnerServer {
    /// Starts a server on `127.0.0.1` at a free port that responds with 200 until scripted.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            default_response: Mutex::new(ScriptedResponse::status(200)),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the partner server to 127.0.0.1:0");
        let address = listener.local_addr().expect("partner server address");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                eprintln!("partner server stopped with an error: {error}");
            }
        });
        Self {
            address,
            shared,
            shutdown: Some(shutdown),
        }
    }

    /// Returns the webhook URL, `http://127.0.0.1:PORT/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Appends responses to the script. Each request takes the next one, and when the script
    /// is empty, requests get the default response.
    pub fn script(&self, responses: impl IntoIterator<Item = ScriptedResponse>) {
        lock(&self.shared.script).extend(responses);
    }

    /// Sets the response used when the script is empty (200 at start).
    pub fn set_default(&self, response: ScriptedResponse) {
        *lock(&self.shared.default_response) = response;
    }

    /// Returns every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until at least `count` requests arrived and returns all of them, or panics after
    /// `timeout` with the number that did arrive.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "the partner received {} request(s) within {timeout:?}, expected {count}",
                    self.requests().len()
                );
            }
        }
    }

    /// Waits `quiet` and returns every request, to check that no more arrive.
    pub async fn requests_after(&self, quiet: Duration) -> Vec<RecordedRequest> {
        tokio::time::sleep(quiet).await;
        self.requests()
    }
}

impl Drop for PartnerServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let received_at = Instant::now();
    let received_at_wall = SystemTime::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();

    let scripted = lock(&shared.script).pop_front();
    let response = scripted.unwrap_or_else(|| lock(&shared.default_response).clone());

    lock(&shared.requests).push(RecordedRequest {
        method: parts.method,
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
        received_at,
        received_at_wall,
        response_status: response.status,
    });
    shared.arrived.notify_waiters();

    if !response.delay.is_zero() {
        tokio::time::sleep(response.delay).await;
    }
    to_response(&response)
}

fn to_response(scripted: &ScriptedResponse) -> Response {
    let status = StatusCode::from_u16(scripted.status).expect("a valid scripted HTTP status");
    let mut headers = HeaderMap::new();
    for (name, value) in &scripted.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid scripted header name");
        let value = HeaderValue::from_str(value).expect("a valid scripted header value");
        headers.append(name, value);
    }
    (status, headers, scripted.body.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn partner_follows_script_then_default() {
        let partner = PartnerServer::start().await;
        partner.script([
            ScriptedResponse::status(500),
            ScriptedResponse::too_many_requests(2),
        ]);
        let client = reqwest::Client::new();
        let mut observed = Vec::new();
        for i in 0..3 {
            let response = client
                .post(partner.url())
                .header("content-type", "application/json")
                .body(format!(r#"{{"n":{i}}}"#))
                .send()
                .await
                .unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_string());
            observed.push((response.status().as_u16(), retry_after));
        }
        assert_eq!(
            observed,
            vec![(500, None), (429, Some("2".to_string())), (200, None)]
        );

        let requests = partner.wait_for_requests(3, Duration::from_secs(5)).await;
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[1].json(), serde_json::json!({"n": 1}));
        assert_eq!(requests[1].uri, "/webhook");
        assert_eq!(requests[1].header("content-type"), Some("application/json"));
        assert_eq!(requests[2].response_status, 200);
        assert!(requests[0].received_at <= requests[1].received_at);
    }

    #[tokio::test]
    async fn partner_hang_outlasts_client_timeout() {
        let partner = PartnerServer::start().await;
        partner.script([ScriptedResponse::hang(Duration::from_secs(5))]);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let error = client.post(partner.url()).send().await.unwrap_err();
        assert!(error.is_timeout(), "{error}");
        assert_eq!(partner.requests().len(), 1);
    }
}
