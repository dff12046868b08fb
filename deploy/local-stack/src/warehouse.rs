//! The local stand-in for BigQuery: one SQLite file with the tables of the BigQuery JSON schema
//! files and a `latest_results` view with the meaning of the BigQuery view.
//!
//! Inserts follow `tabledata.insertAll`. A row with an unknown field, a missing REQUIRED field
//! or a value of the wrong type fails the whole request, as BigQuery does without
//! `skipInvalidRows`. A row whose insert id was already stored in that table is skipped, so a
//! redelivered message does not add a second row. The insert ids live in the side table
//! `_insert_ids`, which keeps `SELECT *` on each table to the schema's columns.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use enrichment_runtime::bigquery::{InsertError, InsertRow, RowError, RowInserter};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde::Deserialize;
use serde_json::Value;

/// SQLite's definition of `latest_results`, with the meaning of the BigQuery view in
/// `shared/schemas/bigquery/latest_results.sql`: for each tenant and input email (compared in
/// lower case), the newest result by `received_at`, then `stored_at`. Copies of one Pub/Sub
/// message collapse first, to the copy stored first. The tenant is the one the partner echoed,
/// or else every tenant for which the same partner had the same email delivered, or else null.
pub const LATEST_RESULTS_VIEW_SQL: &str = "\
CREATE VIEW latest_results AS
WITH unique_results AS (
    SELECT *
    FROM (
        SELECT r.*,
               ROW_NUMBER() OVER (PARTITION BY r.message_id ORDER BY r.stored_at ASC) AS copy_rank
        FROM results AS r
    )
    WHERE copy_rank = 1
),
delivered AS (
    SELECT DISTINCT partner_id, tenant_id, lower(input_email) AS email_key
    FROM deliveries
    WHERE status = 'delivered' AND tenant_id IS NOT NULL AND input_email IS NOT NULL
),
with_tenant AS (
    SELECT COALESCE(u.tenant_id, d.tenant_id) AS resolved_tenant_id, u.*
    FROM unique_results AS u
    LEFT JOIN delivered AS d
        ON u.tenant_id IS NULL
        AND d.partner_id = u.partner_id
        AND d.email_key = lower(u.input_email)
),
ranked AS (
    SELECT w.*,
           ROW_NUMBER() OVER (
               PARTITION BY w.resolved_tenant_id, lower(w.input_email)
               ORDER BY w.received_at DESC, w.stored_at DESC, w.message_id DESC
           ) AS newest_rank
    FROM with_tenant AS w
)
SELECT resolved_tenant_id AS tenant_id,
       partner_id,
       input_email,
       work_email,
       phone_number,
       linkedin_url,
       name,
       company_domain,
       extra,
       message_id,
       delivery_id,
       received_at
FROM ranked
WHERE newest_rank = 1";

/// Errors from opening or querying the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("invalid BigQuery schema for table {table}: {message}")]
    Schema { table: String, message: String },
    #[error(
        "table {table} in {path} has the columns [{found}] but the schema file has [{expected}]; \
         delete the file or choose another data directory"
    )]
    SchemaMismatch {
        table: String,
        path: String,
        found: String,
        expected: String,
    },
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("SQLite task failed: {0}")]
    Task(String),
}

/// Storage class of a BigQuery column type in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// STRING, GEOGRAPHY: TEXT.
    Text,
    /// INTEGER, INT64: INTEGER.
    Integer,
    /// FLOAT, FLOAT64, NUMERIC, BIGNUMERIC: REAL.
    Float,
    /// BOOLEAN, BOOL: INTEGER 0 or 1.
    Boolean,
    /// TIMESTAMP: TEXT in RFC 3339 UTC with six fractional digits, so text order is time order.
    Timestamp,
    /// DATE, DATETIME, TIME: TEXT as given.
    Civil,
    /// JSON, RECORD, STRUCT, and every REPEATED column: TEXT holding JSON.
    Json,
    /// BYTES: BLOB (insertAll sends base64).
    Bytes,
}

