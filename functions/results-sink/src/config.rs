//! The sink's configuration, read from environment variables and validated at start-up.
//!
//! `LOG_FORMAT`, `RUST_LOG` and `LOG_HASH_KEY` are read by `enrichment_runtime::logging::init`,
//! which `main` calls before [`Config::from_env`].

use std::time::Duration;

use enrichment_runtime::config::{ConfigError, Env, GOOGLE_CLOUD_PROJECT};
use enrichment_runtime::server::{DEFAULT_PORT, PORT};

pub const BIGQUERY_DATASET: &str = "BIGQUERY_DATASET";
pub const RESULTS_TABLE: &str = "RESULTS_TABLE";
pub const ARCHIVE_BUCKET: &str = "ARCHIVE_BUCKET";
pub const BATCH_MAX_ROWS: &str = "BATCH_MAX_ROWS";
pub const BATCH_MAX_WAIT_MS: &str = "BATCH_MAX_WAIT_MS";
pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";
pub const BIGQUERY_EMULATOR_HOST: &str = "BIGQUERY_EMULATOR_HOST";

/// The variables that must be set for the sink to start.
pub const REQUIRED_VARS: &[&str] = &[GOOGLE_CLOUD_PROJECT, ARCHIVE_BUCKET];

pub const DEFAULT_BIGQUERY_DATASET: &str = "enrichment";
pub const DEFAULT_RESULTS_TABLE: &str = "results";
pub const DEFAULT_BATCH_MAX_ROWS: usize = 500;
pub const DEFAULT_BATCH_MAX_WAIT: Duration = Duration::from_millis(50);

/// Upper bound of `BATCH_MAX_ROWS`: BigQuery accepts at most 50,000 rows in one insertAll
/// request.
const BATCH_MAX_ROWS_LIMIT: usize = 50_000;
/// Upper bound of `BATCH_MAX_WAIT_MS`. A push waits for the response only until its ack
/// deadline (10 s by default), and the insert itself needs most of that time.
const BATCH_MAX_WAIT_LIMIT_MS: u64 = 5_000;

