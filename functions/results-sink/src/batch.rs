//! Micro-batching of BigQuery inserts: rows from concurrent requests share `insertAll` calls.
//!
//! A background task collects rows until `max_rows` are waiting or the first row has waited
//! `max_wait`, then sends them in one call. Each caller gets its own row's outcome through a
//! oneshot channel: a row-level error fails only that row, and a request-level error fails every
//! row of the batch.

use std::sync::Arc;
use std::time::Duration;

use enrichment_runtime::bigquery::{InsertError, InsertRow, RowError, RowInserter};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

/// Batches sent at the same time. Later batches wait for a free slot, so a slow BigQuery makes
/// the channel fill up and callers wait, instead of the sink opening ever more connections.
const MAX_CONCURRENT_FLUSHES: usize = 8;

/// Sends rows to one table in shared `insertAll` calls.
#[derive(Debug, Clone)]
pub struct Batcher {
    sender: mpsc::Sender<PendingRow>,
}

#[derive(Debug)]
struct PendingRow {
    row: InsertRow,
    reply: oneshot::Sender<Result<(), InsertError>>,
}

impl Batcher {
    /// Starts the background task on the current Tokio runtime. It stops once every clone of
    /// the returned `Batcher` is dropped and the rows already queued are sent.
    pub fn spawn(
        inserter: Arc<dyn RowInserter>,
        table: impl Into<String>,
        max_rows: usize,
        max_wait: Duration,
    ) -> Self {
        let max_rows = max_rows.max(1);
        // Room for a few full batches; beyond that, callers wait for the task to catch up.
        let (sender, receiver) = mpsc::channel(max_rows.saturating_mul(4));
        tokio::spawn(collect_batches(
            receiver,
            inserter,
            Arc::from(table.into()),
            max_rows,
            max_wait,
        ));
        Self { sender }
    }

