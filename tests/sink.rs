//! Results sink against the emulators: Pub/Sub pushes to the sink on 127.0.0.1, which writes
//! rows to the BigQuery emulator and archive objects to fake-gcs-server.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use enrichment_payload::{DeliveryRow, DeliveryStatus, EnrichmentResult, ResultRecord};
use enrichment_runtime::bigquery::{BigQueryInserter, InsertError, InsertRow, RowInserter};
use enrichment_runtime::storage::GcsStore;
use integration_tests::bigquery::{CountingInserter, TestDataset, emulator_client};
use integration_tests::pubsub::PubsubAdmin;
use integration_tests::storage::StorageEmulator;
use integration_tests::{require_env, unique_suffix};
use pretty_assertions::assert_eq;
use results_sink::{Config, SinkState, router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const PARTNER_ID: &str = "acme";
const WAIT: Duration = Duration::from_secs(30);

/// The sink served on `127.0.0.1:0` until dropped.
struct SinkServer {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for SinkServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// One test's bucket, dataset and sink.
struct Fixture {
    storage: StorageEmulator,
    bucket: String,
    dataset: TestDataset,
}

impl Fixture {
    async fn new() -> Self {
        let storage = StorageEmulator::from_env();
        let bucket = format!("sink-archive-{}", unique_suffix());
        storage.create_bucket(&bucket).await;
        let dataset = TestDataset::create("sink").await;
        Self {
            storage,
            bucket,
            dataset,
        }
    }

    fn config(&self) -> Config {
        Config {
            port: 0,
            project: self.dataset.project.clone(),
            dataset: self.dataset.dataset.clone(),
            results_table: "results".to_string(),
            archive_bucket: self.bucket.clone(),
            batch_max_rows: 500,
            batch_max_wait: Duration::from_millis(50),
            storage_emulator: Some(require_env("STORAGE_EMULATOR_HOST")),
            bigquery_emulator: Some(self.dataset.emulator_host.clone()),
        }
    }

    /// Starts a sink on the emulators with `inserter` as its BigQuery backend.
    async fn start_sink(&self, inserter: Arc<dyn RowInserter>) -> SinkServer {
        let store = GcsStore::connect(Some(&require_env("STORAGE_EMULATOR_HOST")))
            .await
            .expect("storage client for the emulator");
        let state = SinkState::new(&self.config(), Arc::new(store), inserter);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(enrichment_runtime::server::serve_on(
            listener,
            router(state),
            async move {
                let _ = stopped.await;
            },
        ));
        SinkServer {
            url: format!("http://{address}/"),
            shutdown: Some(shutdown),
        }
    }

    async fn archive_names(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .storage
            .list(&self.bucket, prefix)
            .await
            .into_iter()
            .map(|object| object.name)
            .collect();
        names.sort();
        names
    }

    /// Returns the `latest_results` rows of one message id.
    async fn view_rows(&self, message_id: &str) -> Vec<BTreeMap<String, Value>> {
        let sql = format!(
            "SELECT tenant_id, partner_id, input_email, message_id FROM {} WHERE message_id = '{message_id}'",
            self.dataset.table("latest_results")
        );
        self.dataset.query(&sql).await
    }

    async fn result_row_count(&self, message_id: &str) -> u64 {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE message_id = '{message_id}'",
            self.dataset.table("results")
        );
        self.dataset.count(&sql).await
    }
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn record(input_email: &str, tenant_id: Option<&str>) -> ResultRecord {
    let mut body = json!({
        "input_email": input_email,
        "work_email": "jane@acme-corp.com",
        "phone_number": "+1 415 555 2671",
        "linkedin_url": "linkedin.com/in/jane-doe",
        "name": "Jane Doe",
        "company_domain": "www.acme-corp.com",
        "seniority": "senior",
    });
    if let Some(tenant_id) = tenant_id {
        body["tenant_id"] = json!(tenant_id);
    }
    let result = EnrichmentResult::from_json(&body).unwrap();
    ResultRecord::new(
        PARTNER_ID,
        "msg_2fQxV9k3",
        time("2024-05-02T10:15:29.250Z"),
        result,
    )
}

fn push_body(message_id: &str, data: &[u8]) -> Value {
    json!({
        "message": {
            "data": STANDARD.encode(data),
            "attributes": {"partner_id": PARTNER_ID, "schema_version": "1"},
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2024-05-02T10:15:30.123Z",
            "publish_time": "2024-05-02T10:15:30.123Z",
        },
        "subscription": "projects/test-project/subscriptions/results-sink",
    })
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> reqwest::StatusCode {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request to the sink")
        .status()
}

/// Polls `check` until it returns `Some`, panicking with `what` after [`WAIT`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn subscribe_sink(sink: &SinkServer) -> (PubsubAdmin, String) {
    let pubsub = PubsubAdmin::from_env();
    let topic = format!("results-{}", unique_suffix());
    pubsub.create_topic(&topic).await;
    pubsub
        .create_push_subscription(&format!("{topic}-sink"), &topic, &sink.url)
        .await;
    (pubsub, topic)
}

#[tokio::test]
async fn published_record_becomes_row_and_archive() {
    let fixture = Fixture::new().await;
    let sink = fixture
        .start_sink(Arc::new(fixture.dataset.inserter()))
        .await;
    let (pubsub, topic) = subscribe_sink(&sink).await;
    let record = record("jane.doe@example.com", Some("tenant-42"));
    let data = record.to_json_bytes();

    let message_id = pubsub.publish(&topic, &data, &record.attributes()).await;

    let archive_name = format!("results/partner=acme/dt=2024-05-02/{message_id}.json");
    let content = wait_for("the archive object", || {
        fixture.storage.read(&fixture.bucket, &archive_name)
    })
    .await;
    // NOTE: the content type is not checked here. The client sends it in the metadata part of
    // its multipart upload, and fake-gcs-server 1.54 does not store it from there.
    assert_eq!(content.to_vec(), data);

    let sql = format!(
        "SELECT message_id, partner_id, tenant_id, input_email, work_email, phone_number, \
         linkedin_url, name, company_domain, TO_JSON_STRING(extra) AS extra, delivery_id, \
         FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%E6SZ', received_at) AS received_at, \
         published_at IS NOT NULL AS has_published_at, stored_at IS NOT NULL AS has_stored_at \
         FROM {} WHERE message_id = '{message_id}'",
        fixture.dataset.table("results")
    );
    let rows = wait_for("the results row", || async {
        let rows = fixture.dataset.query(&sql).await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    let expected: BTreeMap<String, Value> = serde_json::from_value(json!({
        "message_id": message_id,
        "partner_id": "acme",
        "tenant_id": "tenant-42",
        "input_email": "jane.doe@example.com",
        "work_email": "jane@acme-corp.com",
        "phone_number": "+14155552671",
        "linkedin_url": "https://linkedin.com/in/jane-doe",
        "name": "Jane Doe",
        "company_domain": "acme-corp.com",
        "extra": "{\"seniority\":\"senior\"}",
        "delivery_id": "msg_2fQxV9k3",
        "received_at": "2024-05-02T10:15:29.250000Z",
        "has_published_at": "true",
        "has_stored_at": "true",
    }))
    .unwrap();
    assert_eq!(rows, vec![expected]);
    assert_eq!(fixture.archive_names("").await, vec![archive_name.clone()]);
}

#[tokio::test]
async fn duplicate_push_keeps_one_object_and_view_row() {
    let fixture = Fixture::new().await;
    let sink = fixture
        .start_sink(Arc::new(fixture.dataset.inserter()))
        .await;
    let client = reqwest::Client::new();
    let body = push_body(
        "700001",
        &record("dup@example.com", Some("tenant-1")).to_json_bytes(),
    );

    let first = post(&client, &sink.url, &body).await;
    let second = post(&client, &sink.url, &body).await;

    assert_eq!(first, reqwest::StatusCode::NO_CONTENT);
    assert_eq!(second, reqwest::StatusCode::NO_CONTENT);
    assert_eq!(
        fixture.archive_names("").await,
        vec!["results/partner=acme/dt=2024-05-02/700001.json".to_string()]
    );
    let view_rows = fixture.view_rows("700001").await;
    let expected: BTreeMap<String, Value> = serde_json::from_value(json!({
        "tenant_id": "tenant-1",
        "partner_id": "acme",
        "input_email": "dup@example.com",
        "message_id": "700001",
    }))
    .unwrap();
    assert_eq!(view_rows, vec![expected]);
}

#[tokio::test]
async fn poison_message_gets_204_and_rejected_object() {
    let fixture = Fixture::new().await;
    let sink = fixture
        .start_sink(Arc::new(fixture.dataset.inserter()))
        .await;
    let client = reqwest::Client::new();

    let status = post(&client, &sink.url, &push_body("700002", b"{not json")).await;

    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    assert_eq!(
        fixture.archive_names("").await,
        vec!["rejected/700002.json".to_string()]
    );
    let content = fixture
        .storage
        .read(&fixture.bucket, "rejected/700002.json")
        .await
        .unwrap();
    let rejected: Value = serde_json::from_slice(&content).unwrap();
    assert_eq!(rejected["message_id"], json!("700002"));
    assert_eq!(rejected["reason"], json!("not_json"));
    assert_eq!(
        rejected["message"]["data"],
        json!(STANDARD.encode(b"{not json"))
    );
    assert_eq!(fixture.result_row_count("700002").await, 0);
}

/// Sends rows to whichever inserter is current, so a test can bring BigQuery back.
struct SwitchableInserter {
    current: RwLock<Arc<dyn RowInserter>>,
}

impl SwitchableInserter {
    fn switch_to(&self, inserter: Arc<dyn RowInserter>) {
        *self.current.write().unwrap() = inserter;
    }
}

#[async_trait]
impl RowInserter for SwitchableInserter {
    async fn insert_all(&self, table: &str, rows: &[InsertRow]) -> Result<(), InsertError> {
        let current = Arc::clone(&self.current.read().unwrap());
        current.insert_all(table, rows).await
    }
}

#[tokio::test]
async fn bigquery_outage_answers_503_then_redelivery_stores_once() {
    let fixture = Fixture::new().await;
    // A port that was just free and has no listener: every connection is refused.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = CountingInserter::new(BigQueryInserter::new(
        emulator_client(&format!("127.0.0.1:{closed_port}")).await,
        &fixture.dataset.project,
        &fixture.dataset.dataset,
    ));
    let inserter = Arc::new(SwitchableInserter {
        current: RwLock::new(unreachable.clone()),
    });
    let sink = fixture.start_sink(inserter.clone()).await;
    let client = reqwest::Client::new();
    let body = push_body(
        "700003",
        &record("outage@example.com", None).to_json_bytes(),
    );

    let (pubsub, topic) = subscribe_sink(&sink).await;
    let pushed = record("pushed@example.com", None);

    let during = post(&client, &sink.url, &body).await;
    let pushed_id = pubsub
        .publish(&topic, &pushed.to_json_bytes(), &pushed.attributes())
        .await;

    assert_eq!(during, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    // The direct request, then the push and at least one redelivery of it, all failed.
    wait_for("a redelivery during the outage", || async {
        (unreachable.calls() >= 3).then_some(())
    })
    .await;
    assert_eq!(fixture.result_row_count("700003").await, 0);
    assert_eq!(fixture.result_row_count(&pushed_id).await, 0);

    inserter.switch_to(Arc::new(fixture.dataset.inserter()));
    let after = post(&client, &sink.url, &body).await;

    assert_eq!(after, reqwest::StatusCode::NO_CONTENT);
    wait_for("the pushed message's row", || async {
        (fixture.result_row_count(&pushed_id).await == 1).then_some(())
    })
    .await;
    let mut expected_names = vec![
        "results/partner=acme/dt=2024-05-02/700003.json".to_string(),
        format!("results/partner=acme/dt=2024-05-02/{pushed_id}.json"),
    ];
    expected_names.sort();
    assert_eq!(fixture.archive_names("results/").await, expected_names);
    assert_eq!(fixture.view_rows("700003").await.len(), 1);
    assert_eq!(fixture.view_rows(&pushed_id).await.len(), 1);
    assert_eq!(fixture.result_row_count("700003").await, 1);
}

#[tokio::test]
async fn concurrent_pushes_share_insert_calls() {
    let fixture = Fixture::new().await;
    let counting = CountingInserter::new(fixture.dataset.inserter());
    let sink = fixture.start_sink(counting.clone()).await;
    let client = reqwest::Client::new();
    let data = record("many@example.com", Some("tenant-9")).to_json_bytes();

    let pushes = (0..200).map(|index| {
        let body = push_body(&format!("8{index:05}"), &data);
        let client = client.clone();
        let url = sink.url.clone();
        async move { post(&client, &url, &body).await }
    });
    let statuses = futures::future::join_all(pushes).await;

    assert_eq!(statuses, vec![reqwest::StatusCode::NO_CONTENT; 200]);
    assert_eq!(counting.rows(), 200);
    assert!(
        counting.calls() <= 20,
        "200 concurrent pushes made {} insertAll calls",
        counting.calls()
    );
    let sql = format!(
        "SELECT COUNT(DISTINCT message_id) AS n FROM {}",
        fixture.dataset.table("results")
    );
    assert_eq!(fixture.dataset.count(&sql).await, 200);
    assert_eq!(fixture.archive_names("results/").await.len(), 200);
}

#[tokio::test]
async fn view_takes_tenant_from_delivered_email() {
    let fixture = Fixture::new().await;
    let delivery = DeliveryRow {
        delivery_id: "msg_tenant7".to_string(),
        tenant_id: Some("tenant-7".to_string()),
        partner_id: PARTNER_ID.to_string(),
        source_bucket: "incoming-bucket".to_string(),
        source_object: "incoming/tenant-7/contacts.csv".to_string(),
        source_generation: 1_714_644_930_861_234,
        input_email: "Lookup@Example.com".to_string(),
        input_email_hash: "0123456789ab".to_string(),
        status: DeliveryStatus::Delivered,
        attempts: 1,
        last_http_status: Some(200),
        error: None,
        created_at: time("2024-05-02T10:00:00Z"),
        finished_at: time("2024-05-02T10:00:01Z"),
    };
    fixture
        .dataset
        .insert(
            "deliveries",
            &[InsertRow {
                insert_id: delivery.delivery_id.clone(),
                json: delivery.to_json(),
            }],
        )
        .await;
    let sink = fixture
        .start_sink(Arc::new(fixture.dataset.inserter()))
        .await;
    let client = reqwest::Client::new();
    let body = push_body(
        "700004",
        &record("lookup@example.com", None).to_json_bytes(),
    );

    let status = post(&client, &sink.url, &body).await;

    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    let expected: BTreeMap<String, Value> = serde_json::from_value(json!({
        "tenant_id": "tenant-7",
        "partner_id": "acme",
        "input_email": "lookup@example.com",
        "message_id": "700004",
    }))
    .unwrap();
    assert_eq!(fixture.view_rows("700004").await, vec![expected]);
}
