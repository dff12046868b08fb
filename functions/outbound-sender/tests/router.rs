//! Router tests with embedded backends: a memory bucket, a memory BigQuery table, a Cloud Tasks
//! client built on a recording stub, and a partner HTTP server on 127.0.0.1:0.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use enrichment_runtime::bigquery::{InsertError, MemoryInserter};
use enrichment_runtime::storage::{MemoryStore, ObjectMeta, StorageError};
use google_cloud_gax::error::rpc::{Code, Status};
use google_cloud_tasks_v2::model::{CreateTaskRequest, HttpMethod, Task};
use http_body_util::BodyExt;
use outbound_sender::config::CloudTasksConfig;
use outbound_sender::jobs::{self, Job, SourceObject};
use outbound_sender::{AppState, Backends, Config, QueueChoice, QueueConfig, router};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tower::ServiceExt;

const QUEUE_PATH: &str = "projects/acme-prod/locations/europe-west1/queues/partner-acme";
const DELIVER_URL: &str = "https://sender-abc-ew.a.run.app/deliver";
const SERVICE_ACCOUNT: &str = "tasks@acme-prod.iam.gserviceaccount.com";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BUCKET: &str = "input-bucket";
const OBJECT: &str = "incoming/t-1/emails.csv";

/// A Cloud Tasks stub that records every `CreateTask` and returns `AlreadyExists` for a name
/// it has seen, like the service.
#[derive(Debug, Default)]
struct RecordingTasks {
    requests: Mutex<Vec<CreateTaskRequest>>,
    names: Mutex<HashSet<String>>,
    /// Errors returned by the next calls, in order.
    failures: Mutex<VecDeque<Code>>,
}

impl google_cloud_tasks_v2::stub::CloudTasks for RecordingTasks {
    async fn create_task(
        &self,
        request: CreateTaskRequest,
        _options: google_cloud_gax::options::RequestOptions,
    ) -> google_cloud_tasks_v2::Result<google_cloud_gax::response::Response<Task>> {
        self.requests.lock().unwrap().push(request.clone());
        if let Some(code) = self.failures.lock().unwrap().pop_front() {
            let status = Status::default().set_code(code).set_message("injected");
            return Err(google_cloud_gax::error::Error::service(status));
        }
        let task = request.task.expect("a task");
        if !self.names.lock().unwrap().insert(task.name.clone()) {
            let status = Status::default()
                .set_code(Code::AlreadyExists)
                .set_message("Requested entity already exists");
            return Err(google_cloud_gax::error::Error::service(status));
        }
        Ok(google_cloud_gax::response::Response::from(task))
    }
}

fn cloud_tasks_config() -> Config {
    Config {
        queue: QueueConfig::CloudTasks(CloudTasksConfig {
            queue_path: QUEUE_PATH.into(),
            deliver_url: DELIVER_URL.into(),
            service_account: SERVICE_ACCOUNT.into(),
        }),
        ..Config::local("acme-prod", "acme", "https://partner.example.com/hook")
    }
}

struct Harness {
    state: AppState,
    store: Arc<MemoryStore>,
    inserter: Arc<MemoryInserter>,
    tasks: Arc<RecordingTasks>,
}

fn harness(config: Config) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let inserter = Arc::new(MemoryInserter::new());
    let tasks = Arc::new(RecordingTasks::default());
    let client =
        google_cloud_tasks_v2::client::CloudTasks::from_stub::<RecordingTasks>(tasks.clone());
    let state = AppState::new(
        config,
        Backends {
            store: store.clone(),
            inserter: inserter.clone(),
            queue: QueueChoice::CloudTasks(client),
        },
    )
    .unwrap();
    Harness {
        state,
        store,
        inserter,
        tasks,
    }
}

