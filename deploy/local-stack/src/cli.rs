//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The counters, as `--help` explains them; the crate doc has the same list.
const COUNTERS_HELP: &str = "\
Counters of the summary (also the keys of --summary-json):
  emails_read       data rows the sender read from FILE (one deliveries row each)
  requests_sent     requests the simulated partner received, retries included
  results_received  partner callbacks the receiver accepted (answered 2xx)
  rows_stored       emails of this upload with a row in the results table
  failed            emails whose delivery ended failed (retries used up or a
                    permanent partner error)
  rejected          rows not sent: invalid email or no tenant
  duplicates        rows not sent: a repeat of a (tenant, email) earlier in FILE

The run exits with status 1 when rows_stored + failed + rejected + duplicates
differs from emails_read (something was lost) or when the deadline passes first.

Results: sqlite3 .local/warehouse.db 'SELECT * FROM latest_results'";

/// Runs the enrichment pipeline on this machine: the inbound receiver, the outbound sender and
/// the results sink in one process, on a local folder as the buckets, an in-process Pub/Sub and
/// queue, SQLite as BigQuery, and a simulated partner.
#[derive(Debug, Clone, Parser)]
#[command(name = "local-stack", version, after_long_help = COUNTERS_HELP)]
pub struct Args {
    /// File of emails to process: CSV with an `input_email` or `email` column and an optional
    /// `tenant_id` column, NDJSON, or one email per line (`.gz` allowed). Default: the bundled
    /// sample of made-up contacts for two tenants.
    pub file: Option<PathBuf>,

    /// Tenant for rows without a `tenant_id`: the file is uploaded as
    /// `incoming/<TENANT>/<file name>`.
    #[arg(long, default_value = "demo-tenant", value_parser = parse_tenant)]
    pub tenant: String,

    /// Requests per second to the partner, retries included; sets the sender's minimum interval
    /// between requests. The partner policy is 1.
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Milliseconds the simulated partner waits between accepting a request and calling the
    /// receiver back.
    #[arg(long, default_value_t = 200)]
    pub partner_delay_ms: u64,

    /// Share of partner request attempts, from 0 to 1, that fail on purpose with 500 or 429
    /// (with `Retry-After: 1`) to exercise retries.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub partner_failure_rate: f64,

    /// Seed of the partner's failure choice: the same seed fails the same attempts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Milliseconds before the sender's first retry, doubled for each later retry; the
    /// partner policy is 2000. Each retry still waits at least the minimum request interval.
    #[arg(long, default_value_t = 2000)]
    pub retry_base_ms: u64,

    /// Folder for the buckets (one subfolder each), the SQLite warehouse `warehouse.db` and
    /// the log file `local-stack.log`. Each run adds to this folder; delete it or pass another
    /// folder to start clean.
    #[arg(long, default_value = ".local")]
    pub data_dir: PathBuf,

    /// Print one JSON object with the counters on stdout at the end.
    #[arg(long)]
    pub summary_json: bool,

    /// Seconds to wait for the run to finish. Default: derived from the number of rows in
    /// FILE, the rate, the retry policy and the partner delay.
    #[arg(long)]
    pub timeout_secs: Option<u64>,

    /// Do not process a file: keep the three functions and the simulated partner listening on
    /// 127.0.0.1 until Ctrl-C, and print curl commands to try them.
    #[arg(long)]
    pub serve: bool,

    /// Receiver port with --serve.
    #[arg(long, default_value_t = 8081)]
    pub receiver_port: u16,

    /// Sender port with --serve.
    #[arg(long, default_value_t = 8082)]
    pub sender_port: u16,

    /// Sink port with --serve.
    #[arg(long, default_value_t = 8083)]
    pub sink_port: u16,

    /// Simulated partner port with --serve.
    #[arg(long, default_value_t = 8084)]
    pub partner_port: u16,
}

impl Args {
    /// Returns the sender's minimum interval between requests for `--rate`.
    pub fn min_request_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    pub fn partner_delay(&self) -> Duration {
        Duration::from_millis(self.partner_delay_ms)
    }

    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    // 1000 per second is a 1 ms interval, the finest the sender's pacing takes.
    if rate.is_finite() && rate > 0.0 && rate <= 1000.0 {
        Ok(rate)
    } else {
        Err(format!(
            "{value} is not a rate; expected requests per second above 0 and at most 1000"
        ))
    }
}

/// Accepts a tenant id that the sender takes from an object path: 1 to 128 characters, no
/// control characters, and, as one folder name, no `/` or `\` and no leading `.`.
fn parse_tenant(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.chars().count() <= 128
        && !value
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        && !value.starts_with('.');
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{value:?} is not a tenant id; expected 1 to 128 characters without control \
             characters, '/' or '\\', not starting with '.'"
        ))
    }
}

fn parse_share(value: &str) -> Result<f64, String> {
    let share: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{value} is not a share; expected 0 to 1"))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn command_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let args = Args::try_parse_from(["local-stack"]).unwrap();
        assert_eq!(args.file, None);
        assert_eq!(args.tenant, "demo-tenant");
        assert_eq!(args.rate, 1.0);
        assert_eq!(args.min_request_interval(), Duration::from_secs(1));
        assert_eq!(args.retry_base(), Duration::from_secs(2));
        assert_eq!(args.partner_failure_rate, 0.0);
        assert_eq!(args.data_dir, PathBuf::from(".local"));
        assert_eq!(
            (
                args.receiver_port,
                args.sender_port,
                args.sink_port,
                args.partner_port
            ),
            (8081, 8082, 8083, 8084)
        );
    }

    #[test]
    fn rate_sets_interval() {
        let args = Args::try_parse_from(["local-stack", "--rate", "50"]).unwrap();
        assert_eq!(args.min_request_interval(), Duration::from_millis(20));
    }

    #[test]
    fn invalid_values_are_rejected() {
        let cases = [
            vec!["--rate", "0"],
            vec!["--rate=-1"],
            vec!["--rate", "fast"],
            vec!["--rate", "1001"],
            vec!["--partner-failure-rate", "1.5"],
            vec!["--partner-failure-rate=-0.1"],
            vec!["--tenant", ""],
            vec!["--tenant", "a/b"],
            vec!["--tenant", ".hidden"],
        ];
        for flags in cases {
            let mut argv = vec!["local-stack"];
            argv.extend(&flags);
            let error = Args::try_parse_from(argv).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{flags:?}"
            );
        }
    }
}
