//! The receiver under AWS Lambda: a function URL event through `lambda_http`, in process and
//! through the built binary talking to a stand-in Lambda runtime API.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::{Running, receiver_command};
use enrichment_runtime::pubsub::MemoryPublisher;
use http_body_util::BodyExt;
use inbound_receiver::config::{AuthConfig, Secret};
use inbound_receiver::{AppState, Config, router};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower::ServiceExt;

const FIXTURE: &str = include_str!("fixtures/lambda-function-url-post.json");
const TOKEN: &str = "fixture-token-123";

fn config() -> Config {
    Config {
        port: 8080,
        project: "test-project".into(),
        partner_id: "acme".into(),
        results_topic: "projects/test-project/topics/results".into(),
        auth: AuthConfig::Bearer {
            tokens: vec![Secret::new(TOKEN)],
        },
        max_body_bytes: 65536,
        pubsub_emulator: None,
        publish_timeout: Duration::from_secs(10),
    }
}

/// The fixture event converted by `lambda_http` reaches the router with its method, path,
/// headers and body intact.
#[tokio::test]
async fn function_url_event_through_router() {
    let publisher = Arc::new(MemoryPublisher::new());
    let router = router(AppState::new(&config(), publisher.clone()));
    let request = lambda_http::request::from_str(FIXTURE).unwrap();

    let response = router.oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        body,
        json!({
            "status": "success",
            "message": "Enrichment data received and processed",
            "input_email": "Jane.Doe@Example.com",
            "message_id": "1",
        })
    );
    let messages = publisher.messages();
    assert_eq!(messages[0].attributes["delivery_id"], "msg_fixture_0001");
    let data: Value = serde_json::from_slice(&messages[0].data).unwrap();
    assert_eq!(data["result"]["input_email"], "Jane.Doe@example.com");
    assert_eq!(data["result"]["phone_number"], "+1234567890");
}

/// Events queued for the stand-in runtime API and the responses the function posted back.
struct RuntimeApi {
    events: Mutex<VecDeque<(String, String)>>,
    responses: mpsc::UnboundedSender<(String, String)>,
}

async fn next_invocation(State(api): State<Arc<RuntimeApi>>) -> impl IntoResponse {
    let next = api.events.lock().unwrap().pop_front();
    let Some((request_id, event)) = next else {
        // No more events: hold the long poll open, as the real runtime API does.
        std::future::pending::<()>().await;
        unreachable!();
    };
    let deadline_ms = chrono::Utc::now().timestamp_millis() + 30_000;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", request_id.parse().unwrap());
    headers.insert("lambda-runtime-deadline-ms", deadline_ms.into());
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:eu-west-1:123456789012:function:inbound-receiver"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-65a0c0de-0123456789abcdef01234567".parse().unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    (headers, event)
}

async fn invocation_response(
    State(api): State<Arc<RuntimeApi>>,
    Path(request_id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = api.responses.send((request_id, body));
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(api): State<Arc<RuntimeApi>>,
    Path(request_id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = api
        .responses
        .send((request_id, format!("invocation error: {body}")));
    StatusCode::ACCEPTED
}

fn event_with(changes: impl FnOnce(&mut Value)) -> String {
    let mut event: Value = serde_json::from_str(FIXTURE).unwrap();
    changes(&mut event);
    event.to_string()
}

/// The built binary, with `AWS_LAMBDA_RUNTIME_API` set, serves function URL events through
/// `lambda_http` and posts each response back to the runtime API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_lambda_events() {
    let healthz = event_with(|event| {
        event["rawPath"] = json!("/healthz");
        event["requestContext"]["http"]["method"] = json!("GET");
        event["requestContext"]["http"]["path"] = json!("/healthz");
        event["body"] = Value::Null;
        event["headers"]
            .as_object_mut()
            .unwrap()
            .remove("content-length");
    });
    let no_token = event_with(|event| {
        event["headers"]
            .as_object_mut()
            .unwrap()
            .remove("authorization");
    });
    let (responses_tx, mut responses) = mpsc::unbounded_channel();
    let api = Arc::new(RuntimeApi {
        events: Mutex::new(VecDeque::from([
            ("req-healthz".to_string(), healthz),
            ("req-unauthorized".to_string(), no_token),
            ("req-publish".to_string(), FIXTURE.to_string()),
        ])),
        responses: responses_tx,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(invocation_error),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime_api = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Nothing listens on this port, so the publish fails at once and the response is a 503.
    let closed_port = common::free_port().to_string();
    let emulator = format!("127.0.0.1:{closed_port}");
    let vars = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "inbound-receiver"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("GOOGLE_CLOUD_PROJECT", "test-project"),
        ("PARTNER_ID", "acme"),
        ("RESULTS_TOPIC", "results"),
        ("AUTH_MODE", "bearer"),
        ("BEARER_TOKENS", TOKEN),
        ("PUBSUB_EMULATOR_HOST", emulator.as_str()),
        ("PUBLISH_TIMEOUT_SECS", "2"),
    ];
    let _receiver = Running::spawn(receiver_command(&vars));

    let mut received = Vec::new();
    for _ in 0..3 {
        let response = tokio::time::timeout(Duration::from_secs(30), responses.recv())
            .await
            .expect("no response from the function within 30 s")
            .unwrap();
        received.push(response);
    }

    let parse = |index: usize, request_id: &str| -> Value {
        assert_eq!(received[index].0, request_id);
        serde_json::from_str(&received[index].1)
            .unwrap_or_else(|_| panic!("not JSON: {}", received[index].1))
    };

    let healthz = parse(0, "req-healthz");
    assert_eq!(healthz["statusCode"], 200);
    let body: Value = serde_json::from_str(healthz["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"status": "ok"}));

    let unauthorized = parse(1, "req-unauthorized");
    assert_eq!(unauthorized["statusCode"], 401);
    assert_eq!(unauthorized["headers"]["www-authenticate"], "Bearer");
    let body: Value = serde_json::from_str(unauthorized["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({
            "status": "error",
            "message": "Missing bearer token; send an Authorization: Bearer <token> header.",
            "errors": [],
        })
    );

    let unavailable = parse(2, "req-publish");
    assert_eq!(unavailable["statusCode"], 503);
    assert_eq!(unavailable["headers"]["retry-after"], "10");
    assert_eq!(unavailable["headers"]["content-type"], "application/json");
}
