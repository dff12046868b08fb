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
    /// The object could not be opened as an input file, so no row was read.
    #[error(transparent)]
    Input(InputError),
    /// Reading stopped part-way through the object. Every row read before the error was
    /// enqueued or recorded.
    #[error(
        "reading stopped after {rows} rows, which were all enqueued or recorded \
         ({enqueued} enqueued, {already_queued} already queued, {recorded} recorded as not \
         sent): {error}"
    )]
    ReadStopped {
        rows: usize,
        enqueued: usize,
        already_queued: usize,
        recorded: usize,
        #[source]
        error: InputError,
    },
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
            // A redelivered event reads the file again: the rows already read are enqueued
            // again as no-ops and their delivery rows reuse their insertIds.
            ProcessError::ReadStopped { error, .. } => error.is_retryable(),
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
///
/// When reading fails part-way, the rows read so far are still enqueued and recorded before
/// [`ProcessError::ReadStopped`] is returned, so a corrupt file (such as a truncated gzip
/// stream) loses none of the rows it had.
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
        generation: generation_read(event, meta.generation),
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

    let read_error = loop {
        let row = match rows.next_row().await {
            Ok(Some(row)) => row,
            Ok(None) => break None,
            Err(error) => break Some(error),
        };
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
    };
    enqueue(queue, &mut batch, &mut summary).await?;
    skipped.flush().await.map_err(ProcessError::Insert)?;

    // NOTE: a file that stops part-way is reported only by this error, which the trigger logs
    // with the object and the row counts. The `deliveries` table has no status for a whole
    // file, so no row there tells that the rest of the file was never read.
    if let Some(error) = read_error {
        return Err(ProcessError::ReadStopped {
            rows: summary.rows,
            enqueued: summary.enqueue.enqueued,
            already_queued: summary.enqueue.already_queued,
            recorded: skipped.inserted(),
            error,
        });
    }
    Ok(summary)
}