impl ColumnKind {
    /// Maps a BigQuery legacy or standard SQL type name; `None` for an unknown type.
    pub fn from_bigquery(type_name: &str) -> Option<Self> {
        let kind = match type_name.to_ascii_uppercase().as_str() {
            "STRING" | "GEOGRAPHY" => Self::Text,
            "INTEGER" | "INT64" => Self::Integer,
            "FLOAT" | "FLOAT64" | "NUMERIC" | "BIGNUMERIC" => Self::Float,
            "BOOLEAN" | "BOOL" => Self::Boolean,
            "TIMESTAMP" => Self::Timestamp,
            "DATE" | "DATETIME" | "TIME" => Self::Civil,
            "JSON" | "RECORD" | "STRUCT" => Self::Json,
            "BYTES" => Self::Bytes,
            _ => return None,
        };
        Some(kind)
    }

    /// Returns the SQLite column type.
    pub fn sqlite_type(self) -> &'static str {
        match self {
            Self::Text | Self::Timestamp | Self::Civil | Self::Json => "TEXT",
            Self::Integer | Self::Boolean => "INTEGER",
            Self::Float => "REAL",
            Self::Bytes => "BLOB",
        }
    }
}

/// One column of a table, read from a BigQuery JSON schema file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    pub required: bool,
    pub repeated: bool,
}

/// A table's columns in schema order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<Column>,
}

#[derive(Deserialize)]
struct SchemaField {
    name: String,
    #[serde(rename = "type")]
    field_type: String,
    #[serde(default)]
    mode: Option<String>,
}

impl TableSchema {
    /// Parses a BigQuery JSON schema: an array of `{"name", "type", "mode"}` objects.
    pub fn from_bigquery_json(table: &str, schema_json: &str) -> Result<Self, WarehouseError> {
        let schema_error = |message: String| WarehouseError::Schema {
            table: table.to_string(),
            message,
        };
        let fields: Vec<SchemaField> =
            serde_json::from_str(schema_json).map_err(|error| schema_error(error.to_string()))?;
        if fields.is_empty() {
            return Err(schema_error("the schema has no fields".to_string()));
        }

        let mut columns = Vec::with_capacity(fields.len());
        for field in fields {
            let kind = ColumnKind::from_bigquery(&field.field_type).ok_or_else(|| {
                schema_error(format!(
                    "field {} has the unsupported type {}",
                    field.name, field.field_type
                ))
            })?;
            let mode = field.mode.unwrap_or_else(|| "NULLABLE".to_string());
            let (required, repeated) = match mode.to_ascii_uppercase().as_str() {
                "NULLABLE" => (false, false),
                "REQUIRED" => (true, false),
                "REPEATED" => (false, true),
                other => {
                    return Err(schema_error(format!(
                        "field {} has the unknown mode {other}",
                        field.name
                    )));
                }
            };
            if columns
                .iter()
                .any(|column: &Column| column.name == field.name)
            {
                return Err(schema_error(format!("field {} appears twice", field.name)));
            }
            columns.push(Column {
                name: field.name,
                kind: if repeated { ColumnKind::Json } else { kind },
                required,
                repeated,
            });
        }

        Ok(Self {
            name: table.to_string(),
            columns,
        })
    }

    /// Returns the `CREATE TABLE IF NOT EXISTS` statement, with REQUIRED columns `NOT NULL`.
    pub fn create_table_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|column| {
                let not_null = if column.required { " NOT NULL" } else { "" };
                format!(
                    "{} {}{not_null}",
                    quote_identifier(&column.name),
                    column.kind.sqlite_type()
                )
            })
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote_identifier(&self.name),
            columns.join(", ")
        )
    }

    fn insert_sql(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|column| quote_identifier(&column.name))
            .collect();
        let placeholders: Vec<String> = (1..=self.columns.len())
            .map(|index| format!("?{index}"))
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote_identifier(&self.name),
            names.join(", "),
            placeholders.join(", ")
        )
    }

    /// Converts one insertAll row to SQLite values in column order, or returns the reason
    /// BigQuery would reject it.
    pub fn row_values(&self, row: &Value) -> Result<Vec<SqlValue>, String> {
        let Value::Object(fields) = row else {
            return Err("the row is not a JSON object".to_string());
        };
        if let Some(unknown) = fields
            .keys()
            .find(|key| !self.columns.iter().any(|column| &column.name == *key))
        {
            return Err(format!("no such field: {unknown}"));
        }

        self.columns
            .iter()
            .map(|column| {
                let value = fields.get(&column.name).unwrap_or(&Value::Null);
                column_value(column, value).map_err(|problem| format!("{}: {problem}", column.name))
            })
            .collect()
    }
}

