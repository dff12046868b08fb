//! Outbound sender end to end: files in fake-gcs-server, the sender served on 127.0.0.1 with
//! its local queue, and a real partner HTTP server on port 0. The policy tests keep the state
//! in memory and need no emulator; the others panic when the emulator variables are missing.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use enrichment_payload::{DeliveryRow, DeliveryStatus};
use enrichment_runtime::bigquery::{MemoryInserter, RowInserter};
use enrichment_runtime::storage::{GcsStore, MemoryStore, ObjectMeta, ObjectStore};
use integration_tests::bigquery::TestDataset;
use integration_tests::partner::{PartnerServer, RecordedRequest, ScriptedResponse};
use integration_tests::storage::{ObjectResource, StorageEmulator, Upload};
use integration_tests::{require_env, unique_suffix};
use outbound_sender::config::SigningSecret;
use outbound_sender::jobs::{self, SourceObject};
use outbound_sender::{AppState, Backends, Config, QueueChoice, router};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const PARTNER_ID: &str = "acme";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(30);
/// Latest arrival of a paced request after its due time that the gap checks accept. Arrival
/// times carry scheduling noise of a few milliseconds on an idle machine and more on a busy
/// one. A gap beyond this bound means the policy waited too long.
const LATE: Duration = Duration::from_millis(250);
/// Earliest arrival before its due time that the gap checks accept: two requests are
/// timestamped on arrival, so the gap between them can look a few milliseconds short.
const EARLY: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The sender served on `127.0.0.1:0` until dropped.
struct Sender {
    url: String,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Sender {
    async fn start(
        config: Config,
        store: Arc<dyn ObjectStore>,
        inserter: Arc<dyn RowInserter>,
    ) -> Self {
        let state = AppState::new(
            config,
            Backends {
                store,
                inserter,
                queue: QueueChoice::Local,
            },
        )
        .expect("sender state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(enrichment_runtime::server::serve_on(
            listener,
            router(state.clone()),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            url,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// Posts a trigger request and returns the status and body.
    async fn trigger(&self, (headers, body): &(Vec<(String, String)>, Vec<u8>)) -> (u16, String) {
        let mut request = reqwest::Client::new().post(&self.url).body(body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("trigger request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Waits until every job of `source` has finished.
    async fn wait_for(&self, source: &SourceObject) {
        let queue = self.state.local_queue().expect("the local queue");
        tokio::time::timeout(WAIT, queue.wait_for_source(source))
            .await
            .unwrap_or_else(|_| panic!("the jobs of {source:?} did not finish within {WAIT:?}"));
    }
}

/// Returns a sender configuration with the local queue, signing, and short delays.
fn test_config(partner_url: &str) -> Config {
    Config {
        signing_secret: Some(SigningSecret::new(SECRET).unwrap()),
        min_request_interval: Duration::from_millis(100),
        retry_base_delay: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..Config::local("test-project", PARTNER_ID, partner_url)
    }
}

/// Builds the object resource JSON as Cloud Storage puts it in events: numbers as strings.
fn resource_json(object: &ObjectResource) -> Value {
    let mut resource = json!({
        "kind": "storage#object",
        "id": format!("{}/{}/{}", object.bucket, object.name, object.generation),
        "bucket": object.bucket,
        "name": object.name,
        "generation": object.generation,
        "metageneration": "1",
        "size": object.size,
        "timeCreated": "2024-05-01T12:00:00.000Z",
        "updated": "2024-05-01T12:00:00.000Z",
        "storageClass": "STANDARD",
    });
    if let Some(content_type) = &object.content_type {
        resource["contentType"] = json!(content_type);
    }
    if let Some(content_encoding) = &object.content_encoding {
        resource["contentEncoding"] = json!(content_encoding);
    }
    if let Some(metadata) = &object.metadata {
        resource["metadata"] = json!(metadata);
    }
    resource
}

/// Builds an Eventarc CloudEvent in binary mode for a finalized object.
fn cloud_event(object: &ObjectResource) -> (Vec<(String, String)>, Vec<u8>) {
    let headers = [
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", format!("evt-{}", unique_suffix())),
        (
            "ce-source",
            format!(
                "//storage.googleapis.com/projects/_/buckets/{}",
                object.bucket
            ),
        ),
        (
            "ce-type",
            "google.cloud.storage.object.v1.finalized".to_string(),
        ),
        ("ce-subject", format!("objects/{}", object.name)),
        ("ce-time", "2024-05-01T12:00:00.000Z".to_string()),
        ("ce-bucket", object.bucket.clone()),
        ("content-type", "application/json".to_string()),
    ];
    let headers = headers
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    (headers, resource_json(object).to_string().into_bytes())
}

/// Builds a Cloud Storage notification as a Pub/Sub push delivers it, with the emulator's
/// field spellings (`messageId` and `message_id` both present).
fn pubsub_notification(object: &ObjectResource) -> (Vec<(String, String)>, Vec<u8>) {
    let data = base64::engine::general_purpose::STANDARD.encode(resource_json(object).to_string());
    let message_id = numeric_id().to_string();
    let body = json!({
        "message": {
            "attributes": {
                "bucketId": object.bucket,
                "eventTime": "2024-05-01T12:00:00.000Z",
                "eventType": "OBJECT_FINALIZE",
                "objectGeneration": object.generation,
                "objectId": object.name,
                "payloadFormat": "JSON_API_V1",
            },
            "data": data,
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2024-05-01T12:00:01.000Z",
            "publish_time": "2024-05-01T12:00:01.000Z",
        },
        "subscription": "projects/test-project/subscriptions/sender",
    });
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    (headers, body.to_string().into_bytes())
}

/// Returns a unique decimal id, the form of Pub/Sub message ids.
fn numeric_id() -> u64 {
    u64::from_str_radix(&unique_suffix()[..12], 16).unwrap()
}

fn source_of(object: &ObjectResource) -> SourceObject {
    SourceObject {
        bucket: object.bucket.clone(),
        name: object.name.clone(),
        generation: object.generation_number(),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Checks the requests for one file: one per expected (tenant, email), each with the exact
/// body, JSON content type, the expected `webhook-id` and a valid signature.
fn assert_requests(requests: &[RecordedRequest], source: &SourceObject, expected: &[(&str, &str)]) {
    let mut bodies: Vec<String> = requests
        .iter()
        .map(|request| String::from_utf8(request.body.to_vec()).unwrap())
        .collect();
    bodies.sort();
    let mut expected_bodies: Vec<String> = expected
        .iter()
        .map(|(tenant, email)| format!(r#"{{"tenant_id":"{tenant}","input_email":"{email}"}}"#))
        .collect();
    expected_bodies.sort();
    assert_eq!(bodies, expected_bodies);

    for request in requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, "/webhook");
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body = request.json();
        let tenant = body["tenant_id"].as_str().unwrap();
        let email = body["input_email"].as_str().unwrap();
        let expected_id = jobs::webhook_id(source, tenant, &email.to_lowercase());
        assert_eq!(request.header("webhook-id"), Some(expected_id.as_str()));
        request
            .verify_signature(SECRET)
            .unwrap_or_else(|error| panic!("signature of {email} does not verify: {error}"));
    }
}

/// Creates a bucket of its own on fake-gcs-server.
async fn emulator_bucket(prefix: &str) -> (StorageEmulator, String, Arc<GcsStore>) {
    let storage = StorageEmulator::from_env();
    let bucket = format!("{prefix}-{}", unique_suffix());
    storage.create_bucket(&bucket).await;
    let store = GcsStore::connect(Some(&require_env("STORAGE_EMULATOR_HOST")))
        .await
        .expect("storage client");
    (storage, bucket, Arc::new(store))
}

// ---------------------------------------------------------------------------------------------
// Files in the storage emulator
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn csv_file_sends_each_unique_email_once() {
    let (storage, bucket, store) = emulator_bucket("sender-csv").await;
    let partner = PartnerServer::start().await;
    let inserter = Arc::new(MemoryInserter::new());
    let sender = Sender::start(test_config(&partner.url()), store, inserter.clone()).await;

    let csv = "\u{feff}Name,Email,Tenant_ID\r\n\
               Jane,jane@example.com,\r\n\
               John,John@Example.COM,t-2\r\n\
               \r\n\
               Jane again,JANE@example.com,\r\n\
               Nobody,not-an-email,\r\n\
               Ann,ann@example.com,t-1\r\n";
    let object = storage
        .upload(
            &bucket,
            "incoming/t-1/emails.csv",
            csv.as_bytes().to_vec(),
            Upload {
                content_type: Some("text/csv".into()),
                ..Upload::default()
            },
        )
        .await;

    let (status, body) = sender.trigger(&cloud_event(&object)).await;
    assert_eq!(status, 200, "{body}");
    let source = source_of(&object);
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(300)).await;
    assert_requests(
        &requests,
        &source,
        &[
            ("t-1", "jane@example.com"),
            ("t-2", "John@example.com"),
            ("t-1", "ann@example.com"),
        ],
    );

    let mut statuses: Vec<(String, String)> = inserter
        .rows("deliveries")
        .iter()
        .map(|row| {
            let status = row.json["status"].as_str().unwrap().to_string();
            let email = row.json["input_email"].as_str().unwrap().to_string();
            (email, status)
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            ("JANE@example.com".to_string(), "duplicate".to_string()),
            ("John@example.com".to_string(), "delivered".to_string()),
            ("ann@example.com".to_string(), "delivered".to_string()),
            ("jane@example.com".to_string(), "delivered".to_string()),
            ("not-an-email".to_string(), "invalid_email".to_string()),
        ]
    );
}

#[tokio::test]
async fn ndjson_file_from_pubsub_notification() {
    let (storage, bucket, store) = emulator_bucket("sender-ndjson").await;
    let partner = PartnerServer::start().await;
    let inserter = Arc::new(MemoryInserter::new());
    let sender = Sender::start(test_config(&partner.url()), store, inserter.clone()).await;

    let ndjson = concat!(
        "{\"input_email\":\"a@example.com\"}\n",
        "{\"input_email\":\"b@example.com\",\"tenant_id\":\"t-9\"}\n",
        "\n",
        "{\"input_email\":\"a@example.com\"}\n",
        "{broken\n",
    );
    let object = storage
        .upload(
            &bucket,
            "incoming/drop/batch-7.ndjson",
            ndjson.as_bytes().to_vec(),
            Upload {
                content_type: Some("application/x-ndjson".into()),
                metadata: BTreeMap::from([("tenant_id".to_string(), "t-meta".to_string())]),
                ..Upload::default()
            },
        )
        .await;

    let (status, body) = sender.trigger(&pubsub_notification(&object)).await;
    assert_eq!(status, 200, "{body}");
    let summary: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        summary,
        json!({
            "status": "enqueued", "format": "ndjson", "rows": 4, "enqueued": 2,
            "already_queued": 0, "invalid_email": 1, "missing_tenant": 0, "duplicate": 1,
        })
    );
    let source = source_of(&object);
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(300)).await;
    // The object's metadata names the tenant of rows without one, before the path does.
    assert_requests(
        &requests,
        &source,
        &[("t-meta", "a@example.com"), ("t-9", "b@example.com")],
    );
}

#[tokio::test]
async fn gzipped_text_files_with_and_without_transcoding() {
    let (storage, bucket, store) = emulator_bucket("sender-gzip").await;
    let partner = PartnerServer::start().await;
    let inserter = Arc::new(MemoryInserter::new());
    let sender = Sender::start(test_config(&partner.url()), store, inserter.clone()).await;

    let text = b"email\nx@example.com\ny@example.com\n\ny@example.com\n";
    // Stored compressed with `Content-Encoding: gzip`: Cloud Storage may serve it decompressed.
    let transcoded = storage
        .upload(
            &bucket,
            "incoming/t-3/list.txt",
            gzip(text),
            Upload {
                content_type: Some("text/plain".into()),
                content_encoding: Some("gzip".into()),
                ..Upload::default()
            },
        )
        .await;
    // Stored as a plain `.gz` file: always served compressed.
    let plain_gz = storage
        .upload(
            &bucket,
            "incoming/t-4/list.txt.gz",
            gzip(text),
            Upload {
                content_type: Some("application/gzip".into()),
                ..Upload::default()
            },
        )
        .await;

    for (object, tenant) in [(&transcoded, "t-3"), (&plain_gz, "t-4")] {
        let (status, body) = sender.trigger(&cloud_event(object)).await;
        assert_eq!(status, 200, "{body}");
        let source = source_of(object);
        sender.wait_for(&source).await;
        let requests: Vec<RecordedRequest> = partner
            .requests()
            .into_iter()
            .filter(|request| request.json()["tenant_id"] == tenant)
            .collect();
        assert_requests(
            &requests,
            &source,
            &[(tenant, "x@example.com"), (tenant, "y@example.com")],
        );
    }
    assert_eq!(
        partner
            .requests_after(Duration::from_millis(300))
            .await
            .len(),
        4
    );
}

#[tokio::test]
async fn corrupt_gzip_sends_rows_read_before_error() {
    let (storage, bucket, store) = emulator_bucket("sender-corrupt").await;
    let partner = PartnerServer::start().await;
    let inserter = Arc::new(MemoryInserter::new());
    let sender = Sender::start(test_config(&partner.url()), store, inserter.clone()).await;

    // A complete first gzip member, then a second member without its 8-byte trailer (CRC-32
    // and size): its row decodes, and then reading fails.
    let mut data = gzip(b"email\nx@example.com\nnot-an-email\ny@example.com\n");
    let second = gzip(b"z@example.com\n");
    data.extend_from_slice(&second[..second.len() - 8]);
    let object = storage
        .upload(
            &bucket,
            "incoming/t-5/emails.csv.gz",
            data,
            Upload {
                content_type: Some("application/gzip".into()),
                ..Upload::default()
            },
        )
        .await;

    let (status, body) = sender.trigger(&cloud_event(&object)).await;
    assert_eq!(status, 204, "{body}");
    let source = source_of(&object);
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(300)).await;
    assert_requests(
        &requests,
        &source,
        &[
            ("t-5", "x@example.com"),
            ("t-5", "y@example.com"),
            ("t-5", "z@example.com"),
        ],
    );
    let mut statuses: Vec<(String, String)> = inserter
        .rows("deliveries")
        .iter()
        .map(|row| {
            let status = row.json["status"].as_str().unwrap().to_string();
            let email = row.json["input_email"].as_str().unwrap().to_string();
            (email, status)
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            ("not-an-email".to_string(), "invalid_email".to_string()),
            ("x@example.com".to_string(), "delivered".to_string()),
            ("y@example.com".to_string(), "delivered".to_string()),
            ("z@example.com".to_string(), "delivered".to_string()),
        ]
    );
}

#[tokio::test]
async fn generation_zero_or_negative_sends_nothing() {
    let (storage, bucket, store) = emulator_bucket("sender-generation").await;
    let partner = PartnerServer::start().await;
    let inserter = Arc::new(MemoryInserter::new());
    let sender = Sender::start(test_config(&partner.url()), store, inserter.clone()).await;

    let object = storage
        .upload(
            &bucket,
            "incoming/t-6/emails.txt",
            b"x@example.com\n".to_vec(),
            Upload::default(),
        )
        .await;
    for generation in ["0", "-1"] {
        let event = ObjectResource {
            generation: generation.into(),
            ..object.clone()
        };
        let (status, body) = sender.trigger(&cloud_event(&event)).await;
        assert_eq!(status, 204, "generation {generation}: {body}");
    }

    let requests = partner.requests_after(Duration::from_millis(500)).await;
    assert_eq!(requests.len(), 0);
    assert_eq!(inserter.rows("deliveries").len(), 0);
}

#[tokio::test]
async fn redelivered_event_sends_each_email_once() {
    let (storage, bucket, store) = emulator_bucket("sender-redelivery").await;
    let partner = PartnerServer::start().await;
    let inserter = Arc::new(MemoryInserter::new());
    let sender = Sender::start(test_config(&partner.url()), store, inserter.clone()).await;

    let emails: Vec<String> = (0..4).map(|i| format!("user{i}@example.com")).collect();
    let object = storage
        .upload(
            &bucket,
            "incoming/t-1/again.txt",
            emails.join("\n").into_bytes(),
            Upload::default(),
        )
        .await;
    let event = cloud_event(&object);

    // Two deliveries at once, then one more after the first ones finished.
    let (first, second) = tokio::join!(sender.trigger(&event), sender.trigger(&event));
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(second.0, 200, "{}", second.1);
    let source = source_of(&object);
    sender.wait_for(&source).await;
    let (third, body) = sender.trigger(&event).await;
    assert_eq!(third, 200, "{body}");
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(500)).await;
    let expected: Vec<(&str, &str)> = emails.iter().map(|email| ("t-1", email.as_str())).collect();
    assert_requests(&requests, &source, &expected);

    // Each delivery left its record beside the input.
    let records = storage.list(&bucket, "state/delivered/").await;
    assert_eq!(records.len(), 4);
    for record in records {
        let bytes = storage.read(&bucket, &record.name).await.unwrap();
        let state: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(state["status"], "delivered", "{}", record.name);
        assert_eq!(state["attempts"], 1, "{}", record.name);
    }
    let delivered = inserter
        .rows("deliveries")
        .iter()
        .filter(|row| row.json["status"] == "delivered")
        .count();
    assert_eq!(delivered, 4);
}

#[tokio::test]
async fn redelivery_after_restart_sends_nothing() {
    let (storage, bucket, store) = emulator_bucket("sender-restart").await;
    let partner = PartnerServer::start().await;
    let object = storage
        .upload(
            &bucket,
            "incoming/t-1/once.txt",
            b"a@example.com\nb@example.com\n".to_vec(),
            Upload::default(),
        )
        .await;
    let event = cloud_event(&object);
    let source = source_of(&object);

    let first = Sender::start(
        test_config(&partner.url()),
        store.clone(),
        Arc::new(MemoryInserter::new()),
    )
    .await;
    first.trigger(&event).await;
    first.wait_for(&source).await;
    drop(first);

    let second = Sender::start(
        test_config(&partner.url()),
        store,
        Arc::new(MemoryInserter::new()),
    )
    .await;
    let (status, body) = second.trigger(&event).await;
    assert_eq!(status, 200, "{body}");
    second.wait_for(&source).await;
    assert_eq!(
        partner
            .requests_after(Duration::from_millis(300))
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn delivery_rows_land_in_bigquery() {
    let (storage, bucket, store) = emulator_bucket("sender-bq").await;
    let dataset = TestDataset::create("sender").await;
    let partner = PartnerServer::start().await;
    // Requests arrive in this order: ok@ (500), bad@ one interval later (404), then ok@'s
    // retry after the 200 ms backoff (200).
    partner.script([
        ScriptedResponse::status(500),
        ScriptedResponse::status(404),
        ScriptedResponse::status(200),
    ]);
    let config = Config {
        project: dataset.project.clone(),
        bigquery_dataset: dataset.dataset.clone(),
        ..test_config(&partner.url())
    };
    let sender = Sender::start(config, store, Arc::new(dataset.inserter())).await;

    let csv = "input_email,tenant_id\nok@example.com,t-1\nbad@example.com,t-1\nnot-an-email,t-1\nok@example.com,t-1\nnobody@example.com,\n";
    let object = storage
        .upload(
            &bucket,
            "incoming/loose-file.csv",
            csv.as_bytes().to_vec(),
            Upload::default(),
        )
        .await;
    let (status, body) = sender.trigger(&cloud_event(&object)).await;
    assert_eq!(status, 200, "{body}");
    let source = source_of(&object);
    sender.wait_for(&source).await;

    let rows = dataset
        .query(&format!(
            "SELECT delivery_id, tenant_id, partner_id, source_bucket, source_object, \
             source_generation, input_email, status, attempts, last_http_status, error \
             FROM {} ORDER BY input_email, status",
            dataset.table("deliveries")
        ))
        .await;
    let generation = object.generation.clone();
    let ok_id = jobs::webhook_id(&source, "t-1", "ok@example.com");
    let bad_id = jobs::webhook_id(&source, "t-1", "bad@example.com");
    let row = |delivery_id: &str,
               tenant: Value,
               email: &str,
               status: &str,
               attempts: &str,
               http: Value,
               error: Value| {
        BTreeMap::from([
            ("delivery_id".to_string(), json!(delivery_id)),
            ("tenant_id".to_string(), tenant),
            ("partner_id".to_string(), json!(PARTNER_ID)),
            ("source_bucket".to_string(), json!(bucket)),
            (
                "source_object".to_string(),
                json!("incoming/loose-file.csv"),
            ),
            ("source_generation".to_string(), json!(generation)),
            ("input_email".to_string(), json!(email)),
            ("status".to_string(), json!(status)),
            ("attempts".to_string(), json!(attempts)),
            ("last_http_status".to_string(), http),
            ("error".to_string(), error),
        ])
    };
    let requests = partner.requests();
    let got_404: Vec<String> = requests
        .iter()
        .filter(|request| request.response_status == 404)
        .map(|request| request.json()["input_email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got_404,
        vec!["bad@example.com".to_string()],
        "requests: {requests:?}"
    );
    let expected = vec![
        row(
            &bad_id,
            json!("t-1"),
            "bad@example.com",
            "failed",
            "1",
            json!("404"),
            json!("HTTP 404: the partner rejected the request, so resending it cannot help"),
        ),
        row(
            &jobs::row_id(&source, 6),
            Value::Null,
            "nobody@example.com",
            "missing_tenant",
            "0",
            Value::Null,
            json!(
                "no tenant_id in the row, the object metadata or the object path (incoming/<tenant_id>/<file>)"
            ),
        ),
        row(
            &jobs::row_id(&source, 4),
            json!("t-1"),
            "not-an-email",
            "invalid_email",
            "0",
            Value::Null,
            json!("the email is not a valid address (addr-spec with a dotted domain)"),
        ),
        row(
            &ok_id,
            json!("t-1"),
            "ok@example.com",
            "delivered",
            "2",
            json!("200"),
            Value::Null,
        ),
        row(
            &ok_id,
            json!("t-1"),
            "ok@example.com",
            "duplicate",
            "0",
            Value::Null,
            json!("the same email already appeared for this tenant in this file"),
        ),
    ];
    assert_eq!(rows, expected);
}

// ---------------------------------------------------------------------------------------------
// Local queue policy, with the state in memory
// ---------------------------------------------------------------------------------------------

/// Starts a sender on a memory bucket that contains one text file of `emails` for tenant `t-1`.
async fn policy_sender(
    config: Config,
    emails: &[&str],
) -> (Sender, Arc<MemoryInserter>, SourceObject, ObjectResource) {
    let store = Arc::new(MemoryStore::new());
    let name = "incoming/t-1/policy.txt";
    let generation = store.put("input", name, emails.join("\n"), ObjectMeta::default());
    let inserter = Arc::new(MemoryInserter::new());
    let sender = Sender::start(config, store, inserter.clone()).await;
    let object = ObjectResource {
        bucket: "input".into(),
        name: name.into(),
        generation: generation.to_string(),
        size: "0".into(),
        content_type: None,
        content_encoding: None,
        metadata: None,
    };
    let source = source_of(&object);
    (sender, inserter, source, object)
}

/// Returns the gaps between consecutive arrivals.
fn gaps(requests: &[RecordedRequest]) -> Vec<Duration> {
    requests
        .windows(2)
        .map(|pair| pair[1].received_at.duration_since(pair[0].received_at))
        .collect()
}

/// Checks that `gap` is `expected` within the noise bounds [`EARLY`] and [`LATE`].
fn assert_gap(gap: Duration, expected: Duration, what: &str) {
    assert!(
        gap + EARLY >= expected,
        "{what}: gap {gap:?} is shorter than the policy's {expected:?}"
    );
    assert!(
        gap <= expected + LATE,
        "{what}: gap {gap:?} is longer than the policy's {expected:?} plus {LATE:?}"
    );
}

fn final_row(inserter: &MemoryInserter) -> DeliveryRow {
    let rows = inserter.rows("deliveries");
    assert_eq!(rows.len(), 1, "rows: {rows:?}");
    serde_json::from_value(rows[0].json.clone()).unwrap()
}

#[tokio::test]
async fn local_queue_retries_500_with_backoff() {
    let partner = PartnerServer::start().await;
    partner.script([
        ScriptedResponse::status(500),
        ScriptedResponse::status(500),
        ScriptedResponse::status(200),
    ]);
    let (sender, inserter, source, object) =
        policy_sender(test_config(&partner.url()), &["a@example.com"]).await;

    sender.trigger(&cloud_event(&object)).await;
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(300)).await;
    assert_eq!(requests.len(), 3);
    let gaps = gaps(&requests);
    assert_gap(gaps[0], Duration::from_millis(200), "first retry");
    assert_gap(gaps[1], Duration::from_millis(400), "second retry");
    for request in &requests {
        assert_eq!(
            request.header("webhook-id"),
            requests[0].header("webhook-id")
        );
    }

    let row = final_row(&inserter);
    assert_eq!(row.status, DeliveryStatus::Delivered);
    assert_eq!(row.attempts, 3);
    assert_eq!(row.last_http_status, Some(200));
    assert_eq!(row.error, None);
}

#[tokio::test]
async fn local_queue_gives_up_after_max_retries() {
    let partner = PartnerServer::start().await;
    partner.set_default(ScriptedResponse::status(503));
    let (sender, inserter, source, object) =
        policy_sender(test_config(&partner.url()), &["a@example.com"]).await;

    sender.trigger(&cloud_event(&object)).await;
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(300)).await;
    assert_eq!(requests.len(), 4);
    let gaps = gaps(&requests);
    for (index, expected_ms) in [200, 400, 800].into_iter().enumerate() {
        assert_gap(
            gaps[index],
            Duration::from_millis(expected_ms),
            &format!("retry {}", index + 1),
        );
    }
    let row = final_row(&inserter);
    assert_eq!(row.status, DeliveryStatus::Failed);
    assert_eq!(row.attempts, 4);
    assert_eq!(row.last_http_status, Some(503));
    assert_eq!(
        row.error.as_deref(),
        Some("HTTP 503: the partner is unavailable (no retries left after 4 attempts)")
    );
}

#[tokio::test]
async fn local_queue_honours_retry_after() {
    let partner = PartnerServer::start().await;
    partner.script([
        ScriptedResponse::too_many_requests(2),
        ScriptedResponse::status(200),
    ]);
    let (sender, inserter, source, object) =
        policy_sender(test_config(&partner.url()), &["a@example.com"]).await;

    sender.trigger(&cloud_event(&object)).await;
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(300)).await;
    assert_eq!(requests.len(), 2);
    // Retry-After (2 s) is longer than the first backoff (200 ms), so it sets the delay.
    assert_gap(
        gaps(&requests)[0],
        Duration::from_secs(2),
        "retry after 429",
    );
    let row = final_row(&inserter);
    assert_eq!(row.status, DeliveryStatus::Delivered);
    assert_eq!(row.attempts, 2);
}

#[tokio::test]
async fn local_queue_retries_after_timeout() {
    let partner = PartnerServer::start().await;
    partner.script([
        ScriptedResponse::hang(Duration::from_secs(3)),
        ScriptedResponse::status(200),
    ]);
    let config = Config {
        request_timeout: Duration::from_millis(300),
        ..test_config(&partner.url())
    };
    let (sender, inserter, source, object) = policy_sender(config, &["a@example.com"]).await;

    sender.trigger(&cloud_event(&object)).await;
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(300)).await;
    assert_eq!(requests.len(), 2);
    // The retry waits for the timeout (300 ms) and then the first backoff (200 ms).
    assert_gap(
        gaps(&requests)[0],
        Duration::from_millis(500),
        "retry after timeout",
    );
    let row = final_row(&inserter);
    assert_eq!(row.status, DeliveryStatus::Delivered);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_http_status, Some(200));
}

#[tokio::test]
async fn local_queue_timeouts_until_failed() {
    let partner = PartnerServer::start().await;
    partner.set_default(ScriptedResponse::hang(Duration::from_secs(3)));
    let config = Config {
        request_timeout: Duration::from_millis(200),
        max_retries: 1,
        ..test_config(&partner.url())
    };
    let (sender, inserter, source, object) = policy_sender(config, &["a@example.com"]).await;

    sender.trigger(&cloud_event(&object)).await;
    sender.wait_for(&source).await;

    assert_eq!(partner.requests().len(), 2);
    let row = final_row(&inserter);
    assert_eq!(row.status, DeliveryStatus::Failed);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_http_status, None);
    let error = row.error.unwrap();
    assert!(
        error.starts_with("the request to the partner timed out: "),
        "{error}"
    );
    assert!(
        error.ends_with("(no retries left after 2 attempts)"),
        "{error}"
    );
}

