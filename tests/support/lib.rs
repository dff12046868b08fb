//! Shared helpers for the integration and end-to-end tests: emulator addresses from the
//! environment, emulator administration over REST, and a partner HTTP server on port 0.
//!
//! Every test that needs an emulator calls [`require_env`], which panics with the name of the
//! missing variable: `tests/run.sh` starts the emulators and sets these variables.

pub mod bigquery;
pub mod partner;
pub mod pubsub;
pub mod storage;

/// Returns an environment variable that the test script sets, or panics naming it.
pub fn require_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set. Run the tests with tests/run.sh, which starts the emulators and \
             sets it."
        ),
    }
}

/// Returns a lowercase id unique to this test run, for topic, bucket and table names.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