    /// Queues `row` and waits until the batch that carries it has been sent. Returns this row's
    /// outcome.
    pub async fn insert(&self, row: InsertRow) -> Result<(), InsertError> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send(PendingRow { row, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> InsertError {
    InsertError::Request {
        retryable: true,
        message: "the insert batcher stopped before sending the row".to_string(),
    }
}

async fn collect_batches(
    mut receiver: mpsc::Receiver<PendingRow>,
    inserter: Arc<dyn RowInserter>,
    table: Arc<str>,
    max_rows: usize,
    max_wait: Duration,
) {
    let flush_slots = Arc::new(Semaphore::new(MAX_CONCURRENT_FLUSHES));

    while let Some(first) = receiver.recv().await {
        let deadline = Instant::now() + max_wait;
        let mut batch = vec![first];

        while batch.len() < max_rows {
            let wanted = max_rows - batch.len();
            let mut more = Vec::with_capacity(wanted);
            // `biased` takes rows that are already queued even after the deadline, so a
            // `max_wait` of zero still sends everything that is waiting in one call.
            let taken = tokio::select! {
                biased;
                count = receiver.recv_many(&mut more, wanted) => count,
                () = tokio::time::sleep_until(deadline) => break,
            };
            if taken == 0 {
                // Every sender is gone: send what was collected, then stop.
                break;
            }
            batch.append(&mut more);
        }

        let permit = Arc::clone(&flush_slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let inserter = Arc::clone(&inserter);
        let table = Arc::clone(&table);
        tokio::spawn(async move {
            flush(inserter.as_ref(), &table, batch).await;
            drop(permit);
        });
    }
}

/// Sends one batch and gives each waiting caller its row's outcome.
async fn flush(inserter: &dyn RowInserter, table: &str, batch: Vec<PendingRow>) {
    let (rows, replies): (Vec<InsertRow>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.row, pending.reply))
        .unzip();

    let outcome = inserter.insert_all(table, &rows).await;
    let outcomes = split_outcome(outcome, rows.len());

    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // The caller may have gone away (its request was cancelled); nothing waits then.
        let _ = reply.send(outcome);
    }
}

/// Turns the outcome of one `insertAll` call into one outcome per row.
fn split_outcome(outcome: Result<(), InsertError>, rows: usize) -> Vec<Result<(), InsertError>> {
    match outcome {
        Ok(()) => vec![Ok(()); rows],
        Err(InsertError::Rows { errors }) if errors.iter().any(|error| error.index >= rows) => {
            // An index outside the batch matches no row, so every row fails and is sent again.
            // A row stored twice this way has one insertId, and the `latest_results` view
            // keeps one row per message id.
            vec![Err(InsertError::Rows { errors }); rows]
        }
        Err(InsertError::Rows { errors }) => {
            let mut outcomes = vec![Ok(()); rows];
            for error in errors {
                let own_error = RowError {
                    index: 0,
                    message: error.message,
                };
                match &mut outcomes[error.index] {
                    Err(InsertError::Rows { errors }) => errors.push(own_error),
                    slot => {
                        *slot = Err(InsertError::Rows {
                            errors: vec![own_error],
                        })
                    }
                }
            }
            outcomes
        }
        Err(error) => vec![Err(error); rows],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use enrichment_runtime::bigquery::MemoryInserter;
    use pretty_assertions::assert_eq;
    use std::sync::Mutex;

    fn row(insert_id: &str) -> InsertRow {
        InsertRow {
            insert_id: insert_id.to_string(),
            json: serde_json::json!({ "message_id": insert_id }),
        }
    }

    /// Records the size of every batch and passes it on to a [`MemoryInserter`].
    #[derive(Default)]
    struct BatchSizes {
        sizes: Mutex<Vec<usize>>,
        inner: MemoryInserter,
    }

    #[async_trait]
    impl RowInserter for BatchSizes {
        async fn insert_all(&self, table: &str, rows: &[InsertRow]) -> Result<(), InsertError> {
            self.sizes.lock().unwrap().push(rows.len());
            self.inner.insert_all(table, rows).await
        }
    }

    async fn insert_concurrently(batcher: &Batcher, count: usize) -> Vec<Result<(), InsertError>> {
        let inserts = (0..count).map(|index| batcher.insert(row(&index.to_string())));
        futures::future::join_all(inserts).await
    }

    #[tokio::test(start_paused = true)]
    async fn full_batches_flush_at_max_rows() {
        let inserter = Arc::new(BatchSizes::default());
        let batcher = Batcher::spawn(inserter.clone(), "results", 10, Duration::from_millis(50));

        let outcomes = insert_concurrently(&batcher, 25).await;

        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(*inserter.sizes.lock().unwrap(), vec![10, 10, 5]);
        assert_eq!(inserter.inner.rows("results").len(), 25);
    }

    #[tokio::test(start_paused = true)]
    async fn lone_row_waits_max_wait() {
        let inserter = Arc::new(BatchSizes::default());
        let batcher = Batcher::spawn(inserter.clone(), "results", 10, Duration::from_millis(50));
        let start = Instant::now();

        batcher.insert(row("1")).await.unwrap();

        assert_eq!(start.elapsed(), Duration::from_millis(50));
        assert_eq!(*inserter.sizes.lock().unwrap(), vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_wait_sends_queued_rows_together() {
        let inserter = Arc::new(BatchSizes::default());
        let batcher = Batcher::spawn(inserter.clone(), "results", 500, Duration::ZERO);
        let start = Instant::now();

        let outcomes = insert_concurrently(&batcher, 30).await;

        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(*inserter.sizes.lock().unwrap(), vec![30]);
    }

    #[tokio::test(start_paused = true)]
    async fn request_error_fails_whole_batch() {
        let inserter = Arc::new(MemoryInserter::new());
        let error = InsertError::Request {
            retryable: true,
            message: "503 from BigQuery".to_string(),
        };
        inserter.fail_with(error.clone());
        let batcher = Batcher::spawn(inserter.clone(), "results", 10, Duration::from_millis(50));

        let outcomes = insert_concurrently(&batcher, 3).await;

        assert_eq!(inserter.calls(), 1);
        for outcome in outcomes {
            assert!(
                matches!(&outcome, Err(InsertError::Request { retryable: true, message }) if message == "503 from BigQuery"),
                "{outcome:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn row_error_fails_only_that_row() {
        let inserter = Arc::new(MemoryInserter::new());
        inserter.reject_insert_id("1");
        let batcher = Batcher::spawn(inserter.clone(), "results", 10, Duration::from_millis(50));

        let outcomes = insert_concurrently(&batcher, 3).await;

        assert_eq!(inserter.calls(), 1);
        assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
        assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
        let Err(InsertError::Rows { errors }) = &outcomes[1] else {
            panic!("expected a row error, got {:?}", outcomes[1]);
        };
        assert_eq!(
            errors,
            &vec![RowError {
                index: 0,
                message: "invalid at row: insert id 1 is rejected".to_string(),
            }]
        );
    }

    #[test]
    fn split_outcome_cases() {
        let row_error = |index: usize, message: &str| RowError {
            index,
            message: message.to_string(),
        };

        assert_eq!(
            format!("{:?}", split_outcome(Ok(()), 2)),
            "[Ok(()), Ok(())]"
        );

        let outcomes = split_outcome(
            Err(InsertError::Rows {
                errors: vec![row_error(1, "a"), row_error(1, "b")],
            }),
            3,
        );
        assert!(outcomes[0].is_ok());
        assert!(outcomes[2].is_ok());
        assert!(
            matches!(&outcomes[1], Err(InsertError::Rows { errors }) if errors == &vec![row_error(0, "a"), row_error(0, "b")]),
            "{:?}",
            outcomes[1]
        );

        let outcomes = split_outcome(
            Err(InsertError::Rows {
                errors: vec![row_error(7, "out of range")],
            }),
            2,
        );
        for outcome in &outcomes {
            assert!(
                matches!(outcome, Err(InsertError::Rows { errors }) if errors == &vec![row_error(7, "out of range")]),
                "{outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn insert_after_stop_is_retryable() {
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        let batcher = Batcher { sender };

        let error = batcher.insert(row("1")).await.unwrap_err();

        assert!(error.is_retryable());
        assert_eq!(
            error.to_string(),
            "insertAll request failed: the insert batcher stopped before sending the row"
        );
    }
}
