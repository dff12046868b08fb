variable "project_id" {
  description = "Google Cloud project id that holds every resource of the pipeline."
  type        = string
}

variable "project_number" {
  description = "Numeric project number of project_id, part of Cloud Run's deterministic service URLs."
  type        = string
}

variable "region" {
  description = "Region of the partner's Cloud Run services, input bucket and Cloud Tasks queue."
  type        = string
}

variable "partner_id" {
  description = "Partner id: the PARTNER_ID of both functions and part of every resource name of this partner."
  type        = string

  validation {
    # The longest name built from it is the service account id enr-PARTNER-receiver, which
    # Google limits to 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}[a-z0-9]$", var.partner_id))
    error_message = "partner_id must be 2 to 16 characters of lower-case letters, digits and hyphens, starting with a letter and ending with a letter or digit."
  }
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
  description = "Whether to create the partner's Cloud Run services and what points at them. Set false until the image and the partner's secret versions exist."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Whether Terraform refuses to delete the partner's Cloud Run services."
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

variable "webhook_url" {
  description = "PARTNER_WEBHOOK_URL: the partner's HTTPS endpoint that receives the outbound enrichment requests."
  type        = string

  validation {
    condition     = can(regex("^https://[^/\\s]+", var.webhook_url))
    error_message = "webhook_url must be an https:// URL."
  }
}

variable "requests_per_second" {
  description = "Maximum outbound requests per second to the partner; the Cloud Tasks queue's dispatch rate."
  type        = number
  default     = 1

  validation {
    condition     = var.requests_per_second > 0 && var.requests_per_second <= 500
    error_message = "requests_per_second must be more than 0 and at most 500, the maximum rate of a Cloud Tasks queue."
  }
}

variable "max_retries" {
  description = "MAX_RETRIES: attempts after the first for one outbound request."
  type        = number
  default     = 3

  validation {
    condition     = var.max_retries >= 0 && var.max_retries <= 99 && floor(var.max_retries) == var.max_retries
    error_message = "max_retries must be a whole number from 0 to 99 (a Cloud Tasks queue allows at most 100 attempts)."
  }
}

variable "retry_base_delay_secs" {
  description = "RETRY_BASE_DELAY_SECS: delay before the first retry; each later retry waits twice as long."
  type        = number
  default     = 2

  validation {
    condition     = var.retry_base_delay_secs >= 1 && var.retry_base_delay_secs <= 3600 && floor(var.retry_base_delay_secs) == var.retry_base_delay_secs
    error_message = "retry_base_delay_secs must be a whole number of seconds from 1 to 3600."
  }
}

variable "request_timeout_secs" {
  description = "REQUEST_TIMEOUT_SECS: timeout of one outbound request to the partner."
  type        = number
  default     = 30

  validation {
    # Cloud Tasks waits at most 30 minutes for the sender's delivery endpoint, which needs some
    # time beyond the partner's request.
    condition     = var.request_timeout_secs >= 1 && var.request_timeout_secs <= 1740 && floor(var.request_timeout_secs) == var.request_timeout_secs
    error_message = "request_timeout_secs must be a whole number of seconds from 1 to 1740."
  }
}

variable "inbound_auth_mode" {
  description = "AUTH_MODE of the inbound receiver: signature (Standard Webhooks secrets) or bearer (tokens)."
  type        = string
  default     = "signature"

  validation {
    # The receiver is public (allUsers may invoke it), so its own check is the only one.
    condition     = contains(["signature", "bearer"], var.inbound_auth_mode)
    error_message = "inbound_auth_mode must be signature or bearer; none would leave the public receiver open to anyone."
  }
}

variable "sign_requests" {
  description = "Whether the sender signs outbound requests with Standard Webhooks headers, reading PARTNER_SIGNING_SECRET from Secret Manager."
  type        = bool
  default     = true
}

variable "signature_tolerance_secs" {
  description = "SIGNATURE_TOLERANCE_SECS of the receiver: maximum age of a signed request's timestamp."
  type        = number
  default     = 300
}

variable "max_body_bytes" {
  description = "MAX_BODY_BYTES of the receiver: largest request body it accepts."
  type        = number
  default     = 65536
}

variable "results_topic_id" {
  description = "Full path (projects/PROJECT/topics/TOPIC) of the results topic."
  type        = string
}

variable "dataset_id" {
  description = "BigQuery dataset id of the deliveries table."
  type        = string
}

variable "deliveries_table" {
  description = "Table id of the deliveries table inside dataset_id."
  type        = string
}

variable "log_hash_key_secret_id" {
  description = "Secret Manager secret id of LOG_HASH_KEY."
  type        = string
}

variable "pubsub_service_agent_member" {
  description = "IAM member of the project's Pub/Sub service agent."
  type        = string
}

variable "storage_service_agent_member" {
  description = "IAM member of the project's Cloud Storage service agent."
  type        = string
}

variable "input_retention_days" {
  description = "Days after which the input bucket's lifecycle rule deletes an object, input files and done-records alike."
  type        = number
  default     = 30

  validation {
    condition     = var.input_retention_days >= 1
    error_message = "input_retention_days must be at least 1."
  }
}

variable "max_delivery_attempts" {
  description = "Pub/Sub push attempts for a bucket notification before it moves to the dead-letter topic (5 to 100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100, the range Pub/Sub accepts."
  }
}

variable "push_min_backoff_secs" {
  description = "Minimum delay in seconds before Pub/Sub pushes a rejected bucket notification again."
  type        = number
  default     = 10
}

variable "push_max_backoff_secs" {
  description = "Maximum delay in seconds before Pub/Sub pushes a rejected bucket notification again."
  type        = number
  default     = 600
}

variable "dead_letter_retention_secs" {
  description = "Seconds that the pull subscription on the dead-letter topic keeps an unacknowledged message."
  type        = number
  default     = 604800
}

variable "receiver_max_instances" {
  description = "Maximum number of Cloud Run instances of the partner's inbound receiver."
  type        = number
  default     = 10
}

variable "sender_max_instances" {
  description = "Maximum number of Cloud Run instances of the partner's outbound sender."
  type        = number
  default     = 3
}

variable "log_level" {
  description = "RUST_LOG filter of both functions."
  type        = string
  default     = "info"
}