/// The sink's settings. Each field names its variable and default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listen port (`PORT`, 8080).
    pub port: u16,
    /// Project of the BigQuery dataset (`GOOGLE_CLOUD_PROJECT`, required).
    pub project: String,
    /// BigQuery dataset (`BIGQUERY_DATASET`, `enrichment`).
    pub dataset: String,
    /// Table that receives one row per message (`RESULTS_TABLE`, `results`).
    pub results_table: String,
    /// Bucket for `results/` archive objects and `rejected/` messages (`ARCHIVE_BUCKET`,
    /// required).
    pub archive_bucket: String,
    /// Rows after which a batch is sent at once (`BATCH_MAX_ROWS`, 500, at most 50,000).
    ///
    /// NOTE: a batch fills only when that many requests wait at once. With fewer requests in
    /// flight per instance (Cloud Run's default concurrency is 80), every batch waits the
    /// full `batch_max_wait`.
    pub batch_max_rows: usize,
    /// Longest time the first row of a batch waits for others (`BATCH_MAX_WAIT_MS`, 50 ms,
    /// at most 5,000 ms). 0 sends each batch with only the rows already waiting.
    pub batch_max_wait: Duration,
    /// Cloud Storage emulator as a base URL such as `http://127.0.0.1:4443`
    /// (`STORAGE_EMULATOR_HOST`, `host:port` or a URL).
    pub storage_emulator: Option<String>,
    /// BigQuery emulator as a base URL (`BIGQUERY_EMULATOR_HOST`, `host:port`).
    pub bigquery_emulator: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Env::process())
    }

    /// Reads the configuration from `env`. The first missing or invalid variable is the error.
    pub fn from_source(env: &Env) -> Result<Self, ConfigError> {
        let port = env.parse_or(PORT, DEFAULT_PORT)?;
        let project = env.google_cloud_project()?;
        let dataset = env.bigquery_id_or(BIGQUERY_DATASET, DEFAULT_BIGQUERY_DATASET)?;
        let results_table = env.bigquery_id_or(RESULTS_TABLE, DEFAULT_RESULTS_TABLE)?;
        let archive_bucket = env.bucket(ARCHIVE_BUCKET)?;

        let batch_max_rows: usize = env.parse_or(BATCH_MAX_ROWS, DEFAULT_BATCH_MAX_ROWS)?;
        if !(1..=BATCH_MAX_ROWS_LIMIT).contains(&batch_max_rows) {
            return Err(ConfigError::invalid(
                BATCH_MAX_ROWS,
                &batch_max_rows.to_string(),
                format!("a number of rows from 1 to {BATCH_MAX_ROWS_LIMIT}"),
            ));
        }

        let default_wait_ms = DEFAULT_BATCH_MAX_WAIT.as_millis() as u64;
        let batch_max_wait_ms: u64 = env.parse_or(BATCH_MAX_WAIT_MS, default_wait_ms)?;
        if batch_max_wait_ms > BATCH_MAX_WAIT_LIMIT_MS {
            return Err(ConfigError::invalid(
                BATCH_MAX_WAIT_MS,
                &batch_max_wait_ms.to_string(),
                format!("milliseconds from 0 to {BATCH_MAX_WAIT_LIMIT_MS}"),
            ));
        }

        let storage_emulator = env.emulator_endpoint(STORAGE_EMULATOR_HOST)?;
        let bigquery_emulator = env.emulator_endpoint(BIGQUERY_EMULATOR_HOST)?;

        Ok(Self {
            port,
            project,
            dataset,
            results_table,
            archive_bucket,
            batch_max_rows,
            batch_max_wait: Duration::from_millis(batch_max_wait_ms),
            storage_emulator,
            bigquery_emulator,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("GOOGLE_CLOUD_PROJECT", "test-project"),
        ("ARCHIVE_BUCKET", "results-archive"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Env {
        let mut pairs: Vec<(&str, &str)> = MINIMAL.to_vec();
        pairs.extend_from_slice(extra);
        env(&pairs)
    }

    #[test]
    fn defaults_from_minimal_env() {
        let config = Config::from_source(&with(&[])).unwrap();

        assert_eq!(
            config,
            Config {
                port: 8080,
                project: "test-project".to_string(),
                dataset: "enrichment".to_string(),
                results_table: "results".to_string(),
                archive_bucket: "results-archive".to_string(),
                batch_max_rows: 500,
                batch_max_wait: Duration::from_millis(50),
                storage_emulator: None,
                bigquery_emulator: None,
            }
        );
    }

    #[test]
    fn every_variable_set() {
        let config = Config::from_source(&with(&[
            ("PORT", "9000"),
            ("BIGQUERY_DATASET", "enrichment_dev"),
            ("RESULTS_TABLE", "results_v2"),
            ("BATCH_MAX_ROWS", "20"),
            ("BATCH_MAX_WAIT_MS", "0"),
            ("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443"),
            ("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050"),
        ]))
        .unwrap();

        assert_eq!(config.port, 9000);
        assert_eq!(config.dataset, "enrichment_dev");
        assert_eq!(config.results_table, "results_v2");
        assert_eq!(config.batch_max_rows, 20);
        assert_eq!(config.batch_max_wait, Duration::ZERO);
        assert_eq!(
            config.storage_emulator.as_deref(),
            Some("http://127.0.0.1:4443")
        );
        assert_eq!(
            config.bigquery_emulator.as_deref(),
            Some("http://127.0.0.1:9050")
        );
    }

    #[test]
    fn required_vars_match_from_source() {
        let all = Config::from_source(&env(MINIMAL));
        assert!(
            all.is_ok(),
            "the required variables alone must suffice: {all:?}"
        );

        let names: Vec<&str> = MINIMAL.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, REQUIRED_VARS.to_vec());

        for missing in REQUIRED_VARS {
            let pairs: Vec<(&str, &str)> = MINIMAL
                .iter()
                .copied()
                .filter(|(name, _)| name != missing)
                .collect();
            let error = Config::from_source(&env(&pairs)).unwrap_err();
            assert_eq!(error.variable(), *missing);
        }
    }

    #[test]
    fn invalid_values_name_variable() {
        let cases: &[(&str, &str)] = &[
            ("PORT", "http"),
            ("GOOGLE_CLOUD_PROJECT", "my project"),
            ("BIGQUERY_DATASET", "enrichment-dev"),
            ("RESULTS_TABLE", "results.v2"),
            ("ARCHIVE_BUCKET", "gs://results-archive"),
            ("ARCHIVE_BUCKET", "ab"),
            ("ARCHIVE_BUCKET", "Results"),
            ("ARCHIVE_BUCKET", "archive-"),
            ("BATCH_MAX_ROWS", "0"),
            ("BATCH_MAX_ROWS", "50001"),
            ("BATCH_MAX_ROWS", "many"),
            ("BATCH_MAX_WAIT_MS", "5001"),
            ("BATCH_MAX_WAIT_MS", "-1"),
            ("STORAGE_EMULATOR_HOST", "localhost"),
            ("BIGQUERY_EMULATOR_HOST", "ftp://127.0.0.1:9050"),
        ];

        for (name, value) in cases {
            let mut pairs: Vec<(&str, &str)> = MINIMAL
                .iter()
                .copied()
                .filter(|(key, _)| key != name)
                .collect();
            pairs.push((name, value));

            let error = Config::from_source(&env(&pairs)).unwrap_err();

            assert_eq!(error.variable(), *name, "{name}={value}");
            assert!(
                matches!(error, ConfigError::Invalid { .. }),
                "{name}={value}: {error:?}"
            );
        }
    }

    #[test]
    fn batch_bounds_accepted() {
        let config = Config::from_source(&with(&[
            ("BATCH_MAX_ROWS", "50000"),
            ("BATCH_MAX_WAIT_MS", "5000"),
        ]))
        .unwrap();

        assert_eq!(config.batch_max_rows, 50_000);
        assert_eq!(config.batch_max_wait, Duration::from_millis(5_000));
    }
}
