//! The inbound receiver against the Pub/Sub emulator: a real server on 127.0.0.1:0 with the
//! production publisher, signed requests over HTTP, and the published message pulled back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enrichment_runtime::config::emulator_url;
use enrichment_runtime::pubsub::GooglePublisher;
use enrichment_runtime::server::serve_on;
use inbound_receiver::config::{AuthConfig, Secret};
use inbound_receiver::{AppState, Config, router};
use integration_tests::pubsub::PubsubAdmin;
use integration_tests::{require_env, unique_suffix};
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use tokio::sync::oneshot;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WRONG_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const RESULT: &str = r#"{"input_email":"jane.doe@example.com","work_email":"jane@acme.io","phone_number":"+1234567890","linkedin_url":"https://linkedin.com/in/user","name":"Jane Doe","company_domain":"company.com"}"#;

/// A receiver serving on 127.0.0.1:0, stopped when dropped.
struct Receiver {
    url: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn config(results_topic: String, pubsub_emulator: String) -> Config {
    Config {
        port: 0,
        project: require_env("GOOGLE_CLOUD_PROJECT"),
        partner_id: "acme".into(),
        results_topic,
        auth: AuthConfig::Signature {
            secrets: vec![Secret::new(SECRET)],
            tolerance: Duration::from_secs(300),
        },
        max_body_bytes: 65536,
        pubsub_emulator: Some(pubsub_emulator),
        publish_timeout: Duration::from_secs(10),
    }
}

async fn start_receiver(config: Config) -> Receiver {
    let publisher = GooglePublisher::connect(
        &config.results_topic,
        config.pubsub_emulator.as_deref(),
        config.publish_timeout,
    )
    .await
    .unwrap();
    let app = router(AppState::new(&config, Arc::new(publisher)));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_on(listener, app, async {
        let _ = stopped.await;
    }));
    Receiver {
        url: format!("http://{addr}/"),
        stop: Some(stop),
    }
}

/// Creates a unique topic with a pull subscription and starts a receiver publishing to it.
async fn setup() -> (PubsubAdmin, String, Receiver) {
    let admin = PubsubAdmin::from_env();
    let suffix = unique_suffix();
    let topic_id = format!("results-{suffix}");
    let subscription_id = format!("results-pull-{suffix}");
    let topic = admin.create_topic(&topic_id).await;
    admin.create_subscription(&subscription_id, &topic_id).await;

    let emulator = emulator_url(&require_env("PUBSUB_EMULATOR_HOST")).unwrap();
    let receiver = start_receiver(config(topic, emulator)).await;
    (admin, subscription_id, receiver)
}

fn client() -> reqwest::Client {
    enrichment_runtime::server::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Builds a JSON POST signed with `secret` at `timestamp`.
fn signed(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &str,
) -> reqwest::RequestBuilder {
    signed_as(client, url, "application/json", secret, id, timestamp, body)
}

/// Builds a POST with `content_type`, signed with `secret` at `timestamp`.
fn signed_as(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &str,
) -> reqwest::RequestBuilder {
    let signature = Webhook::new(secret)
        .unwrap()
        .sign(id, timestamp, body.as_bytes())
        .unwrap();
    client
        .post(url)
        .header("content-type", content_type)
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
}

async fn status_and_body(
    request: reqwest::RequestBuilder,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, headers, body)
}

#[tokio::test]
async fn signed_result_published_to_topic() {
    let (admin, subscription, receiver) = setup().await;
    let client = client();

    let request = signed(&client, &receiver.url, SECRET, "msg_2f9a", now(), RESULT);
    let (status, _, body) = status_and_body(request).await;

    assert_eq!(status, 200, "body {body}");
    let messages = admin
        .pull_exactly(&subscription, 1, Duration::from_secs(10))
        .await;
    let message = &messages[0];
    assert_eq!(
        body,
        json!({
            "status": "success",
            "message": "Enrichment data received and processed",
            "input_email": "jane.doe@example.com",
            "message_id": message.message_id,
        })
    );
    assert_eq!(
        message.attributes,
        BTreeMap::from([
            ("partner_id".to_string(), "acme".to_string()),
            ("schema_version".to_string(), "1".to_string()),
            ("delivery_id".to_string(), "msg_2f9a".to_string()),
        ])
    );

    let mut data: Value = serde_json::from_slice(&message.data).unwrap();
    let received_at = data["received_at"].take();
    assert!(
        chrono::DateTime::parse_from_rfc3339(received_at.as_str().unwrap()).is_ok(),
        "received_at {received_at}"
    );
    assert_eq!(
        data,
        json!({
            "schema_version": 1,
            "partner_id": "acme",
            "delivery_id": "msg_2f9a",
            "received_at": null,
            "result": {
                "input_email": "jane.doe@example.com",
                "work_email": "jane@acme.io",
                "phone_number": "+1234567890",
                "linkedin_url": "https://linkedin.com/in/user",
                "name": "Jane Doe",
                "company_domain": "company.com",
                "tenant_id": null,
            },
            "extra": {},
        })
    );
}

