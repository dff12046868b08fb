//! Wiring: the three functions, the simulated partner and the embedded backends in one
//! process, each function on its own HTTP listener on 127.0.0.1.
//!
//! The flow: an upload into the input bucket (a local folder) and its storage event start the
//! sender, whose local queue sends paced, signed requests to the simulated partner. The partner
//! calls the receiver back, the receiver publishes to an in-process topic, and the topic pushes
//! each message to the sink, which writes the SQLite warehouse and the archive bucket.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use enrichment_runtime::config::{ConfigError, Env};
use enrichment_runtime::storage::{LocalDirStore, ObjectStore, StorageError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::event::{self, UploadedObject};
use crate::partner::{PartnerConfig, PartnerError, SimulatedPartner};
use crate::push::{PushBackoff, PushTopic};
use crate::secrets::new_webhook_secret;
use crate::warehouse::{Warehouse, WarehouseError};

/// Project id the functions are configured with; nothing leaves the machine.
pub const PROJECT_ID: &str = "local-project";
/// The simulated partner's id, in every delivery and result row.
pub const PARTNER_ID: &str = "simulated-partner";
/// Bucket (subfolder of the data folder) that receives uploads and the sender's claims.
pub const INPUT_BUCKET: &str = "input";
/// Bucket (subfolder of the data folder) of the sink's result archive.
pub const ARCHIVE_BUCKET: &str = "archive";
/// Topic id of the receiver's results.
pub const RESULTS_TOPIC: &str = "results";
/// Push subscription that delivers the results topic to the sink.
pub const RESULTS_SUBSCRIPTION: &str = "projects/local-project/subscriptions/results-sink";
/// The SQLite warehouse inside the data folder.
pub const WAREHOUSE_FILE: &str = "warehouse.db";
/// Prefix of uploads; the sender ignores objects outside it.
pub const INPUT_PREFIX: &str = "incoming/";

/// Listen ports on 127.0.0.1; 0 picks a free port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ports {
    pub receiver: u16,
    pub sender: u16,
    pub sink: u16,
    pub partner: u16,
}

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub data_dir: PathBuf,
    pub ports: Ports,
    /// The sender's minimum time between two partner requests, retries included.
    pub min_request_interval: Duration,
    /// The sender's delay before the first retry, doubled for each later one.
    pub retry_base_delay: Duration,
    pub partner_delay: Duration,
    pub partner_failure_rate: f64,
    pub seed: u64,
}

