//! The inbound receiver with an in-memory publisher, for `tests/bench/run.sh`.
//!
//! It reads the same environment as the `inbound-receiver` binary and serves the same router
//! with the same logging, but its publisher keeps no message and returns ids counting up from 1.
//! The figures then measure the receiver alone. `MemoryPublisher` is not used because it keeps
//! every message, so after a load run its memory would measure the stored messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use async_trait::async_trait;
use enrichment_runtime::logging;
use enrichment_runtime::pubsub::{PublishError, Publisher};
use enrichment_runtime::server;
use inbound_receiver::{AppState, Config, router};

/// Publisher that drops each message and returns the next id.
#[derive(Debug, Default)]
struct DiscardingPublisher {
    published: AtomicU64,
}

#[async_trait]
impl Publisher for DiscardingPublisher {
    async fn publish(
        &self,
        _data: Vec<u8>,
        _attributes: BTreeMap<String, String>,
    ) -> Result<String, PublishError> {
        let id = self.published.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(id.to_string())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init("inbound-receiver-bench").context("invalid logging configuration")?;
    let config = Config::from_env().context("invalid configuration")?;

    let state = AppState::new(&config, Arc::new(DiscardingPublisher::default()));
    server::serve(router(state), "inbound-receiver-bench")
        .await
        .context("the receiver stopped with an error")?;
    Ok(())
}
