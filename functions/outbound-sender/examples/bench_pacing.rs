//! Pacing of the local delivery queue, for `tests/bench/run.sh`.
//!
//! It starts a partner server on `127.0.0.1:0` that responds with 200 and records when each request
//! arrives, enqueues `BENCH_REQUESTS` jobs (default 200) on the sender's local queue with
//! `MIN_REQUEST_INTERVAL_MS` (default 50, so 20 requests per second), waits until every job is
//! delivered, and prints the gaps between consecutive arrivals as one JSON object on standard
//! output. Claims and delivery rows go to in-memory backends. The run fails after
//! `BENCH_MAX_SECS` seconds (default 60) or when the partner did not receive every job exactly
//! once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::Utc;
use enrichment_runtime::bigquery::MemoryInserter;
use enrichment_runtime::config::Env;
use enrichment_runtime::server;
use enrichment_runtime::storage::MemoryStore;
use outbound_sender::{AppState, Backends, Config, Job, QueueChoice};
use serde_json::json;
use tokio::net::TcpListener;

const PROJECT: &str = "bench-project";
const PARTNER_ID: &str = "bench-partner";
const BUCKET: &str = "bench-input";
const OBJECT: &str = "incoming/tenant-eu-1/contacts.csv";

/// Arrival instants of the partner's requests.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

async fn record_arrival(State(arrivals): State<Arrivals>) -> StatusCode {
    arrivals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Instant::now());
    StatusCode::OK
}

fn job(index: u64) -> Job {
    Job {
        webhook_id: format!("msg_bench_{index}"),
        partner_id: PARTNER_ID.to_string(),
        tenant_id: "tenant-eu-1".to_string(),
        input_email: format!("contact.{index}@example.com"),
        source_bucket: BUCKET.to_string(),
        source_object: OBJECT.to_string(),
        source_generation: 1,
        line: index + 2,
        created_at: Utc::now(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    server::install_crypto_provider();
    let env = Env::process();
    let requests: u64 = env.parse_or("BENCH_REQUESTS", 200)?;
    let interval_ms: u64 = env.parse_or("MIN_REQUEST_INTERVAL_MS", 50)?;
    let max_secs: u64 = env.parse_or("BENCH_MAX_SECS", 60)?;
    if requests < 2 {
        bail!("BENCH_REQUESTS must be at least 2 to measure a gap, not {requests}");
    }

    let arrivals: Arrivals = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("failed to listen on 127.0.0.1")?;
    let partner_url = format!("http://{}/webhook", listener.local_addr()?);
    let partner = Router::new()
        .route("/webhook", post(record_arrival))
        .with_state(Arc::clone(&arrivals));
    tokio::spawn(server::serve_on(listener, partner, std::future::pending()));

    let mut config = Config::local(PROJECT, PARTNER_ID, &partner_url);
    config.min_request_interval = Duration::from_millis(interval_ms);
    let state = AppState::new(
        config,
        Backends {
            store: Arc::new(MemoryStore::new()),
            inserter: Arc::new(MemoryInserter::new()),
            queue: QueueChoice::Local,
        },
    )?;
    let queue = state
        .local_queue()
        .context("the state has no local queue")?
        .clone();

    let jobs: Vec<Job> = (0..requests).map(job).collect();
    let report = state.queue().enqueue(jobs).await?;
    if report.enqueued as u64 != requests {
        bail!("enqueued {} of {requests} jobs", report.enqueued);
    }
    tokio::time::timeout(Duration::from_secs(max_secs), queue.wait_idle())
        .await
        .with_context(|| format!("the queue did not finish within {max_secs} s"))?;

    let mut arrivals = arrivals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if arrivals.len() as u64 != requests {
        bail!(
            "the partner received {} requests for {requests} jobs",
            arrivals.len()
        );
    }
    arrivals.sort_unstable();
    let gaps_ms: Vec<f64> = arrivals
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).as_secs_f64() * 1000.0)
        .collect();
    let total_ms = (arrivals[arrivals.len() - 1] - arrivals[0]).as_secs_f64() * 1000.0;
    let gaps_below_interval = gaps_ms
        .iter()
        .filter(|gap| **gap < interval_ms as f64)
        .count();

    // Arrival i compared with the ideal schedule (first arrival + i intervals). With a queue
    // that is never empty, a gap below the interval means the request before it arrived late.
    let interval = interval_ms as f64;
    let offsets_ms: Vec<f64> = arrivals
        .iter()
        .enumerate()
        .map(|(index, arrival)| {
            (*arrival - arrivals[0]).as_secs_f64() * 1000.0 - index as f64 * interval
        })
        .collect();

    let mut sorted_gaps = gaps_ms.clone();
    sorted_gaps.sort_by(f64::total_cmp);
    let mut sorted_offsets = offsets_ms.clone();
    sorted_offsets.sort_by(f64::total_cmp);

    println!(
        "{}",
        json!({
            "requests": requests,
            "interval_ms": interval_ms,
            "min_gap_ms": sorted_gaps[0],
            "p50_gap_ms": quantile(&sorted_gaps, 0.5),
            "mean_gap_ms": total_ms / gaps_ms.len() as f64,
            "max_gap_ms": sorted_gaps[sorted_gaps.len() - 1],
            "gaps_below_interval": gaps_below_interval,
            "schedule_offset_min_ms": sorted_offsets[0],
            "schedule_offset_p50_ms": quantile(&sorted_offsets, 0.5),
            "schedule_offset_max_ms": sorted_offsets[sorted_offsets.len() - 1],
        })
    );
    Ok(())
}

/// Returns the `q` quantile of `sorted` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
