//! The whole pipeline on the emulators, each function on its own HTTP server on 127.0.0.1:0.
//!
//! An upload to fake-gcs-server publishes a notification to the Pub/Sub emulator, whose push
//! subscription delivers it to the sender. The sender's local queue sends each email, signed,
//! to the simulated partner, which calls the receiver back, signed. The receiver publishes to a
//! results topic, whose push subscription delivers to the sink, which writes BigQuery rows on
//! the BigQuery emulator and archive objects on fake-gcs-server.
//!
//! fake-gcs-server publishes every bucket's notifications to one topic
//! (`GCS_NOTIFICATION_TOPIC`), and concurrent tests upload to it. The push subscription carries
//! a `bucketId` filter as production would, but the Pub/Sub emulator of `tests/run.sh` stores
//! the filter without applying it. A relay in front of the sender therefore acknowledges other
//! buckets' notifications without passing them on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use enrichment_runtime::config::Env;
use enrichment_runtime::pubsub::GooglePublisher;
use enrichment_runtime::storage::GcsStore;
use integration_tests::bigquery::TestDataset;
use integration_tests::pubsub::PubsubAdmin;
use integration_tests::storage::{StorageEmulator, Upload};
use integration_tests::{require_env, unique_suffix};
use local_stack::enrichment::callback_body;
use local_stack::partner::{PartnerConfig, PartnerStats, SimulatedPartner};
use local_stack::secrets::new_webhook_secret;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PARTNER_ID: &str = "e2e-partner";

/// Seven rows: five valid unique (tenant, email) pairs, one invalid email and one repeat. The
/// last row has no tenant, so the path's tenant (`initech`) applies.
const CONTACTS_CSV: &str = "\
input_email,tenant_id
jane.doe@example.com,acme
john.roe@example.org,acme
Mira.Okafor@Example.NET,globex
jane.doe@example.com,globex
not-an-email,globex
jane.doe@example.com,acme
sam.lee@example.com,
";

/// Returns the `(tenant_id, input_email)` pairs the view must return, each once, in order.
fn expected_view() -> Vec<(String, String)> {
    [
        ("acme", "jane.doe@example.com"),
        ("acme", "john.roe@example.org"),
        ("globex", "Mira.Okafor@example.net"),
        ("globex", "jane.doe@example.com"),
        ("initech", "sam.lee@example.com"),
    ]
    .into_iter()
    .map(|(tenant, email)| (tenant.to_string(), email.to_string()))
    .collect()
}

/// Serves `router` on 127.0.0.1:0 for the rest of the test and returns its URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

#[derive(Clone)]
struct Relay {
    bucket: String,
    target: Router,
}

/// Passes a Pub/Sub push request on to the sender when its message's `bucketId` attribute is
/// the test's bucket, and acknowledges any other with 204.
async fn relay(State(relay): State<Relay>, headers: HeaderMap, body: Bytes) -> Response {
    let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if envelope["message"]["attributes"]["bucketId"] != relay.bucket.as_str() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut request = Request::post("/").body(Body::from(body)).unwrap();
    *request.headers_mut() = headers;
    match relay.target.oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    }
}

