//! Delivery rows into the `deliveries` table, through a [`RowInserter`].

use std::sync::Arc;

use enrichment_payload::DeliveryRow;
use enrichment_runtime::bigquery::{InsertError, InsertRow, RowInserter};

/// Rows per `insertAll` call. BigQuery recommends at most 500 rows per request.
pub const INSERT_BATCH_ROWS: usize = 500;

/// Writes delivery rows to one table.
#[derive(Clone)]
pub struct DeliveryRecorder {
    inserter: Arc<dyn RowInserter>,
    table: String,
}

impl std::fmt::Debug for DeliveryRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryRecorder")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DeliveryRecorder {
    pub fn new(inserter: Arc<dyn RowInserter>, table: impl Into<String>) -> Self {
        Self {
            inserter,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Inserts `(insert_id, row)` pairs, [`INSERT_BATCH_ROWS`] per call.
    pub async fn insert(&self, rows: &[(String, DeliveryRow)]) -> Result<(), InsertError> {
        for chunk in rows.chunks(INSERT_BATCH_ROWS) {
            let batch: Vec<InsertRow> = chunk
                .iter()
                .map(|(insert_id, row)| InsertRow {
                    insert_id: insert_id.clone(),
                    json: row.to_json(),
                })
                .collect();
            self.inserter.insert_all(&self.table, &batch).await?;
        }
        Ok(())
    }

    /// Inserts the final row of a delivery, whose insertId is its `webhook-id`.
    pub async fn insert_outcome(&self, row: &DeliveryRow) -> Result<(), InsertError> {
        let batch = [InsertRow {
            insert_id: row.delivery_id.clone(),
            json: row.to_json(),
        }];
        self.inserter.insert_all(&self.table, &batch).await
    }
}

/// Buffers rows and inserts them [`INSERT_BATCH_ROWS`] at a time.
#[derive(Debug)]
pub struct RowBuffer {
    recorder: DeliveryRecorder,
    rows: Vec<(String, DeliveryRow)>,
    inserted: usize,
}

impl RowBuffer {
    pub fn new(recorder: DeliveryRecorder) -> Self {
        Self {
            recorder,
            rows: Vec::with_capacity(INSERT_BATCH_ROWS),
            inserted: 0,
        }
    }

    /// Adds a row and inserts the buffer once it is full.
    pub async fn push(&mut self, insert_id: String, row: DeliveryRow) -> Result<(), InsertError> {
        self.rows.push((insert_id, row));
        if self.rows.len() >= INSERT_BATCH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Inserts the buffered rows.
    pub async fn flush(&mut self) -> Result<(), InsertError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        self.recorder.insert(&self.rows).await?;
        self.inserted += self.rows.len();
        self.rows.clear();
        Ok(())
    }

    /// Returns the number of rows inserted so far.
    pub fn inserted(&self) -> usize {
        self.inserted
    }
}