fn storage_event(bucket: &str, name: &str, generation: i64) -> Request<Body> {
    let data = json!({
        "kind": "storage#object",
        "bucket": bucket,
        "name": name,
        "generation": generation.to_string(),
        "metageneration": "1",
        "contentType": "text/csv",
        "size": "120",
        "timeCreated": "2024-05-01T12:00:00.000Z",
    });
    Request::post("/")
        .header("ce-specversion", "1.0")
        .header("ce-id", "evt-1")
        .header(
            "ce-source",
            format!("//storage.googleapis.com/projects/_/buckets/{bucket}"),
        )
        .header("ce-type", "google.cloud.storage.object.v1.finalized")
        .header("ce-subject", format!("objects/{name}"))
        .header("ce-time", "2024-05-01T12:00:00.000Z")
        .header("content-type", "application/json")
        .body(Body::from(data.to_string()))
        .unwrap()
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn json_body(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

const CSV: &str = "email,tenant_id\n\
                   jane@example.com,\n\
                   john@example.com,t-2\n\
                   JANE@example.com,\n\
                   not-an-email,\n\
                   ann@example.com,t-1\n";

fn put_csv(store: &MemoryStore) -> i64 {
    store.put(BUCKET, OBJECT, CSV, ObjectMeta::default())
}

fn source(generation: i64) -> SourceObject {
    SourceObject {
        bucket: BUCKET.into(),
        name: OBJECT.into(),
        generation,
    }
}

#[tokio::test]
async fn cloud_tasks_requests_match_jobs() {
    let h = harness(cloud_tasks_config());
    let generation = put_csv(&h.store);

    let (status, _, body) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_body(&body),
        json!({
            "status": "enqueued", "format": "csv", "rows": 5, "enqueued": 3,
            "already_queued": 0, "invalid_email": 1, "missing_tenant": 0, "duplicate": 1,
        })
    );

    let mut requests = h.tasks.requests.lock().unwrap().clone();
    requests.sort_by_key(|request| request.task.as_ref().unwrap().name.clone());
    let expected_emails = [
        ("t-1", "jane@example.com", 2),
        ("t-2", "john@example.com", 3),
        ("t-1", "ann@example.com", 6),
    ];
    let mut expected_names: Vec<String> = expected_emails
        .iter()
        .map(|(tenant, email, _)| {
            let id = jobs::webhook_id(&source(generation), tenant, email);
            format!("{QUEUE_PATH}/tasks/{id}")
        })
        .collect();
    expected_names.sort();
    let names: Vec<String> = requests
        .iter()
        .map(|request| request.task.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(names, expected_names);

    for request in &requests {
        assert_eq!(request.parent, QUEUE_PATH);
        let task = request.task.as_ref().unwrap();
        let deadline = task.dispatch_deadline.as_ref().unwrap();
        assert_eq!((deadline.seconds(), deadline.nanos()), (45, 0));

        let http = task.http_request().expect("an HTTP task");
        assert_eq!(http.url, DELIVER_URL);
        assert_eq!(http.http_method, HttpMethod::Post);
        assert_eq!(
            http.headers,
            std::collections::HashMap::from([(
                "Content-Type".to_string(),
                "application/json".to_string()
            )])
        );
        let oidc = http.oidc_token().expect("an OIDC token");
        assert_eq!(oidc.service_account_email, SERVICE_ACCOUNT);
        assert_eq!(oidc.audience, "https://sender-abc-ew.a.run.app");

        let job: Job = serde_json::from_slice(&http.body).unwrap();
        let (tenant, email, line) = expected_emails
            .iter()
            .find(|(_, email, _)| *email == job.input_email)
            .copied()
            .unwrap();
        assert_eq!(task.name, format!("{QUEUE_PATH}/tasks/{}", job.webhook_id));
        assert_eq!(
            job.webhook_id,
            jobs::webhook_id(&source(generation), tenant, email)
        );
        assert_eq!(job.tenant_id, tenant);
        assert_eq!(job.partner_id, "acme");
        assert_eq!(job.source_bucket, BUCKET);
        assert_eq!(job.source_object, OBJECT);
        assert_eq!(job.source_generation, generation);
        assert_eq!(job.line, line);
    }

    let rows = h.inserter.rows("deliveries");
    let statuses: Vec<(String, Value)> = rows
        .iter()
        .map(|row| (row.insert_id.clone(), row.json["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (jobs::row_id(&source(generation), 4), json!("duplicate")),
            (jobs::row_id(&source(generation), 5), json!("invalid_email")),
        ]
    );
    assert_eq!(rows[0].json["input_email"], "JANE@example.com");
    assert_eq!(rows[0].json["tenant_id"], "t-1");
    assert_eq!(rows[0].json["partner_id"], "acme");
    assert_eq!(rows[0].json["attempts"], 0);
}

#[tokio::test]
async fn redelivered_event_creates_no_new_tasks() {
    let h = harness(cloud_tasks_config());
    let generation = put_csv(&h.store);

    send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    let (status, _, body) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(status, StatusCode::OK);
    let summary = json_body(&body);
    assert_eq!(summary["enqueued"], 0);
    assert_eq!(summary["already_queued"], 3);
    assert_eq!(h.tasks.names.lock().unwrap().len(), 3);
    assert_eq!(h.tasks.requests.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn enqueue_failure_answers_503_and_retry_completes() {
    let h = harness(cloud_tasks_config());
    let generation = put_csv(&h.store);
    h.tasks
        .failures
        .lock()
        .unwrap()
        .push_back(Code::Unavailable);

    let (status, _, body) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(h.tasks.names.lock().unwrap().len(), 2);

    let (status, _, body) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(status, StatusCode::OK);
    let summary = json_body(&body);
    assert_eq!(
        (
            summary["enqueued"].clone(),
            summary["already_queued"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(h.tasks.names.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn storage_unavailable_answers_503() {
    let h = harness(cloud_tasks_config());
    let generation = put_csv(&h.store);
    h.store
        .fail_next(StorageError::Transient("HTTP 503".into()));
    let (status, _, _) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    h.store
        .fail_next(StorageError::Permanent("HTTP 403".into()));
    let (status, _, _) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.tasks.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn bigquery_unavailable_answers_503() {
    let h = harness(cloud_tasks_config());
    let generation = put_csv(&h.store);
    h.inserter.fail_with(InsertError::Request {
        retryable: true,
        message: "HTTP 503".into(),
    });
    let (status, _, _) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unhandled_events_get_204() {
    let h = harness(cloud_tasks_config());
    let generation = put_csv(&h.store);
    h.store
        .put(BUCKET, "results/x.json", "{}", ObjectMeta::default());

    let outside_prefix = storage_event(BUCKET, "results/x.json", generation + 1);
    let deleted = {
        let mut request = storage_event(BUCKET, OBJECT, generation);
        request.headers_mut().insert(
            "ce-type",
            "google.cloud.storage.object.v1.deleted".parse().unwrap(),
        );
        request
    };
    let overwritten = storage_event(BUCKET, OBJECT, generation + 100);
    let garbage = Request::post("/").body(Body::from("not json")).unwrap();
    let no_message = Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"subscription":"s"}"#))
        .unwrap();
    for (case, request) in [
        ("outside prefix", outside_prefix),
        ("deleted", deleted),
        ("generation gone", overwritten),
        ("garbage", garbage),
        ("no message", no_message),
    ] {
        let (status, _, _) = send(&h.state, request).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{case}");
    }
    assert_eq!(h.tasks.requests.lock().unwrap().len(), 0);
    assert_eq!(h.inserter.rows("deliveries").len(), 0);
}

#[tokio::test]
async fn csv_without_email_column_is_dropped() {
    let h = harness(cloud_tasks_config());
    let generation = h
        .store
        .put(BUCKET, OBJECT, "name\nJane\n", ObjectMeta::default());
    let (status, _, _) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.tasks.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn empty_csv_is_read_as_no_rows() {
    let h = harness(cloud_tasks_config());
    let generation = h.store.put(BUCKET, OBJECT, "", ObjectMeta::default());
    let (status, _, body) = send(&h.state, storage_event(BUCKET, OBJECT, generation)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_body(&body),
        json!({
            "status": "enqueued", "format": "csv", "rows": 0, "enqueued": 0,
            "already_queued": 0, "invalid_email": 0, "missing_tenant": 0, "duplicate": 0,
        })
    );
    assert_eq!(h.tasks.requests.lock().unwrap().len(), 0);
    assert_eq!(h.inserter.rows("deliveries").len(), 0);
}

#[tokio::test]
async fn metadata_tenant_beats_path_tenant() {
    let h = harness(cloud_tasks_config());
    let meta = ObjectMeta {
        metadata: BTreeMap::from([("tenant_id".to_string(), "t-meta".to_string())]),
        ..ObjectMeta::default()
    };
    let generation = h.store.put(BUCKET, OBJECT, "email\na@example.com\n", meta);
    let (status, _, _) = send(
        &h.state,
        storage_event(BUCKET, "incoming/t-1/emails.csv", generation),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let requests = h.tasks.requests.lock().unwrap().clone();
    let job: Job = serde_json::from_slice(
        &requests[0]
            .task
            .as_ref()
            .unwrap()
            .http_request()
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(job.tenant_id, "t-meta");
}

// ---------------------------------------------------------------------------------------------
// POST /deliver
// ---------------------------------------------------------------------------------------------

/// A scripted response: status and headers.
type ScriptedResponse = (u16, Vec<(&'static str, &'static str)>);

/// A partner that responds from a script and records bodies and headers.
#[derive(Debug, Default)]
struct Partner {
    responses: Mutex<VecDeque<ScriptedResponse>>,
    received: Mutex<Vec<(HeaderMap, Bytes)>>,
}

async fn start_partner(partner: Arc<Partner>) -> String {
    async fn answer(
        axum::extract::State(partner): axum::extract::State<Arc<Partner>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        partner.received.lock().unwrap().push((headers, body));
        let (status, headers) = partner
            .responses
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((200, Vec::new()));
        let mut response = axum::response::Response::new(Body::empty());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(answer))
        .with_state(partner);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/hook")
}

async fn deliver_harness(responses: Vec<ScriptedResponse>) -> (Harness, Arc<Partner>) {
    let partner = Arc::new(Partner::default());
    partner.responses.lock().unwrap().extend(responses);
    let url = start_partner(partner.clone()).await;
    let config = Config {
        partner_webhook_url: url,
        signing_secret: Some(outbound_sender::config::SigningSecret::new(SECRET).unwrap()),
        request_timeout: Duration::from_secs(5),
        ..cloud_tasks_config()
    };
    (harness(config), partner)
}

fn job() -> Job {
    let source = source(7);
    Job {
        webhook_id: jobs::webhook_id(&source, "t-1", "jane@example.com"),
        partner_id: "acme".into(),
        tenant_id: "t-1".into(),
        input_email: "jane@example.com".into(),
        source_bucket: BUCKET.into(),
        source_object: OBJECT.into(),
        source_generation: 7,
        line: 2,
        created_at: chrono::Utc::now(),
    }
}

fn deliver_request(job: &Job, retry_count: Option<u32>) -> Request<Body> {
    let mut builder = Request::post("/deliver").header("content-type", "application/json");
    if let Some(count) = retry_count {
        builder = builder.header("X-CloudTasks-TaskRetryCount", count.to_string());
    }
    builder
        .body(Body::from(serde_json::to_vec(job).unwrap()))
        .unwrap()
}

#[tokio::test]
async fn deliver_signs_and_records_success() {
    let (h, partner) = deliver_harness(vec![(202, Vec::new())]).await;
    let job = job();
    let (status, _, body) = send(&h.state, deliver_request(&job, Some(1))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_body(&body),
        json!({"status": "delivered", "attempts": 2, "http_status": 202, "error": null})
    );

    let received = partner.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(
        body.as_ref(),
        br#"{"tenant_id":"t-1","input_email":"jane@example.com"}"#
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["webhook-id"], job.webhook_id.as_str());
    let webhook = standardwebhooks::Webhook::new(SECRET).unwrap();
    webhook.verify(body, headers).expect("a valid signature");

    let rows = h.inserter.rows("deliveries");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].insert_id, job.webhook_id);
    assert_eq!(rows[0].json["status"], "delivered");
    assert_eq!(rows[0].json["attempts"], 2);
    assert_eq!(rows[0].json["last_http_status"], 202);
    assert_eq!(rows[0].json["error"], Value::Null);
}

#[tokio::test]
async fn deliver_retryable_answers_503_with_retry_after() {
    let (h, _) = deliver_harness(vec![(429, vec![("retry-after", "7")]), (503, Vec::new())]).await;
    let (status, headers, body) = send(&h.state, deliver_request(&job(), None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(json_body(&body)["attempts"], 1);

    let (status, headers, _) = send(&h.state, deliver_request(&job(), Some(2))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.get("retry-after").is_none());
    assert_eq!(h.inserter.rows("deliveries").len(), 0);
}

#[tokio::test]
async fn deliver_last_attempt_records_failed() {
    let (h, _) = deliver_harness(vec![(500, Vec::new())]).await;
    let (status, _, body) = send(&h.state, deliver_request(&job(), Some(3))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_body(&body)["status"], "failed");
    let rows = h.inserter.rows("deliveries");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].json["status"], "failed");
    assert_eq!(rows[0].json["attempts"], 4);
    assert_eq!(rows[0].json["last_http_status"], 500);
    assert_eq!(
        rows[0].json["error"],
        "HTTP 500: the partner had an internal error (no retries left after 4 attempts)"
    );
}

#[tokio::test]
async fn deliver_permanent_records_failed_at_once() {
    let (h, _) = deliver_harness(vec![(404, Vec::new())]).await;
    let (status, _, _) = send(&h.state, deliver_request(&job(), Some(0))).await;
    assert_eq!(status, StatusCode::OK);
    let rows = h.inserter.rows("deliveries");
    assert_eq!(rows[0].json["status"], "failed");
    assert_eq!(rows[0].json["attempts"], 1);
    assert_eq!(rows[0].json["last_http_status"], 404);
}

#[tokio::test]
async fn deliver_does_not_follow_redirects() {
    let (h, partner) = deliver_harness(vec![(
        307,
        vec![("location", "http://127.0.0.1:9/elsewhere")],
    )])
    .await;
    let (status, _, body) = send(&h.state, deliver_request(&job(), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_body(&body)["status"], "failed");
    assert_eq!(partner.received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn deliver_discards_bad_bodies() {
    let (h, partner) = deliver_harness(Vec::new()).await;
    let garbage = Request::post("/deliver").body(Body::from("{}")).unwrap();
    let other_partner = deliver_request(
        &Job {
            partner_id: "other".into(),
            ..job()
        },
        None,
    );
    for request in [garbage, other_partner] {
        let (status, _, body) = send(&h.state, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_body(&body)["status"], "discarded");
    }
    assert_eq!(partner.received.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn deliver_connection_refused_is_retryable() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let config = Config {
        partner_webhook_url: url,
        ..cloud_tasks_config()
    };
    let h = harness(config);
    let (status, _, body) = send(&h.state, deliver_request(&job(), Some(0))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = json_body(&body)["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with("the connection to the partner failed: "),
        "{error}"
    );
}
