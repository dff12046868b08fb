//! Logging for the local run: the functions' JSON log lines go to a file in the data folder,
//! so that stderr carries the progress and stdout the optional JSON summary.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use enrichment_runtime::config::Env;
use enrichment_runtime::logging::{CloudLoggingFormat, DEFAULT_FILTER, RUST_LOG};
use enrichment_runtime::pii::PiiHasher;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Name of the log file inside the data folder.
pub const LOG_FILE: &str = "local-stack.log";

/// Errors from setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogSetupError {
    #[error("cannot open the log file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {RUST_LOG} {value:?}: {message}")]
    Filter { value: String, message: String },
    #[error(transparent)]
    Config(#[from] enrichment_runtime::config::ConfigError),
}

/// Appends JSON log lines in the Cloud Logging format to `data_dir/local-stack.log`, filtered
/// by `RUST_LOG` (default `info`), and installs the hasher of personal data from
/// `LOG_HASH_KEY`, or with a random key when it is unset. Returns the log file's path.
pub fn init(data_dir: &Path) -> Result<PathBuf, LogSetupError> {
    let path = data_dir.join(LOG_FILE);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| LogSetupError::Open {
            path: path.clone(),
            source,
        })?;

    let env = Env::process();
    let directives = env
        .optional(RUST_LOG)?
        .unwrap_or_else(|| DEFAULT_FILTER.to_string());
    let filter = EnvFilter::try_new(&directives).map_err(|error| LogSetupError::Filter {
        value: directives.clone(),
        message: error.to_string(),
    })?;

    // `try_init` fails only when a subscriber is already installed, which then stays.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(CloudLoggingFormat::new("local-stack"))
                .with_writer(Arc::new(file)),
        )
        .try_init();

    // The three functions share this process, so a random key (when LOG_HASH_KEY is unset)
    // still gives them matching hashes. That is why no warning is logged for it here.
    let (hasher, _source) = PiiHasher::from_env(&env)?;
    enrichment_runtime::pii::install(hasher);
    Ok(path)
}