#[tokio::test]
async fn local_queue_does_not_retry_404() {
    let partner = PartnerServer::start().await;
    partner.script([ScriptedResponse::status(404)]);
    let (sender, inserter, source, object) =
        policy_sender(test_config(&partner.url()), &["a@example.com"]).await;

    sender.trigger(&cloud_event(&object)).await;
    sender.wait_for(&source).await;

    assert_eq!(
        partner
            .requests_after(Duration::from_millis(500))
            .await
            .len(),
        1
    );
    let row = final_row(&inserter);
    assert_eq!(row.status, DeliveryStatus::Failed);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_http_status, Some(404));
}

#[tokio::test]
async fn local_queue_paces_requests_retries_included() {
    let partner = PartnerServer::start().await;
    // The first request fails once, so its retry is paced among the other emails.
    partner.script([ScriptedResponse::status(500)]);
    let config = Config {
        min_request_interval: Duration::from_millis(150),
        retry_base_delay: Duration::from_millis(100),
        ..test_config(&partner.url())
    };
    let emails = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "e@example.com",
    ];
    let (sender, inserter, source, object) = policy_sender(config, &emails).await;

    let started = Instant::now();
    sender.trigger(&cloud_event(&object)).await;
    sender.wait_for(&source).await;

    let requests = partner.requests_after(Duration::from_millis(300)).await;
    assert_eq!(requests.len(), 6);
    // Every start is one interval after the one before: the retry (due 100 ms after the
    // first failure) waits for a free slot like the new emails.
    for (index, gap) in gaps(&requests).into_iter().enumerate() {
        assert_gap(gap, Duration::from_millis(150), &format!("gap {index}"));
    }
    let elapsed = requests.last().unwrap().received_at.duration_since(started);
    assert!(
        elapsed >= Duration::from_millis(750),
        "six requests took {elapsed:?}"
    );

    let delivered = inserter
        .rows("deliveries")
        .iter()
        .filter(|row| row.json["status"] == "delivered")
        .count();
    assert_eq!(delivered, 5);
}

#[tokio::test]
async fn local_queue_default_interval_is_one_second() {
    let partner = PartnerServer::start().await;
    let config = Config {
        signing_secret: None,
        ..Config::local("test-project", PARTNER_ID, &partner.url())
    };
    let (sender, _, source, object) =
        policy_sender(config, &["a@example.com", "b@example.com"]).await;

    sender.trigger(&cloud_event(&object)).await;
    sender.wait_for(&source).await;

    let requests = partner.requests();
    assert_eq!(requests.len(), 2);
    assert_gap(
        gaps(&requests)[0],
        Duration::from_millis(1000),
        "default interval",
    );
    assert_eq!(requests[0].header("webhook-signature"), None);
    assert_eq!(requests[0].header("webhook-timestamp"), None);
    let id = requests[0]
        .header("webhook-id")
        .expect("webhook-id is sent unsigned too");
    assert!(id.starts_with("msg_"), "webhook-id {id}");
}
