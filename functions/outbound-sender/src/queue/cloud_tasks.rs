//! Cloud Tasks as the delivery queue: one HTTP task per job, dispatched to this service's
//! `/deliver` endpoint with an OIDC token.
//!
//! The queue itself (created by Terraform) carries the partner's policy: dispatch rate,
//! maximum attempts and backoff. The task name is derived from the `webhook-id`, so a
//! redelivered event creates nothing new: Cloud Tasks returns `AlreadyExists`.
//!
//! NOTE: Cloud Tasks rejects a reused task name only for about an hour after the first task
//! with that name finished or was deleted. An event redelivered later than that enqueues the
//! email again; the partner sees the same `webhook-id` and can drop the repeat.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::options::RequestOptionsBuilder;
use google_cloud_tasks_v2::client::CloudTasks;
use google_cloud_tasks_v2::model::{HttpMethod, HttpRequest, OidcToken, Task};

use super::{DeliveryQueue, EnqueueReport, QueueError};
use crate::config::CloudTasksConfig;
use crate::jobs::Job;

/// Tasks created at once by one enqueue call.
pub const ENQUEUE_CONCURRENCY: usize = 16;
/// Time added to the partner request timeout for the dispatch deadline. After the partner
/// responds, `/deliver` still inserts the delivery row (an `insertAll` of up to 8 s) and Cloud
/// Run may queue the request briefly. A deadline that expires first makes Cloud Tasks retry a
/// request the partner already received.
pub const DISPATCH_DEADLINE_MARGIN: Duration = Duration::from_secs(15);
/// Cloud Tasks accepts dispatch deadlines from 15 seconds to 30 minutes for HTTP targets.
const MIN_DISPATCH_DEADLINE: Duration = Duration::from_secs(15);
const MAX_DISPATCH_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Returns the dispatch deadline for a partner request timeout.
pub fn dispatch_deadline(request_timeout: Duration) -> Duration {
    (request_timeout + DISPATCH_DEADLINE_MARGIN).clamp(MIN_DISPATCH_DEADLINE, MAX_DISPATCH_DEADLINE)
}

/// Enqueues jobs as Cloud Tasks HTTP tasks.
#[derive(Debug, Clone)]
pub struct CloudTasksQueue {
    client: CloudTasks,
    config: CloudTasksConfig,
    dispatch_deadline: Duration,
}

impl CloudTasksQueue {
    /// Uses `client`, built with `CloudTasks::builder()` in production or
    /// `CloudTasks::from_stub` in tests.
    pub fn new(client: CloudTasks, config: CloudTasksConfig, request_timeout: Duration) -> Self {
        Self {
            client,
            config,
            dispatch_deadline: dispatch_deadline(request_timeout),
        }
    }

    /// Returns the task name of `job`: `QUEUE/tasks/<webhook-id>`. A `webhook-id` is `msg_`
    /// and hex digits, which task ids allow (letters, digits, `-` and `_`).
    pub fn task_name(&self, job: &Job) -> String {
        format!("{}/tasks/{}", self.config.queue_path, job.webhook_id)
    }

    /// Builds the task for `job`.
    pub fn task(&self, job: &Job) -> Task {
        let body = serde_json::to_vec(job).expect("a job of strings and numbers serialises");
        let oidc = OidcToken::new()
            .set_service_account_email(self.config.service_account.clone())
            .set_audience(self.config.audience());
        let request = HttpRequest::new()
            .set_url(self.config.deliver_url.clone())
            .set_http_method(HttpMethod::Post)
            .set_headers([("Content-Type", "application/json")])
            .set_body(body)
            .set_oidc_token(oidc);
        let deadline = google_cloud_wkt::Duration::clamp(
            self.dispatch_deadline.as_secs() as i64,
            self.dispatch_deadline.subsec_nanos() as i32,
        );
        Task::new()
            .set_name(self.task_name(job))
            .set_dispatch_deadline(deadline)
            .set_http_request(request)
    }

    async fn create(&self, job: &Job) -> Result<bool, google_cloud_tasks_v2::Error> {
        let result = self
            .client
            .create_task()
            .set_parent(self.config.queue_path.clone())
            .set_task(self.task(job))
            // A named task cannot be created twice, so a retry after a lost response is safe.
            .with_idempotency(true)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_already_exists(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

fn is_already_exists(error: &google_cloud_tasks_v2::Error) -> bool {
    error.status().map(|status| status.code) == Some(Code::AlreadyExists)
        || error.http_status_code() == Some(409)
}

#[async_trait]
impl DeliveryQueue for CloudTasksQueue {
    async fn enqueue(&self, jobs: Vec<Job>) -> Result<EnqueueReport, QueueError> {
        let total = jobs.len();
        let results: Vec<(Job, _)> = futures::stream::iter(jobs)
            .map(|job| async move {
                let result = self.create(&job).await;
                (job, result)
            })
            .buffer_unordered(ENQUEUE_CONCURRENCY)
            .collect()
            .await;

        let mut report = EnqueueReport::default();
        let mut failed = 0;
        let mut first_error = None;
        for (job, result) in results {
            match result {
                Ok(true) => report.enqueued += 1,
                Ok(false) => report.already_queued += 1,
                Err(error) => {
                    failed += 1;
                    tracing::warn!(webhook_id = %job.webhook_id, %error, "creating the task failed");
                    first_error.get_or_insert_with(|| error.to_string());
                }
            }
        }
        match first_error {
            None => Ok(report),
            Some(message) => Err(QueueError::Enqueue {
                failed,
                total,
                message,
                report,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_deadline_adds_margin_within_limits() {
        let secs = Duration::from_secs;
        assert_eq!(dispatch_deadline(secs(30)), secs(45));
        assert_eq!(
            dispatch_deadline(Duration::from_millis(200)),
            Duration::from_millis(15_200)
        );
        assert_eq!(dispatch_deadline(Duration::ZERO), secs(15));
        assert_eq!(dispatch_deadline(secs(29 * 60)), secs(29 * 60 + 15));
        assert_eq!(dispatch_deadline(secs(1790)), secs(30 * 60));
    }
}
