//! Streaming reader of input files: rows of (email, optional tenant) from CSV, NDJSON or plain
//! text, each optionally gzip-compressed.
//!
//! Memory stays bounded whatever the file size: bytes are read through fixed buffers and one
//! row is decoded at a time. Lines, and CSV records, longer than [`MAX_LINE_BYTES`] are
//! reported as unreadable rows instead of being buffered, even when a CSV quote is never closed.
//!
//! Conventions:
//! - Gzip is detected by its magic bytes `1f 8b`, not by the name or `Content-Encoding`,
//!   because Cloud Storage may already have decompressed an object stored with
//!   `Content-Encoding: gzip` (decompressive transcoding). Concatenated gzip members are read as
//!   one stream.
//! - The format comes from the name without `.gz`: `.csv`; `.ndjson` or `.jsonl`; `.txt`.
//!   Any other name is sniffed from the first line: `{` starts NDJSON; a comma, or a lone
//!   `email`/`input_email` header, means CSV; anything else is plain text.
//! - A UTF-8 byte order mark, CRLF line ends and blank lines are accepted everywhere.
//! - CSV needs a header with an `input_email` or `email` column (any case; `input_email` wins
//!   when both exist) and may have a `tenant_id` column. An empty CSV file has no rows.
//! - NDJSON lines are objects with a string `input_email` (or `email`) and an optional string
//!   `tenant_id`.
//! - Plain text has one email per line; a first line that is exactly `email` or `input_email`
//!   is a header and skipped.

use std::io;
use std::pin::Pin;

use async_compression::tokio::bufread::GzipDecoder;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

/// Maximum length of a line or CSV record, in bytes. An email is at most 254 characters, so
/// anything much longer is not a row of this product.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Maximum length of the raw text kept from an unreadable row for its delivery record.
pub const MAX_RAW_CHARS: usize = 320;
/// Buffer size of each reading stage.
const BUFFER_BYTES: usize = 64 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF8_BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

type BoxBufRead = Pin<Box<dyn AsyncBufRead + Send>>;

/// The layout of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Csv,
    Ndjson,
    Text,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Csv => "csv",
            InputFormat::Ndjson => "ndjson",
            InputFormat::Text => "text",
        }
    }
}

/// One row of an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRow {
    /// 1-based line number of the row in the decompressed file. For CSV it is the record
    /// number with the header as 1, which equals the line number unless the file has blank
    /// lines or line breaks inside quoted fields.
    pub line: u64,
    pub content: RowContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowContent {
    /// An email as written (trimmed; possibly empty or invalid) and the row's own tenant.
    Email {
        email: String,
        tenant_id: Option<String>,
    },
    /// A row without a readable email, with its raw text cut to [`MAX_RAW_CHARS`].
    Unreadable { raw: String, reason: String },
}

/// Failure to read an input file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Reading the bytes failed; reading again later may work.
    #[error("reading the object failed: {0}")]
    Read(#[source] io::Error),
    /// The bytes are corrupt (such as a truncated gzip stream), so rereading cannot help.
    #[error("the object is corrupt: {0}")]
    Corrupt(#[source] io::Error),
    /// A CSV file whose header names no email column. The header's text is left out because
    /// it may be a data row with personal data.
    #[error(
        "the CSV header has no input_email or email column (it has {columns} columns); the \
         first record must name the columns"
    )]
    NoEmailColumn { columns: usize },
    /// A CSV file whose first record is too long to be a header.
    #[error(
        "the CSV header is longer than {MAX_LINE_BYTES} bytes or has more than {MAX_CSV_FIELDS} \
         fields"
    )]
    HeaderTooLong,
}

impl InputError {
    /// Returns whether a later attempt to read the same object can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, InputError::Read(_))
    }

    fn from_io(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => InputError::Corrupt(error),
            _ => InputError::Read(error),
        }
    }
}

/// Returns the format that the object name implies, ignoring a `.gz` suffix, or `None` when
/// the name does not tell.
pub fn format_from_name(name: &str) -> Option<InputFormat> {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    let extension = stem.rsplit_once('.').map(|(_, ext)| ext)?;
    match extension {
        "csv" => Some(InputFormat::Csv),
        "ndjson" | "jsonl" => Some(InputFormat::Ndjson),
        "txt" => Some(InputFormat::Text),
        _ => None,
    }
}

