//! Rows per second of the results sink, for `tests/bench/run.sh`.
//!
//! It serves the sink's router on `127.0.0.1` on its own Tokio runtime, with the archive in
//! memory, and posts Pub/Sub push envelopes to it from a second runtime over HTTP/1.1 keep-alive
//! connections. Every message has its own message id and input email, as in production. The
//! run stops after `BENCH_MESSAGES` messages or `BENCH_MAX_SECS` seconds, whichever comes first.
//!
//! Configuration is the sink's own (`GOOGLE_CLOUD_PROJECT`, `ARCHIVE_BUCKET`,
//! `BIGQUERY_DATASET`, `RESULTS_TABLE`, `BATCH_MAX_ROWS`, `BATCH_MAX_WAIT_MS`), with one
//! difference: rows go to the BigQuery emulator when `BIGQUERY_EMULATOR_HOST` is set, and to
//! an in-memory warehouse (`MemoryInserter`) when it is not, never to BigQuery itself. Against
//! the emulator the dataset and tables are created first, and the stored rows are counted
//! afterwards with a query.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `BENCH_CONCURRENCY` | requests in flight | `64` |
//! | `BENCH_MESSAGES` | messages to send at most | `20000` |
//! | `BENCH_MAX_SECS` | seconds to send for at most | `20` |
//!
//! The sink's logs go to standard output at the level of `RUST_LOG`. The report is one JSON
//! object on standard error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use enrichment_payload::{EnrichmentResult, ResultRecord};
use enrichment_runtime::bigquery::{
    BigQueryInserter, MemoryInserter, RowInserter, create_dataset_and_tables,
};
use enrichment_runtime::config::{ConfigError, Env};
use enrichment_runtime::storage::MemoryStore;
use enrichment_runtime::{logging, server};
use results_sink::{Config, SinkState, router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A partner's result as the receiver publishes it; each message gets its own input email.
const PAYLOAD: &str = include_str!("../../../tests/bench/payload.json");
const PARTNER_ID: &str = "bench-partner";
const SUBSCRIPTION: &str = "projects/test-project/subscriptions/results-sink-bench";

/// Limits of one run, from the `BENCH_*` variables.
#[derive(Debug, Clone, Copy)]
struct RunLimits {
    concurrency: usize,
    messages: usize,
    max_duration: Duration,
}

impl RunLimits {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let concurrency: usize = env.parse_or("BENCH_CONCURRENCY", 64)?;
        let messages: usize = env.parse_or("BENCH_MESSAGES", 20_000)?;
        let max_secs: u64 = env.parse_or("BENCH_MAX_SECS", 20)?;
        if concurrency == 0 || messages == 0 || max_secs == 0 {
            return Err(ConfigError::invalid(
                "BENCH_CONCURRENCY",
                &format!("{concurrency}, {messages}, {max_secs}"),
                "BENCH_CONCURRENCY, BENCH_MESSAGES and BENCH_MAX_SECS above 0",
            ));
        }
        Ok(Self {
            concurrency,
            messages,
            max_duration: Duration::from_secs(max_secs),
        })
    }
}

/// Counts and latencies seen by the clients.
#[derive(Debug, Default)]
struct ClientTally {
    stored: usize,
    failed: usize,
    latencies: Vec<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init("results-sink-bench").context("invalid logging configuration")?;
    server::install_crypto_provider();
    let config = Config::from_env().context("invalid configuration")?;
    let limits = RunLimits::from_env(&Env::process()).context("invalid configuration")?;

    let warehouse = Warehouse::connect(&config).await?;
    let bodies = push_bodies(limits.messages)?;

    let (address, stop_server, server_thread) = start_server(&config, warehouse.inserter())?;
    let url = format!("http://{address}/");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(limits.concurrency)
        .build()
        .context("failed to build the HTTP client")?;

    let started = Instant::now();
    let tally = send_all(&client, &url, bodies, limits).await;
    let elapsed = started.elapsed();

