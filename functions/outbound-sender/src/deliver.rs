//! One delivery attempt: sign the request, post it to the partner, and decide what the outcome
//! means under the policy.

use std::fmt;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use enrichment_payload::{DeliveryRow, DeliveryStatus};
use http::header::{CONTENT_TYPE, RETRY_AFTER};

use crate::config::{Config, SigningSecret};
use crate::jobs::Job;
use crate::policy::{self, AttemptResult, Verdict};
use crate::records::DeliveryRecorder;

/// Header that Cloud Tasks sets to the number of earlier attempts of a task (0 on the first).
pub const TASK_RETRY_COUNT_HEADER: &str = "x-cloudtasks-taskretrycount";

/// Failure to build the partner HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the partner HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// The outcome of one request to the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub result: AttemptResult,
    pub verdict: Verdict,
    /// The policy's one-line reason for the verdict.
    pub reason: &'static str,
    /// The partner's `Retry-After`, already clamped.
    pub retry_after: Option<Duration>,
    /// The transport error, without the URL, when no status arrived.
    pub transport_error: Option<String>,
    pub duration: Duration,
}

impl Attempt {
    pub fn http_status(&self) -> Option<u16> {
        match self.result {
            AttemptResult::Status(code) => Some(code),
            _ => None,
        }
    }

    /// Returns the `error` column of the delivery row, or `None` for a delivered request.
    pub fn error_text(&self) -> Option<String> {
        if self.verdict == Verdict::Delivered {
            return None;
        }
        Some(match (&self.result, &self.transport_error) {
            (AttemptResult::Status(code), _) => format!("HTTP {code}: {}", self.reason),
            (_, Some(error)) => format!("{}: {error}", self.reason),
            (_, None) => self.reason.to_string(),
        })
    }
}

/// The next step after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The outcome is final; record this row.
    Final(Box<DeliveryRow>),
    /// Try again later, not sooner than `retry_after` when the partner gave one.
    RetryLater { retry_after: Option<Duration> },
}

/// Decides after attempt number `retry_count + 1` of `job`: delivered and permanent outcomes
/// are final, and so is a retryable one once `retry_count` reaches `max_retries`.
pub fn decide(job: &Job, attempt: &Attempt, retry_count: u32, max_retries: u32) -> Decision {
    let attempts = retry_count.saturating_add(1);
    let status = match attempt.verdict {
        Verdict::Delivered => DeliveryStatus::Delivered,
        Verdict::Permanent => DeliveryStatus::Failed,
        Verdict::Retry if retry_count < max_retries => {
            return Decision::RetryLater {
                retry_after: attempt.retry_after,
            };
        }
        Verdict::Retry => DeliveryStatus::Failed,
    };
    let mut error = attempt.error_text();
    if attempt.verdict == Verdict::Retry {
        error = error.map(|error| format!("{error} (no retries left after {attempts} attempts)"));
    }
    let row = job.outcome_row(status, attempts, attempt.http_status(), error, Utc::now());
    Decision::Final(Box::new(row))
}

/// Sends jobs to the partner's webhook. The HTTP client is built once and reused.
pub struct Deliverer {
    client: reqwest::Client,
    url: String,
    signer: Option<standardwebhooks::Webhook>,
}

impl fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliverer")
            .field("url", &self.url)
            .field("signed", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// Builds the client: `request_timeout` for the whole request, no redirects.
    pub fn new(config: &Config) -> Result<Self, ClientBuildError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "enrichment-outbound-sender/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self {
            client,
            url: config.partner_webhook_url.clone(),
            signer: config.signing_secret.as_ref().map(signer),
        })
    }

    /// Makes one request for `job` and classifies its outcome.
    pub async fn attempt(&self, job: &Job) -> Attempt {
        let body = job.body();
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            // Sent signed or not, so that every partner can drop duplicate deliveries.
            .header("webhook-id", &job.webhook_id);
        if let Some(signer) = &self.signer {
            let timestamp = Utc::now().timestamp();
            // `sign` rejects only a body that is not UTF-8, and serde_json writes UTF-8.
            match signer.sign(&job.webhook_id, timestamp, &body) {
                Ok(signature) => {
                    request = request
                        .header("webhook-timestamp", timestamp.to_string())
                        .header("webhook-signature", signature);
                }
                Err(error) => {
                    tracing::error!(%error, "signing the request failed; sending it unsigned")
                }
            }
        }

        let started = tokio::time::Instant::now();
        let response = request.body(body).send().await;
        let duration = started.elapsed();
        match response {
            Ok(response) => {
                let code = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| policy::parse_retry_after(value, SystemTime::now()));
                let result = AttemptResult::Status(code);
                let (verdict, reason) = policy::classify(result);
                Attempt {
                    result,
                    verdict,
                    reason,
                    retry_after,
                    transport_error: None,
                    duration,
                }
            }
            Err(error) => {
                let result = if error.is_timeout() {
                    AttemptResult::Timeout
                } else if error.is_connect() {
                    AttemptResult::Connect
                } else {
                    AttemptResult::OtherTransport
                };
                let (verdict, reason) = policy::classify(result);
                Attempt {
                    result,
                    verdict,
                    reason,
                    retry_after: None,
                    transport_error: Some(error_chain(&error.without_url())),
                    duration,
                }
            }
        }
    }
}