/// Guesses the format from the first line of a file (after any byte order mark).
pub fn sniff_format(first_line: &[u8]) -> InputFormat {
    let text = String::from_utf8_lossy(first_line);
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        return InputFormat::Ndjson;
    }
    if trimmed.contains(',') || is_email_header(trimmed.trim_matches('"')) {
        return InputFormat::Csv;
    }
    InputFormat::Text
}

fn is_email_header(field: &str) -> bool {
    let field = field.trim();
    field.eq_ignore_ascii_case("input_email") || field.eq_ignore_ascii_case("email")
}

/// Reads rows from an object one at a time.
pub struct RowReader {
    format: InputFormat,
    source: RowSource,
}

impl std::fmt::Debug for RowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowReader")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

enum RowSource {
    Lines(LineRows),
    Csv(Box<CsvRows>),
}

impl RowReader {
    /// Prepares to read `reader`, the bytes of object `name`: detects gzip, strips a byte order
    /// mark, picks the format and, for CSV, reads the header.
    pub async fn open<R>(reader: R, name: &str) -> Result<Self, InputError>
    where
        R: AsyncRead + Send + 'static,
    {
        let mut raw: BoxBufRead = Box::pin(BufReader::with_capacity(BUFFER_BYTES, reader));
        let head = raw.fill_buf().await.map_err(InputError::from_io)?;
        let mut text: BoxBufRead = if head.starts_with(&GZIP_MAGIC) {
            let mut decoder = GzipDecoder::new(raw);
            decoder.multiple_members(true);
            Box::pin(BufReader::with_capacity(BUFFER_BYTES, decoder))
        } else {
            raw
        };

        let head = text.fill_buf().await.map_err(InputError::from_io)?;
        if head.starts_with(&UTF8_BOM) {
            text.consume(UTF8_BOM.len());
        }

        let format = match format_from_name(name) {
            Some(format) => format,
            None => {
                let head = text.fill_buf().await.map_err(InputError::from_io)?;
                let first_line = first_non_blank_line(head);
                sniff_format(first_line)
            }
        };

        let source = match format {
            InputFormat::Csv => RowSource::Csv(Box::new(CsvRows::open(text).await?)),
            InputFormat::Ndjson | InputFormat::Text => RowSource::Lines(LineRows {
                reader: text,
                format,
                line: 0,
                buffer: Vec::with_capacity(256),
            }),
        };
        Ok(Self { format, source })
    }

    pub fn format(&self) -> InputFormat {
        self.format
    }

    /// Returns the next row, or `None` at the end of the file. Blank rows are skipped.
    pub async fn next_row(&mut self) -> Result<Option<InputRow>, InputError> {
        match &mut self.source {
            RowSource::Lines(lines) => lines.next_row().await,
            RowSource::Csv(csv) => csv.next_row().await,
        }
    }
}

fn first_non_blank_line(head: &[u8]) -> &[u8] {
    head.split(|&byte| byte == b'\n')
        .find(|line| line.iter().any(|byte| !byte.is_ascii_whitespace()))
        .unwrap_or(&[])
}

fn raw_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim().chars().take(MAX_RAW_CHARS).collect()
}

fn unreadable(line: u64, bytes: &[u8], reason: impl Into<String>) -> InputRow {
    InputRow {
        line,
        content: RowContent::Unreadable {
            raw: raw_text(bytes),
            reason: reason.into(),
        },
    }
}

/// The end of one [`read_line_capped`] call.
#[derive(Debug, PartialEq, Eq)]
enum LineEnd {
    /// A line was read into the buffer (its `\n` and a `\r` before it removed).
    Line,
    /// The line was longer than the limit, so the buffer contains only its first bytes.
    TooLong,
    /// The file ended before any byte of a new line.
    Eof,
}

/// Reads one line into `buffer` (cleared first), keeping at most `max` bytes of it and
/// skipping the rest, so an endless line cannot exhaust memory.
async fn read_line_capped(
    reader: &mut BoxBufRead,
    buffer: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineEnd> {
    buffer.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, used, done) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&available[..end], end + 1, true),
            None => (available, available.len(), false),
        };
        let room = max.saturating_sub(buffer.len());
        if chunk.len() > room {
            too_long = true;
        }
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if done {
            break;
        }
    }
    if !read_any {
        return Ok(LineEnd::Eof);
    }
    if buffer.last() == Some(&b'\r') {
        buffer.pop();
    }
    Ok(if too_long {
        LineEnd::TooLong
    } else {
        LineEnd::Line
    })
}

