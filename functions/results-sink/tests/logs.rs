//! Log output of the handler: one span per message with its ids and the keyed hash of the
//! input email, never the personal data itself.
//!
//! This test has a binary of its own because it installs a thread-local subscriber, and tracing
//! caches per call site whether anything listens. Tests on other threads of the same process
//! could make that cache skip this subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use enrichment_payload::{EnrichmentResult, ResultRecord};
use enrichment_runtime::bigquery::MemoryInserter;
use enrichment_runtime::storage::MemoryStore;
use results_sink::{Config, SinkState, router};
use serde_json::json;
use tower::ServiceExt as _;

const INPUT_EMAIL: &str = "jane.doe@example.com";

fn config() -> Config {
    Config {
        port: 8080,
        project: "test-project".to_string(),
        dataset: "enrichment".to_string(),
        results_table: "results".to_string(),
        archive_bucket: "results-archive".to_string(),
        batch_max_rows: 500,
        batch_max_wait: Duration::from_millis(5),
        storage_emulator: None,
        bigquery_emulator: None,
    }
}

fn record_bytes() -> Vec<u8> {
    let result = EnrichmentResult::from_json(&json!({
        "input_email": INPUT_EMAIL,
        "work_email": "jane@acme-corp.com",
        "phone_number": "+14155552671",
        "name": "Jane Doe",
    }))
    .unwrap();
    let received_at = DateTime::parse_from_rfc3339("2024-05-02T10:15:29.500Z")
        .unwrap()
        .with_timezone(&Utc);
    ResultRecord::new("acme", "msg_2fQxV9k3", received_at, result).to_json_bytes()
}

/// Collects formatted log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_hash_not_email() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = router(SinkState::new(
        &config(),
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryInserter::new()),
    ));
    let body = json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(record_bytes()),
            "messageId": "6001",
            "publishTime": "2024-05-02T10:15:30.123Z",
        },
    });
    let request = Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();

    let status = app.oneshot(request).await.unwrap().status();

    assert_eq!(status, StatusCode::NO_CONTENT);
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let hash = enrichment_runtime::pii::hash(INPUT_EMAIL);
    assert!(logs.contains("result stored"), "{logs}");
    assert!(
        logs.contains(&format!("\"input_email_hash\":\"{hash}\"")),
        "{logs}"
    );
    assert!(logs.contains("\"message_id\":\"6001\""), "{logs}");
    assert!(logs.contains("\"partner_id\":\"acme\""), "{logs}");
    assert!(logs.contains("\"delivery_id\":\"msg_2fQxV9k3\""), "{logs}");
    assert!(!logs.contains(INPUT_EMAIL), "{logs}");
    assert!(!logs.contains("jane@acme-corp.com"), "{logs}");
    assert!(!logs.contains("Jane Doe"), "{logs}");
}
