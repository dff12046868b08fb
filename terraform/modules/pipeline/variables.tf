variable "project_id" {
  description = "Google Cloud project id that holds every resource of the pipeline."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services, buckets, Cloud Tasks queues and the Artifact Registry repository."
  type        = string
}

variable "labels" {
  description = "Labels added to every labelled resource."
  type        = map(string)
  default     = {}
}

variable "image" {
  description = "Full container image reference (registry path and tag) that holds the three function binaries."
  type        = string
  default     = null
}

variable "deploy_services" {
  description = "Whether to create the Cloud Run services and what points at them. Set false for a first apply, before the image and the secret versions exist."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Whether Terraform refuses to delete the Cloud Run services and BigQuery tables."
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

variable "artifact_repository_id" {
  description = "Id of the Docker repository in Artifact Registry that holds the function image."
  type        = string
  default     = "enrichment"
}

variable "artifact_keep_versions" {
  description = "Number of most recent image versions the Artifact Registry cleanup policy always keeps."
  type        = number
  default     = 10

  validation {
    condition     = var.artifact_keep_versions >= 1
    error_message = "artifact_keep_versions must be at least 1."
  }
}

variable "dataset_id" {
  description = "BigQuery dataset id for the results and deliveries tables and the latest_results view."
  type        = string
  default     = "enrichment"

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", var.dataset_id))
    error_message = "dataset_id may contain only letters, digits and underscores."
  }
}

variable "bigquery_location" {
  description = "BigQuery dataset location, a multi-region (US, EU) or a region."
  type        = string
}

variable "partition_expiration_days" {
  description = "Days after which BigQuery deletes a day partition of the results and deliveries tables; 0 keeps partitions forever."
  type        = number
  default     = 0

  validation {
    condition     = var.partition_expiration_days >= 0 && floor(var.partition_expiration_days) == var.partition_expiration_days
    error_message = "partition_expiration_days must be a whole number of days, 0 or more."
  }
}

variable "archive_bucket_name" {
  description = "Name of the bucket that archives every result; null uses PROJECT_ID-enrichment-archive."
  type        = string
  default     = null
}

variable "archive_retention_days" {
  description = "Days after which the archive bucket's lifecycle rule deletes an archived result."
  type        = number
  default     = 365

  validation {
    condition     = var.archive_retention_days >= 1
    error_message = "archive_retention_days must be at least 1."
  }
}

variable "max_delivery_attempts" {
  description = "Pub/Sub push attempts for a message before it moves to the dead-letter topic (Pub/Sub allows 5 to 100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100, the range Pub/Sub accepts."
  }
}

variable "push_min_backoff_secs" {
  description = "Minimum delay in seconds before Pub/Sub pushes a rejected message again."
  type        = number
  default     = 10

  validation {
    condition     = var.push_min_backoff_secs >= 0 && var.push_min_backoff_secs <= 600
    error_message = "push_min_backoff_secs must be between 0 and 600, the range Pub/Sub accepts."
  }
}

variable "push_max_backoff_secs" {
  description = "Maximum delay in seconds before Pub/Sub pushes a rejected message again."
  type        = number
  default     = 600

  validation {
    condition     = var.push_max_backoff_secs >= 0 && var.push_max_backoff_secs <= 600
    error_message = "push_max_backoff_secs must be between 0 and 600, the range Pub/Sub accepts."
  }
}

variable "dead_letter_retention_secs" {
  description = "Seconds that the pull subscriptions on the dead-letter topics keep an unacknowledged message (Pub/Sub allows at most 31 days)."
  type        = number
  default     = 604800

  validation {
    condition     = var.dead_letter_retention_secs >= 600 && var.dead_letter_retention_secs <= 2678400
    error_message = "dead_letter_retention_secs must be between 600 (10 minutes) and 2678400 (31 days)."
  }
}

variable "sink_max_instances" {
  description = "Maximum number of Cloud Run instances of the results sink."
  type        = number
  default     = 10
}

variable "batch_max_rows" {
  description = "BATCH_MAX_ROWS of the results sink: rows per BigQuery insert."
  type        = number
  default     = 500
}

variable "batch_max_wait_ms" {
  description = "BATCH_MAX_WAIT_MS of the results sink: milliseconds a row waits for a fuller batch."
  type        = number
  default     = 50
}

variable "log_level" {
  description = "RUST_LOG filter of every function, for example info or info,results_sink=debug."
  type        = string
  default     = "info"
}
