output "webhook_url" {
  description = "URL that the partner posts enrichment results to; null while deploy_services is false."
  value       = one(google_cloud_run_v2_service.receiver[*].uri)
}

output "input_bucket_name" {
  description = "Bucket that receives this partner's input files under incoming/<tenant_id>/."
  value       = google_storage_bucket.input.name
}

output "sender_url" {
  description = "Deterministic URL of the partner's sender service."
  value       = local.sender_url
}

output "delivery_queue" {
  description = "Full path of the partner's Cloud Tasks queue."
  value       = google_cloud_tasks_queue.deliveries.id
}

output "incoming_dead_letter_topic" {
  description = "Name of the dead-letter topic of the bucket notification subscription."
  value       = google_pubsub_topic.incoming_dead_letter.name
}

output "incoming_dead_letter_subscription" {
  description = "Name of the pull subscription that keeps the bucket notification dead letters."
  value       = google_pubsub_subscription.incoming_dead_letter.name
}

output "incoming_topic_id" {
  description = "Full path (projects/PROJECT/topics/TOPIC) of the topic that receives the input bucket's notifications."
  value       = google_pubsub_topic.incoming.id
}

output "secret_ids" {
  description = "Secret Manager secret ids of this partner that need a version before the services start."
  value = concat(
    google_secret_manager_secret.webhook_secrets[*].secret_id,
    google_secret_manager_secret.bearer_tokens[*].secret_id,
    google_secret_manager_secret.signing_secret[*].secret_id,
  )
}
