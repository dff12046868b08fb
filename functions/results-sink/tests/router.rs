//! Handler tests: requests through the router on a `MemoryStore` and a `MemoryInserter`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use enrichment_payload::{EnrichmentResult, ResultRecord};
use enrichment_runtime::bigquery::{InsertError, MemoryInserter};
use enrichment_runtime::storage::{MemoryStore, StorageError};
use http_body_util::BodyExt as _;
use pretty_assertions::assert_eq;
use results_sink::{Config, SinkState, router};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const BUCKET: &str = "results-archive";
const INPUT_EMAIL: &str = "jane.doe@example.com";

struct Harness {
    store: Arc<MemoryStore>,
    inserter: Arc<MemoryInserter>,
    app: axum::Router,
}

fn config(batch_max_wait: Duration) -> Config {
    Config {
        port: 8080,
        project: "test-project".to_string(),
        dataset: "enrichment".to_string(),
        results_table: "results".to_string(),
        archive_bucket: BUCKET.to_string(),
        batch_max_rows: 500,
        batch_max_wait,
        storage_emulator: None,
        bigquery_emulator: None,
    }
}

fn harness() -> Harness {
    harness_with(Duration::from_millis(5))
}

fn harness_with(batch_max_wait: Duration) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let inserter = Arc::new(MemoryInserter::new());
    let state = SinkState::new(&config(batch_max_wait), store.clone(), inserter.clone());
    Harness {
        store,
        inserter,
        app: router(state),
    }
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn record(tenant_id: Option<&str>) -> ResultRecord {
    let mut body = json!({
        "input_email": INPUT_EMAIL,
        "work_email": "jane@acme-corp.com",
        "phone_number": "+1 (415) 555-2671",
        "name": "Jane Doe",
        "company_domain": "https://www.acme-corp.com/about",
        "seniority": "senior",
    });
    if let Some(tenant_id) = tenant_id {
        body["tenant_id"] = json!(tenant_id);
    }
    let result = EnrichmentResult::from_json(&body).unwrap();
    ResultRecord::new(
        "acme",
        "msg_2fQxV9k3",
        time("2024-05-02T10:15:29.500Z"),
        result,
    )
}

fn push_body(message_id: &str, data: &[u8]) -> Value {
    json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": {"partner_id": "acme", "schema_version": "1", "delivery_id": "msg_2fQxV9k3"},
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2024-05-02T10:15:30.123Z",
            "publish_time": "2024-05-02T10:15:30.123Z",
        },
        "subscription": "projects/test-project/subscriptions/results-sink",
    })
}

fn push_request(body: &Value) -> Request<Body> {
    Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

async fn push(app: &axum::Router, message_id: &str, data: &[u8]) -> StatusCode {
    send(app, push_request(&push_body(message_id, data)))
        .await
        .0
}

fn archive_name(message_id: &str) -> String {
    format!("results/partner=acme/dt=2024-05-02/{message_id}.json")
}

#[tokio::test]
async fn push_stores_row_and_archive() {
    let harness = harness();
    let record = record(Some("tenant-42"));
    let data = record.to_json_bytes();
    let before = Utc::now();

    let status = push(&harness.app, "1001", &data).await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    let rows = harness.inserter.rows("results");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].insert_id, "1001");
    let mut json = rows[0].json.clone();
    let stored_at = time(json["stored_at"].as_str().unwrap());
    assert!(
        stored_at >= before && stored_at <= Utc::now(),
        "stored_at {stored_at}"
    );
    json.as_object_mut().unwrap().remove("stored_at");
    assert_eq!(
        json,
        json!({
            "message_id": "1001",
            "partner_id": "acme",
            "tenant_id": "tenant-42",
            "input_email": INPUT_EMAIL,
            "work_email": "jane@acme-corp.com",
            "phone_number": "+14155552671",
            "linkedin_url": null,
            "name": "Jane Doe",
            "company_domain": "acme-corp.com",
            "extra": "{\"seniority\":\"senior\"}",
            "delivery_id": "msg_2fQxV9k3",
            "received_at": "2024-05-02T10:15:29.500000Z",
            "published_at": "2024-05-02T10:15:30.123000Z",
        })
    );

    let (meta, content) = harness.store.get(BUCKET, &archive_name("1001")).unwrap();
    assert_eq!(content.to_vec(), data);
    assert_eq!(meta.content_type.as_deref(), Some("application/json"));
    assert_eq!(harness.store.list(BUCKET, ""), vec![archive_name("1001")]);
}

