# Paces the outbound requests to the partner. The sender enqueues one task per e-mail, named
# after its webhook-id so that enqueuing it again is a no-op; Cloud Tasks calls the sender's
# /deliver endpoint, which makes one attempt and reports the outcome, and retries on failure.
resource "google_cloud_tasks_queue" "deliveries" {
  project  = var.project_id
  name     = local.queue_name
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.requests_per_second
    max_concurrent_dispatches = 1
  }

  retry_config {
    max_attempts  = 1 + var.max_retries
    min_backoff   = "${var.retry_base_delay_secs}s"
    max_backoff   = "${local.max_backoff_secs}s"
    max_doublings = local.max_doublings
  }
}

resource "google_cloud_tasks_queue_iam_member" "sender_enqueuer" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.deliveries.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.sender.member
}

# Creating a task with an OIDC token for the invoker account requires actAs on that account.
resource "google_service_account_iam_member" "sender_acts_as_invoker" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.sender.member
}
