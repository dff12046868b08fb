resource "google_pubsub_topic" "results" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption keys are used; a customer-managed key would need a Cloud KMS key ring that this module does not create.
  project = var.project_id
  name    = "enrichment-results"
  labels  = local.labels
}

resource "google_pubsub_topic" "results_dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption keys are used; a customer-managed key would need a Cloud KMS key ring that this module does not create.
  project = var.project_id
  name    = "enrichment-results-dead-letter"
  labels  = local.labels
}

# A topic without a subscription drops its messages, so this subscription keeps the dead letters
# until someone inspects or replays them.
resource "google_pubsub_subscription" "results_dead_letter" {
  project                    = var.project_id
  name                       = "enrichment-results-dead-letter-pull"
  topic                      = google_pubsub_topic.results_dead_letter.id
  labels                     = local.labels
  ack_deadline_seconds       = 600
  message_retention_duration = "${var.dead_letter_retention_secs}s"

  expiration_policy {
    ttl = ""
  }
}

# Pushes every result to the results sink. The sink returns 2xx for stored and for quarantined
# messages, so only messages that failed for max_delivery_attempts reach the dead-letter topic.
resource "google_pubsub_subscription" "results_sink" {
  count = var.deploy_services ? 1 : 0

  project                    = var.project_id
  name                       = "enrichment-results-sink"
  topic                      = google_pubsub_topic.results.id
  labels                     = local.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.sink[0].uri}/"

    oidc_token {
      service_account_email = google_service_account.sink_invoker.email
      audience              = google_cloud_run_v2_service.sink[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${var.push_min_backoff_secs}s"
    maximum_backoff = "${var.push_max_backoff_secs}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.results_dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # A subscription without activity expires after 31 days by default; this one must not.
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.results_dead_letter_publisher,
    google_service_account_iam_member.pubsub_signs_sink_tokens,
    google_cloud_run_v2_service_iam_member.sink_invoker,
  ]
}

# The Pub/Sub service agent moves undeliverable messages to the dead-letter topic, which needs
# publisher on that topic and subscriber on the source subscription.
resource "google_pubsub_topic_iam_member" "results_dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.results_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent_member
}

resource "google_pubsub_subscription_iam_member" "results_sink_dead_letter_subscriber" {
  count = var.deploy_services ? 1 : 0

  project      = var.project_id
  subscription = google_pubsub_subscription.results_sink[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent_member
}
