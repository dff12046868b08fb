# Terraform creates the secrets without versions, so no secret value is ever in the state. Add
# the values with `gcloud secrets versions add SECRET --data-file=-`; the services read `latest`.

# WEBHOOK_SECRETS: space-separated whsec_ secrets; the receiver accepts a signature from any of
# them, which allows rotation without downtime.
resource "google_secret_manager_secret" "webhook_secrets" {
  count = var.inbound_auth_mode == "signature" ? 1 : 0

  project   = var.project_id
  secret_id = "enrichment-${var.partner_id}-webhook-secrets"
  labels    = local.labels

  replication {
    auto {}
  }
}

# BEARER_TOKENS: space-separated tokens that the receiver accepts in an Authorization header.
resource "google_secret_manager_secret" "bearer_tokens" {
  count = var.inbound_auth_mode == "bearer" ? 1 : 0

  project   = var.project_id
  secret_id = "enrichment-${var.partner_id}-bearer-tokens"
  labels    = local.labels

  replication {
    auto {}
  }
}

# PARTNER_SIGNING_SECRET: the whsec_ secret the sender signs outbound requests with.
resource "google_secret_manager_secret" "signing_secret" {
  count = var.sign_requests ? 1 : 0

  project   = var.project_id
  secret_id = "enrichment-${var.partner_id}-signing-secret"
  labels    = local.labels

  replication {
    auto {}
  }
}

locals {
  # Environment variable name to secret id, for the secrets this partner's receiver reads.
  receiver_secret_env = merge(
    { LOG_HASH_KEY = var.log_hash_key_secret_id },
    { for secret in google_secret_manager_secret.webhook_secrets : "WEBHOOK_SECRETS" => secret.secret_id },
    { for secret in google_secret_manager_secret.bearer_tokens : "BEARER_TOKENS" => secret.secret_id },
  )

  sender_secret_env = merge(
    { LOG_HASH_KEY = var.log_hash_key_secret_id },
    { for secret in google_secret_manager_secret.signing_secret : "PARTNER_SIGNING_SECRET" => secret.secret_id },
  )
}

resource "google_secret_manager_secret_iam_member" "receiver" {
  for_each = local.receiver_secret_env

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.receiver.member
}

resource "google_secret_manager_secret_iam_member" "sender" {
  for_each = local.sender_secret_env

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.sender.member
}
