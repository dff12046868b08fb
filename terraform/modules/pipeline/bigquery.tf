locals {
  partition_expiration_ms = var.partition_expiration_days == 0 ? null : var.partition_expiration_days * 86400000
}

resource "google_bigquery_dataset" "enrichment" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption keys are used; a customer-managed key would need a Cloud KMS key ring that this module does not create.
  project                    = var.project_id
  dataset_id                 = var.dataset_id
  location                   = var.bigquery_location
  description                = "Partner enrichment results and outbound delivery records."
  labels                     = local.labels
  delete_contents_on_destroy = false
}

# One row per Pub/Sub message on the results topic.
resource "google_bigquery_table" "results" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption keys are used; a customer-managed key would need a Cloud KMS key ring that this module does not create.
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.enrichment.dataset_id
  table_id            = "results"
  description         = "One row per enrichment result received from a partner."
  labels              = local.labels
  deletion_protection = var.deletion_protection
  schema              = file("${local.schema_dir}/results.json")
  clustering          = ["partner_id", "input_email"]

  time_partitioning {
    type          = "DAY"
    field         = "received_at"
    expiration_ms = local.partition_expiration_ms
  }
}

# One row per e-mail sent to a partner.
resource "google_bigquery_table" "deliveries" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption keys are used; a customer-managed key would need a Cloud KMS key ring that this module does not create.
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.enrichment.dataset_id
  table_id            = "deliveries"
  description         = "One row per outbound enrichment request: status, attempts and times."
  labels              = local.labels
  deletion_protection = var.deletion_protection
  schema              = file("${local.schema_dir}/deliveries.json")
  clustering          = ["partner_id", "tenant_id"]

  time_partitioning {
    type          = "DAY"
    field         = "created_at"
    expiration_ms = local.partition_expiration_ms
  }
}

# The newest result for each tenant's e-mail.
resource "google_bigquery_table" "latest_results" {
  #checkov:skip=CKV_GCP_80:A view stores no data, so there is nothing to encrypt with a customer-managed key.
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.enrichment.dataset_id
  table_id            = "latest_results"
  description         = "Newest enrichment result for each tenant's e-mail."
  labels              = local.labels
  deletion_protection = var.deletion_protection

  view {
    query = templatefile("${local.schema_dir}/latest_results.sql", {
      project_id = var.project_id
      dataset_id = google_bigquery_dataset.enrichment.dataset_id
    })
    use_legacy_sql = false
  }

  # BigQuery checks at creation that the tables the view reads exist.
  depends_on = [google_bigquery_table.results, google_bigquery_table.deliveries]
}