/// Quotes an SQL identifier for SQLite.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Converts one field value the way insertAll coerces it into the column's type.
fn column_value(column: &Column, value: &Value) -> Result<SqlValue, String> {
    if value.is_null() {
        return if column.required {
            Err("missing required field".to_string())
        } else {
            Ok(SqlValue::Null)
        };
    }
    if column.repeated {
        return match value {
            Value::Array(_) => Ok(SqlValue::Text(value.to_string())),
            _ => Err("a REPEATED field needs a JSON array".to_string()),
        };
    }

    match (column.kind, value) {
        (ColumnKind::Text | ColumnKind::Civil, Value::String(text)) => {
            Ok(SqlValue::Text(text.clone()))
        }
        (ColumnKind::Text, Value::Number(number)) => Ok(SqlValue::Text(number.to_string())),
        (ColumnKind::Text, Value::Bool(flag)) => Ok(SqlValue::Text(flag.to_string())),
        (ColumnKind::Integer, Value::Number(number)) => number
            .as_i64()
            .map(SqlValue::Integer)
            .ok_or_else(|| format!("{number} is not a 64-bit integer")),
        (ColumnKind::Integer, Value::String(text)) => text
            .trim()
            .parse::<i64>()
            .map(SqlValue::Integer)
            .map_err(|_| format!("{text:?} is not a 64-bit integer")),
        (ColumnKind::Float, Value::Number(number)) => number
            .as_f64()
            .map(SqlValue::Real)
            .ok_or_else(|| format!("{number} is not a number")),
        (ColumnKind::Float, Value::String(text)) => text
            .trim()
            .parse::<f64>()
            .map(SqlValue::Real)
            .map_err(|_| format!("{text:?} is not a number")),
        (ColumnKind::Boolean, Value::Bool(flag)) => Ok(SqlValue::Integer(i64::from(*flag))),
        (ColumnKind::Boolean, Value::String(text)) => match text.to_ascii_lowercase().as_str() {
            "true" => Ok(SqlValue::Integer(1)),
            "false" => Ok(SqlValue::Integer(0)),
            _ => Err(format!("{text:?} is not a boolean")),
        },
        (ColumnKind::Timestamp, Value::String(text)) => normalize_timestamp(text)
            .map(SqlValue::Text)
            .ok_or_else(|| format!("{text:?} is not a timestamp")),
        (ColumnKind::Timestamp, Value::Number(number)) => number
            .as_f64()
            .and_then(timestamp_from_epoch_secs)
            .map(SqlValue::Text)
            .ok_or_else(|| format!("{number} is not a timestamp in seconds since the epoch")),
        (ColumnKind::Json, Value::String(text)) => serde_json::from_str::<Value>(text)
            .map(|parsed| SqlValue::Text(parsed.to_string()))
            .map_err(|_| "the string is not valid JSON".to_string()),
        (ColumnKind::Json, Value::Object(_) | Value::Array(_)) => {
            Ok(SqlValue::Text(value.to_string()))
        }
        (ColumnKind::Bytes, Value::String(text)) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(SqlValue::Blob)
            .map_err(|_| "the string is not base64".to_string()),
        (kind, other) => Err(format!(
            "a JSON {} cannot be stored in a {} column",
            json_type_name(other),
            kind.sqlite_type()
        )),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Formats a time as RFC 3339 UTC with microseconds, BigQuery's TIMESTAMP precision.
fn format_timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses the timestamp forms insertAll accepts (RFC 3339, or `YYYY-MM-DD HH:MM:SS[.f]` with
/// an optional offset, UTC when absent) into the stored form.
pub fn normalize_timestamp(text: &str) -> Option<String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(format_timestamp(time.with_timezone(&Utc)));
    }
    if let Ok(time) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(format_timestamp(time.with_timezone(&Utc)));
    }
    let naive = text.strip_suffix(" UTC").unwrap_or(text);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(naive, format).ok())
        .map(|time| format_timestamp(time.and_utc()))
}

fn timestamp_from_epoch_secs(seconds: f64) -> Option<String> {
    if !seconds.is_finite() {
        return None;
    }
    let micros = (seconds * 1_000_000.0).round();
    if micros.abs() > i64::MAX as f64 {
        return None;
    }
    DateTime::from_timestamp_micros(micros as i64).map(format_timestamp)
}

/// The SQLite warehouse: a cheap handle to one connection, usable from async code.
#[derive(Debug, Clone)]
pub struct Warehouse {
    connection: Arc<Mutex<Connection>>,
    tables: Arc<BTreeMap<String, PreparedTable>>,
}

