resource "google_cloud_run_v2_service" "sender" {
  count = var.deploy_services ? 1 : 0

  project             = var.project_id
  name                = local.sender_service_name
  location            = var.region
  description         = "Sends the e-mails of input files to partner ${var.partner_id}, paced by Cloud Tasks."
  labels              = local.labels
  deletion_protection = var.deletion_protection

  # Pub/Sub push and Cloud Tasks count as internal traffic for a service in the same project.
  # NOTE: not tried on a real project yet. If Cloud Tasks or Pub/Sub requests are rejected
  # before they reach the sender, INGRESS_TRAFFIC_ALL still requires the invoker's OIDC token.
  ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account = google_service_account.sender.email
    # A bucket notification request may run as long as the subscription's 600 s acknowledgement
    # deadline; a /deliver request runs as long as the partner's request timeout.
    timeout                          = "${max(600, var.request_timeout_secs + 60)}s"
    max_instance_request_concurrency = 80
    # Instances read the `latest` secret versions when they start; a new secrets_revision
    # starts a new revision and so new instances.
    labels = merge(local.labels, { "secrets-revision" = var.secrets_revision })

    scaling {
      min_instance_count = 0
      max_instance_count = var.sender_max_instances
    }

    containers {
      image   = var.image
      command = ["/usr/local/bin/outbound-sender"]

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle = true
      }

      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project_id
      }
      env {
        name  = "PARTNER_ID"
        value = var.partner_id
      }
      env {
        name  = "PARTNER_WEBHOOK_URL"
        value = var.webhook_url
      }
      env {
        name  = "DELIVERY_QUEUE"
        value = "cloud-tasks"
      }
      env {
        name  = "CLOUD_TASKS_QUEUE"
        value = google_cloud_tasks_queue.deliveries.id
      }
      env {
        name  = "DELIVER_URL"
        value = "${local.sender_url}/deliver"
      }
      env {
        name  = "DELIVER_SERVICE_ACCOUNT"
        value = google_service_account.invoker.email
      }
      env {
        name  = "REQUEST_TIMEOUT_SECS"
        value = tostring(var.request_timeout_secs)
      }
      env {
        name  = "MAX_RETRIES"
        value = tostring(var.max_retries)
      }
      env {
        name  = "RETRY_BASE_DELAY_SECS"
        value = tostring(var.retry_base_delay_secs)
      }
      env {
        name  = "MIN_REQUEST_INTERVAL_MS"
        value = tostring(local.min_request_interval_ms)
      }
      env {
        name  = "BIGQUERY_DATASET"
        value = var.dataset_id
      }
      env {
        name  = "DELIVERIES_TABLE"
        value = var.deliveries_table
      }
      env {
        name  = "INPUT_PREFIX"
        value = local.input_prefix
      }
      env {
        name  = "STATE_BUCKET"
        value = google_storage_bucket.input.name
      }
      env {
        name  = "LOG_FORMAT"
        value = "json"
      }
      env {
        name  = "RUST_LOG"
        value = var.log_level
      }
      env {
        name = "LOG_HASH_KEY"
        value_source {
          secret_key_ref {
            secret  = var.log_hash_key_secret_id
            version = "latest"
          }
        }
      }

      dynamic "env" {
        for_each = google_secret_manager_secret.signing_secret
        content {
          name = "PARTNER_SIGNING_SECRET"
          value_source {
            secret_key_ref {
              secret  = env.value.secret_id
              version = "latest"
            }
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.image != null
      error_message = "image is required when deploy_services is true: build and push the image first (deploy/build-image.sh)."
    }
  }

  # Cloud Run checks at deployment that the service account can read its secrets.
  depends_on = [google_secret_manager_secret_iam_member.sender]
}

resource "google_cloud_run_v2_service_iam_member" "sender_invoker" {
  count = var.deploy_services ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.sender[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

resource "google_storage_bucket_iam_member" "sender_input_viewer" {
  bucket = google_storage_bucket.input.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.sender.member
}

# Delivery records, state/delivered/<webhook-id>, are the only objects the sender writes: it
# creates each with ifGenerationMatch=0 and overwrites it with the outcome, so it needs more
# than object creator. NOTE: only DELIVERY_QUEUE=local writes these records now; with
# cloud-tasks the task names deduplicate the deliveries and this grant goes unused.
resource "google_storage_bucket_iam_member" "sender_state_user" {
  bucket = google_storage_bucket.input.name
  role   = "roles/storage.objectUser"
  member = google_service_account.sender.member

  condition {
    title       = "state-prefix-only"
    description = "Objects under ${local.state_prefix} of the input bucket."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.input.name}/objects/${local.state_prefix}\")"
  }
}

# The sender only streams rows with tabledata.insertAll, which runs no BigQuery job, so it needs
# data editor on its one table and no job user role.
resource "google_bigquery_table_iam_member" "sender_deliveries_editor" {
  project    = var.project_id
  dataset_id = var.dataset_id
  table_id   = var.deliveries_table
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.sender.member
}
