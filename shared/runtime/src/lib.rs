//! Runtime glue shared by the three functions: configuration from the environment, JSON logs,
//! keyed hashes of personal data, serving (Cloud Run or AWS Lambda), trigger envelope decoding,
//! and the small backend traits behind which each Google Cloud service sits.
//!
//! Each backend trait has a production implementation on the official Google client (also used
//! against the emulators) and an embedded one for tests and the local stack.

pub mod bigquery;
pub mod config;
pub mod envelope;
pub mod logging;
pub mod pii;
pub mod pubsub;
pub mod server;
pub mod storage;