/// Errors from starting the stack or handing it a file. Messages leave out the source error,
/// which `{:#}` (as `main` prints errors) appends after a colon.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot create the data folder {path}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// The OS error is part of the message and not the error's source, so that a printed
    /// chain (`{:#}`) shows it once, before the hint.
    #[error("cannot listen on {addr}: {error}; free the port or choose another with {flag}")]
    Bind {
        addr: SocketAddr,
        /// The command-line flag that sets this port, such as `--receiver-port`.
        flag: &'static str,
        error: std::io::Error,
    },
    #[error("invalid configuration of the {function}")]
    Config {
        function: &'static str,
        source: ConfigError,
    },
    #[error(transparent)]
    Partner(#[from] PartnerError),
    #[error("cannot build the sender")]
    Sender(#[from] outbound_sender::BuildError),
    #[error("cannot write the upload")]
    Upload(#[from] StorageError),
    #[error("the sender did not take the storage event: {0}")]
    Trigger(String),
}

/// The running stack. Dropping it leaves the servers running until [`Stack::shutdown`].
#[derive(Debug)]
pub struct Stack {
    pub receiver_url: String,
    pub sender_url: String,
    pub sink_url: String,
    pub partner_url: String,
    /// Secret the receiver verifies callbacks with.
    pub receiver_secret: String,
    pub data_dir: PathBuf,
    pub store: LocalDirStore,
    pub warehouse: Warehouse,
    pub results_topic: PushTopic,
    pub partner: SimulatedPartner,
    pub sender: outbound_sender::AppState,
    client: reqwest::Client,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

/// The sender's response to a storage event.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerOutcome {
    pub status: u16,
    /// The JSON body of a 200: rows read, jobs enqueued and rows skipped by reason.
    pub body: Option<serde_json::Value>,
}

/// Binds 127.0.0.1:`port` and returns the listener with its URL. `flag` is the command-line
/// flag that sets the port, for the error message.
async fn listen(port: u16, flag: &'static str) -> Result<(TcpListener, String), StackError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let bind_error = |error| StackError::Bind { addr, flag, error };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, format!("http://{bound}/")))
}

fn config_error(function: &'static str) -> impl FnOnce(ConfigError) -> StackError {
    move |source| StackError::Config { function, source }
}

impl Stack {
    /// Opens the warehouse, binds the four listeners and starts serving.
    pub async fn start(options: StackOptions) -> Result<Self, StackError> {
        std::fs::create_dir_all(&options.data_dir).map_err(|source| StackError::DataDir {
            path: options.data_dir.clone(),
            source,
        })?;
        let warehouse = Warehouse::open(&options.data_dir.join(WAREHOUSE_FILE))?;
        let store = LocalDirStore::new(&options.data_dir);

        let (receiver_listener, receiver_url) =
            listen(options.ports.receiver, "--receiver-port").await?;
        let (sender_listener, sender_url) = listen(options.ports.sender, "--sender-port").await?;
        let (sink_listener, sink_url) = listen(options.ports.sink, "--sink-port").await?;
        let (partner_listener, partner_url) =
            listen(options.ports.partner, "--partner-port").await?;

        // Fresh secrets per start: the sender signs with `partner_secret` and the partner
        // verifies it; the partner signs callbacks with `receiver_secret`.
        let partner_secret = new_webhook_secret();
        let receiver_secret = new_webhook_secret();

        let sink_router = build_sink(&store, &warehouse)?;
        let results_topic = PushTopic::new(
            sink_router.clone(),
            RESULTS_SUBSCRIPTION,
            PushBackoff::default(),
        );
        let receiver_router = build_receiver(&receiver_secret, &results_topic)?;
        let partner = SimulatedPartner::new(PartnerConfig {
            request_secret: Some(partner_secret.clone()),
            callback_url: receiver_url.clone(),
            callback_secret: receiver_secret.clone(),
            callback_delay: options.partner_delay,
            failure_rate: options.partner_failure_rate,
            seed: options.seed,
            callback_max_attempts: 5,
            callback_retry_base: Duration::from_millis(250),
        })?;
        let sender = build_sender(&options, &partner_url, &partner_secret, &store, &warehouse)?;

        let (stop, _) = watch::channel(false);
        let mut servers = Vec::new();
        for (listener, router) in [
            (receiver_listener, receiver_router),
            (sender_listener, outbound_sender::router(sender.clone())),
            (sink_listener, sink_router),
            (partner_listener, partner.router()),
        ] {
            let mut stopped = stop.subscribe();
            let shutdown = async move {
                // An error means the stack was dropped, which also means stop.
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            servers.push(tokio::spawn(enrichment_runtime::server::serve_on(
                listener, router, shutdown,
            )));
        }

        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| StackError::Trigger(error.to_string()))?;

        Ok(Self {
            receiver_url,
            sender_url,
            sink_url,
            partner_url,
            receiver_secret,
            data_dir: options.data_dir,
            store,
            warehouse,
            results_topic,
            partner,
            sender,
            client,
            stop,
            servers,
        })
    }

    /// Writes `data` to the input bucket as `incoming/<tenant>/<file_name>`, replacing an
    /// earlier upload of that name (which gives it a new generation), and returns the object.
    pub async fn upload(
        &self,
        tenant: &str,
        file_name: &str,
        data: Bytes,
    ) -> Result<UploadedObject, StackError> {
        let name = format!("{INPUT_PREFIX}{tenant}/{file_name}");
        let content_type = content_type_for(file_name);
        self.store
            .write(INPUT_BUCKET, &name, data, content_type)
            .await?;
        let (meta, _reader) = self.store.open(INPUT_BUCKET, &name, None).await?;
        Ok(UploadedObject {
            bucket: INPUT_BUCKET.to_string(),
            name,
            generation: meta.generation,
            size: meta.size,
            content_type: content_type.to_string(),
            updated: chrono::Utc::now(),
        })
    }

    /// Returns the file path of an object of the input bucket.
    pub fn object_path(&self, object: &UploadedObject) -> PathBuf {
        self.data_dir.join(&object.bucket).join(&object.name)
    }

    /// Sends the object's finalize event to the sender over HTTP, as Eventarc does. It sends the
    /// event again with backoff while the sender responds with 5xx or cannot be reached.
    pub async fn trigger(&self, object: &UploadedObject) -> Result<TriggerOutcome, StackError> {
        let event = event::object_finalized(object);
        let mut last_error = String::new();
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500) * (1 << (attempt - 1))).await;
            }
            let mut request = self.client.post(&self.sender_url).json(&event.body);
            for (name, value) in &event.headers {
                request = request.header(*name, value);
            }
            match request.send().await {
                Ok(response) if !response.status().is_server_error() => {
                    let status = response.status().as_u16();
                    let body = response.json::<serde_json::Value>().await.ok();
                    return Ok(TriggerOutcome { status, body });
                }
                Ok(response) => last_error = format!("HTTP {}", response.status()),
                Err(error) => last_error = error.to_string(),
            }
            tracing::warn!(attempt, error = %last_error, "sender did not take the storage event; sending it again");
        }
        Err(StackError::Trigger(last_error))
    }

    /// True when no job, callback or Pub/Sub message is in flight. The checks run in the order
    /// work flows (queue, partner, topic), so work cannot pass a check that already ran.
    pub fn idle(&self) -> bool {
        let queue_idle = self
            .sender
            .local_queue()
            .is_none_or(|queue| queue.pending() == 0);
        queue_idle && self.partner.pending_callbacks() == 0 && self.results_topic.pending() == 0
    }

    /// Stops the servers, letting requests in flight finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for server in self.servers {
            match tokio::time::timeout(Duration::from_secs(10), server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => tracing::warn!(%error, "a server stopped with an error"),
                Ok(Err(error)) => tracing::warn!(%error, "a server task failed"),
                Err(_) => tracing::warn!("a server did not stop within 10 s"),
            }
        }
    }
}

