//! Logging set-up: JSON lines in the format Cloud Logging parses, or plain text for a terminal.
//!
//! Each JSON line carries `severity` (`DEBUG`, `INFO`, `WARNING` or `ERROR`), `message`,
//! `timestamp` (RFC 3339, UTC), `target` and `service`. It also carries the fields of every span
//! the event is in, where an inner span's field replaces an outer one, and the event's own
//! fields, which replace span fields. Cloud Logging moves `severity`, `message` and `timestamp` into the log
//! entry and keeps the rest as `jsonPayload`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigError, Env};
use crate::pii;

/// The variable that selects the log format.
pub const LOG_FORMAT: &str = "LOG_FORMAT";
/// The variable that contains the log filter, in `tracing_subscriber::EnvFilter` syntax.
pub const RUST_LOG: &str = "RUST_LOG";
/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line for Cloud Logging (the default).
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (`json` or `text`, any case); unset means `json`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.optional(LOG_FORMAT)? {
            None => Ok(LogFormat::Json),
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "json" => Ok(LogFormat::Json),
                "text" => Ok(LogFormat::Text),
                _ => Err(ConfigError::invalid(LOG_FORMAT, &value, "json or text")),
            },
        }
    }
}

/// Installs the global subscriber from `LOG_FORMAT` and `RUST_LOG`, then the process-wide
/// hasher of personal data from `LOG_HASH_KEY` (see [`pii::init_from_env`]).
///
/// Logs go to standard output. A second call keeps the first subscriber and returns `Ok`.
pub fn init(service_name: &str) -> Result<(), ConfigError> {
    init_with(&Env::process(), service_name)
}

/// Same as [`init`], reading the variables from `env`.
pub fn init_with(env: &Env, service_name: &str) -> Result<(), ConfigError> {
    let format = LogFormat::from_env(env)?;
    let filter = filter_from_env(env)?;

    // `try_init` fails when a global subscriber or `log` logger is already installed, and the
    // first one then stays in place.
    let _ = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(CloudLoggingFormat::new(service_name))
                    .with_writer(std::io::stdout),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_writer(std::io::stdout),
            )
            .try_init(),
    };

    pii::init_from_env(env)
}

fn filter_from_env(env: &Env) -> Result<EnvFilter, ConfigError> {
    let directives = env
        .optional(RUST_LOG)?
        .unwrap_or_else(|| DEFAULT_FILTER.to_string());
    EnvFilter::try_new(&directives).map_err(|err| {
        ConfigError::invalid(
            RUST_LOG,
            &directives,
            format!("a log filter such as info or inbound_receiver=debug,info ({err})"),
        )
    })
}

/// Maps a `tracing` level to a Cloud Logging severity.
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::TRACE | Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// Event formatter that writes one Cloud Logging JSON object per line.
///
/// It expects span fields formatted by [`JsonFields`], as [`init`] sets up.
#[derive(Debug, Clone)]
pub struct CloudLoggingFormat {
    service: String,
}