#[tokio::test]
async fn duplicate_push_keeps_one_archive_object() {
    let harness = harness();
    let data = record(None).to_json_bytes();

    let first = push(&harness.app, "1002", &data).await;
    let second = push(&harness.app, "1002", &data).await;

    assert_eq!(first, StatusCode::NO_CONTENT);
    assert_eq!(second, StatusCode::NO_CONTENT);
    assert_eq!(harness.store.list(BUCKET, ""), vec![archive_name("1002")]);
    let (meta, content) = harness.store.get(BUCKET, &archive_name("1002")).unwrap();
    assert_eq!(content.to_vec(), data);
    assert_eq!(meta.generation, 1);
    // Both deliveries reach BigQuery with the same insertId, which it uses to drop the second.
    let insert_ids: Vec<String> = harness
        .inserter
        .rows("results")
        .into_iter()
        .map(|row| row.insert_id)
        .collect();
    assert_eq!(insert_ids, vec!["1002".to_string(), "1002".to_string()]);
}

#[tokio::test]
async fn cloud_event_message_published_stored() {
    let harness = harness();
    let data = record(None).to_json_bytes();
    let event_data = json!({
        "subscription": "projects/test-project/subscriptions/eventarc-results",
        "message": {
            "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            "data": base64::engine::general_purpose::STANDARD.encode(&data),
            "attributes": {"partner_id": "acme"},
            "messageId": "1003",
            "publishTime": "2024-05-02T10:15:30.123Z",
        },
    });
    let request = Request::post("/")
        .header("ce-specversion", "1.0")
        .header("ce-id", "1003")
        .header(
            "ce-source",
            "//pubsub.googleapis.com/projects/test-project/topics/results",
        )
        .header("ce-type", "google.cloud.pubsub.topic.v1.messagePublished")
        .header("content-type", "application/json")
        .body(Body::from(event_data.to_string()))
        .unwrap();

    let (status, _) = send(&harness.app, request).await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(harness.inserter.rows("results")[0].insert_id, "1003");
    assert_eq!(
        harness
            .store
            .get(BUCKET, &archive_name("1003"))
            .unwrap()
            .1
            .to_vec(),
        data
    );
}

async fn rejected_object(harness: &Harness, message_id: &str) -> Value {
    let (meta, content) = harness
        .store
        .get(BUCKET, &format!("rejected/{message_id}.json"))
        .unwrap_or_else(|| panic!("rejected/{message_id}.json is missing"));
    assert_eq!(meta.content_type.as_deref(), Some("application/json"));
    serde_json::from_slice(&content).unwrap()
}

#[tokio::test]
async fn poison_messages_go_to_rejected() {
    let mut unknown_version = serde_json::to_value(record(None)).unwrap();
    unknown_version["schema_version"] = json!(2);
    let mut invalid_phone = serde_json::to_value(record(None)).unwrap();
    invalid_phone["result"]["phone_number"] = json!("call me");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("2001", b"not json".to_vec(), "not_json"),
        (
            "2002",
            unknown_version.to_string().into_bytes(),
            "unknown_schema_version",
        ),
        (
            "2003",
            invalid_phone.to_string().into_bytes(),
            "invalid_fields",
        ),
        ("2004", b"[1, 2]".to_vec(), "malformed"),
    ];

    for (message_id, data, reason) in cases {
        let harness = harness();

        let status = push(&harness.app, message_id, &data).await;

        assert_eq!(status, StatusCode::NO_CONTENT, "{reason}");
        let rejected = rejected_object(&harness, message_id).await;
        assert_eq!(rejected["message_id"], json!(message_id), "{reason}");
        assert_eq!(rejected["reason"], json!(reason));
        assert_eq!(
            rejected["message"]["data"],
            json!(base64::engine::general_purpose::STANDARD.encode(&data)),
            "{reason}"
        );
        assert_eq!(rejected["message"]["messageId"], json!(message_id));
        assert_eq!(
            rejected["subscription"],
            json!("projects/test-project/subscriptions/results-sink")
        );
        assert_eq!(
            harness.store.list(BUCKET, ""),
            vec![format!("rejected/{message_id}.json")],
            "{reason}"
        );
        assert_eq!(harness.inserter.calls(), 0, "{reason}");
    }
}

#[tokio::test]
async fn bad_base64_goes_to_rejected() {
    let harness = harness();
    let body = json!({
        "message": {"data": "%%%not-base64", "messageId": "2005", "publishTime": "2024-05-02T10:15:30Z"},
        "subscription": "projects/test-project/subscriptions/results-sink",
    });

    let (status, _) = send(&harness.app, push_request(&body)).await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    let rejected = rejected_object(&harness, "2005").await;
    assert_eq!(rejected["reason"], json!("invalid_message"));
    assert_eq!(
        rejected["message"],
        json!({"data": "%%%not-base64", "messageId": "2005", "publishTime": "2024-05-02T10:15:30Z"})
    );
    assert_eq!(harness.inserter.calls(), 0);
}

