resource "google_cloud_run_v2_service" "receiver" {
  count = var.deploy_services ? 1 : 0

  project             = var.project_id
  name                = local.receiver_service_name
  location            = var.region
  description         = "Receives enrichment results from partner ${var.partner_id} and publishes them to Pub/Sub."
  labels              = local.labels
  deletion_protection = var.deletion_protection

  # Partners call this URL from the internet.
  ingress = "INGRESS_TRAFFIC_ALL"

  template {
    service_account                  = google_service_account.receiver.email
    timeout                          = "60s"
    max_instance_request_concurrency = 80
    # Instances read the `latest` secret versions when they start; a new secrets_revision
    # starts a new revision and so new instances.
    labels = merge(local.labels, { "secrets-revision" = var.secrets_revision })

    scaling {
      min_instance_count = 0
      max_instance_count = var.receiver_max_instances
    }

    containers {
      image   = var.image
      command = ["/usr/local/bin/inbound-receiver"]

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
        name  = "RESULTS_TOPIC"
        value = var.results_topic_id
      }
      env {
        name  = "AUTH_MODE"
        value = var.inbound_auth_mode
      }
      env {
        name  = "SIGNATURE_TOLERANCE_SECS"
        value = tostring(var.signature_tolerance_secs)
      }
      env {
        name  = "MAX_BODY_BYTES"
        value = tostring(var.max_body_bytes)
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
        for_each = google_secret_manager_secret.webhook_secrets
        content {
          name = "WEBHOOK_SECRETS"
          value_source {
            secret_key_ref {
              secret  = env.value.secret_id
              version = "latest"
            }
          }
        }
      }

      dynamic "env" {
        for_each = google_secret_manager_secret.bearer_tokens
        content {
          name = "BEARER_TOKENS"
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
  depends_on = [google_secret_manager_secret_iam_member.receiver]
}

# Partners are not Google principals, so they cannot present an identity token: the receiver is
# public and rejects any request without a valid Standard Webhooks signature or bearer token.
# NOTE: checkov 3.3.30 applies CKV_GCP_102 only to the v1 google_cloud_run_service_iam_* types;
# the skip below takes effect once it covers v2.
resource "google_cloud_run_v2_service_iam_member" "receiver_public" {
  #checkov:skip=CKV_GCP_102:Partners call the receiver from outside Google Cloud without an identity token; it checks every request's signature or bearer token itself.
  count = var.deploy_services ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.receiver[0].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_pubsub_topic_iam_member" "receiver_publisher" {
  project = var.project_id
  topic   = var.results_topic_id
  role    = "roles/pubsub.publisher"
  member  = google_service_account.receiver.member
}
