resource "google_service_account" "sink" {
  project      = var.project_id
  account_id   = "enr-results-sink"
  display_name = "Enrichment results sink"
  description  = "Runs the results sink: writes results to BigQuery and the archive bucket."
}

# The identity in the OIDC token that the results push subscription sends to the sink.
resource "google_service_account" "sink_invoker" {
  project      = var.project_id
  account_id   = "enr-sink-invoker"
  display_name = "Enrichment results sink invoker"
  description  = "Identity of the Pub/Sub push subscription that calls the results sink."
}

resource "google_cloud_run_v2_service" "sink" {
  count = var.deploy_services ? 1 : 0

  project             = var.project_id
  name                = "enrichment-results-sink"
  location            = var.region
  description         = "Stores enrichment results pushed by Pub/Sub in BigQuery and Cloud Storage."
  labels              = local.labels
  deletion_protection = var.deletion_protection

  # Pub/Sub push counts as internal traffic for a service in the same project.
  ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account                  = google_service_account.sink.email
    timeout                          = "60s"
    max_instance_request_concurrency = 80
    # Instances read the `latest` secret versions when they start; a new secrets_revision
    # starts a new revision and so new instances.
    labels = merge(local.labels, { "secrets-revision" = var.secrets_revision })

    scaling {
      min_instance_count = 0
      max_instance_count = var.sink_max_instances
    }

    containers {
      image   = var.image
      command = ["/usr/local/bin/results-sink"]

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
        name  = "BIGQUERY_DATASET"
        value = google_bigquery_dataset.enrichment.dataset_id
      }
      env {
        name  = "RESULTS_TABLE"
        value = google_bigquery_table.results.table_id
      }
      env {
        name  = "ARCHIVE_BUCKET"
        value = google_storage_bucket.archive.name
      }
      env {
        name  = "BATCH_MAX_ROWS"
        value = tostring(var.batch_max_rows)
      }
      env {
        name  = "BATCH_MAX_WAIT_MS"
        value = tostring(var.batch_max_wait_ms)
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
            secret  = google_secret_manager_secret.log_hash_key.secret_id
            version = "latest"
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
  depends_on = [google_secret_manager_secret_iam_member.sink_log_hash_key]
}

resource "google_cloud_run_v2_service_iam_member" "sink_invoker" {
  count = var.deploy_services ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.sink[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.sink_invoker.member
}

# The Pub/Sub service agent mints the OIDC tokens of the push subscription for sink_invoker.
resource "google_service_account_iam_member" "pubsub_signs_sink_tokens" {
  service_account_id = google_service_account.sink_invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent_member
}

resource "google_bigquery_table_iam_member" "sink_results_editor" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.enrichment.dataset_id
  table_id   = google_bigquery_table.results.table_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.sink.member
}

# Object creator, not object user: archive objects are written once and never read or replaced.
resource "google_storage_bucket_iam_member" "sink_archive_creator" {
  bucket = google_storage_bucket.archive.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.sink.member
}

resource "google_secret_manager_secret_iam_member" "sink_log_hash_key" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.log_hash_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.sink.member
}
