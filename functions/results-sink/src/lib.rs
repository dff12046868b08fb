//! The results sink: stores each enrichment result that the inbound receiver published as one
//! BigQuery row and one archived JSON object.
//!
//! Pub/Sub delivers at least once, so every step is idempotent. The row carries the message id
//! as its insertId (and the `latest_results` view keeps one row per message id), and the archive
//! object is written only if absent. A message that can never be stored is moved to
//! `rejected/` in the archive bucket and acknowledged.
//!
//! [`router`] serves the handler on injected backends, so tests and the local stack can run it
//! on memory or local-folder backends. [`run`] builds the Google Cloud backends and serves.

pub mod archive;
pub mod batch;
pub mod config;
pub mod handler;

use std::sync::Arc;

use enrichment_runtime::bigquery::{BigQueryError, BigQueryInserter};
use enrichment_runtime::server::{self, ServeError};
use enrichment_runtime::storage::{GcsStore, StorageError};

pub use config::{Config, REQUIRED_VARS};
pub use handler::{SinkState, router};

/// Name of the service in logs.
pub const SERVICE_NAME: &str = "results-sink";

/// Error that stops [`run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot connect to Cloud Storage: {0}")]
    Storage(#[source] StorageError),
    #[error("cannot connect to BigQuery: {0}")]
    BigQuery(#[source] BigQueryError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Builds the Cloud Storage and BigQuery clients (or their emulators' when configured) and
/// serves the sink until SIGTERM.
pub async fn run(config: Config) -> Result<(), RunError> {
    server::install_crypto_provider();

    let store = GcsStore::connect(config.storage_emulator.as_deref())
        .await
        .map_err(RunError::Storage)?;
    let inserter = BigQueryInserter::connect(
        config.project.clone(),
        config.dataset.clone(),
        config.bigquery_emulator.as_deref(),
    )
    .await
    .map_err(RunError::BigQuery)?;
    tracing::info!(
        project = %config.project,
        dataset = %config.dataset,
        table = %config.results_table,
        bucket = %config.archive_bucket,
        batch_max_rows = config.batch_max_rows,
        batch_max_wait_ms = config.batch_max_wait.as_millis() as u64,
        "results sink configured"
    );

    let state = SinkState::new(&config, Arc::new(store), Arc::new(inserter));
    server::serve(router(state), SERVICE_NAME).await?;
    Ok(())
}
