//! BigQuery emulator helpers: a dataset per test with the product's tables and view, standard
//! SQL queries, row inserts, and an inserter wrapper that counts `insertAll` calls.
//!
//! ```no_run
//! # async fn demo() {
//! use integration_tests::bigquery::TestDataset;
//! let dataset = TestDataset::create("sink").await;
//! let rows = dataset
//!     .query(&format!("SELECT message_id FROM {}", dataset.table("results")))
//!     .await;
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use enrichment_runtime::bigquery::{self, BigQueryInserter, InsertError, InsertRow, RowInserter};
use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::query_request::QueryRequest;
use serde_json::Value;

use crate::{require_env, unique_suffix};

/// A dataset of its own on the BigQuery emulator, with the `results` and `deliveries` tables
/// and the `latest_results` view created from the repository's schema files.
#[derive(Clone)]
pub struct TestDataset {
    pub client: Client,
    pub project: String,
    pub dataset: String,
    /// `BIGQUERY_EMULATOR_HOST` as set, `host:port`.
    pub emulator_host: String,
}

impl std::fmt::Debug for TestDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDataset")
            .field("project", &self.project)
            .field("dataset", &self.dataset)
            .field("emulator_host", &self.emulator_host)
            .finish_non_exhaustive()
    }
}

impl TestDataset {
    /// Creates dataset `<prefix>_<unique suffix>` with the product's tables and view.
    /// Panics when `BIGQUERY_EMULATOR_HOST` or `GOOGLE_CLOUD_PROJECT` is unset.
    pub async fn create(prefix: &str) -> Self {
        let emulator_host = require_env("BIGQUERY_EMULATOR_HOST");
        let project = require_env("GOOGLE_CLOUD_PROJECT");
        let dataset = format!("{prefix}_{}", unique_suffix());
        let client = emulator_client(&emulator_host).await;

        bigquery::create_dataset_and_tables(&client, &project, &dataset)
            .await
            .unwrap_or_else(|error| panic!("creating dataset {dataset} failed: {error}"));

        Self {
            client,
            project,
            dataset,
            emulator_host,
        }
    }

    /// Returns the quoted full name of a table or view, such as
    /// `` `test-project.sink_abc.results` ``.
    pub fn table(&self, name: &str) -> String {
        format!("`{}.{}.{name}`", self.project, self.dataset)
    }

    /// Returns an inserter into this dataset on the emulator.
    pub fn inserter(&self) -> BigQueryInserter {
        BigQueryInserter::new(self.client.clone(), &self.project, &self.dataset)
    }

    /// Runs a standard SQL query and returns each row as column name to value. BigQuery's REST
    /// API returns every scalar as a JSON string, and NULL as `null`.
    pub async fn query(&self, sql: &str) -> Vec<BTreeMap<String, Value>> {
        let response = self
            .client
            .job()
            .query(&self.project, QueryRequest::new(sql))
            .await
            .unwrap_or_else(|error| panic!("query failed: {error}\n{sql}"));
        assert_eq!(
            response.job_complete,
            Some(true),
            "query did not complete: {sql}"
        );

        let names: Vec<String> = response
            .schema
            .and_then(|schema| schema.fields)
            .unwrap_or_default()
            .into_iter()
            .map(|field| field.name)
            .collect();
        response
            .rows
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                let cells = row.columns.unwrap_or_default();
                names
                    .iter()
                    .cloned()
                    .zip(
                        cells
                            .into_iter()
                            .map(|cell| cell.value.unwrap_or(Value::Null)),
                    )
                    .collect()
            })
            .collect()
    }

    /// Returns the number of rows of a query's `COUNT(*) AS n`-style single value.
    pub async fn count(&self, sql: &str) -> u64 {
        let rows = self.query(sql).await;
        assert_eq!(rows.len(), 1, "expected one row from: {sql}");
        let value = rows[0].values().next().cloned().unwrap_or(Value::Null);
        value
            .as_str()
            .and_then(|text| text.parse().ok())
            .or_else(|| value.as_u64())
            .unwrap_or_else(|| panic!("expected a count, got {value} from: {sql}"))
    }

    /// Inserts rows into a table with `insertAll`, panicking on any error.
    pub async fn insert(&self, table: &str, rows: &[InsertRow]) {
        self.inserter()
            .insert_all(table, rows)
            .await
            .unwrap_or_else(|error| panic!("inserting into {table} failed: {error:?}"));
    }
}

/// Builds a client for the BigQuery emulator at `host` (`host:port`).
pub async fn emulator_client(host: &str) -> Client {
    enrichment_runtime::server::install_crypto_provider();
    bigquery::connect(Some(host))
        .await
        .unwrap_or_else(|error| panic!("building the BigQuery client for {host} failed: {error}"))
}

/// A [`RowInserter`] that counts calls and rows, then passes them to another inserter.
#[derive(Debug)]
pub struct CountingInserter<I> {
    inner: I,
    calls: AtomicUsize,
    rows: AtomicUsize,
}

impl<I: RowInserter> CountingInserter<I> {
    pub fn new(inner: I) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicUsize::new(0),
            rows: AtomicUsize::new(0),
        })
    }

    /// Returns the number of `insert_all` calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Returns the number of rows passed to `insert_all` so far.
    pub fn rows(&self) -> usize {
        self.rows.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<I: RowInserter> RowInserter for CountingInserter<I> {
    async fn insert_all(&self, table: &str, rows: &[InsertRow]) -> Result<(), InsertError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.rows.fetch_add(rows.len(), Ordering::SeqCst);
        self.inner.insert_all(table, rows).await
    }
}
