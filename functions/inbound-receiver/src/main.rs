//! Binary entry point: loads the configuration, then serves until SIGTERM or SIGINT.

use anyhow::Context;
use enrichment_runtime::logging;
use inbound_receiver::{Config, SERVICE_NAME};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init(SERVICE_NAME).context("invalid logging configuration")?;
    let config = Config::from_env().inspect_err(|err| {
        tracing::error!(variable = err.variable(), error = %err, "invalid configuration");
    });
    let config = config.context("invalid configuration")?;

    inbound_receiver::run(config)
        .await
        .inspect_err(|err| tracing::error!(error = %err, "receiver stopped with an error"))?;
    Ok(())
}
