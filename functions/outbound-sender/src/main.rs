use anyhow::Context;
use outbound_sender::{Config, SERVICE_NAME};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    enrichment_runtime::logging::init(SERVICE_NAME).context("invalid logging configuration")?;
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(variable = error.variable(), %error, "invalid configuration");
            return Err(error).context("invalid configuration");
        }
    };
    outbound_sender::run(config).await
}
