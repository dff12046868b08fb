//! Streaming inserts into BigQuery tables (`tabledata.insertAll`), and the creation of the
//! dataset, tables and view that the functions write to and analysts read.
//!
//! [`BigQueryInserter`] talks to BigQuery through `gcp-bigquery-client`: in production with
//! application default credentials, in tests against the emulator named by
//! `BIGQUERY_EMULATOR_HOST`. [`MemoryInserter`] keeps rows in memory for handler tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use enrichment_payload::schemas;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_data_insert_all_response_insert_errors::TableDataInsertAllResponseInsertErrors;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;

/// One row for `tabledata.insertAll`; `insert_id` lets BigQuery drop a retried duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertRow {
    pub insert_id: String,
    pub json: serde_json::Value,
}

/// Appends rows to a table of the configured dataset.
#[async_trait]
pub trait RowInserter: Send + Sync + 'static {
    /// Inserts `rows` into `table` in one call. A response that carries `insertErrors` is an
    /// error that names the failing rows by index.
    async fn insert_all(&self, table: &str, rows: &[InsertRow]) -> Result<(), InsertError>;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InsertError {
    /// The whole request failed.
    #[error("insertAll request failed: {message}")]
    Request { retryable: bool, message: String },
    /// The request succeeded but some rows were rejected.
    #[error("insertAll rejected {} row(s)", errors.len())]
    Rows { errors: Vec<RowError> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Index into the `rows` slice that was passed to `insert_all`.
    pub index: usize,
    pub message: String,
}

impl InsertError {
    /// Returns whether sending the same rows again may succeed.
    ///
    /// Row-level errors count as retryable. With `skipInvalidRows` the rejected rows were not
    /// stored. A rejected row of a record that passed validation means that the table differs
    /// from the schema files, and an operator can fix the table before the next delivery.
    pub fn is_retryable(&self) -> bool {
        match self {
            InsertError::Request { retryable, .. } => *retryable,
            InsertError::Rows { .. } => true,
        }
    }
}

/// BigQuery errors outside of `insertAll`: connecting and table administration.
#[derive(Debug, thiserror::Error)]
pub enum BigQueryError {
    #[error("cannot build the BigQuery client: {0}")]
    Connect(#[source] BQError),
    #[error("{operation} failed: {source}")]
    Request {
        operation: String,
        #[source]
        source: BQError,
    },
    #[error("{operation} failed: {}", errors.join("; "))]
    Query {
        operation: String,
        errors: Vec<String>,
    },
    #[error("BigQuery schema for table {table} is invalid: {source}")]
    Schema {
        table: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Time allowed for one `insertAll` call. The client's HTTP connection has no timeout of its
/// own, and a Pub/Sub push waits at most its ack deadline (10 s by default) for the response.
pub const DEFAULT_INSERT_TIMEOUT: Duration = Duration::from_secs(8);

/// Streams rows into the tables of one dataset with `gcp-bigquery-client`.
#[derive(Clone)]
pub struct BigQueryInserter {
    client: Client,
    project: String,
    dataset: String,
    timeout: Duration,
}

impl std::fmt::Debug for BigQueryInserter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQueryInserter")
            .field("project", &self.project)
            .field("dataset", &self.dataset)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BigQueryInserter {
    /// Builds a client (see [`connect`]) and an inserter for `project.dataset`.
    pub async fn connect(
        project: impl Into<String>,
        dataset: impl Into<String>,
        emulator_host: Option<&str>,
    ) -> Result<Self, BigQueryError> {
        let client = connect(emulator_host).await?;
        Ok(Self::new(client, project, dataset))
    }

    pub fn new(client: Client, project: impl Into<String>, dataset: impl Into<String>) -> Self {
        Self {
            client,
            project: project.into(),
            dataset: dataset.into(),
            timeout: DEFAULT_INSERT_TIMEOUT,
        }
    }

    /// Sets the time allowed for one `insertAll` call; a call that takes longer is a
    /// retryable failure.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn dataset(&self) -> &str {
        &self.dataset
    }
}

#[async_trait]
impl RowInserter for BigQueryInserter {
    async fn insert_all(&self, table: &str, rows: &[InsertRow]) -> Result<(), InsertError> {
        if rows.is_empty() {
            return Ok(());
        }

        let mut request = TableDataInsertAllRequest::new();
        // Without `skipInvalidRows` one bad row makes BigQuery drop the whole request and
        // report the others as `stopped`; with it, only the bad rows fail.
        request.skip_invalid_rows();
        request
            .add_rows(
                rows.iter()
                    .map(|row| TableDataInsertAllRequestRows {
                        insert_id: Some(row.insert_id.clone()),
                        json: row.json.clone(),
                    })
                    .collect(),
            )
            .map_err(|error| classified_request_error(&error))?;

        let call = self
            .client
            .tabledata()
            .insert_all(&self.project, &self.dataset, table, request);
        let response = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(classified_request_error(&error)),
            Err(_) => {
                return Err(InsertError::Request {
                    retryable: true,
                    message: format!(
                        "insertAll into {}.{table} timed out after {:?}",
                        self.dataset, self.timeout
                    ),
                });
            }
        };

        let errors = row_errors(response.insert_errors.unwrap_or_default());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(InsertError::Rows { errors })
        }
    }
}

/// Converts the `insertErrors` of a 200 response into one [`RowError`] per rejected row.
fn row_errors(insert_errors: Vec<TableDataInsertAllResponseInsertErrors>) -> Vec<RowError> {
    insert_errors
        .into_iter()
        .map(|entry| {
            let message = entry
                .errors
                .unwrap_or_default()
                .iter()
                .map(|error| {
                    format!(
                        "{} at {}: {}",
                        error.reason.as_deref().unwrap_or("unknown"),
                        error.location.as_deref().unwrap_or("row"),
                        error.message.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            RowError {
                // BigQuery sends the index of each rejected row. A missing or negative index
                // matches no row, so the error is reported against the first row.
                index: entry
                    .index
                    .and_then(|index| usize::try_from(index).ok())
                    .unwrap_or(0),
                message,
            }
        })
        .collect()
}

fn classified_request_error(error: &BQError) -> InsertError {
    let (retryable, reason) = classify(error);
    InsertError::Request {
        retryable,
        message: format!("{error} ({reason})"),
    }
}

/// Decides whether a failed BigQuery request may succeed when sent again, with the reason.
///
/// Retrying an `insertAll` is safe because every row carries an insertId, which BigQuery uses to
/// drop a duplicate (best effort, for about a minute).
pub fn classify(error: &BQError) -> (bool, &'static str) {
    match error {
        BQError::ResponseError { error } => {
            let reasons: BTreeSet<&str> = error
                .error
                .errors
                .iter()
                .filter_map(|detail| detail.get("reason").map(String::as_str))
                .collect();
            classify_status(error.error.code, &reasons)
        }
        BQError::RequestError(error) if error.is_timeout() => {
            (true, "the request timed out before BigQuery answered")
        }
        BQError::RequestError(error) if error.is_connect() => {
            (true, "the connection to BigQuery failed")
        }
        BQError::RequestError(error) if error.is_decode() => (
            true,
            "the response body was not the JSON BigQuery sends, as from a proxy or load \
             balancer answering for it",
        ),
        BQError::RequestError(error) if error.is_builder() => {
            (false, "the request could not be built")
        }
        BQError::RequestError(_) => (true, "the connection failed while sending or receiving"),
        BQError::AuthError(_) | BQError::YupAuthError(_) | BQError::NoToken => (
            true,
            "no access token: the metadata server or token endpoint did not answer",
        ),
        BQError::SerializationError(_) => (false, "a row could not be serialised to JSON"),
        _ => (
            false,
            "an unexpected client error that a retry would repeat",
        ),
    }
}

/// Classifies an HTTP error status from BigQuery by its code and `errors[].reason` values.
fn classify_status(code: i64, reasons: &BTreeSet<&str>) -> (bool, &'static str) {
    const RETRYABLE_REASONS: [&str; 5] = [
        "backendError",
        "internalError",
        "rateLimitExceeded",
        "quotaExceeded",
        "timeout",
    ];

    if reasons
        .iter()
        .any(|reason| RETRYABLE_REASONS.contains(reason))
    {
        // BigQuery reports rate and quota limits with 403, so the reason decides first.
        return (
            true,
            "BigQuery reported a transient server, rate or quota error",
        );
    }
    match code {
        401 => (
            true,
            "the access token expired or was revoked; the next request fetches a new one",
        ),
        403 => (
            false,
            "permission denied: the service account needs a role on the dataset",
        ),
        404 => (
            false,
            "the dataset or table does not exist: create it before streaming",
        ),
        408 => (true, "BigQuery timed out reading the request"),
        409 => (false, "the resource already exists"),
        429 => (
            true,
            "too many requests: BigQuery asks the caller to slow down",
        ),
        400..=499 => (
            false,
            "BigQuery rejected the request as invalid; sending it again gets the same answer",
        ),
        500..=599 => (true, "BigQuery had a server-side error"),
        _ => (false, "BigQuery sent an unexpected status"),
    }
}

/// Builds a BigQuery client. With `emulator_host` (`host:port`, as `BIGQUERY_EMULATOR_HOST`
/// sets it; a leading `http://` is accepted) it talks plain HTTP to that emulator with a dummy
/// token. Without it, it authenticates with application default credentials: the metadata
/// server on Cloud Run, or the file named by `GOOGLE_APPLICATION_CREDENTIALS`.
pub async fn connect(emulator_host: Option<&str>) -> Result<Client, BigQueryError> {
    match emulator_host {
        Some(host) => {
            let host = host.trim_start_matches("http://").trim_end_matches('/');
            ClientBuilder::new()
                .with_v2_base_url(format!("http://{host}/bigquery/v2"))
                .build_from_authenticator(Arc::new(EmulatorAuthenticator))
                .await
                .map_err(BigQueryError::Connect)
        }
        None => ClientBuilder::new()
            .build_from_application_default_credentials()
            .await
            .map_err(BigQueryError::Connect),
    }
}

/// Supplies a fixed token: the emulator accepts any bearer token.
#[derive(Debug, Clone)]
struct EmulatorAuthenticator;

#[async_trait]
impl Authenticator for EmulatorAuthenticator {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok("emulator-token".to_string())
    }
}

/// Keeps inserted rows in memory, per table, for handler tests and embedded runs.
///
/// Like BigQuery with `skipInvalidRows`, a call stores every row that is not rejected. Rows are
/// kept as sent, duplicates included: BigQuery's insertId deduplication is best effort, so a
/// reader must not rely on it.
#[derive(Debug, Default)]
pub struct MemoryInserter {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    tables: BTreeMap<String, Vec<InsertRow>>,
    calls: usize,
    /// Returned by every call while set, and nothing is stored.
    failure: Option<InsertError>,
    /// Rows with these insert ids are rejected with a row-level error.
    rejected_insert_ids: BTreeSet<String>,
}

impl MemoryInserter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the rows stored in `table`, in insertion order.
    pub fn rows(&self, table: &str) -> Vec<InsertRow> {
        self.lock().tables.get(table).cloned().unwrap_or_default()
    }

    /// Returns the number of `insert_all` calls so far, failed ones included.
    pub fn calls(&self) -> usize {
        self.lock().calls
    }

    /// Makes every following call fail with `error` until [`MemoryInserter::recover`].
    pub fn fail_with(&self, error: InsertError) {
        self.lock().failure = Some(error);
    }

    /// Ends the failure set by [`MemoryInserter::fail_with`].
    pub fn recover(&self) {
        self.lock().failure = None;
    }

    /// Makes every row with this insert id fail with a row-level error.
    pub fn reject_insert_id(&self, insert_id: impl Into<String>) {
        self.lock().rejected_insert_ids.insert(insert_id.into());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock leaves plain data behind, still usable by tests.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl RowInserter for MemoryInserter {
    async fn insert_all(&self, table: &str, rows: &[InsertRow]) -> Result<(), InsertError> {
        let mut state = self.lock();
        state.calls += 1;
        if let Some(error) = &state.failure {
            return Err(error.clone());
        }

        let mut errors = Vec::new();
        let mut accepted = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            if state.rejected_insert_ids.contains(&row.insert_id) {
                errors.push(RowError {
                    index,
                    message: format!("invalid at row: insert id {} is rejected", row.insert_id),
                });
            } else {
                accepted.push(row.clone());
            }
        }
        state
            .tables
            .entry(table.to_string())
            .or_default()
            .extend(accepted);

        if errors.is_empty() {
            Ok(())
        } else {
            Err(InsertError::Rows { errors })
        }
    }
}

/// Creates the dataset, the `results` and `deliveries` tables (schemas, day partitioning and
/// clustering from `enrichment_payload::schemas`) and the `latest_results` view. Each resource
/// that already exists is left unchanged, so the call can be repeated.
pub async fn create_dataset_and_tables(
    client: &Client,
    project: &str,
    dataset: &str,
) -> Result<(), BigQueryError> {
    ignore_already_exists(
        client
            .dataset()
            .create(Dataset::new(project, dataset))
            .await,
        format!("creating dataset {project}.{dataset}"),
    )?;

    let tables = [
        (
            schemas::RESULTS_TABLE,
            schemas::RESULTS_SCHEMA_JSON,
            schemas::RESULTS_LAYOUT,
        ),
        (
            schemas::DELIVERIES_TABLE,
            schemas::DELIVERIES_SCHEMA_JSON,
            schemas::DELIVERIES_LAYOUT,
        ),
    ];
    for (name, schema_json, layout) in tables {
        let table = table_resource(project, dataset, name, schema_json, layout)?;
        ignore_already_exists(
            client.table().create(table).await,
            format!("creating table {project}.{dataset}.{name}"),
        )?;
    }

    // The view is created with DDL rather than `tables.insert`: the client cannot decode the
    // emulator's `tables.insert` response for a view, which has no `schema`.
    let view = schemas::LATEST_RESULTS_VIEW;
    let sql = format!(
        "CREATE VIEW IF NOT EXISTS `{project}.{dataset}.{view}` AS\n{}",
        schemas::render_view_sql(project, dataset)
    );
    let response = client
        .job()
        .query(project, QueryRequest::new(sql))
        .await
        .map_err(|source| BigQueryError::Request {
            operation: format!("creating view {project}.{dataset}.{view}"),
            source,
        })?;
    match response.errors {
        Some(errors) if !errors.is_empty() => Err(BigQueryError::Query {
            operation: format!("creating view {project}.{dataset}.{view}"),
            errors: errors.iter().map(ToString::to_string).collect(),
        }),
        _ => Ok(()),
    }
}

/// Builds the table resource for `tables.insert`. Unset fields are left out of the request
/// rather than sent as `null`, which the BigQuery emulator rejects with HTTP 500.
fn table_resource(
    project: &str,
    dataset: &str,
    name: &str,
    schema_json: &str,
    layout: schemas::TableLayout,
) -> Result<Table, BigQueryError> {
    let fields: Vec<TableFieldSchema> =
        serde_json::from_str(schema_json).map_err(|source| BigQueryError::Schema {
            table: name.to_string(),
            source,
        })?;

    Ok(Table::new(project, dataset, name, TableSchema::new(fields))
        .time_partitioning(
            TimePartitioning::new(layout.partition_type.to_string()).field(layout.partition_field),
        )
        .clustering(Clustering {
            fields: Some(
                layout
                    .clustering_fields
                    .iter()
                    .map(|field| field.to_string())
                    .collect(),
            ),
        }))
}

fn ignore_already_exists<T>(
    result: Result<T, BQError>,
    operation: String,
) -> Result<(), BigQueryError> {
    match result {
        Ok(_) => Ok(()),
        Err(BQError::ResponseError { error }) if error.error.code == 409 => Ok(()),
        Err(source) => Err(BigQueryError::Request { operation, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcp_bigquery_client::error::{NestedResponseError, ResponseError};
    use gcp_bigquery_client::model::error_proto::ErrorProto;
    use pretty_assertions::assert_eq;
    use std::collections::HashMap;

    fn response_error(code: i64, reasons: &[&str]) -> BQError {
        BQError::ResponseError {
            error: ResponseError {
                error: NestedResponseError {
                    code,
                    errors: reasons
                        .iter()
                        .map(|reason| HashMap::from([("reason".to_string(), reason.to_string())]))
                        .collect(),
                    message: "message".to_string(),
                    status: String::new(),
                },
            },
        }
    }

    fn row(insert_id: &str) -> InsertRow {
        InsertRow {
            insert_id: insert_id.to_string(),
            json: serde_json::json!({ "message_id": insert_id }),
        }
    }

    #[test]
    fn classify_status_and_reasons() {
        let cases: &[(i64, &[&str], bool)] = &[
            (400, &["invalid"], false),
            (401, &["authError"], true),
            (403, &["accessDenied"], false),
            (403, &["rateLimitExceeded"], true),
            (403, &["quotaExceeded"], true),
            (404, &["notFound"], false),
            (408, &[], true),
            (409, &["duplicate"], false),
            (429, &[], true),
            (500, &["internalError"], true),
            (500, &[], true),
            (502, &[], true),
            (503, &["backendError"], true),
            (504, &[], true),
            (400, &["timeout"], true),
            (302, &[], false),
        ];

        for (code, reasons, expected) in cases {
            let (retryable, reason) = classify(&response_error(*code, reasons));
            assert_eq!(retryable, *expected, "{code} {reasons:?}: {reason}");
        }
    }

    #[test]
    fn classify_client_errors() {
        let serialization = serde_json::from_str::<serde_json::Value>("{").unwrap_err();

        assert_eq!(
            classify(&BQError::SerializationError(serialization)),
            (false, "a row could not be serialised to JSON")
        );
        assert_eq!(
            classify(&BQError::NoToken),
            (
                true,
                "no access token: the metadata server or token endpoint did not answer"
            )
        );
    }

    #[test]
    fn row_errors_from_insert_errors() {
        let insert_errors = vec![
            TableDataInsertAllResponseInsertErrors {
                index: Some(2),
                errors: Some(vec![ErrorProto {
                    reason: Some("invalid".to_string()),
                    location: Some("extra".to_string()),
                    message: Some("not a JSON value".to_string()),
                    debug_info: None,
                }]),
            },
            TableDataInsertAllResponseInsertErrors {
                index: None,
                errors: None,
            },
        ];

        assert_eq!(
            row_errors(insert_errors),
            vec![
                RowError {
                    index: 2,
                    message: "invalid at extra: not a JSON value".to_string(),
                },
                RowError {
                    index: 0,
                    message: String::new(),
                },
            ]
        );
    }

    #[tokio::test]
    async fn closed_port_is_retryable() {
        crate::server::install_crypto_provider();
        // Port 9 (discard) has no listener on a test machine, so the connection is refused.
        let inserter = BigQueryInserter::connect("test-project", "enrichment", Some("127.0.0.1:9"))
            .await
            .unwrap();

        let error = inserter
            .insert_all("results", &[row("1")])
            .await
            .unwrap_err();

        let InsertError::Request { retryable, message } = &error else {
            panic!("expected a request error, got {error:?}");
        };
        assert!(retryable, "{message}");
        assert!(
            message.ends_with("(the connection to BigQuery failed)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn empty_insert_makes_no_request() {
        let inserter = BigQueryInserter::connect("test-project", "enrichment", Some("127.0.0.1:9"))
            .await
            .unwrap();

        assert!(inserter.insert_all("results", &[]).await.is_ok());
    }

    #[test]
    fn table_resource_has_layout_and_no_nulls() {
        let table = table_resource(
            "test-project",
            "enrichment",
            schemas::RESULTS_TABLE,
            schemas::RESULTS_SCHEMA_JSON,
            schemas::RESULTS_LAYOUT,
        )
        .unwrap();

        let json = serde_json::to_value(&table).unwrap();

        assert_eq!(
            json["tableReference"],
            serde_json::json!({"projectId": "test-project", "datasetId": "enrichment", "tableId": "results"})
        );
        assert_eq!(
            json["timePartitioning"],
            serde_json::json!({"type": "DAY", "field": "received_at"})
        );
        assert_eq!(
            json["clustering"],
            serde_json::json!({"fields": ["partner_id", "input_email"]})
        );
        let names: Vec<&str> = json["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|field| field["name"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = schemas::results_schema()
            .into_iter()
            .map(|field| field.name)
            .collect();
        assert_eq!(names, expected);
        assert!(
            !contains_null(&json),
            "the request must not carry nulls: {json}"
        );
    }

    fn contains_null(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Null => true,
            serde_json::Value::Array(items) => items.iter().any(contains_null),
            serde_json::Value::Object(map) => map.values().any(contains_null),
            _ => false,
        }
    }

    #[tokio::test]
    async fn memory_inserter_keeps_rows_and_counts_calls() {
        let inserter = MemoryInserter::new();

        inserter
            .insert_all("results", &[row("1"), row("2")])
            .await
            .unwrap();
        inserter.insert_all("results", &[row("1")]).await.unwrap();

        let ids: Vec<String> = inserter
            .rows("results")
            .into_iter()
            .map(|row| row.insert_id)
            .collect();
        assert_eq!(ids, vec!["1", "2", "1"]);
        assert_eq!(inserter.calls(), 2);
        assert_eq!(inserter.rows("deliveries"), Vec::new());
    }

    #[tokio::test]
    async fn memory_inserter_failure_and_recovery() {
        let inserter = MemoryInserter::new();
        inserter.fail_with(InsertError::Request {
            retryable: true,
            message: "unavailable".to_string(),
        });

        let error = inserter
            .insert_all("results", &[row("1")])
            .await
            .unwrap_err();
        inserter.recover();
        inserter.insert_all("results", &[row("2")]).await.unwrap();

        assert_eq!(error.to_string(), "insertAll request failed: unavailable");
        assert_eq!(inserter.rows("results"), vec![row("2")]);
        assert_eq!(inserter.calls(), 2);
    }

    #[tokio::test]
    async fn memory_inserter_rejects_rows() {
        let inserter = MemoryInserter::new();
        inserter.reject_insert_id("2");

        let error = inserter
            .insert_all("results", &[row("1"), row("2"), row("3")])
            .await
            .unwrap_err();

        let InsertError::Rows { errors } = error else {
            panic!("expected row errors, got {error:?}");
        };
        assert_eq!(
            errors,
            vec![RowError {
                index: 1,
                message: "invalid at row: insert id 2 is rejected".to_string(),
            }]
        );
        assert_eq!(inserter.rows("results"), vec![row("1"), row("3")]);
    }
}