struct LineRows {
    reader: BoxBufRead,
    format: InputFormat,
    line: u64,
    buffer: Vec<u8>,
}

impl LineRows {
    async fn next_row(&mut self) -> Result<Option<InputRow>, InputError> {
        loop {
            let end = read_line_capped(&mut self.reader, &mut self.buffer, MAX_LINE_BYTES)
                .await
                .map_err(InputError::from_io)?;
            self.line += 1;
            let line = self.line;
            match end {
                LineEnd::Eof => return Ok(None),
                LineEnd::TooLong => {
                    let reason = format!("the line is longer than {MAX_LINE_BYTES} bytes");
                    return Ok(Some(unreadable(line, &self.buffer, reason)));
                }
                LineEnd::Line => {}
            }
            if self.buffer.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(text) = std::str::from_utf8(&self.buffer) else {
                return Ok(Some(unreadable(
                    line,
                    &self.buffer,
                    "the line is not valid UTF-8",
                )));
            };
            let row = match self.format {
                InputFormat::Ndjson => ndjson_row(line, text),
                _ => {
                    let email = text.trim();
                    if line == 1 && is_email_header(email) {
                        continue;
                    }
                    InputRow {
                        line,
                        content: RowContent::Email {
                            email: email.to_string(),
                            tenant_id: None,
                        },
                    }
                }
            };
            return Ok(Some(row));
        }
    }
}

fn ndjson_row(line: u64, text: &str) -> InputRow {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            return unreadable(
                line,
                text.as_bytes(),
                format!("the line is not JSON: {error}"),
            );
        }
    };
    let Value::Object(mut object) = value else {
        return unreadable(line, text.as_bytes(), "the line is not a JSON object");
    };
    let email = match object
        .remove("input_email")
        .or_else(|| object.remove("email"))
    {
        Some(Value::String(email)) => email.trim().to_string(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return unreadable(line, text.as_bytes(), "input_email is not a string");
        }
    };
    let tenant_id = match object.remove("tenant_id") {
        Some(Value::String(tenant)) => Some(tenant),
        None | Some(Value::Null) => None,
        Some(_) => {
            return unreadable(line, text.as_bytes(), "tenant_id is not a string");
        }
    };
    InputRow {
        line,
        content: RowContent::Email { email, tenant_id },
    }
}

/// Maximum number of fields in a CSV record. A row of this product has a few columns.
pub const MAX_CSV_FIELDS: usize = 1024;
/// Bytes of an overlong CSV record kept for its [`RowContent::Unreadable`] text: enough for
/// [`MAX_RAW_CHARS`] characters.
const KEPT_OVERLONG_BYTES: usize = 4 * MAX_RAW_CHARS;

/// The end of one [`CsvRecords::read_record`] call.
#[derive(Debug, PartialEq, Eq)]
enum RecordEnd {
    /// A record was read into the field buffer.
    Record,
    /// The record had more than [`MAX_LINE_BYTES`] bytes of field data or more than
    /// [`MAX_CSV_FIELDS`] fields. The field buffer contains only its first bytes.
    TooLong,
    /// The file ended.
    Eof,
}

/// A CSV record parser with fixed buffers.
///
/// `csv-async` (like `csv`) grows its record buffer until the record ends, so one unclosed
/// quote followed by gigabytes of data is buffered whole before any length check can run. The
/// `csv-core` state machine writes fields into buffers that the caller owns, so this reader
/// caps them and, once a record exceeds the cap, parses the rest of that record without
/// keeping it. Splitting the input into lines first would break quoted fields that contain
/// line breaks.
struct CsvRecords {
    reader: BoxBufRead,
    parser: csv_core::Reader,
    /// Field bytes of the current record, without separators.
    fields: Vec<u8>,
    /// The end offset of each field in `fields`.
    ends: Vec<usize>,
    fields_len: usize,
    ends_len: usize,
    /// Records read so far, blank lines excluded: the header is record 1.
    records: u64,
}

impl CsvRecords {
    fn new(reader: BoxBufRead) -> Self {
        Self {
            reader,
            parser: csv_core::Reader::new(),
            fields: vec![0; MAX_LINE_BYTES],
            ends: vec![0; MAX_CSV_FIELDS],
            fields_len: 0,
            ends_len: 0,
            records: 0,
        }
    }

