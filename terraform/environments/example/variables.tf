variable "project_id" {
  description = "Google Cloud project id to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6 to 30 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the Cloud Run services, buckets, Cloud Tasks queues and the Artifact Registry repository, for example europe-west1."
  type        = string
}

variable "bigquery_location" {
  description = "BigQuery dataset location (a multi-region such as EU or US, or a region); null uses region."
  type        = string
  default     = null
}

variable "image_name" {
  description = "Image name inside the Artifact Registry repository; deploy/build-image.sh pushes to the same name."
  type        = string
  default     = "enrichment-functions"
}

variable "image_tag" {
  description = "Tag of the pushed function image, by default the git short commit hash that deploy/build-image.sh prints. Required when deploy_services is true."
  type        = string
  default     = null

  validation {
    condition     = var.image_tag == null || can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid Docker tag: letters, digits, underscores, periods and hyphens, at most 128 characters."
  }

  validation {
    condition     = !var.deploy_services || var.image_tag != null
    error_message = "image_tag is required when deploy_services is true: push the image with deploy/build-image.sh and pass the tag it prints."
  }
}

variable "deploy_services" {
  description = "Whether to create the Cloud Run services and the subscriptions that call them. Set false for the first apply, before the image and the secret versions exist."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Whether Terraform refuses to delete the Cloud Run services and BigQuery tables; set false before a terraform destroy."
  type        = bool
  default     = true
}

variable "secrets_revision" {
  description = "Label value on every service's revision template. Change it (for example to a date) and apply to start new revisions, whose instances read the latest secret versions."
  type        = string
  default     = "1"

  validation {
    condition     = can(regex("^[a-z0-9_-]{1,63}$", var.secrets_revision))
    error_message = "secrets_revision must be 1 to 63 lower-case letters, digits, underscores or hyphens (a label value)."
  }
}

variable "partners" {
  description = <<-EOT
    Partners keyed by partner id (2 to 16 lower-case letters, digits and hyphens). Each entry
    creates the partner's input bucket, trigger, Cloud Tasks queue, secrets and services.
    webhook_url is the partner's HTTPS endpoint; requests_per_second, max_retries,
    retry_base_delay_secs and request_timeout_secs set the outbound delivery policy;
    inbound_auth_mode is signature or bearer; sign_requests adds Standard Webhooks signatures to
    outbound requests; deploy_services = false holds back this partner's services until its
    secret versions exist.
  EOT
  type = map(object({
    webhook_url           = string
    requests_per_second   = optional(number, 1)
    max_retries           = optional(number, 3)
    retry_base_delay_secs = optional(number, 2)
    request_timeout_secs  = optional(number, 30)
    inbound_auth_mode     = optional(string, "signature")
    sign_requests         = optional(bool, true)
    deploy_services       = optional(bool, true)
  }))
  default = {}

  validation {
    condition     = alltrue([for id in keys(var.partners) : can(regex("^[a-z][a-z0-9-]{0,14}[a-z0-9]$", id))])
    error_message = "Each partner id (a key of partners) must be 2 to 16 characters of lower-case letters, digits and hyphens, starting with a letter and ending with a letter or digit."
  }
}

variable "partition_expiration_days" {
  description = "Days after which BigQuery deletes a day partition of the results and deliveries tables; 0 keeps them forever."
  type        = number
  default     = 0
}

variable "archive_retention_days" {
  description = "Days after which the archive bucket deletes an archived result."
  type        = number
  default     = 365
}

variable "input_retention_days" {
  description = "Days after which an input bucket deletes an input file or done-record."
  type        = number
  default     = 30
}

variable "max_delivery_attempts" {
  description = "Pub/Sub push attempts for a message before it moves to a dead-letter topic (5 to 100)."
  type        = number
  default     = 10
}

variable "log_level" {
  description = "RUST_LOG filter of every function, for example info or info,outbound_sender=debug."
  type        = string
  default     = "info"
}

variable "labels" {
  description = "Labels added to every labelled resource, for example { env = \"prod\" }."
  type        = map(string)
  default     = {}
}
