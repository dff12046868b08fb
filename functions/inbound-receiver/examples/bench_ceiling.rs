//! The ceiling for the receiver's benchmark in `tests/bench/run.sh`: a bare axum server that
//! reads the request body and responds with a fixed JSON body.
//!
//! It serves through `enrichment_runtime::server::serve`, like the receiver, so both use the
//! same Tokio runtime, listener and HTTP stack, and it reads `PORT` and `BIND_ADDRESS` the same
//! way. It has no logging, authentication, validation or publisher.

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use enrichment_runtime::server;

/// A 200 body of the same shape and about the same size as the receiver's.
const RESPONSE_BODY: &str = r#"{"status":"success","message":"Enrichment data received and processed","input_email":"jane.doe+crm@example.com","message_id":"1"}"#;

async fn respond(_body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], RESPONSE_BODY)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let router = Router::new().route("/", post(respond));
    server::serve(router, "bench-ceiling")
        .await
        .context("the ceiling server stopped with an error")?;
    Ok(())
}
