//! The outbound sender: reads files of emails from Cloud Storage and delivers each email to
//! the partner's webhook through a paced queue.
//!
//! - `POST /` takes the object-finalized event (an Eventarc CloudEvent or a Cloud Storage
//!   notification pushed by Pub/Sub), streams the object, records the rows that are not sent
//!   and enqueues one job per valid unique (tenant, email). It responds without sending.
//! - `POST /deliver` makes one signed attempt for one job, records the final outcome in
//!   BigQuery and tells the queue whether to retry. Cloud Tasks calls it in production; the
//!   local queue calls the same code in process.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::post;
use enrichment_runtime::bigquery::{BigQueryInserter, RowInserter};
use enrichment_runtime::storage::{GcsStore, ObjectStore};

pub mod claims;
pub mod config;
pub mod deliver;
pub mod input;
pub mod jobs;
pub mod policy;
pub mod process;
pub mod queue;
pub mod records;
pub mod routes;
pub mod trigger;

pub use config::{Config, QueueConfig};
pub use jobs::{Job, SourceObject};
pub use queue::{DeliveryQueue, LocalQueue};

use crate::claims::ClaimStore;
use crate::deliver::{Deliverer, DeliveryCore};
use crate::queue::CloudTasksQueue;
use crate::queue::local::LocalPolicy;
use crate::records::DeliveryRecorder;

/// The service name in logs.
pub const SERVICE_NAME: &str = "outbound-sender";

/// The delivery queue to use.
pub enum QueueChoice {
    /// Cloud Tasks through this client; the configuration must name the queue
    /// (`DELIVERY_QUEUE=cloud-tasks`).
    CloudTasks(google_cloud_tasks_v2::client::CloudTasks),
    /// The in-process paced queue.
    Local,
    /// Any other queue, such as a stub in benchmarks.
    Custom(Arc<dyn DeliveryQueue>),
}

impl std::fmt::Debug for QueueChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueueChoice::CloudTasks(_) => "CloudTasks",
            QueueChoice::Local => "Local",
            QueueChoice::Custom(_) => "Custom",
        })
    }
}

/// The backends the sender runs on, built by [`run`] or injected by tests and the local stack.
pub struct Backends {
    pub store: Arc<dyn ObjectStore>,
    pub inserter: Arc<dyn RowInserter>,
    pub queue: QueueChoice,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Client(#[from] deliver::ClientBuildError),
    #[error(
        "QueueChoice::CloudTasks needs DELIVERY_QUEUE=cloud-tasks with CLOUD_TASKS_QUEUE, DELIVER_URL and DELIVER_SERVICE_ACCOUNT set"
    )]
    CloudTasksNotConfigured,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Arc<dyn ObjectStore>,
    queue: Arc<dyn DeliveryQueue>,
    local_queue: Option<LocalQueue>,
    core: Arc<DeliveryCore>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state from a configuration and backends. With [`QueueChoice::Local`] this
    /// starts the queue's worker, so it must run inside a Tokio runtime.
    pub fn new(config: Config, backends: Backends) -> Result<Self, BuildError> {
        let recorder = DeliveryRecorder::new(backends.inserter, config.deliveries_table.clone());
        let core = Arc::new(DeliveryCore {
            deliverer: Deliverer::new(&config)?,
            recorder,
            max_retries: config.max_retries,
        });

        let (queue, local_queue): (Arc<dyn DeliveryQueue>, Option<LocalQueue>) = match backends
            .queue
        {
            QueueChoice::CloudTasks(client) => {
                let QueueConfig::CloudTasks(tasks_config) = &config.queue else {
                    return Err(BuildError::CloudTasksNotConfigured);
                };
                let queue =
                    CloudTasksQueue::new(client, tasks_config.clone(), config.request_timeout);
                (Arc::new(queue), None)
            }
            QueueChoice::Local => {
                let policy = LocalPolicy {
                    max_retries: config.max_retries,
                    retry_base_delay: config.retry_base_delay,
                    retry_jitter: config.retry_jitter,
                    min_request_interval: config.min_request_interval,
                };
                let claims = ClaimStore::new(backends.store.clone());
                let queue =
                    LocalQueue::start(core.clone(), claims, config.state_bucket.clone(), policy);
                (Arc::new(queue.clone()), Some(queue))
            }
            QueueChoice::Custom(queue) => (queue, None),
        };

        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store: backends.store,
                queue,
                local_queue,
                core,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &dyn ObjectStore {
        self.inner.store.as_ref()
    }

    pub fn queue(&self) -> &dyn DeliveryQueue {
        self.inner.queue.as_ref()
    }

    pub fn core(&self) -> &DeliveryCore {
        &self.inner.core
    }

    /// Returns the local queue, to wait for its jobs, or `None` with any other queue.
    pub fn local_queue(&self) -> Option<&LocalQueue> {
        self.inner.local_queue.as_ref()
    }
}

/// Builds the router: `POST /` for events and `POST /deliver` for attempts.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", post(routes::handle_trigger))
        .route("/deliver", post(routes::handle_deliver))
        .with_state(state)
}

/// Builds the production backends from `config` and serves until SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    enrichment_runtime::server::install_crypto_provider();

    let store = GcsStore::connect(config.storage_emulator.as_deref())
        .await
        .context("building the Cloud Storage client")?;
    let inserter = BigQueryInserter::connect(
        config.project.clone(),
        config.bigquery_dataset.clone(),
        config.bigquery_emulator.as_deref(),
    )
    .await
    .context("building the BigQuery client")?;
    let queue = match &config.queue {
        QueueConfig::CloudTasks(_) => QueueChoice::CloudTasks(
            google_cloud_tasks_v2::client::CloudTasks::builder()
                .build()
                .await
                .context("building the Cloud Tasks client")?,
        ),
        QueueConfig::Local => QueueChoice::Local,
    };

    tracing::info!(
        partner_id = %config.partner_id,
        queue = ?queue,
        signed = config.signing_secret.is_some(),
        input_prefix = %config.input_prefix,
        "starting"
    );
    let state = AppState::new(
        config,
        Backends {
            store: Arc::new(store),
            inserter: Arc::new(inserter),
            queue,
        },
    )?;
    enrichment_runtime::server::serve(router(state), SERVICE_NAME).await?;
    Ok(())
}