/// Every rejected request gets its status and nothing reaches the topic.
#[tokio::test]
async fn rejected_requests_publish_nothing() {
    let (admin, subscription, receiver) = setup().await;
    let client = client();
    let url = receiver.url.as_str();
    let oversized = format!(
        r#"{{"input_email":"jane.doe@example.com","note":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let invalid = r#"{"input_email":"jane.doe@example.com","phone_number":"12345","linkedin_url":"https://example.com/in/user"}"#;

    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "unsigned",
            client
                .post(url)
                .header("content-type", "application/json")
                .body(RESULT),
            401,
        ),
        (
            "wrong signature",
            signed(&client, url, WRONG_SECRET, "msg_1", now(), RESULT),
            401,
        ),
        (
            "timestamp 10 minutes old",
            signed(&client, url, SECRET, "msg_1", now() - 600, RESULT),
            401,
        ),
        (
            "timestamp 10 minutes ahead",
            signed(&client, url, SECRET, "msg_1", now() + 600, RESULT),
            401,
        ),
        (
            "70 KiB body",
            signed(&client, url, SECRET, "msg_1", now(), &oversized),
            413,
        ),
        (
            "text/plain",
            signed_as(&client, url, "text/plain", SECRET, "msg_1", now(), RESULT),
            415,
        ),
        ("GET /", client.get(url), 405),
        (
            "invalid phone and LinkedIn URL",
            signed(&client, url, SECRET, "msg_1", now(), invalid),
            400,
        ),
    ];

    for (case, request, expected_status) in cases {
        let (status, headers, body) = status_and_body(request).await;
        assert_eq!(status, expected_status, "{case}: body {body}");
        assert_eq!(body["status"], "error", "{case}");
        if expected_status == 405 {
            assert_eq!(headers["allow"], "POST", "{case}");
        }
        if expected_status == 400 {
            let fields: Vec<(&str, &str)> = body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|error| {
                    (
                        error["field"].as_str().unwrap(),
                        error["code"].as_str().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                fields,
                vec![
                    ("phone_number", "invalid_e164"),
                    ("linkedin_url", "not_linkedin")
                ],
                "{case}"
            );
        }
    }

    // A valid request afterwards is the only message on the topic.
    let request = signed(&client, url, SECRET, "msg_last", now(), RESULT);
    let (status, _, body) = status_and_body(request).await;
    assert_eq!(status, 200, "body {body}");
    let messages = admin
        .pull_exactly(&subscription, 1, Duration::from_secs(10))
        .await;
    assert_eq!(messages[0].attributes["delivery_id"], "msg_last");
    assert_eq!(body["message_id"], messages[0].message_id.as_str());
}

/// With Pub/Sub unreachable the partner gets a 503 with `Retry-After` within 12 s, which is the
/// publish timeout of 10 s plus a margin.
#[tokio::test]
async fn unreachable_pubsub_is_503() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let project = require_env("GOOGLE_CLOUD_PROJECT");
    let topic = format!("projects/{project}/topics/results-{}", unique_suffix());
    let receiver = start_receiver(config(topic, format!("http://{closed}"))).await;
    let client = client();

    let started = Instant::now();
    let request = signed(&client, &receiver.url, SECRET, "msg_1", now(), RESULT);
    let (status, headers, body) = status_and_body(request).await;
    let elapsed = started.elapsed();

    assert_eq!(status, 503, "body {body}");
    assert_eq!(headers["retry-after"], "10");
    assert_eq!(
        body,
        json!({
            "status": "error",
            "message": "The result could not be stored; retry after 10 seconds.",
            "errors": [],
        })
    );
    assert!(elapsed < Duration::from_secs(12), "elapsed {elapsed:?}");
}
