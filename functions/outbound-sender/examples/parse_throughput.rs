//! Measures reading a large input file: emails per second and peak memory, with the delivery
//! queue and BigQuery replaced by stubs that count and drop what they get.
//!
//! ```text
//! cargo run --release -p outbound-sender --example parse_throughput -- [LINES] [FORMAT]
//! ```
//!
//! LINES defaults to 1000000 unique valid emails. FORMAT is `csv`, `ndjson`, `text-gz` or
//! `all` (the default). With `all` the example runs itself once per format, so each peak
//! resident set size (`VmHWM` in `/proc/self/status`, Linux only) belongs to one format alone.
//! The file is written to a temporary folder first and read back through `LocalDirStore`; the
//! timing covers the reading only.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use enrichment_runtime::bigquery::{InsertError, InsertRow, RowInserter};
use enrichment_runtime::storage::{LocalDirStore, ObjectStore};
use outbound_sender::Job;
use outbound_sender::process::process_object;
use outbound_sender::queue::{DeliveryQueue, EnqueueReport, QueueError};
use outbound_sender::records::DeliveryRecorder;
use outbound_sender::trigger::ObjectEvent;

const BUCKET: &str = "input";
const FORMATS: [&str; 3] = ["csv", "ndjson", "text-gz"];

/// Counts jobs and drops them.
#[derive(Debug, Default)]
struct CountingQueue {
    jobs: AtomicUsize,
}

#[async_trait]
impl DeliveryQueue for CountingQueue {
    async fn enqueue(&self, jobs: Vec<Job>) -> Result<EnqueueReport, QueueError> {
        self.jobs.fetch_add(jobs.len(), Ordering::Relaxed);
        Ok(EnqueueReport {
            enqueued: jobs.len(),
            already_queued: 0,
        })
    }
}

/// Counts rows and drops them.
#[derive(Debug, Default)]
struct CountingInserter {
    rows: AtomicUsize,
}

#[async_trait]
impl RowInserter for CountingInserter {
    async fn insert_all(&self, _table: &str, rows: &[InsertRow]) -> Result<(), InsertError> {
        self.rows.fetch_add(rows.len(), Ordering::Relaxed);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let lines: u64 = match args.next() {
        Some(value) => value.parse()?,
        None => 1_000_000,
    };
    let format = args.next().unwrap_or_else(|| "all".to_string());

    if format == "all" {
        println!("| format | lines | jobs | seconds | emails/s | peak RSS (MiB) |");
        println!("|---|---|---|---|---|---|");
        for format in FORMATS {
            let status = Command::new(std::env::current_exe()?)
                .arg(lines.to_string())
                .arg(format)
                .status()?;
            if !status.success() {
                return Err(format!("the {format} run failed with {status}").into());
            }
        }
        return Ok(());
    }
    if !FORMATS.contains(&format.as_str()) {
        return Err(
            format!("unknown format {format:?}: expected csv, ndjson, text-gz or all").into(),
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(lines, &format))
}

async fn run(lines: u64, format: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let name = match format {
        "csv" => "incoming/t-1/emails.csv",
        "ndjson" => "incoming/t-1/emails.ndjson",
        _ => "incoming/t-1/emails.txt.gz",
    };
    let store = LocalDirStore::new(root.path());
    let path = store.object_path(BUCKET, name)?;
    std::fs::create_dir_all(path.parent().expect("an object path has a parent"))?;
    write_file(&path, format, lines)?;

    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let (meta, _) = store.open(BUCKET, name, None).await?;
    let event = ObjectEvent {
        bucket: BUCKET.into(),
        name: name.into(),
        generation: meta.generation,
        size: Some(meta.size),
        content_encoding: None,
        metadata: BTreeMap::new(),
        event_id: "bench".into(),
    };
    let queue = CountingQueue::default();
    let inserter = Arc::new(CountingInserter::default());
    let recorder = DeliveryRecorder::new(inserter.clone(), "deliveries");

    let started = Instant::now();
    let summary = process_object(
        store.as_ref(),
        &queue,
        &recorder,
        "acme",
        "incoming/",
        &event,
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();

    let jobs = queue.jobs.load(Ordering::Relaxed);
    assert_eq!(
        jobs as u64, lines,
        "every line is a unique valid email: {summary:?}"
    );
    assert_eq!(inserter.rows.load(Ordering::Relaxed), 0);
    let peak_mib = peak_rss_kib().map_or("n/a".to_string(), |kib| {
        format!("{:.1}", kib as f64 / 1024.0)
    });
    println!(
        "| {format} | {lines} | {jobs} | {elapsed:.2} | {:.0} | {peak_mib} |",
        lines as f64 / elapsed
    );
    Ok(())
}

/// Writes `lines` unique emails in `format`, streaming to disk.
fn write_file(path: &std::path::Path, format: &str, lines: u64) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out: Box<dyn Write> = if format == "text-gz" {
        Box::new(flate2::write::GzEncoder::new(
            BufWriter::new(file),
            flate2::Compression::default(),
        ))
    } else {
        Box::new(BufWriter::new(file))
    };
    match format {
        "csv" => writeln!(out, "input_email,tenant_id,name")?,
        "text-gz" => writeln!(out, "email")?,
        _ => {}
    }
    for i in 0..lines {
        match format {
            "csv" => writeln!(out, "user{i}@example{}.com,t-{},User {i}", i % 97, i % 5)?,
            "ndjson" => writeln!(
                out,
                r#"{{"input_email":"user{i}@example{}.com","tenant_id":"t-{}"}}"#,
                i % 97,
                i % 5
            )?,
            _ => writeln!(out, "user{i}@example{}.com", i % 97)?,
        }
    }
    out.flush()?;
    drop(out);
    Ok(())
}

/// Reads the peak resident set size, `VmHWM`, in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