/// Returns the content type of an upload named `file_name`.
pub fn content_type_for(file_name: &str) -> &'static str {
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".gz") {
        "application/gzip"
    } else if lower.ends_with(".csv") {
        "text/csv"
    } else if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
        "application/x-ndjson"
    } else {
        "text/plain"
    }
}

fn build_sink(store: &LocalDirStore, warehouse: &Warehouse) -> Result<axum::Router, StackError> {
    let env = Env::from_pairs([
        ("GOOGLE_CLOUD_PROJECT", PROJECT_ID),
        ("ARCHIVE_BUCKET", ARCHIVE_BUCKET),
    ]);
    let config = results_sink::Config::from_source(&env).map_err(config_error("sink"))?;
    let state = results_sink::SinkState::new(
        &config,
        Arc::new(store.clone()),
        Arc::new(warehouse.clone()),
    );
    Ok(results_sink::router(state))
}

fn build_receiver(secret: &str, topic: &PushTopic) -> Result<axum::Router, StackError> {
    let env = Env::from_pairs([
        ("GOOGLE_CLOUD_PROJECT", PROJECT_ID),
        ("PARTNER_ID", PARTNER_ID),
        ("RESULTS_TOPIC", RESULTS_TOPIC),
        ("AUTH_MODE", "signature"),
        ("WEBHOOK_SECRETS", secret),
    ]);
    let config = inbound_receiver::Config::from_env_with(&env).map_err(config_error("receiver"))?;
    let state = inbound_receiver::AppState::new(&config, Arc::new(topic.clone()));
    Ok(inbound_receiver::router(state))
}

fn build_sender(
    options: &StackOptions,
    partner_url: &str,
    partner_secret: &str,
    store: &LocalDirStore,
    warehouse: &Warehouse,
) -> Result<outbound_sender::AppState, StackError> {
    let mut config = outbound_sender::Config::local(PROJECT_ID, PARTNER_ID, partner_url);
    config.signing_secret = Some(
        outbound_sender::config::SigningSecret::new(partner_secret)
            .map_err(config_error("sender"))?,
    );
    config.min_request_interval = options.min_request_interval;
    // Raising the base to the interval keeps every retry at least one interval after the
    // failed attempt.
    config.retry_base_delay = options.retry_base_delay.max(options.min_request_interval);
    config.input_prefix = INPUT_PREFIX.to_string();
    let backends = outbound_sender::Backends {
        store: Arc::new(store.clone()),
        inserter: Arc::new(warehouse.clone()),
        queue: outbound_sender::QueueChoice::Local,
    };
    Ok(outbound_sender::AppState::new(config, backends)?)
}

/// Returns the path of the warehouse in `data_dir`.
pub fn warehouse_path(data_dir: &Path) -> PathBuf {
    data_dir.join(WAREHOUSE_FILE)
}

/// Counts the data rows of a file the way the sender reads them (blank lines excluded), so the
/// run can check the sender's work against a count of its own.
pub async fn count_rows(
    data: Bytes,
    file_name: &str,
) -> Result<u64, outbound_sender::input::InputError> {
    let mut reader =
        outbound_sender::input::RowReader::open(std::io::Cursor::new(data), file_name).await?;
    let mut rows = 0;
    while reader.next_row().await?.is_some() {
        rows += 1;
    }
    Ok(rows)
}
