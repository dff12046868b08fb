terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 8.7"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 8.7"
    }
  }

  # State holds no secret values (the secrets have no versions in Terraform), but it does hold
  # resource names and URLs. For a shared deployment keep it in a bucket, for example:
  #
  # backend "gcs" {
  #   bucket = "PROJECT_ID-terraform-state"
  #   prefix = "enrichment-webhooks"
  # }
}
