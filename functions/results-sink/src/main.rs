//! The results sink's binary: reads the configuration, builds the clients once and serves.

use anyhow::Context as _;
use results_sink::{Config, SERVICE_NAME};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    enrichment_runtime::logging::init(SERVICE_NAME).context("invalid logging configuration")?;

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(variable = error.variable(), error = %error, "invalid configuration");
            return Err(error).context("invalid configuration");
        }
    };

    if let Err(error) = results_sink::run(config).await {
        tracing::error!(error = %error, "results sink stopped with an error");
        return Err(error).context("results sink stopped with an error");
    }
    Ok(())
}