#[derive(Debug)]
struct PreparedTable {
    schema: TableSchema,
    insert_sql: String,
}

impl Warehouse {
    /// Opens (or creates) the SQLite file with the `results` and `deliveries` tables of the
    /// project's BigQuery schema files and the `latest_results` view.
    pub fn open(path: &Path) -> Result<Self, WarehouseError> {
        let tables = [
            TableSchema::from_bigquery_json(
                "results",
                enrichment_payload::schemas::RESULTS_SCHEMA_JSON,
            )?,
            TableSchema::from_bigquery_json(
                "deliveries",
                enrichment_payload::schemas::DELIVERIES_SCHEMA_JSON,
            )?,
        ];
        let connection = Connection::open(path)?;
        Self::with_tables(
            connection,
            &path.display().to_string(),
            &tables,
            Some(LATEST_RESULTS_VIEW_SQL),
        )
    }

    /// Creates the tables (and the view, replacing an older definition) on `connection`.
    /// `location` names the database in error messages.
    pub fn with_tables(
        connection: Connection,
        location: &str,
        tables: &[TableSchema],
        view_sql: Option<&str>,
    ) -> Result<Self, WarehouseError> {
        // WAL lets `sqlite3` read the file while the stack writes; the busy timeout covers a
        // reader that holds a lock for a moment. An in-memory database stays in "memory" mode.
        connection.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS _insert_ids (
                 table_name TEXT NOT NULL,
                 insert_id TEXT NOT NULL,
                 PRIMARY KEY (table_name, insert_id)
             ) WITHOUT ROWID",
        )?;

        let mut prepared = BTreeMap::new();
        for schema in tables {
            connection.execute(&schema.create_table_sql(), [])?;
            check_columns(&connection, location, schema)?;
            prepared.insert(
                schema.name.clone(),
                PreparedTable {
                    insert_sql: schema.insert_sql(),
                    schema: schema.clone(),
                },
            );
        }
        if let Some(view_sql) = view_sql {
            connection.execute_batch("DROP VIEW IF EXISTS latest_results")?;
            connection.execute_batch(view_sql)?;
        }

        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            tables: Arc::new(prepared),
        })
    }

    /// Runs `query` on the connection in a blocking thread.
    pub async fn read<T, F>(&self, query: F) -> Result<T, WarehouseError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let guard = lock(&connection);
            query(&guard).map_err(WarehouseError::from)
        })
        .await
        .map_err(|error| WarehouseError::Task(error.to_string()))?
    }

    /// Inserts `rows` into `table` in one transaction; see the module doc for the rules.
    pub fn insert_blocking(&self, table: &str, rows: &[InsertRow]) -> Result<usize, InsertError> {
        let Some(prepared) = self.tables.get(table) else {
            return Err(InsertError::Request {
                retryable: false,
                message: format!("table {table} not found in the local warehouse"),
            });
        };

        let mut converted = Vec::with_capacity(rows.len());
        let mut errors = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            match prepared.schema.row_values(&row.json) {
                Ok(values) => converted.push(values),
                Err(message) => errors.push(RowError { index, message }),
            }
        }
        if !errors.is_empty() {
            return Err(InsertError::Rows { errors });
        }

        let request_error = |error: rusqlite::Error| InsertError::Request {
            retryable: matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            message: error.to_string(),
        };
        let mut connection = lock(&self.connection);
        let transaction = connection.transaction().map_err(request_error)?;
        let mut inserted = 0;
        {
            let mut claim = transaction
                .prepare_cached(
                    "INSERT OR IGNORE INTO _insert_ids (table_name, insert_id) VALUES (?1, ?2)",
                )
                .map_err(request_error)?;
            let mut insert = transaction
                .prepare_cached(&prepared.insert_sql)
                .map_err(request_error)?;
            for (row, values) in rows.iter().zip(converted) {
                // BigQuery de-duplicates only rows that carry an insert id.
                if !row.insert_id.is_empty() {
                    let claimed = claim
                        .execute((table, row.insert_id.as_str()))
                        .map_err(request_error)?;
                    if claimed == 0 {
                        continue;
                    }
                }
                insert
                    .execute(rusqlite::params_from_iter(values))
                    .map_err(request_error)?;
                inserted += 1;
            }
        }
        transaction.commit().map_err(request_error)?;
        Ok(inserted)
    }
}