    // Rows are counted before the server stops, while the memory warehouse still exists.
    let stored_rows = warehouse.count_rows(&config).await?;
    let _ = stop_server.send(());
    server_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;

    let report = report(&config, &warehouse, limits, &tally, elapsed, stored_rows);
    eprintln!("{report}");
    if tally.failed > 0 || stored_rows != tally.stored {
        bail!(
            "{} requests failed, and the warehouse holds {stored_rows} rows for {} stored \
             messages",
            tally.failed,
            tally.stored
        );
    }
    Ok(())
}

/// The warehouse that receives the rows.
enum Warehouse {
    Memory(Arc<MemoryInserter>),
    Emulator {
        inserter: Arc<BigQueryInserter>,
        base_url: String,
    },
}

impl Warehouse {
    async fn connect(config: &Config) -> anyhow::Result<Self> {
        let Some(base_url) = config.bigquery_emulator.clone() else {
            return Ok(Warehouse::Memory(Arc::new(MemoryInserter::new())));
        };
        let inserter = BigQueryInserter::connect(
            config.project.clone(),
            config.dataset.clone(),
            Some(&base_url),
        )
        .await
        .context("failed to connect to the BigQuery emulator")?;
        create_dataset_and_tables(inserter.client(), &config.project, &config.dataset)
            .await
            .context("failed to create the dataset and tables in the BigQuery emulator")?;
        Ok(Warehouse::Emulator {
            inserter: Arc::new(inserter),
            base_url,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Warehouse::Memory(_) => "memory",
            Warehouse::Emulator { .. } => "bigquery-emulator",
        }
    }

    fn inserter(&self) -> Arc<dyn RowInserter> {
        match self {
            Warehouse::Memory(inserter) => inserter.clone(),
            Warehouse::Emulator { inserter, .. } => inserter.clone(),
        }
    }

    /// Counts the rows in the results table.
    async fn count_rows(&self, config: &Config) -> anyhow::Result<usize> {
        match self {
            Warehouse::Memory(inserter) => Ok(inserter.rows(&config.results_table).len()),
            Warehouse::Emulator { base_url, .. } => count_emulator_rows(base_url, config).await,
        }
    }
}

/// Runs `SELECT COUNT(*)` on the results table through the emulator's REST API.
async fn count_emulator_rows(base_url: &str, config: &Config) -> anyhow::Result<usize> {
    let project = &config.project;
    let sql = format!(
        "SELECT COUNT(*) FROM `{project}.{}.{}`",
        config.dataset, config.results_table
    );
    let response: Value = reqwest::Client::new()
        .post(format!("{base_url}/bigquery/v2/projects/{project}/queries"))
        .json(&json!({"query": sql, "useLegacySql": false}))
        .send()
        .await
        .context("the row count query failed")?
        .error_for_status()
        .context("the row count query failed")?
        .json()
        .await
        .context("the row count response is not JSON")?;
    let count = response
        .pointer("/rows/0/f/0/v")
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok())
        .with_context(|| format!("the row count response has no count: {response}"))?;
    Ok(count)
}

/// Builds `count` push envelopes, each with its own message id, delivery id and input email.
fn push_bodies(count: usize) -> anyhow::Result<Vec<Bytes>> {
    let template: Value = serde_json::from_str(PAYLOAD).context("the payload is not JSON")?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let base64 = base64::engine::general_purpose::STANDARD;

    let mut bodies = Vec::with_capacity(count);
    for index in 0..count {
        let mut fields = template.clone();
        fields["input_email"] = json!(format!("contact.{index}@example.com"));
        let result = EnrichmentResult::from_json(&fields)
            .map_err(|errors| anyhow::anyhow!("the payload is invalid: {errors:?}"))?;
        let record = ResultRecord::new(
            PARTNER_ID,
            uuid::Uuid::new_v4().to_string(),
            Utc::now(),
            result,
        );
        let message_id = format!("{run}-{index}");
        let envelope = json!({
            "message": {
                "data": base64.encode(record.to_json_bytes()),
                "attributes": record.attributes(),
                "messageId": message_id,
                "publishTime": Utc::now().to_rfc3339(),
            },
            "subscription": SUBSCRIPTION,
        });
        bodies.push(Bytes::from(serde_json::to_vec(&envelope)?));
    }
    Ok(bodies)
}