/// One attempt and its record: what `/deliver` does and what the local queue calls.
#[derive(Debug)]
pub struct DeliveryCore {
    pub deliverer: Deliverer,
    pub recorder: DeliveryRecorder,
    pub max_retries: u32,
}

impl DeliveryCore {
    /// Makes attempt number `retry_count + 1` of `job`, logs it, and inserts the delivery row
    /// when the outcome is final. A failed insert is logged and not returned: the partner has
    /// already responded, and repeating the request to get the row written would send the
    /// email again.
    pub async fn deliver_once(&self, job: &Job, retry_count: u32) -> (Attempt, Decision) {
        let attempt = self.deliverer.attempt(job).await;
        let decision = decide(job, &attempt, retry_count, self.max_retries);
        let number = retry_count.saturating_add(1);
        let status = attempt.http_status();
        let elapsed_ms = attempt.duration.as_millis() as u64;
        match &decision {
            Decision::Final(row) if row.status == DeliveryStatus::Delivered => {
                tracing::info!(
                    attempt = number,
                    http_status = status,
                    elapsed_ms,
                    "delivered"
                );
            }
            Decision::Final(row) => tracing::warn!(
                attempt = number,
                http_status = status,
                elapsed_ms,
                error = row.error.as_deref().unwrap_or_default(),
                "delivery failed"
            ),
            Decision::RetryLater { retry_after } => tracing::info!(
                attempt = number,
                http_status = status,
                elapsed_ms,
                retry_after_secs = retry_after.map(|delay| delay.as_secs_f64()),
                error = attempt.error_text().unwrap_or_default(),
                "attempt failed; will retry"
            ),
        }
        if let Decision::Final(row) = &decision
            && let Err(error) = self.recorder.insert_outcome(row).await
        {
            tracing::error!(
                %error,
                table = self.recorder.table(),
                status = %row.status,
                "inserting the delivery row failed; the row is lost"
            );
        }
        (attempt, decision)
    }
}

fn signer(secret: &SigningSecret) -> standardwebhooks::Webhook {
    standardwebhooks::Webhook::new(secret.expose())
        .expect("SigningSecret::new checked that the secret decodes")
}

/// Joins an error and its sources into one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use pretty_assertions::assert_eq;

    fn job() -> Job {
        Job {
            webhook_id: "msg_abc".into(),
            partner_id: "acme".into(),
            tenant_id: "t-1".into(),
            input_email: "jane@example.com".into(),
            source_bucket: "input".into(),
            source_object: "incoming/t-1/a.csv".into(),
            source_generation: 7,
            line: 2,
            created_at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
        }
    }

    fn attempt(result: AttemptResult, retry_after: Option<Duration>) -> Attempt {
        let (verdict, reason) = policy::classify(result);
        Attempt {
            result,
            verdict,
            reason,
            retry_after,
            transport_error: match result {
                AttemptResult::Status(_) => None,
                _ => Some("error sending request".into()),
            },
            duration: Duration::from_millis(5),
        }
    }

    fn final_row(decision: Decision) -> DeliveryRow {
        match decision {
            Decision::Final(row) => *row,
            other => panic!("expected a final decision, got {other:?}"),
        }
    }

    #[test]
    fn delivered_is_final() {
        let row = final_row(decide(
            &job(),
            &attempt(AttemptResult::Status(202), None),
            1,
            3,
        ));
        assert_eq!(row.status, DeliveryStatus::Delivered);
        assert_eq!(row.attempts, 2);
        assert_eq!(row.last_http_status, Some(202));
        assert_eq!(row.error, None);
        assert_eq!(row.delivery_id, "msg_abc");
    }

    #[test]
    fn permanent_is_final_on_first_attempt() {
        let row = final_row(decide(
            &job(),
            &attempt(AttemptResult::Status(404), None),
            0,
            3,
        ));
        assert_eq!(row.status, DeliveryStatus::Failed);
        assert_eq!(row.attempts, 1);
        assert_eq!(row.last_http_status, Some(404));
        assert_eq!(
            row.error.as_deref(),
            Some("HTTP 404: the partner rejected the request, so resending it cannot help")
        );
    }

    #[test]
    fn retryable_until_retries_run_out() {
        let requested = Some(Duration::from_secs(2));
        for retry_count in 0..3 {
            let decision = decide(
                &job(),
                &attempt(AttemptResult::Status(429), requested),
                retry_count,
                3,
            );
            assert_eq!(
                decision,
                Decision::RetryLater {
                    retry_after: requested
                },
                "retry {retry_count}"
            );
        }
        let row = final_row(decide(&job(), &attempt(AttemptResult::Timeout, None), 3, 3));
        assert_eq!(row.status, DeliveryStatus::Failed);
        assert_eq!(row.attempts, 4);
        assert_eq!(row.last_http_status, None);
        assert_eq!(
            row.error.as_deref(),
            Some(
                "the request to the partner timed out: error sending request \
                 (no retries left after 4 attempts)"
            )
        );
    }

    #[test]
    fn zero_retries_fails_at_once() {
        let row = final_row(decide(
            &job(),
            &attempt(AttemptResult::Status(503), None),
            0,
            0,
        ));
        assert_eq!(row.status, DeliveryStatus::Failed);
        assert_eq!(row.attempts, 1);
    }
}