#[async_trait]
impl RowInserter for Warehouse {
    async fn insert_all(&self, table: &str, rows: &[InsertRow]) -> Result<(), InsertError> {
        let warehouse = self.clone();
        let table = table.to_string();
        let rows = rows.to_vec();
        tokio::task::spawn_blocking(move || warehouse.insert_blocking(&table, &rows))
            .await
            .map_err(|error| InsertError::Request {
                retryable: true,
                message: format!("SQLite task failed: {error}"),
            })?
            .map(|_inserted| ())
    }
}

/// Locks the connection; a panic in another holder leaves SQLite consistent (the transaction
/// rolls back on drop), so a poisoned lock is still usable.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fails when an existing table was created from another version of the schema file.
fn check_columns(
    connection: &Connection,
    location: &str,
    schema: &TableSchema,
) -> Result<(), WarehouseError> {
    let mut statement = connection.prepare(&format!(
        "SELECT name FROM pragma_table_info({})",
        quote_literal(&schema.name)
    ))?;
    let found: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    let expected: Vec<String> = schema
        .columns
        .iter()
        .map(|column| column.name.clone())
        .collect();
    if found != expected {
        return Err(WarehouseError::SchemaMismatch {
            table: schema.name.clone(),
            path: location.to_string(),
            found: found.join(", "),
            expected: expected.join(", "),
        });
    }
    Ok(())
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    const SAMPLE_SCHEMA: &str = r#"[
        {"name": "id", "type": "STRING", "mode": "REQUIRED", "description": "row id"},
        {"name": "count", "type": "INTEGER", "mode": "NULLABLE", "description": "a count"},
        {"name": "score", "type": "FLOAT64", "description": "no mode means NULLABLE"},
        {"name": "active", "type": "BOOLEAN", "mode": "NULLABLE", "description": "flag"},
        {"name": "at", "type": "TIMESTAMP", "mode": "NULLABLE", "description": "time"},
        {"name": "day", "type": "DATE", "mode": "NULLABLE", "description": "date"},
        {"name": "extra", "type": "JSON", "mode": "NULLABLE", "description": "json"},
        {"name": "raw", "type": "BYTES", "mode": "NULLABLE", "description": "bytes"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED", "description": "list"}
    ]"#;

    fn sample_warehouse() -> Warehouse {
        let schema = TableSchema::from_bigquery_json("sample", SAMPLE_SCHEMA).unwrap();
        Warehouse::with_tables(
            Connection::open_in_memory().unwrap(),
            "memory",
            &[schema],
            None,
        )
        .unwrap()
    }

    fn row(insert_id: &str, json: Value) -> InsertRow {
        InsertRow {
            insert_id: insert_id.to_string(),
            json,
        }
    }

    fn stored_rows(warehouse: &Warehouse) -> Vec<Vec<SqlValue>> {
        let connection = lock(&warehouse.connection);
        let mut statement = connection
            .prepare("SELECT id, count, score, active, at, day, extra, raw, tags FROM sample ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| {
                (0..9).map(|index| row.get::<_, SqlValue>(index)).collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn column_kind_mapping() {
        let cases = [
            ("STRING", Some(ColumnKind::Text), "TEXT"),
            ("INT64", Some(ColumnKind::Integer), "INTEGER"),
            ("INTEGER", Some(ColumnKind::Integer), "INTEGER"),
            ("FLOAT", Some(ColumnKind::Float), "REAL"),
            ("NUMERIC", Some(ColumnKind::Float), "REAL"),
            ("BOOL", Some(ColumnKind::Boolean), "INTEGER"),
            ("TIMESTAMP", Some(ColumnKind::Timestamp), "TEXT"),
            ("DATE", Some(ColumnKind::Civil), "TEXT"),
            ("JSON", Some(ColumnKind::Json), "TEXT"),
            ("RECORD", Some(ColumnKind::Json), "TEXT"),
            ("BYTES", Some(ColumnKind::Bytes), "BLOB"),
            ("INTERVAL", None, ""),
        ];
        for (bigquery_type, expected, sqlite_type) in cases {
            let kind = ColumnKind::from_bigquery(bigquery_type);
            assert_eq!(kind, expected, "{bigquery_type}");
            if let Some(kind) = kind {
                assert_eq!(kind.sqlite_type(), sqlite_type, "{bigquery_type}");
            }
        }
    }

    #[test]
    fn create_table_sql_from_schema() {
        let schema = TableSchema::from_bigquery_json("sample", SAMPLE_SCHEMA).unwrap();
        assert_eq!(
            schema.create_table_sql(),
            "CREATE TABLE IF NOT EXISTS \"sample\" (\"id\" TEXT NOT NULL, \"count\" INTEGER, \
             \"score\" REAL, \"active\" INTEGER, \"at\" TEXT, \"day\" TEXT, \"extra\" TEXT, \
             \"raw\" BLOB, \"tags\" TEXT)"
        );
    }

    #[test]
    fn schema_errors() {
        let cases = [
            ("[]", "the schema has no fields"),
            (
                r#"[{"name": "a", "type": "INTERVAL"}]"#,
                "field a has the unsupported type INTERVAL",
            ),
            (
                r#"[{"name": "a", "type": "STRING", "mode": "OPTIONAL"}]"#,
                "field a has the unknown mode OPTIONAL",
            ),
            (
                r#"[{"name": "a", "type": "STRING"}, {"name": "a", "type": "STRING"}]"#,
                "field a appears twice",
            ),
        ];
        for (schema, expected) in cases {
            let error = TableSchema::from_bigquery_json("t", schema).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("invalid BigQuery schema for table t: {expected}")
            );
        }
    }

    #[test]
    fn timestamp_forms_normalise() {
        let cases = [
            ("2024-05-01T10:00:00Z", Some("2024-05-01T10:00:00.000000Z")),
            (
                "2024-05-01T12:00:00.5+02:00",
                Some("2024-05-01T10:00:00.500000Z"),
            ),
            ("2024-05-01 10:00:00", Some("2024-05-01T10:00:00.000000Z")),
            (
                "2024-05-01 10:00:00.123456 UTC",
                Some("2024-05-01T10:00:00.123456Z"),
            ),
            (
                "2024-05-01 12:00:00+02:00",
                Some("2024-05-01T10:00:00.000000Z"),
            ),
            ("yesterday", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_timestamp(input).as_deref(),
                expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn insert_converts_values() {
        let warehouse = sample_warehouse();
        let inserted = warehouse
            .insert_blocking(
                "sample",
                &[row(
                    "a",
                    serde_json::json!({
                        "id": "a",
                        "count": "42",
                        "score": 0.5,
                        "active": true,
                        "at": 1714557600.25,
                        "day": "2024-05-01",
                        "extra": "{\"k\": [1, 2]}",
                        "raw": "aGk=",
                        "tags": ["x", "y"],
                    }),
                )],
            )
            .unwrap();

        assert_eq!(inserted, 1);
        assert_eq!(
            stored_rows(&warehouse),
            vec![vec![
                SqlValue::Text("a".into()),
                SqlValue::Integer(42),
                SqlValue::Real(0.5),
                SqlValue::Integer(1),
                SqlValue::Text("2024-05-01T10:00:00.250000Z".into()),
                SqlValue::Text("2024-05-01".into()),
                SqlValue::Text("{\"k\":[1,2]}".into()),
                SqlValue::Blob(b"hi".to_vec()),
                SqlValue::Text("[\"x\",\"y\"]".into()),
            ]]
        );
    }

    #[test]
    fn repeated_insert_id_is_ignored() {
        let warehouse = sample_warehouse();
        let first = warehouse
            .insert_blocking("sample", &[row("same", serde_json::json!({"id": "first"}))])
            .unwrap();
        let second = warehouse
            .insert_blocking(
                "sample",
                &[
                    row("same", serde_json::json!({"id": "second"})),
                    row("other", serde_json::json!({"id": "third"})),
                ],
            )
            .unwrap();

        assert_eq!((first, second), (1, 1));
        let ids: Vec<SqlValue> = stored_rows(&warehouse)
            .into_iter()
            .map(|values| values[0].clone())
            .collect();
        assert_eq!(
            ids,
            vec![
                SqlValue::Text("first".into()),
                SqlValue::Text("third".into())
            ]
        );
    }

    #[test]
    fn empty_insert_id_always_inserts() {
        let warehouse = sample_warehouse();
        for _ in 0..2 {
            warehouse
                .insert_blocking("sample", &[row("", serde_json::json!({"id": "x"}))])
                .unwrap();
        }
        assert_eq!(stored_rows(&warehouse).len(), 2);
    }

    #[test]
    fn invalid_rows_fail_the_whole_request() {
        let warehouse = sample_warehouse();
        let error = warehouse
            .insert_blocking(
                "sample",
                &[
                    row("ok", serde_json::json!({"id": "ok"})),
                    row("unknown", serde_json::json!({"id": "u", "colour": "red"})),
                    row("missing", serde_json::json!({"count": 1})),
                    row("type", serde_json::json!({"id": "t", "count": "many"})),
                    row("json", serde_json::json!({"id": "j", "extra": "{not json"})),
                    row("array", serde_json::json!({"id": "r", "tags": "x"})),
                ],
            )
            .unwrap_err();

        let InsertError::Rows { errors } = error else {
            panic!("expected row errors, got {error:?}");
        };
        assert_eq!(
            errors,
            vec![
                RowError {
                    index: 1,
                    message: "no such field: colour".into()
                },
                RowError {
                    index: 2,
                    message: "id: missing required field".into()
                },
                RowError {
                    index: 3,
                    message: "count: \"many\" is not a 64-bit integer".into()
                },
                RowError {
                    index: 4,
                    message: "extra: the string is not valid JSON".into()
                },
                RowError {
                    index: 5,
                    message: "tags: a REPEATED field needs a JSON array".into()
                },
            ]
        );
        assert_eq!(stored_rows(&warehouse), Vec::<Vec<SqlValue>>::new());
    }

    #[test]
    fn unknown_table_is_permanent() {
        let warehouse = sample_warehouse();
        let error = warehouse.insert_blocking("nope", &[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "insertAll request failed: table nope not found in the local warehouse"
        );
        assert!(matches!(
            error,
            InsertError::Request {
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn changed_schema_is_reported() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("warehouse.db");
        let old =
            TableSchema::from_bigquery_json("sample", r#"[{"name": "id", "type": "STRING"}]"#)
                .unwrap();
        Warehouse::with_tables(Connection::open(&path).unwrap(), "w.db", &[old], None).unwrap();

        let new = TableSchema::from_bigquery_json("sample", SAMPLE_SCHEMA).unwrap();
        let error = Warehouse::with_tables(Connection::open(&path).unwrap(), "w.db", &[new], None)
            .unwrap_err();

        assert_eq!(
            error.to_string(),
            "table sample in w.db has the columns [id] but the schema file has [id, count, \
             score, active, at, day, extra, raw, tags]; delete the file or choose another data \
             directory"
        );
    }

    #[tokio::test]
    async fn row_inserter_trait_inserts() {
        let warehouse = sample_warehouse();
        warehouse
            .insert_all("sample", &[row("a", serde_json::json!({"id": "a"}))])
            .await
            .unwrap();
        let count = warehouse
            .read(|connection| {
                connection.query_row("SELECT COUNT(*) FROM sample", [], |row| {
                    row.get::<_, i64>(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(count, 1);
    }
}

#[cfg(test)]
mod view_tests {
    use chrono::TimeZone as _;
    use enrichment_payload::rows::{DeliveryRow, DeliveryStatus, ResultRow};
    use pretty_assertions::assert_eq;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, second).unwrap()
    }

    fn result(message_id: &str, email: &str, tenant: Option<&str>, received: u32) -> ResultRow {
        ResultRow {
            message_id: message_id.to_string(),
            partner_id: "partner".to_string(),
            tenant_id: tenant.map(str::to_string),
            input_email: email.to_string(),
            work_email: None,
            phone_number: Some(format!("+1555000{received:04}")),
            linkedin_url: None,
            name: None,
            company_domain: None,
            extra: "{}".to_string(),
            delivery_id: format!("msg_{message_id}"),
            received_at: at(received),
            published_at: at(received),
            stored_at: at(received),
        }
    }

    fn delivery(id: &str, email: &str, tenant: &str, status: DeliveryStatus) -> DeliveryRow {
        DeliveryRow {
            delivery_id: id.to_string(),
            tenant_id: Some(tenant.to_string()),
            partner_id: "partner".to_string(),
            source_bucket: "input".to_string(),
            source_object: "incoming/t/file.csv".to_string(),
            source_generation: 1,
            input_email: email.to_string(),
            input_email_hash: "0123456789ab".to_string(),
            status,
            attempts: 1,
            last_http_status: Some(202),
            error: None,
            created_at: at(0),
            finished_at: at(1),
        }
    }

    fn open_warehouse() -> (tempfile::TempDir, Warehouse) {
        let directory = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&directory.path().join("warehouse.db")).unwrap();
        (directory, warehouse)
    }

    fn insert_results(warehouse: &Warehouse, rows: &[(&str, ResultRow)]) {
        let rows: Vec<InsertRow> = rows
            .iter()
            .map(|(insert_id, row)| InsertRow {
                insert_id: insert_id.to_string(),
                json: row.to_json(),
            })
            .collect();
        warehouse.insert_blocking("results", &rows).unwrap();
    }

    fn insert_deliveries(warehouse: &Warehouse, rows: &[DeliveryRow]) {
        let rows: Vec<InsertRow> = rows
            .iter()
            .map(|row| InsertRow {
                insert_id: row.delivery_id.clone(),
                json: row.to_json(),
            })
            .collect();
        warehouse.insert_blocking("deliveries", &rows).unwrap();
    }

    /// `(tenant_id, input_email, message_id)` of every view row, sorted.
    fn view(warehouse: &Warehouse) -> Vec<(Option<String>, String, String)> {
        let connection = lock(&warehouse.connection);
        let mut statement = connection
            .prepare(
                "SELECT tenant_id, input_email, message_id FROM latest_results \
                 ORDER BY tenant_id, input_email, message_id",
            )
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn entry(
        tenant: Option<&str>,
        email: &str,
        message_id: &str,
    ) -> (Option<String>, String, String) {
        (
            tenant.map(str::to_string),
            email.to_string(),
            message_id.to_string(),
        )
    }

    #[test]
    fn echoed_tenant_is_kept() {
        let (_directory, warehouse) = open_warehouse();
        insert_results(
            &warehouse,
            &[("1", result("1", "a@example.com", Some("acme"), 1))],
        );
        assert_eq!(
            view(&warehouse),
            vec![entry(Some("acme"), "a@example.com", "1")]
        );
    }

    #[test]
    fn tenant_joined_through_deliveries() {
        let (_directory, warehouse) = open_warehouse();
        insert_deliveries(
            &warehouse,
            &[
                delivery("d1", "A@example.com", "acme", DeliveryStatus::Delivered),
                delivery("d2", "a@example.com", "globex", DeliveryStatus::Delivered),
                delivery("d3", "a@example.com", "initech", DeliveryStatus::Failed),
            ],
        );
        insert_results(&warehouse, &[("1", result("1", "a@example.com", None, 1))]);

        assert_eq!(
            view(&warehouse),
            vec![
                entry(Some("acme"), "a@example.com", "1"),
                entry(Some("globex"), "a@example.com", "1"),
            ]
        );
    }

    #[test]
    fn unmatched_result_has_null_tenant() {
        let (_directory, warehouse) = open_warehouse();
        insert_results(&warehouse, &[("1", result("1", "a@example.com", None, 1))]);
        assert_eq!(view(&warehouse), vec![entry(None, "a@example.com", "1")]);
    }

    #[test]
    fn newest_result_wins() {
        let (_directory, warehouse) = open_warehouse();
        insert_results(
            &warehouse,
            &[
                ("1", result("1", "a@example.com", Some("acme"), 5)),
                ("2", result("2", "A@example.com", Some("acme"), 9)),
                ("3", result("3", "a@example.com", Some("acme"), 7)),
            ],
        );
        assert_eq!(
            view(&warehouse),
            vec![entry(Some("acme"), "A@example.com", "2")]
        );
    }

    #[test]
    fn copies_of_one_message_collapse() {
        let (_directory, warehouse) = open_warehouse();
        let mut later_copy = result("1", "a@example.com", Some("acme"), 1);
        later_copy.stored_at = at(30);
        insert_results(
            &warehouse,
            &[
                ("first", result("1", "a@example.com", Some("acme"), 1)),
                ("second", later_copy),
            ],
        );
        assert_eq!(
            view(&warehouse),
            vec![entry(Some("acme"), "a@example.com", "1")]
        );
    }

    #[test]
    fn redelivered_message_is_stored_once() {
        let (_directory, warehouse) = open_warehouse();
        let row = result("1", "a@example.com", Some("acme"), 1);
        insert_results(&warehouse, &[("1", row.clone())]);
        insert_results(&warehouse, &[("1", row)]);

        let count: i64 = lock(&warehouse.connection)
            .query_row("SELECT COUNT(*) FROM results", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 1);
    }
}