/// Creates a push subscription with a filter, which the helper in `support` does not take.
async fn create_filtered_push_subscription(
    admin: &PubsubAdmin,
    subscription_id: &str,
    topic_id: &str,
    filter: &str,
    endpoint: &str,
) {
    let url = format!(
        "{}/v1/{}",
        admin.base_url(),
        admin.subscription_path(subscription_id)
    );
    let body = json!({
        "topic": admin.topic_path(topic_id),
        "ackDeadlineSeconds": 60,
        "filter": filter,
        "pushConfig": {"pushEndpoint": endpoint},
    });
    let response = reqwest::Client::new()
        .put(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(
        status.is_success(),
        "creating {subscription_id} failed with {status}: {text}"
    );
}

/// Returns column `name` of a query row as text: the REST API returns every scalar as a
/// string, and a NULL becomes the empty string.
fn column(row: &BTreeMap<String, Value>, name: &str) -> String {
    row[name].as_str().unwrap_or_default().to_string()
}

async fn wait_for_count(dataset: &TestDataset, sql: &str, expected: u64, timeout: Duration) {
    let started = Instant::now();
    loop {
        let count = dataset.count(sql).await;
        if count == expected {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out with {count} instead of {expected} from: {sql}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_reaches_latest_results() {
    let project = require_env("GOOGLE_CLOUD_PROJECT");
    let storage_host = require_env("STORAGE_EMULATOR_HOST");
    let pubsub_host = require_env("PUBSUB_EMULATOR_HOST");
    let bigquery_host = require_env("BIGQUERY_EMULATOR_HOST");
    let notification_topic = require_env("GCS_NOTIFICATION_TOPIC");
    enrichment_runtime::server::install_crypto_provider();

    let suffix = unique_suffix();
    let input_bucket = format!("e2e-input-{suffix}");
    let archive_bucket = format!("e2e-archive-{suffix}");
    let results_topic = format!("e2e-results-{suffix}");
    let storage = StorageEmulator::from_env();
    storage.create_bucket(&input_bucket).await;
    storage.create_bucket(&archive_bucket).await;
    let dataset = TestDataset::create("e2e").await;
    let pubsub = PubsubAdmin::from_env();
    pubsub.create_topic(&results_topic).await;
    let gcs = Arc::new(GcsStore::connect(Some(&storage_host)).await.unwrap());

    // The sink, fed by a push subscription on the results topic.
    let sink_config = results_sink::Config::from_source(&Env::from_pairs([
        ("GOOGLE_CLOUD_PROJECT", project.as_str()),
        ("BIGQUERY_DATASET", dataset.dataset.as_str()),
        ("ARCHIVE_BUCKET", archive_bucket.as_str()),
        ("STORAGE_EMULATOR_HOST", storage_host.as_str()),
        ("BIGQUERY_EMULATOR_HOST", bigquery_host.as_str()),
    ]))
    .unwrap();
    let sink =
        results_sink::SinkState::new(&sink_config, gcs.clone(), Arc::new(dataset.inserter()));
    let sink_url = serve(results_sink::router(sink)).await;
    pubsub
        .create_push_subscription(&format!("e2e-sink-{suffix}"), &results_topic, &sink_url)
        .await;

    // The receiver, publishing to the results topic on the emulator.
    let receiver_secret = new_webhook_secret();
    let receiver_config = inbound_receiver::Config::from_env_with(&Env::from_pairs([
        ("GOOGLE_CLOUD_PROJECT", project.as_str()),
        ("PARTNER_ID", PARTNER_ID),
        ("RESULTS_TOPIC", results_topic.as_str()),
        ("AUTH_MODE", "signature"),
        ("WEBHOOK_SECRETS", receiver_secret.as_str()),
        ("PUBSUB_EMULATOR_HOST", pubsub_host.as_str()),
    ]))
    .unwrap();
    let publisher = GooglePublisher::connect(
        &receiver_config.results_topic,
        receiver_config.pubsub_emulator.as_deref(),
        receiver_config.publish_timeout,
    )
    .await
    .unwrap();
    let receiver = inbound_receiver::AppState::new(&receiver_config, Arc::new(publisher));
    let receiver_url = serve(inbound_receiver::router(receiver)).await;

    // The partner: verifies the sender's signature and calls the receiver back, signed.
    let partner_secret = new_webhook_secret();
    let partner = SimulatedPartner::new(PartnerConfig {
        request_secret: Some(partner_secret.clone()),
        callback_url: receiver_url,
        callback_secret: receiver_secret,
        callback_delay: Duration::from_millis(20),
        failure_rate: 0.0,
        seed: 1,
        callback_max_attempts: 5,
        callback_retry_base: Duration::from_millis(200),
    })
    .unwrap();
    let partner_url = serve(partner.router()).await;

    // The sender with its local queue, behind the bucket filter relay.
    let mut sender_config = outbound_sender::Config::local(&project, PARTNER_ID, &partner_url);
    sender_config.signing_secret =
        Some(outbound_sender::config::SigningSecret::new(partner_secret).unwrap());
    sender_config.min_request_interval = Duration::from_millis(50);
    sender_config.retry_base_delay = Duration::from_millis(100);
    sender_config.bigquery_dataset = dataset.dataset.clone();
    let sender = outbound_sender::AppState::new(
        sender_config,
        outbound_sender::Backends {
            store: gcs.clone(),
            inserter: Arc::new(dataset.inserter()),
            queue: outbound_sender::QueueChoice::Local,
        },
    )
    .unwrap();
    let relay_router = Router::new().route("/", post(relay)).with_state(Relay {
        bucket: input_bucket.clone(),
        target: outbound_sender::router(sender.clone()),
    });
    let relay_url = serve(relay_router).await;
    create_filtered_push_subscription(
        &pubsub,
        &format!("e2e-gcs-{suffix}"),
        &notification_topic,
        &format!("attributes.bucketId = \"{input_bucket}\""),
        &relay_url,
    )
    .await;

    storage
        .upload(
            &input_bucket,
            "incoming/initech/contacts.csv",
            CONTACTS_CSV.as_bytes().to_vec(),
            Upload {
                content_type: Some("text/csv".to_string()),
                ..Upload::default()
            },
        )
        .await;

    let results = dataset.table("results");
    let deliveries = dataset.table("deliveries");
    let view = dataset.table("latest_results");
    wait_for_count(
        &dataset,
        &format!("SELECT COUNT(*) AS n FROM {deliveries}"),
        7,
        Duration::from_secs(60),
    )
    .await;
    wait_for_count(
        &dataset,
        &format!("SELECT COUNT(*) AS n FROM {results}"),
        5,
        Duration::from_secs(60),
    )
    .await;
    // Redeliveries still in flight would show up as extra rows or objects now.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let rows = dataset
        .query(&format!(
            "SELECT tenant_id, input_email, name, company_domain, phone_number, linkedin_url \
             FROM {view} ORDER BY tenant_id, input_email"
        ))
        .await;
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|row| (column(row, "tenant_id"), column(row, "input_email")))
        .collect();
    assert_eq!(pairs, expected_view());

    // Each row carries the partner's enrichment for its email, normalised by the receiver.
    for row in &rows {
        let email = column(row, "input_email");
        let sent = callback_body(&email, &column(row, "tenant_id"));
        let phone: String = sent["phone_number"]
            .as_str()
            .unwrap()
            .chars()
            .filter(|c| !matches!(c, ' ' | '(' | ')' | '-'))
            .collect();
        assert_eq!(
            column(row, "name"),
            sent["name"].as_str().unwrap(),
            "{email}"
        );
        assert_eq!(
            column(row, "company_domain"),
            sent["company_domain"].as_str().unwrap(),
            "{email}"
        );
        assert_eq!(column(row, "phone_number"), phone, "{email}");
        assert_eq!(
            column(row, "linkedin_url"),
            sent["linkedin_url"].as_str().unwrap(),
            "{email}"
        );
    }

    let statuses = dataset
        .query(&format!(
            "SELECT status, COUNT(*) AS n FROM {deliveries} GROUP BY status ORDER BY status"
        ))
        .await;
    let statuses: Vec<(String, String)> = statuses
        .iter()
        .map(|row| (column(row, "status"), column(row, "n")))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("delivered".to_string(), "5".to_string()),
            ("duplicate".to_string(), "1".to_string()),
            ("invalid_email".to_string(), "1".to_string()),
        ]
    );
    assert_eq!(
        dataset
            .count(&format!("SELECT COUNT(*) AS n FROM {results}"))
            .await,
        5
    );

    let archived = storage
        .list(&archive_bucket, &format!("results/partner={PARTNER_ID}/"))
        .await;
    assert_eq!(archived.len(), 5, "{archived:?}");

    assert_eq!(
        partner.stats(),
        PartnerStats {
            requests: 5,
            accepted: 5,
            callbacks_accepted: 5,
            ..PartnerStats::default()
        }
    );
}