    async fn read_record(&mut self) -> io::Result<RecordEnd> {
        let Self {
            reader,
            parser,
            fields,
            ends,
            ..
        } = self;
        let mut fields_len = 0;
        let mut ends_len = 0;
        let mut too_long = false;
        let result = loop {
            let input = reader.fill_buf().await?;
            // Past the cap, the parser writes into a scratch part of the buffers that is
            // overwritten on each call, so the record's first bytes stay for its raw text.
            let (output, field_ends) = if too_long {
                (&mut fields[KEPT_OVERLONG_BYTES..], &mut ends[..])
            } else {
                (&mut fields[fields_len..], &mut ends[ends_len..])
            };
            let (result, read, written, ended) = parser.read_record(input, output, field_ends);
            reader.consume(read);
            if !too_long {
                fields_len += written;
                ends_len += ended;
            }
            match result {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull
                | csv_core::ReadRecordResult::OutputEndsFull => {
                    if !too_long {
                        too_long = true;
                        fields_len = fields_len.min(KEPT_OVERLONG_BYTES);
                    }
                }
                csv_core::ReadRecordResult::Record => break RecordEnd::Record,
                csv_core::ReadRecordResult::End => break RecordEnd::Eof,
            }
        };
        if result == RecordEnd::Eof {
            return Ok(RecordEnd::Eof);
        }
        self.records += 1;
        if too_long {
            self.fields_len = fields_len;
            self.ends_len = 0;
            return Ok(RecordEnd::TooLong);
        }
        self.fields_len = fields_len;
        self.ends_len = ends_len;
        Ok(RecordEnd::Record)
    }

    /// Returns the field bytes of the last record (all of them, or the first bytes of an
    /// overlong one).
    fn bytes(&self) -> &[u8] {
        &self.fields[..self.fields_len]
    }

    /// Returns the field `index` of the last record, trimmed of ASCII whitespace.
    fn field(&self, index: usize) -> Option<&[u8]> {
        if index >= self.ends_len {
            return None;
        }
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        Some(self.fields[start..self.ends[index]].trim_ascii())
    }

    fn field_count(&self) -> usize {
        self.ends_len
    }
}

struct CsvRows {
    records: CsvRecords,
    /// `None` for an empty file, which has no header and no rows.
    columns: Option<CsvColumns>,
}

#[derive(Debug, Clone, Copy)]
struct CsvColumns {
    email: usize,
    tenant: Option<usize>,
}

impl CsvRows {
    async fn open(text: BoxBufRead) -> Result<Self, InputError> {
        let mut records = CsvRecords::new(text);
        let columns = match records.read_record().await.map_err(InputError::from_io)? {
            RecordEnd::Eof => None,
            RecordEnd::TooLong => return Err(InputError::HeaderTooLong),
            RecordEnd::Record => Some(find_columns(&records)?),
        };
        Ok(Self { records, columns })
    }

    async fn next_row(&mut self) -> Result<Option<InputRow>, InputError> {
        let Some(columns) = self.columns else {
            return Ok(None);
        };
        loop {
            let end = self
                .records
                .read_record()
                .await
                .map_err(InputError::from_io)?;
            let line = self.records.records;
            match end {
                RecordEnd::Eof => return Ok(None),
                RecordEnd::TooLong => {
                    let reason = format!(
                        "the record is longer than {MAX_LINE_BYTES} bytes or has more than \
                         {MAX_CSV_FIELDS} fields"
                    );
                    return Ok(Some(unreadable(line, self.records.bytes(), reason)));
                }
                RecordEnd::Record => {}
            }
            let records = &self.records;
            if (0..records.field_count())
                .all(|index| records.field(index).is_some_and(<[u8]>::is_empty))
            {
                continue;
            }
            let field = |index: usize| records.field(index).map(std::str::from_utf8);
            let email = match field(columns.email) {
                Some(Ok(email)) => email.to_string(),
                None => String::new(),
                Some(Err(_)) => {
                    let reason = "the email field is not valid UTF-8";
                    return Ok(Some(unreadable(line, records.bytes(), reason)));
                }
            };
            let tenant_id = match columns.tenant.and_then(field) {
                Some(Ok(tenant)) if !tenant.is_empty() => Some(tenant.to_string()),
                Some(Err(_)) => {
                    let reason = "the tenant_id field is not valid UTF-8";
                    return Ok(Some(unreadable(line, records.bytes(), reason)));
                }
                _ => None,
            };
            return Ok(Some(InputRow {
                line,
                content: RowContent::Email { email, tenant_id },
            }));
        }
    }
}

