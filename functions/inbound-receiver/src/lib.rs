//! Inbound receiver: the HTTPS endpoint a data partner calls back with enrichment results.
//!
//! `POST /` authenticates the callback (Standard Webhooks signature, bearer token, or none),
//! validates the result with `enrichment-payload`, and publishes a versioned record to the
//! results topic. It returns 200 with the Pub/Sub message id only after Pub/Sub has stored the
//! message, so any other status means the result was not stored. `GET /healthz` returns 200.
//!
//! Configuration (environment variables, read once at start-up; a missing or invalid value
//! stops the process with a message naming the variable):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `PORT` | listen port | `8080` |
//! | `BIND_ADDRESS` | listen address | `0.0.0.0` |
//! | `GOOGLE_CLOUD_PROJECT` | project of the results topic | required |
//! | `PARTNER_ID` | partner this instance serves, written into each record | required |
//! | `RESULTS_TOPIC` | topic id or `projects/P/topics/T` | required |
//! | `AUTH_MODE` | `signature`, `bearer` or `none` | `signature` |
//! | `WEBHOOK_SECRETS` | space-separated `whsec_` secrets of at least 16 key bytes, any may sign | required for `signature` |
//! | `BEARER_TOKENS` | space-separated accepted tokens | required for `bearer` |
//! | `SIGNATURE_TOLERANCE_SECS` | accepted clock distance of `webhook-timestamp`, at most 86400 | `300` |
//! | `MAX_BODY_BYTES` | largest accepted body | `65536` |
//! | `PUBLISH_TIMEOUT_SECS` | time limit of one publish before a 503, 1 to 600 | `10` |
//! | `PUBSUB_EMULATOR_HOST` | Pub/Sub emulator `host:port` | unset |
//! | `LOG_FORMAT`, `RUST_LOG` | `json` or `text`; log filter | `json`; `info` |
//! | `LOG_HASH_KEY` | key for hashes of personal data in logs | random per process |
//!
//! With `AWS_LAMBDA_RUNTIME_API` set, the same router runs under `lambda_http`.

pub mod auth;
pub mod config;
pub mod error;
pub mod routes;

use std::sync::Arc;

use enrichment_runtime::pubsub::{BuildError, GooglePublisher};
use enrichment_runtime::server::{self, ServeError};

pub use config::Config;
pub use routes::{AppState, router};

/// Name used in logs.
pub const SERVICE_NAME: &str = "inbound-receiver";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Publisher(#[from] BuildError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Connects the publisher and serves the receiver until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), RunError> {
    server::install_crypto_provider();
    if matches!(config.auth, config::AuthConfig::None) {
        tracing::warn!(
            "AUTH_MODE=none: callbacks are accepted without authentication; use it only for \
             local runs"
        );
    }

    let publisher = GooglePublisher::connect(
        &config.results_topic,
        config.pubsub_emulator.as_deref(),
        config.publish_timeout,
    )
    .await?;
    tracing::info!(
        topic = publisher.topic(),
        auth_mode = config.auth.mode(),
        emulator = config.pubsub_emulator.is_some(),
        "publisher ready"
    );

    let state = AppState::new(&config, Arc::new(publisher.clone()));
    server::serve(router(state), SERVICE_NAME).await?;
    publisher.flush().await;
    Ok(())
}
