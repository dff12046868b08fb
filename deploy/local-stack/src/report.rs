//! The counters of one run, read from the warehouse and the simulated partner, and the way they
//! are shown: a progress line on stderr, a summary table, and a JSON object.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Serialize;

use crate::partner::PartnerStats;
use crate::warehouse::{Warehouse, WarehouseError};

/// The counters of one run; see [`crate`] for what each one counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub emails_read: u64,
    pub requests_sent: u64,
    pub results_received: u64,
    pub rows_stored: u64,
    pub failed: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

impl Counters {
    /// Rows accounted for: stored, failed, rejected or repeated.
    pub fn accounted(&self) -> u64 {
        self.rows_stored + self.failed + self.rejected + self.duplicates
    }

    /// True when every row read has ended in one of the four outcomes.
    pub fn balanced(&self) -> bool {
        self.accounted() == self.emails_read
    }
}

/// The uploaded object whose deliveries and results a run counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub bucket: String,
    pub object: String,
    pub generation: i64,
}

/// Counts from the warehouse for one upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredCounts {
    /// Deliveries rows, one per data row read.
    pub deliveries: u64,
    pub delivered: u64,
    pub failed: u64,
    /// `invalid_email` and `missing_tenant`.
    pub rejected: u64,
    pub duplicates: u64,
    /// Delivered emails with a results row.
    pub rows_stored: u64,
    /// Delivered (tenant, email) pairs without a row in `latest_results`.
    pub missing_from_view: u64,
}

/// Statuses counted per upload.
const COUNTS_SQL: &str = "\
SELECT
    COUNT(*),
    COALESCE(SUM(status = 'delivered'), 0),
    COALESCE(SUM(status = 'failed'), 0),
    COALESCE(SUM(status IN ('invalid_email', 'missing_tenant')), 0),
    COALESCE(SUM(status = 'duplicate'), 0)
FROM deliveries
WHERE source_bucket = ?1 AND source_object = ?2 AND source_generation = ?3";

/// Delivered emails of the upload with at least one results row. The simulated partner calls
/// back with the request's `webhook-id`, which the receiver stores as `delivery_id`.
const STORED_SQL: &str = "\
SELECT COUNT(DISTINCT d.delivery_id)
FROM deliveries AS d
JOIN results AS r ON r.delivery_id = d.delivery_id
WHERE d.source_bucket = ?1 AND d.source_object = ?2 AND d.source_generation = ?3
    AND d.status = 'delivered'";

/// Delivered (tenant, email) pairs of the upload that the view does not return.
const MISSING_FROM_VIEW_SQL: &str = "\
SELECT COUNT(*)
FROM (
    SELECT DISTINCT tenant_id, lower(input_email) AS email_key
    FROM deliveries
    WHERE source_bucket = ?1 AND source_object = ?2 AND source_generation = ?3
        AND status = 'delivered'
) AS d
WHERE NOT EXISTS (
    SELECT 1 FROM latest_results AS v
    WHERE v.tenant_id = d.tenant_id AND lower(v.input_email) = d.email_key
)";

/// Reads the counts of `upload` in one snapshot.
pub fn stored_counts(connection: &Connection, upload: &Upload) -> rusqlite::Result<StoredCounts> {
    let params = (&upload.bucket, &upload.object, upload.generation);
    let (deliveries, delivered, failed, rejected, duplicates) =
        connection.query_row(COUNTS_SQL, params, |row| {
            Ok((
                row.get::<_, u64>(0)?,
                row.get::<_, u64>(1)?,
                row.get::<_, u64>(2)?,
                row.get::<_, u64>(3)?,
                row.get::<_, u64>(4)?,
            ))
        })?;
    let rows_stored = connection.query_row(STORED_SQL, params, |row| row.get::<_, u64>(0))?;
    let missing_from_view =
        connection.query_row(MISSING_FROM_VIEW_SQL, params, |row| row.get::<_, u64>(0))?;
    Ok(StoredCounts {
        deliveries,
        delivered,
        failed,
        rejected,
        duplicates,
        rows_stored,
        missing_from_view,
    })
}

