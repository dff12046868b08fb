# Input files arrive as incoming/<tenant_id>/<file> in the partner's own bucket. A bucket
# notification publishes OBJECT_FINALIZE events to a topic, and this module's push subscription
# calls the sender. Eventarc would create its own subscription with a 10 s acknowledgement
# deadline and no dead-letter topic; this one waits 600 s and keeps failed events.

resource "google_storage_bucket" "input" {
  #checkov:skip=CKV_GCP_62:Access to input files is recorded by Cloud Audit Logs (Data Access logs); legacy usage logs would add a second bucket to protect.
  #checkov:skip=CKV_GCP_78:An overwrite is a new upload that the sender processes as a new generation, so older versions are never read.
  project                     = var.project_id
  name                        = local.input_bucket_name
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = false
  }

  lifecycle_rule {
    condition {
      age = var.input_retention_days
    }

    action {
      type = "Delete"
    }
  }
}

resource "google_pubsub_topic" "incoming" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption keys are used; a customer-managed key would need a Cloud KMS key ring that this module does not create.
  project = var.project_id
  name    = "enrichment-${var.partner_id}-incoming"
  labels  = local.labels
}

resource "google_pubsub_topic" "incoming_dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption keys are used; a customer-managed key would need a Cloud KMS key ring that this module does not create.
  project = var.project_id
  name    = "enrichment-${var.partner_id}-incoming-dead-letter"
  labels  = local.labels
}

# A topic without a subscription drops its messages, so this subscription keeps the dead letters
# until someone inspects or replays them.
resource "google_pubsub_subscription" "incoming_dead_letter" {
  project                    = var.project_id
  name                       = "enrichment-${var.partner_id}-incoming-dead-letter-pull"
  topic                      = google_pubsub_topic.incoming_dead_letter.id
  labels                     = local.labels
  ack_deadline_seconds       = 600
  message_retention_duration = "${var.dead_letter_retention_secs}s"

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "storage_publishes_incoming" {
  project = var.project_id
  topic   = google_pubsub_topic.incoming.name
  role    = "roles/pubsub.publisher"
  member  = var.storage_service_agent_member
}

resource "google_storage_notification" "incoming" {
  bucket             = google_storage_bucket.input.name
  topic              = google_pubsub_topic.incoming.id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = local.input_prefix

  depends_on = [google_pubsub_topic_iam_member.storage_publishes_incoming]
}

# The sender reads the file and enqueues one Cloud Tasks task per e-mail, so a push request
# lasts seconds to minutes; 600 s is the longest acknowledgement deadline Pub/Sub allows.
resource "google_pubsub_subscription" "sender" {
  count = var.deploy_services ? 1 : 0

  project                    = var.project_id
  name                       = "enrichment-${var.partner_id}-sender"
  topic                      = google_pubsub_topic.incoming.id
  labels                     = local.labels
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.sender[0].uri}/"

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloud_run_v2_service.sender[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${var.push_min_backoff_secs}s"
    maximum_backoff = "${var.push_max_backoff_secs}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.incoming_dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # A subscription without activity expires after 31 days by default; this one must not.
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.incoming_dead_letter_publisher,
    google_service_account_iam_member.pubsub_signs_invoker_tokens,
    google_cloud_run_v2_service_iam_member.sender_invoker,
  ]
}

# The Pub/Sub service agent moves undeliverable messages to the dead-letter topic, which needs
# publisher on that topic and subscriber on the source subscription.
resource "google_pubsub_topic_iam_member" "incoming_dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.incoming_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = var.pubsub_service_agent_member
}

resource "google_pubsub_subscription_iam_member" "sender_dead_letter_subscriber" {
  count = var.deploy_services ? 1 : 0

  project      = var.project_id
  subscription = google_pubsub_subscription.sender[0].name
  role         = "roles/pubsub.subscriber"
  member       = var.pubsub_service_agent_member
}

# The Pub/Sub service agent mints the push subscription's OIDC tokens for the invoker account.
resource "google_service_account_iam_member" "pubsub_signs_invoker_tokens" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = var.pubsub_service_agent_member
}
