output "webhook_urls" {
  description = "Inbound receiver URL of each partner, keyed by partner id; give each partner its own."
  value       = { for id, partner in module.partner : id => partner.webhook_url }
}

output "input_buckets" {
  description = "Input bucket of each partner, keyed by partner id; upload files to incoming/<tenant_id>/."
  value       = { for id, partner in module.partner : id => partner.input_bucket_name }
}

output "archive_bucket" {
  description = "Bucket that archives every result."
  value       = module.pipeline.archive_bucket_name
}

output "results_table_id" {
  description = "BigQuery results table as PROJECT.DATASET.TABLE."
  value       = module.pipeline.results_table_id
}

output "deliveries_table_id" {
  description = "BigQuery deliveries table as PROJECT.DATASET.TABLE."
  value       = module.pipeline.deliveries_table_id
}

output "latest_results_view_id" {
  description = "BigQuery view of the newest result per tenant's e-mail as PROJECT.DATASET.VIEW."
  value       = module.pipeline.latest_results_view_id
}

output "image_repository" {
  description = "Artifact Registry path that deploy/build-image.sh pushes to."
  value       = "${module.pipeline.image_repository}/${var.image_name}"
}

output "secret_ids" {
  description = "Secret Manager secrets that need a version (gcloud secrets versions add) before the services can start."
  value = concat(
    [module.pipeline.log_hash_key_secret_id],
    flatten([for id, partner in module.partner : partner.secret_ids]),
  )
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions that keep dead letters, mapped to the topic to replay them to."
  value = merge(
    { (module.pipeline.results_dead_letter_subscription) = module.pipeline.results_topic_id },
    { for id, partner in module.partner : partner.incoming_dead_letter_subscription => partner.incoming_topic_id },
  )
}
