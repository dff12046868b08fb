//! Tests of the built binary: start-up validation and graceful shutdown on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Running, free_port, http_request, receiver_command, wait_until_healthy};
use pretty_assertions::assert_eq;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn valid_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GOOGLE_CLOUD_PROJECT", "test-project"),
        ("PARTNER_ID", "acme"),
        ("RESULTS_TOPIC", "results"),
        ("WEBHOOK_SECRETS", SECRET),
        ("BIND_ADDRESS", "127.0.0.1"),
        ("LOG_FORMAT", "json"),
    ]
}

/// A bad value stops start-up with exit code 1 and a message on stderr naming the variable.
#[test]
fn invalid_env_exits_naming_variable() {
    let cases: &[(&str, Option<&str>)] = &[
        ("PORT", Some("eighty")),
        ("PARTNER_ID", None),
        ("RESULTS_TOPIC", Some("x")),
        ("AUTH_MODE", Some("hmac")),
        ("WEBHOOK_SECRETS", Some("whsec_not*base64")),
        ("MAX_BODY_BYTES", Some("lots")),
        ("PUBLISH_TIMEOUT_SECS", Some("-1")),
        ("PUBSUB_EMULATOR_HOST", Some("no-port")),
        ("LOG_FORMAT", Some("xml")),
        ("LOG_HASH_KEY", Some("short")),
    ];
    for (variable, value) in cases {
        let mut vars = valid_env();
        vars.retain(|(name, _)| name != variable);
        if let Some(value) = value {
            vars.push((variable, value));
        }

        let output = receiver_command(&vars).output().unwrap();

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{variable}: stderr {stderr}");
        assert!(
            stderr.contains(variable),
            "{variable}: stderr does not name it: {stderr}"
        );
    }
}

/// Secret values stay out of the error output.
#[test]
fn invalid_secret_not_echoed() {
    let mut vars = valid_env();
    vars.retain(|(name, _)| *name != "WEBHOOK_SECRETS");
    vars.push((
        "WEBHOOK_SECRETS",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_secret*value",
    ));

    let output = receiver_command(&vars).output().unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("WEBHOOK_SECRETS"), "{stderr}");
    for text in [&stderr, &stdout] {
        assert!(!text.contains("secret*value"), "{text}");
        assert!(!text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{text}");
    }
}

/// SIGTERM stops the server, the request in flight still gets its response, and the process
/// exits with status 0.
#[test]
fn sigterm_finishes_in_flight_request() {
    // Pub/Sub stand-in that accepts connections and never responds, so a publish stays in
    // flight until PUBLISH_TIMEOUT_SECS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let emulator = silent.local_addr().unwrap().to_string();
    let port = free_port();
    let port_text = port.to_string();
    let mut vars = valid_env();
    vars.extend([
        ("PORT", port_text.as_str()),
        ("AUTH_MODE", "none"),
        ("PUBSUB_EMULATOR_HOST", emulator.as_str()),
        ("PUBLISH_TIMEOUT_SECS", "2"),
    ]);
    let mut receiver = Running::spawn(receiver_command(&vars));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until_healthy(addr, Duration::from_secs(30));

    let in_flight = std::thread::spawn(move || {
        http_request(
            addr,
            "POST",
            "/",
            &[("content-type", "application/json")],
            r#"{"input_email":"jane.doe@example.com"}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let terminated_at = Instant::now();
    receiver.terminate();

    let (status, body) = in_flight.join().unwrap().unwrap();
    assert_eq!(status, 503, "body {body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "error");

    let output = receiver.wait_with_timeout(Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "stdout {stdout}");
    assert!(terminated_at.elapsed() < Duration::from_secs(10));
    assert!(
        stdout.contains("received SIGTERM, shutting down"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(
            |line| line.contains("\"severity\":\"WARNING\"") && line.contains("AUTH_MODE=none")
        ),
        "no start-up warning for AUTH_MODE=none: {stdout}"
    );
    drop(silent);
}