/// Reads the warehouse counts of `upload` without blocking the async runtime.
pub async fn read_counts(
    warehouse: &Warehouse,
    upload: &Upload,
) -> Result<StoredCounts, WarehouseError> {
    let upload = upload.clone();
    warehouse
        .read(move |connection| stored_counts(connection, &upload))
        .await
}

/// Combines the warehouse counts and the partner's counts into the run's counters.
pub fn counters(stored: &StoredCounts, partner: &PartnerStats) -> Counters {
    Counters {
        emails_read: stored.deliveries,
        requests_sent: partner.requests,
        results_received: partner.callbacks_accepted,
        rows_stored: stored.rows_stored,
        failed: stored.failed,
        rejected: stored.rejected,
        duplicates: stored.duplicates,
    }
}

/// Retries the sender makes after the first attempt (its `MAX_RETRIES` default).
pub const SENDER_MAX_RETRIES: u32 = 3;
/// The simulated partner's `Retry-After` on an injected 429.
const PARTNER_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Slack for start-up, callbacks, their retries and the sink.
const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// Returns how long a run of `rows` rows may take before it counts as stuck: every row failing every
/// attempt, each attempt waiting for its request slot, plus one row's whole backoff, the
/// partner's delay and a margin. The sender's queue keeps sending other rows while one waits
/// for its retry, so the backoffs of different rows overlap.
pub fn default_deadline(
    rows: u64,
    min_request_interval: Duration,
    retry_base_delay: Duration,
    partner_delay: Duration,
) -> Duration {
    let attempts = rows.saturating_mul(u64::from(SENDER_MAX_RETRIES) + 1);
    let requests = min_request_interval.saturating_mul(u32::try_from(attempts).unwrap_or(u32::MAX));
    let backoff: Duration = (0..SENDER_MAX_RETRIES)
        .map(|retry| {
            retry_base_delay
                .saturating_mul(1 << retry)
                .max(PARTNER_RETRY_AFTER)
        })
        .sum();
    requests
        .saturating_add(backoff)
        .saturating_add(partner_delay)
        .saturating_add(DEADLINE_MARGIN)
}

/// Formats the line a run prints once the file is uploaded: rows, object, generation, rate and
/// deadline, with the flag that changes the deadline.
pub fn start_line(
    rows: u64,
    object_path: &Path,
    generation: i64,
    rate: f64,
    deadline: Duration,
) -> String {
    let row_unit = if rows == 1 { "row" } else { "rows" };
    let rate_unit = if rate == 1.0 {
        "request/s"
    } else {
        "requests/s"
    };
    format!(
        "Uploaded {rows} {row_unit} as {} (generation {generation}); rate {rate} {rate_unit}, \
         deadline {} s (--timeout-secs).",
        object_path.display(),
        deadline.as_secs()
    )
}

/// Formats one line of progress: the elapsed time and each stage's count.
pub fn progress_line(counters: &Counters, elapsed: Duration) -> String {
    format!(
        "[{:>6.1}s] read {} | sent {} | received {} | stored {} | failed {} | rejected {} | \
         duplicates {}",
        elapsed.as_secs_f64(),
        counters.emails_read,
        counters.requests_sent,
        counters.results_received,
        counters.rows_stored,
        counters.failed,
        counters.rejected,
        counters.duplicates,
    )
}

/// Writes progress to stderr: on a terminal one line rewritten at most every `interval`, and
/// otherwise a new line when a count changed, at most once a second.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    terminal: bool,
    min_gap: Duration,
    last_written: Option<(Instant, Counters)>,
}

