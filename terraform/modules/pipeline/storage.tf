resource "google_storage_bucket" "archive" {
  #checkov:skip=CKV_GCP_62:Access to archived results is recorded by Cloud Audit Logs (Data Access logs); legacy usage logs would add a second bucket to protect.
  #checkov:skip=CKV_GCP_78:The results sink writes each archive object once with ifGenerationMatch=0, so there is no older version to keep.
  project                     = var.project_id
  name                        = local.archive_bucket_name
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = false
  }

  lifecycle_rule {
    condition {
      age = var.archive_retention_days
    }

    action {
      type = "Delete"
    }
  }
}
