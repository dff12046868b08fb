locals {
  labels = merge(var.labels, { app = "enrichment-webhooks", partner = var.partner_id })

  receiver_service_name = "enrichment-receiver-${var.partner_id}"
  sender_service_name   = "enrichment-sender-${var.partner_id}"

  # Cloud Run's deterministic URL. The sender needs its own URL in DELIVER_URL, and reading it
  # from the service resource would make the service depend on itself.
  sender_url = "https://${local.sender_service_name}-${var.project_number}.${var.region}.run.app"

  queue_name = "enrichment-${var.partner_id}"

  input_bucket_name = "${var.project_id}-enrichment-${var.partner_id}"
  input_prefix      = "incoming/"

  # Prefix of the sender's delivery records in STATE_BUCKET, which is the input bucket here.
  state_prefix = "state/"

  min_request_interval_ms = ceil(1000 / var.requests_per_second)

  # Cloud Tasks waits min_backoff before the first retry and doubles the wait max_doublings
  # times, which gives RETRY_BASE_DELAY_SECS * 2^(n-1) before retry n (2 s, 4 s, 8 s by default).
  max_doublings    = max(var.max_retries - 1, 0)
  max_backoff_secs = max(min(var.retry_base_delay_secs * pow(2, local.max_doublings), 3600), var.retry_base_delay_secs)
}

resource "google_service_account" "receiver" {
  project      = var.project_id
  account_id   = "enr-${var.partner_id}-receiver"
  display_name = "Enrichment receiver for ${var.partner_id}"
  description  = "Runs the inbound receiver of partner ${var.partner_id}: publishes results."
}

resource "google_service_account" "sender" {
  project      = var.project_id
  account_id   = "enr-${var.partner_id}-sender"
  display_name = "Enrichment sender for ${var.partner_id}"
  description  = "Runs the outbound sender of partner ${var.partner_id}: reads input files and enqueues deliveries."
}

# The identity in the OIDC tokens that Cloud Tasks and the bucket notification subscription send
# to the sender.
resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "enr-${var.partner_id}-invoker"
  display_name = "Enrichment sender invoker for ${var.partner_id}"
  description  = "Identity of Cloud Tasks and Pub/Sub push when they call the sender of partner ${var.partner_id}."
}