#[tokio::test]
async fn requests_without_message_id_get_400() {
    let harness = harness();
    let cases: Vec<Request<Body>> = vec![
        push_request(&json!({"message": {"data": "aGVsbG8="}})),
        push_request(&json!({"subscription": "projects/p/subscriptions/s"})),
        Request::post("/").body(Body::from("not json")).unwrap(),
        Request::post("/")
            .header("ce-specversion", "1.0")
            .header("ce-source", "//pubsub.googleapis.com/projects/p/topics/t")
            .header("ce-type", "google.cloud.pubsub.topic.v1.messagePublished")
            .header("content-type", "application/json")
            .body(Body::from(push_body("2006", b"{}").to_string()))
            .unwrap(),
    ];

    for (index, request) in cases.into_iter().enumerate() {
        let (status, body) = send(&harness.app, request).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "case {index}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["status"], json!("error"), "case {index}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("The request is not a Pub/Sub delivery: "),
            "case {index}: {body}"
        );
    }
    assert_eq!(harness.store.list(BUCKET, ""), Vec::<String>::new());
    assert_eq!(harness.inserter.calls(), 0);
}

#[tokio::test]
async fn bigquery_outage_then_redelivery() {
    let harness = harness();
    let data = record(None).to_json_bytes();
    harness.inserter.fail_with(InsertError::Request {
        retryable: true,
        message: "connection refused".to_string(),
    });

    let during = push(&harness.app, "3001", &data).await;
    harness.inserter.recover();
    let after = push(&harness.app, "3001", &data).await;

    assert_eq!(during, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(after, StatusCode::NO_CONTENT);
    assert_eq!(harness.store.list(BUCKET, ""), vec![archive_name("3001")]);
    assert_eq!(harness.inserter.rows("results").len(), 1);
    assert_eq!(harness.inserter.calls(), 2);
}

#[tokio::test]
async fn bigquery_permanent_error_gets_500() {
    let harness = harness();
    harness.inserter.fail_with(InsertError::Request {
        retryable: false,
        message: "permission denied".to_string(),
    });

    let status = push(&harness.app, "3002", &record(None).to_json_bytes()).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn storage_errors_choose_status() {
    let cases = [
        (
            StorageError::Transient("503 from storage".to_string()),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            StorageError::Permanent("403 from storage".to_string()),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];

    for (error, expected) in cases {
        let harness = harness();
        harness.store.fail_next(error);

        let status = push(&harness.app, "3003", &record(None).to_json_bytes()).await;

        assert_eq!(status, expected);
        assert_eq!(harness.store.list(BUCKET, ""), Vec::<String>::new());
        assert_eq!(harness.inserter.rows("results").len(), 1);
    }
}

#[tokio::test]
async fn rejected_write_failure_gets_503() {
    let harness = harness();
    harness
        .store
        .fail_next(StorageError::Transient("timeout".to_string()));

    let first = push(&harness.app, "3004", b"not json").await;
    let second = push(&harness.app, "3004", b"not json").await;

    assert_eq!(first, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second, StatusCode::NO_CONTENT);
    assert_eq!(
        harness.store.list(BUCKET, ""),
        vec!["rejected/3004.json".to_string()]
    );
}

#[tokio::test]
async fn row_error_fails_only_its_request() {
    let harness = harness_with(Duration::from_millis(200));
    harness.inserter.reject_insert_id("4002");
    let data = record(None).to_json_bytes();

    let (good, bad) = tokio::join!(
        push(&harness.app, "4001", &data),
        push(&harness.app, "4002", &data),
    );

    assert_eq!(good, StatusCode::NO_CONTENT);
    assert_eq!(bad, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(harness.inserter.calls(), 1);
    let insert_ids: Vec<String> = harness
        .inserter
        .rows("results")
        .into_iter()
        .map(|row| row.insert_id)
        .collect();
    assert_eq!(insert_ids, vec!["4001".to_string()]);
}

#[tokio::test]
async fn concurrent_pushes_share_inserts() {
    let harness = harness_with(Duration::from_millis(200));
    let data = record(None).to_json_bytes();

    let pushes = (0..100).map(|index| {
        let app = harness.app.clone();
        let data = data.clone();
        async move { push(&app, &format!("50{index:02}"), &data).await }
    });
    let statuses = futures::future::join_all(pushes).await;

    assert_eq!(statuses, vec![StatusCode::NO_CONTENT; 100]);
    assert_eq!(harness.inserter.rows("results").len(), 100);
    assert_eq!(harness.inserter.calls(), 1);
}