/// Finds the email and tenant columns in the header record. The error gives only the column
/// count, because a file without a header has a data row (emails, names) in its place.
fn find_columns(header: &CsvRecords) -> Result<CsvColumns, InputError> {
    let names: Vec<String> = (0..header.field_count())
        .filter_map(|index| header.field(index))
        .map(|field| String::from_utf8_lossy(field).to_ascii_lowercase())
        .collect();
    let find = |wanted: &str| names.iter().position(|name| name == wanted);
    let Some(email) = find("input_email").or_else(|| find("email")) else {
        return Err(InputError::NoEmailColumn {
            columns: names.len(),
        });
    };
    Ok(CsvColumns {
        email,
        tenant: find("tenant_id"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    async fn read_rows(data: &[u8], name: &str) -> (InputFormat, Vec<InputRow>) {
        let cursor = std::io::Cursor::new(data.to_vec());
        let mut reader = RowReader::open(cursor, name).await.unwrap();
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row().await.unwrap() {
            rows.push(row);
        }
        (reader.format(), rows)
    }

    fn email(line: u64, email: &str, tenant: Option<&str>) -> InputRow {
        InputRow {
            line,
            content: RowContent::Email {
                email: email.to_string(),
                tenant_id: tenant.map(str::to_string),
            },
        }
    }

    #[test]
    fn format_from_name_table() {
        let cases: &[(&str, Option<InputFormat>)] = &[
            ("incoming/t/a.csv", Some(InputFormat::Csv)),
            ("incoming/t/a.CSV.gz", Some(InputFormat::Csv)),
            ("incoming/t/a.ndjson", Some(InputFormat::Ndjson)),
            ("incoming/t/a.jsonl.gz", Some(InputFormat::Ndjson)),
            ("incoming/t/a.txt", Some(InputFormat::Text)),
            ("incoming/t/a.txt.gz", Some(InputFormat::Text)),
            ("incoming/t/a.gz", None),
            ("incoming/t/a", None),
            ("incoming/t.v2/a", None),
            ("incoming/t/a.json", None),
        ];
        for (name, expected) in cases {
            assert_eq!(format_from_name(name), *expected, "{name}");
        }
    }

    #[test]
    fn sniff_format_table() {
        let cases: &[(&str, InputFormat)] = &[
            (r#"{"input_email":"a@b.co"}"#, InputFormat::Ndjson),
            ("  {", InputFormat::Ndjson),
            ("email,tenant_id", InputFormat::Csv),
            ("Email", InputFormat::Csv),
            ("\"INPUT_EMAIL\"", InputFormat::Csv),
            ("a@b.co", InputFormat::Text),
            ("", InputFormat::Text),
        ];
        for (line, expected) in cases {
            assert_eq!(sniff_format(line.as_bytes()), *expected, "{line:?}");
        }
    }

    #[tokio::test]
    async fn csv_with_bom_crlf_blank_lines_and_tenant() {
        let data = b"\xef\xbb\xbfName,EMAIL,Tenant_ID\r\nJane, jane@example.com ,t-1\r\n\r\nBob,bob@example.com,\r\n,,\r\n\"Doe, J\",\"j@example.com\",t-2\r\n";
        let (format, rows) = read_rows(data, "incoming/t/a.csv").await;
        assert_eq!(format, InputFormat::Csv);
        assert_eq!(
            rows,
            vec![
                email(2, "jane@example.com", Some("t-1")),
                email(3, "bob@example.com", None),
                email(5, "j@example.com", Some("t-2")),
            ]
        );
    }

    #[tokio::test]
    async fn csv_prefers_input_email_column() {
        let data = b"email,input_email\nold@example.com,new@example.com\nx@example.com\n";
        let (_, rows) = read_rows(data, "a.csv").await;
        assert_eq!(
            rows,
            vec![email(2, "new@example.com", None), email(3, "", None)]
        );
    }

    #[tokio::test]
    async fn csv_without_email_column_is_an_error() {
        let cursor = std::io::Cursor::new(b"name,phone\nJane,123\n".to_vec());
        let error = RowReader::open(cursor, "a.csv").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the CSV header has no input_email or email column (it has 2 columns); the first \
             record must name the columns"
        );
        assert!(!error.is_retryable());
    }

    #[tokio::test]
    async fn ndjson_rows_and_unreadable_lines() {
        let data = concat!(
            "{\"input_email\":\"a@example.com\",\"tenant_id\":\"t-1\"}\n",
            "\n",
            "{\"email\":\" b@example.com \"}\r\n",
            "not json\n",
            "[1,2]\n",
            "{\"input_email\":5}\n",
            "{\"input_email\":\"c@example.com\",\"tenant_id\":7}\n",
            "{\"tenant_id\":\"t-2\"}",
        );
        let (format, rows) = read_rows(data.as_bytes(), "incoming/t/a.jsonl").await;
        assert_eq!(format, InputFormat::Ndjson);
        assert_eq!(rows.len(), 7);

        assert_eq!(rows[0], email(1, "a@example.com", Some("t-1")));
        assert_eq!(rows[1], email(3, "b@example.com", None));

        let RowContent::Unreadable { raw, reason } = &rows[2].content else {
            panic!("line 4 should be unreadable: {:?}", rows[2]);
        };
        assert_eq!(raw, "not json");
        assert!(reason.starts_with("the line is not JSON: "), "{reason}");

        assert_eq!(
            rows[3].content,
            RowContent::Unreadable {
                raw: "[1,2]".into(),
                reason: "the line is not a JSON object".into()
            }
        );
        assert_eq!(
            rows[4].content,
            RowContent::Unreadable {
                raw: "{\"input_email\":5}".into(),
                reason: "input_email is not a string".into()
            }
        );

        assert_eq!(rows[5].line, 7);
        assert_eq!(
            rows[5].content,
            RowContent::Unreadable {
                raw: "{\"input_email\":\"c@example.com\",\"tenant_id\":7}".into(),
                reason: "tenant_id is not a string".into()
            }
        );

        assert_eq!(rows[6], email(8, "", Some("t-2")));
    }

    #[tokio::test]
    async fn text_lines_skip_header_and_blanks() {
        let data = b"\xef\xbb\xbfemail\r\n a@example.com\r\n\r\n   \nb@example.com";
        let (format, rows) = read_rows(data, "incoming/t/list.txt").await;
        assert_eq!(format, InputFormat::Text);
        assert_eq!(
            rows,
            vec![
                email(2, "a@example.com", None),
                email(5, "b@example.com", None)
            ]
        );
    }

    #[tokio::test]
    async fn gzip_detected_by_magic_bytes() {
        let plain = b"a@example.com\nb@example.com\n";
        let compressed = gzip(plain);
        // The name says text without .gz: only the magic bytes tell.
        let (_, from_magic) = read_rows(&compressed, "incoming/t/list.txt").await;
        // The name says .gz but the bytes arrive decompressed (decompressive transcoding).
        let (_, transcoded) = read_rows(plain, "incoming/t/list.txt.gz").await;
        let expected = vec![
            email(1, "a@example.com", None),
            email(2, "b@example.com", None),
        ];
        assert_eq!(from_magic, expected);
        assert_eq!(transcoded, expected);
    }

    #[tokio::test]
    async fn gzip_members_and_sniffing() {
        let mut data = gzip(b"email,tenant_id\na@example.com,t-1\n");
        data.extend(gzip(b"b@example.com,t-2\n"));
        let (format, rows) = read_rows(&data, "incoming/t/upload.gz").await;
        assert_eq!(format, InputFormat::Csv);
        assert_eq!(
            rows,
            vec![
                email(2, "a@example.com", Some("t-1")),
                email(3, "b@example.com", Some("t-2"))
            ]
        );
    }

    #[tokio::test]
    async fn truncated_gzip_is_corrupt() {
        let data = gzip(&b"a@example.com\n".repeat(1000));
        let truncated = data[..data.len() / 2].to_vec();
        let mut reader = RowReader::open(std::io::Cursor::new(truncated), "a.txt")
            .await
            .unwrap();
        let error = loop {
            match reader.next_row().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a truncated gzip stream read to the end"),
                Err(error) => break error,
            }
        };
        assert!(matches!(error, InputError::Corrupt(_)), "{error:?}");
    }

    #[tokio::test]
    async fn overlong_line_is_unreadable_and_reading_continues() {
        let mut data = "x".repeat(MAX_LINE_BYTES + 10);
        data.push_str("\nok@example.com\n");
        let (_, rows) = read_rows(data.as_bytes(), "a.txt").await;
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].content,
            RowContent::Unreadable {
                raw: "x".repeat(MAX_RAW_CHARS),
                reason: format!("the line is longer than {MAX_LINE_BYTES} bytes"),
            }
        );
        assert_eq!(rows[1], email(2, "ok@example.com", None));
    }

    #[tokio::test]
    async fn invalid_utf8_line_is_unreadable() {
        let (_, rows) = read_rows(b"a\xff@example.com\nb@example.com\n", "a.txt").await;
        assert_eq!(
            rows[0].content,
            RowContent::Unreadable {
                raw: "a\u{fffd}@example.com".into(),
                reason: "the line is not valid UTF-8".into()
            }
        );
        assert_eq!(rows[1], email(2, "b@example.com", None));
    }

    #[tokio::test]
    async fn csv_unclosed_quote_is_one_unreadable_row() {
        let mut data = b"email\n\"".to_vec();
        data.extend(std::iter::repeat_n(b'a', 3 * MAX_LINE_BYTES));
        let (_, rows) = read_rows(&gzip(&data), "incoming/t/a.csv").await;
        assert_eq!(
            rows,
            vec![InputRow {
                line: 2,
                content: RowContent::Unreadable {
                    raw: "a".repeat(MAX_RAW_CHARS),
                    reason: "the record is longer than 16384 bytes or has more than 1024 fields"
                        .into(),
                },
            }]
        );
    }

    #[tokio::test]
    async fn csv_overlong_records_are_unreadable_and_reading_continues() {
        let long_field = "b".repeat(MAX_LINE_BYTES + 1);
        let many_fields = ",".repeat(MAX_CSV_FIELDS);
        let data = format!(
            "email,tenant_id\n\"{long_field}\nstill quoted\",t-1\n{many_fields}\nok@example.com,t-2\n"
        );
        let (_, rows) = read_rows(data.as_bytes(), "a.csv").await;
        let reason = "the record is longer than 16384 bytes or has more than 1024 fields";
        assert_eq!(
            rows,
            vec![
                InputRow {
                    line: 2,
                    content: RowContent::Unreadable {
                        raw: "b".repeat(MAX_RAW_CHARS),
                        reason: reason.into(),
                    },
                },
                InputRow {
                    line: 3,
                    content: RowContent::Unreadable {
                        raw: String::new(),
                        reason: reason.into(),
                    },
                },
                email(4, "ok@example.com", Some("t-2")),
            ]
        );
    }

    #[tokio::test]
    async fn csv_quoted_field_with_line_break() {
        let data = b"email,note\n\"a@example.com\",\"two\nlines\"\nb@example.com,\"x,y\"\n";
        let (_, rows) = read_rows(data, "a.csv").await;
        assert_eq!(
            rows,
            vec![
                email(2, "a@example.com", None),
                email(3, "b@example.com", None)
            ]
        );
    }

    #[tokio::test]
    async fn csv_overlong_header_is_an_error() {
        let data = format!("email,{}\na@example.com\n", "x".repeat(MAX_LINE_BYTES));
        let cursor = std::io::Cursor::new(data.into_bytes());
        let error = RowReader::open(cursor, "a.csv").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the CSV header is longer than 16384 bytes or has more than 1024 fields"
        );
        assert!(!error.is_retryable());
    }

    #[tokio::test]
    async fn csv_header_error_hides_cells() {
        let cursor = std::io::Cursor::new(b"jane@example.com,Jane Doe,t-1\n".to_vec());
        let error = RowReader::open(cursor, "a.csv").await.unwrap_err();
        let message = error.to_string();
        assert_eq!(
            message,
            "the CSV header has no input_email or email column (it has 3 columns); the first \
             record must name the columns"
        );
        assert!(!message.contains("jane"), "{message}");
    }

    #[tokio::test]
    async fn empty_csv_file_has_no_rows() {
        for data in [&b""[..], b"\xef\xbb\xbf", b"\r\n\n"] {
            let (format, rows) = read_rows(data, "incoming/t/empty.csv").await;
            assert_eq!(format, InputFormat::Csv, "{data:?}");
            assert_eq!(rows, Vec::<InputRow>::new(), "{data:?}");
        }
    }

    #[tokio::test]
    async fn empty_file_has_no_rows() {
        let (format, rows) = read_rows(b"", "incoming/t/empty").await;
        assert_eq!(format, InputFormat::Text);
        assert_eq!(rows, Vec::<InputRow>::new());
    }
}
