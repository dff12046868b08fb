//! Reading one finalized object into jobs and delivery rows.

use std::collections::BTreeMap;

use chrono::Utc;
use enrichment_payload::DeliveryStatus;
use enrichment_runtime::bigquery::InsertError;
use enrichment_runtime::storage::{ObjectStore, StorageError};

use crate::input::{InputError, RowReader};
use crate::jobs::{self, Job, Planned, Planner, SourceObject};
use crate::queue::{DeliveryQueue, EnqueueReport, QueueError};
use crate::records::{DeliveryRecorder, RowBuffer};
use crate::trigger::ObjectEvent;

/// Jobs handed to the queue per enqueue call.
pub const ENQUEUE_BATCH_JOBS: usize = 500;

/// Counts from reading one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    pub format: Option<&'static str>,
    /// Rows read, blank lines excluded.
    pub rows: usize,
    pub enqueue: EnqueueReport,
    pub invalid_email: usize,
    pub missing_tenant: usize,
    pub duplicate: usize,
}

/// Failure to process an object.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The generation no longer exists (overwritten or deleted): there is nothing to send.
    #[error("gs://{bucket}/{name} generation {generation} no longer exists")]
    Gone {
        bucket: String,
        name: String,
        generation: i64,
    },
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Input(InputError),
    #[error("inserting delivery rows failed: {0}")]
    Insert(InsertError),
    #[error(transparent)]
    Queue(QueueError),
}

impl ProcessError {
    /// Returns whether handling the same event again later can succeed. The trigger then
    /// responds with 503 so the event is redelivered.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessError::Gone { .. } => false,
            ProcessError::Storage(error) => error.is_retryable(),
            ProcessError::Input(error) => error.is_retryable(),
            ProcessError::Insert(error) => error.is_retryable(),
            // Enqueueing again is a no-op for the jobs that made it, so a retry is safe.
            ProcessError::Queue(_) => true,
        }
    }
}

/// Returns the tenant for rows without their own: the object's `tenant_id` metadata (from the
/// event, else as read), else the path `<input_prefix><tenant_id>/<file>`.
pub fn file_tenant(
    event_metadata: &BTreeMap<String, String>,
    object_metadata: &BTreeMap<String, String>,
    name: &str,
    input_prefix: &str,
) -> Option<String> {
    jobs::tenant_from_metadata(event_metadata)
        .or_else(|| jobs::tenant_from_metadata(object_metadata))
        .or_else(|| jobs::tenant_from_path(name, input_prefix))
}

/// Reads the event's object generation, records the rows that are not sent and enqueues a job
/// per valid unique (tenant, email). Memory stays bounded by the batch sizes and the
/// de-duplication set.
pub async fn process_object(
    store: &dyn ObjectStore,
    queue: &dyn DeliveryQueue,
    recorder: &DeliveryRecorder,
    partner_id: &str,
    input_prefix: &str,
    event: &ObjectEvent,
) -> Result<FileSummary, ProcessError> {
    let opened = store
        .open(&event.bucket, &event.name, Some(event.generation))
        .await;
    let (meta, reader) = match opened {
        Ok(opened) => opened,
        Err(StorageError::NotFound { .. }) => {
            return Err(ProcessError::Gone {
                bucket: event.bucket.clone(),
                name: event.name.clone(),
                generation: event.generation,
            });
        }
        Err(error) => return Err(ProcessError::Storage(error)),
    };

    let source = SourceObject {
        bucket: event.bucket.clone(),
        name: event.name.clone(),
        generation: event.generation,
    };
    let tenant = file_tenant(&event.metadata, &meta.metadata, &event.name, input_prefix);
    let mut planner = Planner::new(source, partner_id, tenant);
    let mut rows = RowReader::open(reader, &event.name)
        .await
        .map_err(ProcessError::Input)?;

    let mut summary = FileSummary {
        format: Some(rows.format().as_str()),
        ..FileSummary::default()
    };
    let mut skipped = RowBuffer::new(recorder.clone());
    let mut batch: Vec<Job> = Vec::with_capacity(ENQUEUE_BATCH_JOBS);

    while let Some(row) = rows.next_row().await.map_err(ProcessError::Input)? {
        summary.rows += 1;
        match planner.plan(row, Utc::now()) {
            Planned::Send(job) => {
                batch.push(job);
                if batch.len() >= ENQUEUE_BATCH_JOBS {
                    enqueue(queue, &mut batch, &mut summary).await?;
                }
            }
            Planned::Skip(skip) => {
                match skip.row.status {
                    DeliveryStatus::InvalidEmail => summary.invalid_email += 1,
                    DeliveryStatus::MissingTenant => summary.missing_tenant += 1,
                    _ => summary.duplicate += 1,
                }
                skipped
                    .push(skip.insert_id, skip.row)
                    .await
                    .map_err(ProcessError::Insert)?;
            }
        }
    }
    enqueue(queue, &mut batch, &mut summary).await?;
    skipped.flush().await.map_err(ProcessError::Insert)?;
    Ok(summary)
}

async fn enqueue(
    queue: &dyn DeliveryQueue,
    batch: &mut Vec<Job>,
    summary: &mut FileSummary,
) -> Result<(), ProcessError> {
    if batch.is_empty() {
        return Ok(());
    }
    let jobs = std::mem::replace(batch, Vec::with_capacity(ENQUEUE_BATCH_JOBS));
    let report = queue.enqueue(jobs).await.map_err(ProcessError::Queue)?;
    summary.enqueue.add(report);
    Ok(())
}
