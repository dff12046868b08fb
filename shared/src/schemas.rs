//! BigQuery schema files and the `latest_results` view, shared with Terraform.
//!
//! The files live in `shared/schemas/bigquery/`: `results.json` and `deliveries.json` in
//! BigQuery's JSON schema format, `tables.json` with each table's partitioning and
//! clustering, and `latest_results.sql`, a template whose `${project_id}` and `${dataset_id}`
//! placeholders Terraform's `templatefile()` fills in as [`render_view_sql`] does.

use serde::Deserialize;

/// Default table and view names inside the dataset.
pub const RESULTS_TABLE: &str = "results";
pub const DELIVERIES_TABLE: &str = "deliveries";
pub const LATEST_RESULTS_VIEW: &str = "latest_results";

/// Schema of the `results` table (BigQuery JSON schema: an array of fields).
pub const RESULTS_SCHEMA_JSON: &str = include_str!("../schemas/bigquery/results.json");
/// Schema of the `deliveries` table.
pub const DELIVERIES_SCHEMA_JSON: &str = include_str!("../schemas/bigquery/deliveries.json");
/// Partitioning and clustering of both tables, keyed by table name.
pub const TABLES_JSON: &str = include_str!("../schemas/bigquery/tables.json");
/// SQL template of the `latest_results` view, with `${project_id}` and `${dataset_id}`.
pub const LATEST_RESULTS_VIEW_SQL: &str = include_str!("../schemas/bigquery/latest_results.sql");

/// Time partitioning and clustering of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLayout {
    /// Partition type, as BigQuery's `timePartitioning.type`.
    pub partition_type: &'static str,
    /// The TIMESTAMP column the table is partitioned on.
    pub partition_field: &'static str,
    /// Clustering columns, in order.
    pub clustering_fields: &'static [&'static str],
}

/// `results`: partitioned by day on `received_at`, clustered by `partner_id, input_email`.
pub const RESULTS_LAYOUT: TableLayout = TableLayout {
    partition_type: "DAY",
    partition_field: "received_at",
    clustering_fields: &["partner_id", "input_email"],
};

/// `deliveries`: partitioned by day on `created_at`, clustered by `partner_id, tenant_id`.
pub const DELIVERIES_LAYOUT: TableLayout = TableLayout {
    partition_type: "DAY",
    partition_field: "created_at",
    clustering_fields: &["partner_id", "tenant_id"],
};

/// One column of a BigQuery JSON schema file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: String,
    /// `REQUIRED` or `NULLABLE`.
    pub mode: String,
    pub description: String,
}

/// Parses [`RESULTS_SCHEMA_JSON`].
pub fn results_schema() -> Vec<SchemaField> {
    serde_json::from_str(RESULTS_SCHEMA_JSON).expect("results.json is checked by the tests")
}

/// Parses [`DELIVERIES_SCHEMA_JSON`].
pub fn deliveries_schema() -> Vec<SchemaField> {
    serde_json::from_str(DELIVERIES_SCHEMA_JSON).expect("deliveries.json is checked by the tests")
}

/// Fills the view template for one project and dataset.
pub fn render_view_sql(project_id: &str, dataset_id: &str) -> String {
    LATEST_RESULTS_VIEW_SQL
        .replace("${project_id}", project_id)
        .replace("${dataset_id}", dataset_id)
}
