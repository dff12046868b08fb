output "image_repository" {
  description = "Registry path of the Docker repository, REGION-docker.pkg.dev/PROJECT/REPOSITORY, without image name or tag."
  value       = google_artifact_registry_repository.images.registry_uri
}

output "results_topic_id" {
  description = "Full path (projects/PROJECT/topics/TOPIC) of the topic the inbound receivers publish to."
  value       = google_pubsub_topic.results.id
}

output "results_dead_letter_topic" {
  description = "Name of the dead-letter topic of the results push subscription."
  value       = google_pubsub_topic.results_dead_letter.name
}

output "results_dead_letter_subscription" {
  description = "Name of the pull subscription that keeps the results dead letters."
  value       = google_pubsub_subscription.results_dead_letter.name
}

output "dataset_id" {
  description = "BigQuery dataset id."
  value       = google_bigquery_dataset.enrichment.dataset_id
}

output "results_table_id" {
  description = "BigQuery results table as PROJECT.DATASET.TABLE."
  value       = "${var.project_id}.${google_bigquery_dataset.enrichment.dataset_id}.${google_bigquery_table.results.table_id}"
}

output "deliveries_table" {
  description = "Table id (without project and dataset) of the deliveries table, the sender's DELIVERIES_TABLE."
  value       = google_bigquery_table.deliveries.table_id
}

output "deliveries_table_id" {
  description = "BigQuery deliveries table as PROJECT.DATASET.TABLE."
  value       = "${var.project_id}.${google_bigquery_dataset.enrichment.dataset_id}.${google_bigquery_table.deliveries.table_id}"
}

output "latest_results_view_id" {
  description = "BigQuery view of the newest result per tenant's e-mail as PROJECT.DATASET.VIEW."
  value       = "${var.project_id}.${google_bigquery_dataset.enrichment.dataset_id}.${google_bigquery_table.latest_results.table_id}"
}

output "archive_bucket_name" {
  description = "Name of the bucket that archives every result."
  value       = google_storage_bucket.archive.name
}

output "log_hash_key_secret_id" {
  description = "Secret Manager secret id of LOG_HASH_KEY, shared by all functions."
  value       = google_secret_manager_secret.log_hash_key.secret_id
}

output "pubsub_service_agent_member" {
  description = "IAM member of the project's Pub/Sub service agent."
  value       = local.pubsub_service_agent_member
}

output "storage_service_agent_member" {
  description = "IAM member of the project's Cloud Storage service agent, which publishes bucket notifications."
  value       = data.google_storage_project_service_account.gcs.member
}

output "sink_url" {
  description = "URL of the results sink service; null when deploy_services is false."
  value       = one(google_cloud_run_v2_service.sink[*].uri)
}
