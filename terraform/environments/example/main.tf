provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

locals {
  services = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudtasks.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  image = var.image_tag == null ? null : "${module.pipeline.image_repository}/${var.image_name}:${var.image_tag}"
}

resource "google_project_service" "required" {
  for_each = local.services

  project = var.project_id
  service = each.value

  # Other workloads in the project may use these APIs too.
  disable_on_destroy = false
}

data "google_project" "this" {
  project_id = var.project_id
}

module "pipeline" {
  source = "../../modules/pipeline"

  project_id                = var.project_id
  region                    = var.region
  labels                    = var.labels
  image                     = local.image
  deploy_services           = var.deploy_services
  deletion_protection       = var.deletion_protection
  secrets_revision          = var.secrets_revision
  bigquery_location         = coalesce(var.bigquery_location, var.region)
  partition_expiration_days = var.partition_expiration_days
  archive_retention_days    = var.archive_retention_days
  max_delivery_attempts     = var.max_delivery_attempts
  log_level                 = var.log_level

  depends_on = [google_project_service.required]
}

# One instance per entry of var.partners, keyed by partner id: its input bucket, notification
# topic and subscription, Cloud Tasks queue, secrets, service accounts and both services.
module "partner" {
  source   = "../../modules/partner"
  for_each = var.partners

  project_id          = var.project_id
  project_number      = data.google_project.this.number
  region              = var.region
  partner_id          = each.key
  labels              = var.labels
  image               = local.image
  deploy_services     = var.deploy_services && each.value.deploy_services
  deletion_protection = var.deletion_protection
  secrets_revision    = var.secrets_revision

  webhook_url           = each.value.webhook_url
  requests_per_second   = each.value.requests_per_second
  max_retries           = each.value.max_retries
  retry_base_delay_secs = each.value.retry_base_delay_secs
  request_timeout_secs  = each.value.request_timeout_secs
  inbound_auth_mode     = each.value.inbound_auth_mode
  sign_requests         = each.value.sign_requests

  results_topic_id             = module.pipeline.results_topic_id
  dataset_id                   = module.pipeline.dataset_id
  deliveries_table             = module.pipeline.deliveries_table
  log_hash_key_secret_id       = module.pipeline.log_hash_key_secret_id
  pubsub_service_agent_member  = module.pipeline.pubsub_service_agent_member
  storage_service_agent_member = module.pipeline.storage_service_agent_member

  input_retention_days  = var.input_retention_days
  max_delivery_attempts = var.max_delivery_attempts
  log_level             = var.log_level

  depends_on = [google_project_service.required]
}
