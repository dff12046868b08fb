//! Measures insert throughput with micro-batching against one `insertAll` call per message.
//!
//! 64 concurrent workers insert result rows, either through the sink's [`Batcher`] (at most
//! `BATCH_MAX_ROWS` rows, 500 by default, or 50 ms per call) or with one call each. Each mode runs against the
//! `MemoryInserter` and, when `BIGQUERY_EMULATOR_HOST` is set, against the BigQuery emulator
//! in a new dataset. This is a quick measurement, not a benchmark with statistics.
//!
//! ```text
//! BIGQUERY_EMULATOR_HOST=127.0.0.1:9050 GOOGLE_CLOUD_PROJECT=test-project \
//!     cargo run --release -p results-sink --example batch_throughput -- [EMULATOR_ROWS [BATCH_MAX_ROWS]]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::Utc;
use enrichment_payload::{EnrichmentResult, ResultRecord, ResultRow};
use enrichment_runtime::bigquery::{
    self, BigQueryInserter, InsertError, InsertRow, MemoryInserter, RowInserter,
};
use results_sink::batch::Batcher;

const CONCURRENCY: usize = 64;
const MEMORY_ROWS: usize = 100_000;
const DEFAULT_EMULATOR_ROWS: usize = 2_000;
const DEFAULT_BATCH_MAX_ROWS: usize = 500;
const BATCH_MAX_WAIT: Duration = Duration::from_millis(50);

/// Counts `insertAll` calls on the way to another inserter.
struct Counting {
    inner: Arc<dyn RowInserter>,
    calls: AtomicUsize,
}

#[async_trait]
impl RowInserter for Counting {
    async fn insert_all(&self, table: &str, rows: &[InsertRow]) -> Result<(), InsertError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.insert_all(table, rows).await
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Batched,
    PerMessage,
}

fn row_template() -> serde_json::Value {
    let result = EnrichmentResult::from_json(&serde_json::json!({
        "input_email": "bench@example.com",
        "work_email": "bench@acme-corp.com",
        "phone_number": "+14155552671",
        "name": "Bench Mark",
    }))
    .expect("a valid result");
    let record = ResultRecord::new("acme", "bench-delivery", Utc::now(), result);
    ResultRow::from_record(&record, "0", Utc::now(), Utc::now()).to_json()
}

/// Inserts `rows` rows with [`CONCURRENCY`] workers and returns (rows per second, calls).
async fn measure(
    inserter: Arc<dyn RowInserter>,
    mode: Mode,
    rows: usize,
    batch_max_rows: usize,
) -> (f64, usize) {
    let counting = Arc::new(Counting {
        inner: inserter,
        calls: AtomicUsize::new(0),
    });
    let batcher = Batcher::spawn(counting.clone(), "results", batch_max_rows, BATCH_MAX_WAIT);
    let next = Arc::new(AtomicUsize::new(0));
    let template = row_template();
    let start = Instant::now();

    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let next = Arc::clone(&next);
            let counting = Arc::clone(&counting);
            let batcher = batcher.clone();
            let template = template.clone();
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= rows {
                        break;
                    }
                    let message_id = format!("bench-{index}");
                    let mut json = template.clone();
                    json["message_id"] = serde_json::Value::String(message_id.clone());
                    let row = InsertRow {
                        insert_id: message_id,
                        json,
                    };
                    let outcome = match mode {
                        Mode::Batched => batcher.insert(row).await,
                        Mode::PerMessage => counting.insert_all("results", &[row]).await,
                    };
                    outcome.expect("insert failed");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker panicked");
    }

    let elapsed = start.elapsed().as_secs_f64();
    (
        rows as f64 / elapsed,
        counting.calls.load(Ordering::Relaxed),
    )
}

async fn report(backend: &str, inserter: Arc<dyn RowInserter>, rows: usize, batch_max_rows: usize) {
    for mode in [Mode::Batched, Mode::PerMessage] {
        let (rate, calls) = measure(Arc::clone(&inserter), mode, rows, batch_max_rows).await;
        println!(
            "{backend:<10} {:<11} {rows:>7} rows  {calls:>7} insertAll calls  {rate:>10.0} rows/s",
            format!("{mode:?}")
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    enrichment_runtime::server::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let emulator_rows = match args.next() {
        Some(text) => text.parse().context("EMULATOR_ROWS must be a number")?,
        None => DEFAULT_EMULATOR_ROWS,
    };
    let batch_max_rows = match args.next() {
        Some(text) => text.parse().context("BATCH_MAX_ROWS must be a number")?,
        None => DEFAULT_BATCH_MAX_ROWS,
    };
    println!(
        "concurrency {CONCURRENCY}, batches of at most {batch_max_rows} rows or {BATCH_MAX_WAIT:?}"
    );

    report(
        "memory",
        Arc::new(MemoryInserter::new()),
        MEMORY_ROWS,
        batch_max_rows,
    )
    .await;

    let Ok(host) = std::env::var("BIGQUERY_EMULATOR_HOST") else {
        println!("BIGQUERY_EMULATOR_HOST is not set: skipping the emulator");
        return Ok(());
    };
    let project = std::env::var("GOOGLE_CLOUD_PROJECT").unwrap_or_else(|_| "test-project".into());
    let dataset = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let client = bigquery::connect(Some(&host)).await?;
    bigquery::create_dataset_and_tables(&client, &project, &dataset).await?;
    report(
        "emulator",
        Arc::new(BigQueryInserter::new(client, project, dataset)),
        emulator_rows,
        batch_max_rows,
    )
    .await;
    Ok(())
}
