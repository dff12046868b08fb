//! Processing one file end to end: upload, storage event, progress, summary and exit status.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use local_stack::cli::Args;
use local_stack::report::{self, Counters, Progress, StoredCounts, SummaryContext, Upload};
use local_stack::stack::{self, ARCHIVE_BUCKET, PARTNER_ID, Stack, StackOptions};

/// The bundled sample: made-up contacts for two tenants, with invalid and repeated rows.
const SAMPLE_CSV: &[u8] = include_bytes!("../sample/contacts.csv");
const SAMPLE_NAME: &str = "contacts.csv";

/// How often the run polls the counters and may redraw the progress line.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Exit status after Ctrl-C, as a shell reports a process stopped by SIGINT.
const INTERRUPTED: u8 = 130;

/// Reads FILE (or the sample), returning its bytes and the object name to upload it as.
fn read_input(file: Option<&Path>) -> anyhow::Result<(Bytes, String)> {
    let Some(path) = file else {
        return Ok((Bytes::from_static(SAMPLE_CSV), SAMPLE_NAME.to_string()));
    };
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", path.display()))?;
    Ok((Bytes::from(data), name))
}

/// End of the wait for the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitEnd {
    /// Nothing is in flight any more.
    Idle,
    TimedOut,
    Interrupted,
}

pub async fn run_file(
    args: &Args,
    options: StackOptions,
    log_path: &Path,
) -> anyhow::Result<ExitCode> {
    let (data, file_name) = read_input(args.file.as_deref())?;
    let emails_read = stack::count_rows(data.clone(), &file_name)
        .await
        .with_context(|| format!("reading {file_name} as an input file"))?;
    let deadline = match args.timeout_secs {
        Some(seconds) => Duration::from_secs(seconds),
        None => report::default_deadline(
            emails_read,
            options.min_request_interval,
            options.retry_base_delay,
            options.partner_delay,
        ),
    };

    let stack = Stack::start(options).await?;
    let object = stack.upload(&args.tenant, &file_name, data).await?;
    let upload = Upload {
        bucket: object.bucket.clone(),
        object: object.name.clone(),
        generation: object.generation,
    };
    eprintln!(
        "{}",
        report::start_line(
            emails_read,
            &stack.object_path(&object),
            object.generation,
            args.rate,
            deadline
        )
    );

    let outcome = stack.trigger(&object).await?;
    if outcome.status != 200 {
        stack.shutdown().await;
        bail!(
            "the sender responded with HTTP {} to the storage event and read nothing; see {}",
            outcome.status,
            log_path.display()
        );
    }
    let sender_rows = outcome.body.as_ref().and_then(|body| body["rows"].as_u64());
    if sender_rows != Some(emails_read) {
        eprintln!(
            "Warning: the sender reports {} rows, but the file has {emails_read}.",
            sender_rows.map_or_else(|| "no count of".to_string(), |rows| rows.to_string())
        );
    }

    let mut progress = Progress::new(POLL_INTERVAL);
    let (end, counters, stored) =
        wait_for_pipeline(&stack, &upload, emails_read, deadline, &mut progress).await?;
    progress.finish(&counters);

    let context = SummaryContext {
        partner: stack.partner.stats(),
        failures_injected: args.partner_failure_rate > 0.0,
        missing_from_view: stored.missing_from_view,
        timed_out: end == WaitEnd::TimedOut,
        elapsed: progress.elapsed(),
    };
    eprint!("{}", report::summary_table(&counters, &context));
    eprint!("{}", locations(&stack, &object.name, log_path));
    if args.summary_json {
        println!("{}", serde_json::to_string(&counters)?);
    }
    stack.shutdown().await;

    Ok(match end {
        WaitEnd::Interrupted => ExitCode::from(INTERRUPTED),
        WaitEnd::TimedOut => ExitCode::FAILURE,
        WaitEnd::Idle if counters.balanced() && stored.missing_from_view == 0 => ExitCode::SUCCESS,
        WaitEnd::Idle => ExitCode::FAILURE,
    })
}

/// Polls until nothing is in flight, the deadline passes or Ctrl-C, updating the progress line.
async fn wait_for_pipeline(
    stack: &Stack,
    upload: &Upload,
    emails_read: u64,
    deadline: Duration,
    progress: &mut Progress,
) -> anyhow::Result<(WaitEnd, Counters, StoredCounts)> {
    let deadline_at = tokio::time::Instant::now() + deadline;
    let interrupted = enrichment_runtime::server::shutdown_signal();
    tokio::pin!(interrupted);
    let mut ticker = tokio::time::interval(POLL_INTERVAL);

    loop {
        let end = tokio::select! {
            _ = ticker.tick() => None,
            () = &mut interrupted => Some(WaitEnd::Interrupted),
        };
        // Checked before the counts are read, so that once it is true the counts are final.
        let idle = stack.idle();
        let stored = report::read_counts(&stack.warehouse, upload).await?;
        let mut counters = report::counters(&stored, &stack.partner.stats());
        counters.emails_read = emails_read;
        progress.update(&counters);

        let end = match end {
            Some(end) => Some(end),
            None if idle => Some(WaitEnd::Idle),
            None if tokio::time::Instant::now() >= deadline_at => Some(WaitEnd::TimedOut),
            None => None,
        };
        if let Some(end) = end {
            return Ok((end, counters, stored));
        }
    }
}

/// Describes where the run left its data and how to query it.
fn locations(stack: &Stack, object_name: &str, log_path: &Path) -> String {
    let data_dir = stack.data_dir.display();
    let warehouse = stack::warehouse_path(&stack.data_dir);
    let warehouse = local_stack::instructions::shell_quote(&warehouse.display().to_string());
    format!(
        "\nInput:     {data_dir}/{}/{object_name}\n\
         Archive:   {data_dir}/{ARCHIVE_BUCKET}/results/partner={PARTNER_ID}/\n\
         Warehouse: {data_dir}/{} (tables results and deliveries, view latest_results)\n\
         Logs:      {}\n\n\
         Query the results:\n\
         \x20 sqlite3 -header -column {warehouse} 'SELECT * FROM latest_results'\n\
         \x20 sqlite3 -header -column {warehouse} 'SELECT status, COUNT(*) FROM deliveries GROUP BY status'\n",
        stack::INPUT_BUCKET,
        stack::WAREHOUSE_FILE,
        log_path.display(),
    )
}