type ServerThread = std::thread::JoinHandle<anyhow::Result<()>>;

/// Starts the sink on `127.0.0.1:0` in a thread with its own multi-threaded runtime, sized
/// like `#[tokio::main]`, so the clients do not run on the server's worker threads.
fn start_server(
    config: &Config,
    inserter: Arc<dyn RowInserter>,
) -> anyhow::Result<(std::net::SocketAddr, oneshot::Sender<()>, ServerThread)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sink-server")
        .build()
        .context("failed to build the server runtime")?;
    // Bound here, before the thread starts, so that the address is known on return.
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("failed to listen on 127.0.0.1")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let (stop_sender, stop_receiver) = oneshot::channel::<()>();

    let config = config.clone();
    let thread = std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener)?;
            let state = SinkState::new(&config, Arc::new(MemoryStore::new()), inserter);
            let shutdown = async {
                let _ = stop_receiver.await;
            };
            server::serve_on(listener, router(state), shutdown)
                .await
                .context("the sink server failed")
        })
    });
    Ok((address, stop_sender, thread))
}

/// Sends the bodies from `limits.concurrency` workers, each with one request in flight.
async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Bytes>,
    limits: RunLimits,
) -> ClientTally {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + limits.max_duration;

    let mut workers = Vec::with_capacity(limits.concurrency);
    for _ in 0..limits.concurrency {
        let client = client.clone();
        let url = url.to_string();
        let bodies = Arc::clone(&bodies);
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            let mut tally = ClientTally::default();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= bodies.len() || Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[index].clone())
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == reqwest::StatusCode::NO_CONTENT => {
                        tally.stored += 1;
                        tally.latencies.push(sent.elapsed());
                    }
                    Ok(response) => {
                        tally.failed += 1;
                        eprintln!("message {index}: status {}", response.status());
                    }
                    Err(error) => {
                        tally.failed += 1;
                        eprintln!("message {index}: {error}");
                    }
                }
            }
            tally
        }));
    }

    let mut total = ClientTally::default();
    for worker in workers {
        match worker.await {
            Ok(tally) => {
                total.stored += tally.stored;
                total.failed += tally.failed;
                total.latencies.extend(tally.latencies);
            }
            Err(error) => {
                eprintln!("a client worker panicked: {error}");
                total.failed += 1;
            }
        }
    }
    total
}

/// Returns the `q` quantile of sorted `latencies` in milliseconds (nearest rank).
fn quantile_ms(latencies: &[Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let rank = ((latencies.len() as f64) * q).ceil() as usize;
    let index = rank.clamp(1, latencies.len()) - 1;
    latencies[index].as_secs_f64() * 1000.0
}

fn report(
    config: &Config,
    warehouse: &Warehouse,
    limits: RunLimits,
    tally: &ClientTally,
    elapsed: Duration,
    stored_rows: usize,
) -> Value {
    let mut latencies = tally.latencies.clone();
    latencies.sort_unstable();
    json!({
        "warehouse": warehouse.name(),
        "batch_max_rows": config.batch_max_rows,
        "batch_max_wait_ms": config.batch_max_wait.as_millis() as u64,
        "concurrency": limits.concurrency,
        "messages_stored": tally.stored,
        "requests_failed": tally.failed,
        "rows_in_table": stored_rows,
        "seconds": elapsed.as_secs_f64(),
        "rows_per_sec": stored_rows as f64 / elapsed.as_secs_f64(),
        "latency_p50_ms": quantile_ms(&latencies, 0.50),
        "latency_p99_ms": quantile_ms(&latencies, 0.99),
    })
}