impl Progress {
    pub fn new(interval: Duration) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self {
            started: Instant::now(),
            terminal,
            min_gap: if terminal {
                interval
            } else {
                interval.max(Duration::from_secs(1))
            },
            last_written: None,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Shows `counters` unless the last update is too recent or nothing changed.
    pub fn update(&mut self, counters: &Counters) {
        let now = Instant::now();
        if let Some((at, last)) = &self.last_written
            && (now.duration_since(*at) < self.min_gap || last == counters)
        {
            return;
        }
        self.write(counters);
        self.last_written = Some((now, *counters));
    }

    /// Shows the final counters and ends the line.
    pub fn finish(&mut self, counters: &Counters) {
        if self.last_written.map(|(_, last)| last) != Some(*counters) || self.terminal {
            self.write(counters);
        }
        if self.terminal {
            eprintln!();
        }
    }

    fn write(&self, counters: &Counters) {
        let line = progress_line(counters, self.elapsed());
        let mut stderr = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the run.
        let _ = if self.terminal {
            write!(stderr, "\r\x1b[2K{line}")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
    }
}

/// Extra facts for the summary table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryContext {
    pub partner: PartnerStats,
    /// Whether the partner fails attempts on purpose (`--partner-failure-rate` above 0). The
    /// table shows the injected failures only then.
    pub failures_injected: bool,
    pub missing_from_view: u64,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Formats the summary table written to stderr at the end of a run.
pub fn summary_table(counters: &Counters, context: &SummaryContext) -> String {
    let partner = &context.partner;
    let mut table = String::new();
    let mut row = |label: &str, value: u64, note: String| {
        let line = format!("  {label:<18}{value:>8}  {note}");
        let _ = writeln!(table, "{}", line.trim_end());
    };
    row("emails read", counters.emails_read, String::new());
    let injected = if context.failures_injected {
        format!(
            "(injected failures: 500 x{}, 429 x{})",
            partner.injected_server_errors, partner.injected_rate_limits
        )
    } else {
        String::new()
    };
    row("requests sent", counters.requests_sent, injected);
    row("results received", counters.results_received, String::new());
    row("rows stored", counters.rows_stored, String::new());
    row("failed", counters.failed, String::new());
    row(
        "rejected",
        counters.rejected,
        "(invalid email or no tenant)".to_string(),
    );
    row(
        "duplicates",
        counters.duplicates,
        "(repeats within the file)".to_string(),
    );

    let mut text = format!(
        "\nSummary after {:.1}s:\n{table}\n",
        context.elapsed.as_secs_f64()
    );
    let sum = format!(
        "{} stored + {} failed + {} rejected + {} duplicates = {}",
        counters.rows_stored,
        counters.failed,
        counters.rejected,
        counters.duplicates,
        counters.accounted()
    );
    if counters.balanced() && !context.timed_out {
        let _ = writeln!(
            text,
            "Every row is accounted for: {sum} of {} read.",
            counters.emails_read
        );
    } else if context.timed_out {
        let _ = writeln!(
            text,
            "Timed out: {sum}, but {} rows were read.",
            counters.emails_read
        );
    } else {
        let _ = writeln!(
            text,
            "Rows were lost: {sum}, but {} rows were read.",
            counters.emails_read
        );
    }
    if context.missing_from_view > 0 {
        let _ = writeln!(
            text,
            "Delivered emails without a row in latest_results: {}.",
            context.missing_from_view
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    const SAMPLE: Counters = Counters {
        emails_read: 39,
        requests_sent: 41,
        results_received: 33,
        rows_stored: 33,
        failed: 0,
        rejected: 3,
        duplicates: 3,
    };

    #[test]
    fn balance_counts_four_outcomes() {
        assert_eq!(SAMPLE.accounted(), 39);
        assert!(SAMPLE.balanced());
        let lost = Counters {
            rows_stored: 32,
            ..SAMPLE
        };
        assert!(!lost.balanced());
    }

    #[test]
    fn json_has_the_documented_keys() {
        assert_eq!(
            serde_json::to_value(SAMPLE).unwrap(),
            serde_json::json!({
                "emails_read": 39,
                "requests_sent": 41,
                "results_received": 33,
                "rows_stored": 33,
                "failed": 0,
                "rejected": 3,
                "duplicates": 3,
            })
        );
    }

    #[test]
    fn deadline_for_sample_runs() {
        // 39 rows x 4 attempts x 1 s + (2 + 4 + 8) s + 0.2 s + 30 s.
        assert_eq!(
            default_deadline(
                39,
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_millis(200)
            ),
            Duration::from_millis(156_000 + 14_000 + 200 + 30_000)
        );
        // 39 x 4 x 20 ms + 3 x the 1 s Retry-After (above 3 x 20 ms backoff) + 30 s.
        assert_eq!(
            default_deadline(
                39,
                Duration::from_millis(20),
                Duration::from_millis(20),
                Duration::ZERO
            ),
            Duration::from_millis(3_120 + 3_000 + 30_000)
        );
    }

    #[test]
    fn progress_line_format() {
        assert_eq!(
            progress_line(&SAMPLE, Duration::from_millis(12_345)),
            "[  12.3s] read 39 | sent 41 | received 33 | stored 33 | failed 0 | rejected 3 | \
             duplicates 3"
        );
    }

    #[test]
    fn summary_table_when_balanced() {
        let context = SummaryContext {
            partner: PartnerStats {
                injected_server_errors: 5,
                injected_rate_limits: 3,
                ..PartnerStats::default()
            },
            failures_injected: true,
            missing_from_view: 0,
            timed_out: false,
            elapsed: Duration::from_millis(2_500),
        };
        assert_eq!(
            summary_table(&SAMPLE, &context),
            "\nSummary after 2.5s:\n\
             \x20 emails read             39\n\
             \x20 requests sent           41  (injected failures: 500 x5, 429 x3)\n\
             \x20 results received        33\n\
             \x20 rows stored             33\n\
             \x20 failed                   0\n\
             \x20 rejected                 3  (invalid email or no tenant)\n\
             \x20 duplicates               3  (repeats within the file)\n\
             \n\
             Every row is accounted for: 33 stored + 0 failed + 3 rejected + 3 duplicates = 39 \
             of 39 read.\n"
        );
    }

    #[test]
    fn summary_table_without_injected_failures() {
        let context = SummaryContext {
            partner: PartnerStats::default(),
            failures_injected: false,
            missing_from_view: 0,
            timed_out: false,
            elapsed: Duration::from_millis(2_500),
        };
        let table = summary_table(&SAMPLE, &context);
        assert!(
            table.contains("\n  requests sent           41\n"),
            "{table}"
        );
        assert!(!table.contains("injected"), "{table}");
    }

    #[test]
    fn start_line_plural_rows_and_rate() {
        assert_eq!(
            start_line(
                39,
                Path::new(".local/input/incoming/demo-tenant/contacts.csv"),
                1_700_000_000_123_456_789,
                50.0,
                Duration::from_secs(36)
            ),
            "Uploaded 39 rows as .local/input/incoming/demo-tenant/contacts.csv (generation \
             1700000000123456789); rate 50 requests/s, deadline 36 s (--timeout-secs)."
        );
    }

    #[test]
    fn start_line_singular_row_and_rate() {
        assert_eq!(
            start_line(1, Path::new("a.csv"), 7, 1.0, Duration::from_secs(200)),
            "Uploaded 1 row as a.csv (generation 7); rate 1 request/s, deadline 200 s \
             (--timeout-secs)."
        );
    }

    #[test]
    fn start_line_fractional_rate_is_plural() {
        assert_eq!(
            start_line(2, Path::new("a.csv"), 7, 0.5, Duration::from_secs(200)),
            "Uploaded 2 rows as a.csv (generation 7); rate 0.5 requests/s, deadline 200 s \
             (--timeout-secs)."
        );
    }

    #[test]
    fn summary_table_names_the_loss() {
        let lost = Counters {
            rows_stored: 30,
            ..SAMPLE
        };
        let context = SummaryContext {
            partner: PartnerStats::default(),
            failures_injected: false,
            missing_from_view: 3,
            timed_out: false,
            elapsed: Duration::from_secs(1),
        };
        let table = summary_table(&lost, &context);
        assert!(
            table.ends_with(
                "Rows were lost: 30 stored + 0 failed + 3 rejected + 3 duplicates = 36, but 39 \
                 rows were read.\nDelivered emails without a row in latest_results: 3.\n"
            ),
            "{table}"
        );
    }
}

#[cfg(test)]
mod count_tests {
    use chrono::{TimeZone as _, Utc};
    use enrichment_payload::rows::{DeliveryRow, DeliveryStatus, ResultRow};
    use enrichment_runtime::bigquery::InsertRow;
    use pretty_assertions::assert_eq;

    use super::*;

    fn delivery(id: &str, email: &str, generation: i64, status: DeliveryStatus) -> InsertRow {
        let time = Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap();
        let row = DeliveryRow {
            delivery_id: id.to_string(),
            tenant_id: Some("acme".to_string()),
            partner_id: "partner".to_string(),
            source_bucket: "input".to_string(),
            source_object: "incoming/acme/file.csv".to_string(),
            source_generation: generation,
            input_email: email.to_string(),
            input_email_hash: "0123456789ab".to_string(),
            status,
            attempts: 1,
            last_http_status: None,
            error: None,
            created_at: time,
            finished_at: time,
        };
        InsertRow {
            insert_id: id.to_string(),
            json: row.to_json(),
        }
    }

    fn result(message_id: &str, delivery_id: &str, email: &str) -> InsertRow {
        let time = Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 5).unwrap();
        let row = ResultRow {
            message_id: message_id.to_string(),
            partner_id: "partner".to_string(),
            tenant_id: None,
            input_email: email.to_string(),
            work_email: None,
            phone_number: None,
            linkedin_url: None,
            name: None,
            company_domain: None,
            extra: "{}".to_string(),
            delivery_id: delivery_id.to_string(),
            received_at: time,
            published_at: time,
            stored_at: time,
        };
        InsertRow {
            insert_id: message_id.to_string(),
            json: row.to_json(),
        }
    }

    #[tokio::test]
    async fn counts_one_upload() {
        let directory = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&directory.path().join("warehouse.db")).unwrap();
        warehouse
            .insert_blocking(
                "deliveries",
                &[
                    delivery("d1", "a@example.com", 7, DeliveryStatus::Delivered),
                    delivery("d2", "b@example.com", 7, DeliveryStatus::Delivered),
                    delivery("d3", "c@example.com", 7, DeliveryStatus::Delivered),
                    delivery("d4", "d@example.com", 7, DeliveryStatus::Failed),
                    delivery("d5", "bad", 7, DeliveryStatus::InvalidEmail),
                    delivery("d6", "e@example.com", 7, DeliveryStatus::MissingTenant),
                    delivery("d7", "a@example.com", 7, DeliveryStatus::Duplicate),
                    delivery("other", "z@example.com", 8, DeliveryStatus::Delivered),
                ],
            )
            .unwrap();
        // d1 has two results (the partner called back twice), d2 one, d3 none yet.
        warehouse
            .insert_blocking(
                "results",
                &[
                    result("1", "d1", "a@example.com"),
                    result("2", "d1", "a@example.com"),
                    result("3", "d2", "b@example.com"),
                    result("4", "other", "z@example.com"),
                ],
            )
            .unwrap();
        let upload = Upload {
            bucket: "input".to_string(),
            object: "incoming/acme/file.csv".to_string(),
            generation: 7,
        };

        let counts = read_counts(&warehouse, &upload).await.unwrap();

        assert_eq!(
            counts,
            StoredCounts {
                deliveries: 7,
                delivered: 3,
                failed: 1,
                rejected: 2,
                duplicates: 1,
                rows_stored: 2,
                missing_from_view: 1,
            }
        );
    }
}