impl CloudLoggingFormat {
    pub fn new(service: impl Into<String>) -> Self {
        CloudLoggingFormat {
            service: service.into(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for CloudLoggingFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut entry = Map::new();

        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // Spans without fields store an empty string; a parse failure means another
                // field formatter is in use, and the span's fields are left out.
                if let Ok(parsed) = serde_json::from_str::<Map<String, Value>>(fields) {
                    entry.extend(parsed);
                }
            }
        }

        let mut visitor = EventVisitor::default();
        event.record(&mut visitor);
        entry.extend(visitor.fields);

        let metadata = event.metadata();
        entry.insert("severity".into(), Value::from(severity(metadata.level())));
        entry.insert("message".into(), Value::from(visitor.message));
        entry.insert(
            "timestamp".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        entry.insert("target".into(), Value::from(metadata.target()));
        entry.insert("service".into(), Value::from(self.service.as_str()));

        let line = serde_json::to_string(&entry).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Collects an event's `message` and its other fields as JSON values.
#[derive(Default)]
struct EventVisitor {
    message: String,
    fields: Map<String, Value>,
}

impl EventVisitor {
    fn insert(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for EventVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole source chain, since the outer message alone often hides the cause.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.insert(field, Value::from(text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Runs `emit` under the JSON formatter and returns each line as a JSON object, without
    /// its `timestamp` (which is checked for shape and removed).
    fn capture(emit: impl FnOnce()) -> Vec<Map<String, Value>> {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(CloudLoggingFormat::new("test-service"))
                .with_writer(capture.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);

        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| {
                let mut entry: Map<String, Value> = serde_json::from_str(line).unwrap();
                let timestamp = entry.remove("timestamp").unwrap();
                let timestamp = timestamp.as_str().unwrap();
                assert!(
                    chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
                    "timestamp {timestamp:?} is not RFC 3339"
                );
                assert!(
                    timestamp.ends_with('Z'),
                    "timestamp {timestamp:?} is not UTC"
                );
                entry
            })
            .collect()
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn event_fields_and_severity() {
        let lines = capture(|| {
            tracing::warn!(
                attempt = 3_u64,
                retryable = true,
                "publish failed for {}",
                "topic"
            );
        });
        assert_eq!(
            lines,
            vec![object(serde_json::json!({
                "severity": "WARNING",
                "message": "publish failed for topic",
                "attempt": 3,
                "retryable": true,
                "target": "enrichment_runtime::logging::tests",
                "service": "test-service",
            }))]
        );
    }

    #[test]
    fn span_fields_are_flattened() {
        let lines = capture(|| {
            let outer = tracing::info_span!("request", partner_id = "acme", message_id = "outer");
            let _outer = outer.enter();
            let inner = tracing::info_span!(
                "publish",
                message_id = tracing::field::Empty,
                delivery_id = "d-1"
            );
            let _inner = inner.enter();
            inner.record("message_id", "42");
            tracing::error!(delivery_id = "event-wins", "done");
        });
        assert_eq!(
            lines,
            vec![object(serde_json::json!({
                "severity": "ERROR",
                "message": "done",
                "partner_id": "acme",
                "message_id": "42",
                "delivery_id": "event-wins",
                "target": "enrichment_runtime::logging::tests",
                "service": "test-service",
            }))]
        );
    }

    #[test]
    fn error_fields_carry_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);

        let lines = capture(|| {
            let err = Outer(std::io::Error::other("inner"));
            tracing::info!(error = &err as &dyn std::error::Error, "failed");
        });
        assert_eq!(lines[0]["error"], Value::from("outer: inner"));
        assert_eq!(lines[0]["severity"], Value::from("INFO"));
    }

    #[test]
    fn severity_mapping() {
        assert_eq!(severity(&Level::TRACE), "DEBUG");
        assert_eq!(severity(&Level::DEBUG), "DEBUG");
        assert_eq!(severity(&Level::INFO), "INFO");
        assert_eq!(severity(&Level::WARN), "WARNING");
        assert_eq!(severity(&Level::ERROR), "ERROR");
    }

    #[test]
    fn log_format_from_env() {
        let read = |value: &str| LogFormat::from_env(&Env::from_pairs([(LOG_FORMAT, value)]));
        assert_eq!(read(""), Ok(LogFormat::Json));
        assert_eq!(read("json"), Ok(LogFormat::Json));
        assert_eq!(read("TEXT"), Ok(LogFormat::Text));
        assert_eq!(
            read("xml").unwrap_err().to_string(),
            "LOG_FORMAT=\"xml\" is invalid: expected json or text"
        );
    }

    #[test]
    fn invalid_filter_names_rust_log() {
        let env = Env::from_pairs([(RUST_LOG, "info,[bad")]);
        let err = filter_from_env(&env).unwrap_err();
        assert_eq!(err.variable(), "RUST_LOG");
    }
}