/// Returns the generation that `webhook-id`s and delivery rows refer to: the one the store
/// reports for the bytes it returned, or the event's when the store reports none (0).
fn generation_read(event: &ObjectEvent, read: i64) -> i64 {
    if read <= 0 {
        return event.generation;
    }
    if read != event.generation {
        tracing::warn!(
            event_generation = event.generation,
            read_generation = read,
            "the store returned another generation than the event names; using the generation read"
        );
    }
    read
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use bytes::Bytes;
    use enrichment_runtime::bigquery::MemoryInserter;
    use enrichment_runtime::storage::{MemoryStore, ObjectMeta, ObjectReader, WriteOutcome};
    use pretty_assertions::assert_eq;
    use tokio::io::AsyncReadExt;

    use crate::input::InputError;

    const BUCKET: &str = "input-bucket";
    const OBJECT: &str = "incoming/t-1/emails.csv";
    const EVENT_GENERATION: i64 = 7;

    /// A queue that records the jobs it takes.
    #[derive(Default)]
    struct RecordingQueue {
        jobs: Mutex<Vec<Job>>,
    }

    #[async_trait]
    impl DeliveryQueue for RecordingQueue {
        async fn enqueue(&self, jobs: Vec<Job>) -> Result<EnqueueReport, QueueError> {
            let enqueued = jobs.len();
            self.jobs.lock().unwrap().extend(jobs);
            Ok(EnqueueReport {
                enqueued,
                already_queued: 0,
            })
        }
    }

    /// A store that returns `data` for any generation, reports `generation` as read and, with
    /// `fail_at_end`, fails the read with `InvalidData` after the data, like a corrupt gzip
    /// stream.
    struct FixedStore {
        data: Bytes,
        generation: i64,
        fail_at_end: bool,
    }

    #[async_trait]
    impl ObjectStore for FixedStore {
        async fn open(
            &self,
            bucket: &str,
            name: &str,
            _generation: Option<i64>,
        ) -> Result<(ObjectMeta, ObjectReader), StorageError> {
            let meta = ObjectMeta {
                bucket: bucket.into(),
                name: name.into(),
                generation: self.generation,
                size: self.data.len() as u64,
                ..ObjectMeta::default()
            };
            let data = std::io::Cursor::new(self.data.clone());
            let reader: ObjectReader = if self.fail_at_end {
                Box::pin(data.chain(FailingReader))
            } else {
                Box::pin(data)
            };
            Ok((meta, reader))
        }

        async fn write_if_absent(
            &self,
            _bucket: &str,
            _name: &str,
            _data: Bytes,
            _content_type: &str,
        ) -> Result<WriteOutcome, StorageError> {
            unreachable!("process_object only reads")
        }

        async fn write(
            &self,
            _bucket: &str,
            _name: &str,
            _data: Bytes,
            _content_type: &str,
        ) -> Result<(), StorageError> {
            unreachable!("process_object only reads")
        }

        async fn read_small(
            &self,
            _bucket: &str,
            _name: &str,
        ) -> Result<Option<Bytes>, StorageError> {
            unreachable!("process_object only reads")
        }
    }

    struct FailingReader;

    impl tokio::io::AsyncRead for FailingReader {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            _buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "corrupt deflate stream",
            )))
        }
    }

    fn event(generation: i64) -> ObjectEvent {
        ObjectEvent {
            bucket: BUCKET.into(),
            name: OBJECT.into(),
            generation,
            size: None,
            content_encoding: None,
            metadata: BTreeMap::new(),
            event_id: "evt-1".into(),
        }
    }

    /// A CSV of `valid` unique emails followed by `invalid` rows that are not emails.
    fn csv(valid: usize, invalid: usize) -> Bytes {
        let mut text = String::from("email\n");
        for index in 0..valid {
            text.push_str(&format!("user{index}@example.com\n"));
        }
        for index in 0..invalid {
            text.push_str(&format!("not-an-email-{index}\n"));
        }
        Bytes::from(text)
    }

    async fn process(
        store: &dyn ObjectStore,
        event: &ObjectEvent,
    ) -> (
        Result<FileSummary, ProcessError>,
        Arc<RecordingQueue>,
        Arc<MemoryInserter>,
    ) {
        let queue = Arc::new(RecordingQueue::default());
        let inserter = Arc::new(MemoryInserter::new());
        let recorder = DeliveryRecorder::new(inserter.clone(), "deliveries");
        let result =
            process_object(store, queue.as_ref(), &recorder, "acme", "incoming/", event).await;
        (result, queue, inserter)
    }

    #[tokio::test]
    async fn read_error_keeps_every_row_read() {
        let store = FixedStore {
            data: csv(1200, 30),
            generation: EVENT_GENERATION,
            fail_at_end: true,
        };
        let (result, queue, inserter) = process(&store, &event(EVENT_GENERATION)).await;

        let error = result.unwrap_err();
        let ProcessError::ReadStopped {
            rows,
            enqueued,
            already_queued,
            recorded,
            error: InputError::Corrupt(_),
        } = &error
        else {
            panic!("expected ReadStopped with a corrupt input: {error:?}");
        };
        assert_eq!(
            (*rows, *enqueued, *already_queued, *recorded),
            (1230, 1200, 0, 30)
        );
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_string(),
            "reading stopped after 1230 rows, which were all enqueued or recorded (1200 \
             enqueued, 0 already queued, 30 recorded as not sent): the object is corrupt: \
             corrupt deflate stream"
        );

        let jobs = queue.jobs.lock().unwrap();
        assert_eq!(jobs.len(), 1200);
        assert_eq!(jobs[1199].input_email, "user1199@example.com");
        let rows = inserter.rows("deliveries");
        assert_eq!(rows.len(), 30);
        assert_eq!(rows[29].json["input_email"], "not-an-email-29");
        assert_eq!(rows[29].json["status"], "invalid_email");
    }

    #[tokio::test]
    async fn truncated_gzip_keeps_every_row_read() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, &csv(5000, 0)).unwrap();
        let compressed = encoder.finish().unwrap();
        let truncated = Bytes::copy_from_slice(&compressed[..compressed.len() / 2]);
        let store = FixedStore {
            data: truncated,
            generation: EVENT_GENERATION,
            fail_at_end: false,
        };
        let (result, queue, _) = process(&store, &event(EVENT_GENERATION)).await;

        let error = result.unwrap_err();
        let ProcessError::ReadStopped { rows, enqueued, .. } = error else {
            panic!("expected ReadStopped: {error:?}");
        };
        assert!(rows > ENQUEUE_BATCH_JOBS, "only {rows} rows were read");
        assert_eq!(enqueued, rows);
        let jobs = queue.jobs.lock().unwrap();
        assert_eq!(jobs.len(), rows);
        let last = rows - 1;
        assert_eq!(jobs[last].input_email, format!("user{last}@example.com"));
    }

    #[tokio::test]
    async fn webhook_ids_use_generation_read() {
        let store = FixedStore {
            data: csv(1, 1),
            generation: 9,
            fail_at_end: false,
        };
        let (result, queue, inserter) = process(&store, &event(EVENT_GENERATION)).await;
        result.unwrap();

        let read = SourceObject {
            bucket: BUCKET.into(),
            name: OBJECT.into(),
            generation: 9,
        };
        let jobs = queue.jobs.lock().unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].source_generation, 9);
        assert_eq!(
            jobs[0].webhook_id,
            jobs::webhook_id(&read, "t-1", "user0@example.com")
        );
        let rows = inserter.rows("deliveries");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].insert_id, jobs::row_id(&read, 3));
        assert_eq!(rows[0].json["source_generation"], 9);
    }

    #[tokio::test]
    async fn empty_csv_has_no_rows() {
        let store = MemoryStore::new();
        let generation = store.put(BUCKET, OBJECT, Bytes::new(), ObjectMeta::default());
        let (result, queue, inserter) = process(&store, &event(generation)).await;
        assert_eq!(
            result.unwrap(),
            FileSummary {
                format: Some("csv"),
                ..FileSummary::default()
            }
        );
        assert_eq!(queue.jobs.lock().unwrap().len(), 0);
        assert_eq!(inserter.calls(), 0);
    }
}
