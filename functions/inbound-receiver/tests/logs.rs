//! Log output of a request: ids and the email's hash, never personal data.
//!
//! This test has its own binary because it installs a thread-local subscriber, and tracing's
//! per-call-site interest cache made it flaky beside concurrently running tests.

mod router_support;

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use pretty_assertions::assert_eq;
use router_support::{FULL_RESULT, SECRET, app, now, send, signature_auth, signed};
use serde_json::Value;

/// Collects log lines written through the Cloud Logging JSON format.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The request span carries the ids and the email's hash, and no log line carries the email.
#[tokio::test(flavor = "current_thread")]
async fn logs_carry_ids_and_hash_only() {
    use tracing_subscriber::layer::SubscriberExt;

    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(enrichment_runtime::logging::CloudLoggingFormat::new(
                "inbound-receiver",
            ))
            .with_writer(capture.clone()),
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let (router, _) = app(signature_auth());
    let (status, _, _) = send(&router, signed(SECRET, "msg_9", now(), FULL_RESULT)).await;
    assert_eq!(status, StatusCode::OK);

    let output = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for personal in [
        "jane.doe@example.com",
        "jane@acme.io",
        "+1234567890",
        "Jane Doe",
    ] {
        assert!(
            !output.contains(personal),
            "logs contain {personal}: {output}"
        );
    }

    let completed: Value = output
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|line| line["message"] == "request completed")
        .unwrap_or_else(|| panic!("no completion line in {output}"));
    assert_eq!(completed["severity"], "INFO");
    assert_eq!(completed["partner_id"], "acme");
    assert_eq!(completed["delivery_id"], "msg_9");
    assert_eq!(completed["message_id"], "1");
    assert_eq!(completed["status"], 200);
    assert_eq!(
        completed["input_email_hash"],
        enrichment_runtime::pii::hash("jane.doe@example.com")
    );
}
