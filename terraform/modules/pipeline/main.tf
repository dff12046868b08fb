locals {
  labels = merge(var.labels, { app = "enrichment-webhooks" })

  # The table schemas and the view's SQL live in the repository beside the Rust row types, which
  # are tested against the same files, so the tables cannot drift from the code.
  schema_dir = "${path.module}/../../../shared/schemas/bigquery"

  archive_bucket_name = coalesce(var.archive_bucket_name, "${var.project_id}-enrichment-archive")

  pubsub_service_agent_member = google_project_service_identity.pubsub.member
}

# The Pub/Sub service agent signs the OIDC tokens of push subscriptions and forwards messages to
# dead-letter topics. Google creates it on first use, so ask for it before granting it roles.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"
}

# The Cloud Storage service agent publishes the bucket notifications of the input buckets.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption keys are used; a customer-managed key would need a Cloud KMS key ring that this module does not create.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository_id
  format        = "DOCKER"
  description   = "Container image of the enrichment webhook functions."
  labels        = local.labels

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"

    most_recent_versions {
      keep_count = var.artifact_keep_versions
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"

    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }
}

# One key for all functions, so that the keyed hashes of e-mails in the logs correlate across
# them. Terraform creates no version, so the key never reaches the state; add one with gcloud.
resource "google_secret_manager_secret" "log_hash_key" {
  project   = var.project_id
  secret_id = "enrichment-log-hash-key"
  labels    = local.labels

  replication {
    auto {}
  }
}
