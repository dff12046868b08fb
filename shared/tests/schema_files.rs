//! Keeps the Rust row types, the BigQuery schema files, the table layouts and the view
//! template in step.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use enrichment_payload::schemas::{
    self, DELIVERIES_LAYOUT, RESULTS_LAYOUT, SchemaField, TableLayout,
};
use enrichment_payload::{DeliveryRow, DeliveryStatus, EnrichmentResult, ResultRecord, ResultRow};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn time(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, second).unwrap()
}

fn result_row(full: bool) -> Value {
    let body = if full {
        json!({
            "input_email": "jane.doe@example.com",
            "work_email": "jane@acme.io",
            "phone_number": "+1234567890",
            "linkedin_url": "https://linkedin.com/in/user",
            "name": "Jane Doe",
            "company_domain": "company.com",
            "tenant_id": "tenant-1",
            "score": 1
        })
    } else {
        json!({"input_email": "jane.doe@example.com"})
    };
    let result = EnrichmentResult::from_json(&body).unwrap();
    let record = ResultRecord::new("acme", "msg_1", time(1), result);
    ResultRow::from_record(&record, "42", time(2), time(3)).to_json()
}

fn delivery_row(full: bool) -> Value {
    let optional = |value: &str| full.then(|| value.to_owned());
    DeliveryRow {
        delivery_id: "msg_1".to_owned(),
        tenant_id: optional("tenant-1"),
        partner_id: "acme".to_owned(),
        source_bucket: "uploads".to_owned(),
        source_object: "incoming/tenant-1/a.csv".to_owned(),
        source_generation: 1_714_564_800_123_456,
        input_email: "jane.doe@example.com".to_owned(),
        input_email_hash: "3f2a9c1b".to_owned(),
        status: DeliveryStatus::Delivered,
        attempts: 1,
        last_http_status: full.then_some(200),
        error: optional("none"),
        created_at: time(0),
        finished_at: time(1),
    }
    .to_json()
}

/// Checks one serialised row against a schema: the same column names, every value of the
/// column's type, and nulls exactly in the NULLABLE columns of a row whose optional values
/// are all absent.
fn check_row_matches_schema(table: &str, schema: &[SchemaField], full: &Value, minimal: &Value) {
    let schema_names: BTreeSet<&str> = schema.iter().map(|f| f.name.as_str()).collect();
    for row in [full, minimal] {
        let row_names: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            row_names, schema_names,
            "{table}: row columns differ from the schema file"
        );
    }

    for field in schema {
        let name = field.name.as_str();
        let value = &full[name];
        let type_ok = match field.field_type.as_str() {
            "STRING" => value.is_string(),
            "INTEGER" => value.is_i64(),
            "TIMESTAMP" => value.as_str().is_some_and(|text| {
                DateTime::parse_from_rfc3339(text).is_ok() && text.ends_with('Z')
            }),
            "JSON" => value
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .is_some_and(|parsed| parsed.is_object()),
            other => panic!("{table}.{name}: type {other} has no check here"),
        };
        assert!(
            type_ok,
            "{table}.{name}: {value} is not a {}",
            field.field_type
        );

        let null_in_minimal = minimal[name].is_null();
        match field.mode.as_str() {
            "REQUIRED" => assert!(
                !null_in_minimal,
                "{table}.{name} is REQUIRED but the row has null"
            ),
            "NULLABLE" => assert!(
                null_in_minimal,
                "{table}.{name} is NULLABLE but the row type always sets it"
            ),
            other => panic!("{table}.{name}: unexpected mode {other}"),
        }
        assert!(
            !field.description.trim().is_empty(),
            "{table}.{name} has no description"
        );
    }
}

#[test]
fn result_row_matches_results_json() {
    check_row_matches_schema(
        "results",
        &schemas::results_schema(),
        &result_row(true),
        &result_row(false),
    );
}

#[test]
fn delivery_row_matches_deliveries_json() {
    check_row_matches_schema(
        "deliveries",
        &schemas::deliveries_schema(),
        &delivery_row(true),
        &delivery_row(false),
    );
}

fn check_layout(table: &str, layout: &TableLayout, schema: &[SchemaField]) {
    let tables: Value = serde_json::from_str(schemas::TABLES_JSON).unwrap();
    let entry = &tables[table];
    assert_eq!(entry["schema_file"], json!(format!("{table}.json")));
    assert_eq!(
        entry["time_partitioning"],
        json!({"type": layout.partition_type, "field": layout.partition_field})
    );
    assert_eq!(entry["clustering"], json!(layout.clustering_fields));

    let partition = schema
        .iter()
        .find(|f| f.name == layout.partition_field)
        .unwrap();
    assert_eq!(
        (partition.field_type.as_str(), partition.mode.as_str()),
        ("TIMESTAMP", "REQUIRED")
    );
    for column in layout.clustering_fields {
        assert!(
            schema.iter().any(|f| f.name == *column),
            "{table}: no clustering column {column}"
        );
    }
}

#[test]
fn table_layouts_match_tables_json() {
    check_layout("results", &RESULTS_LAYOUT, &schemas::results_schema());
    check_layout(
        "deliveries",
        &DELIVERIES_LAYOUT,
        &schemas::deliveries_schema(),
    );

    let tables: Value = serde_json::from_str(schemas::TABLES_JSON).unwrap();
    let names: Vec<&String> = tables.as_object().unwrap().keys().collect();
    assert_eq!(names, vec!["deliveries", "results"]);
}

#[test]
fn layouts_have_expected_columns() {
    assert_eq!(RESULTS_LAYOUT.partition_field, "received_at");
    assert_eq!(
        RESULTS_LAYOUT.clustering_fields,
        &["partner_id", "input_email"]
    );
    assert_eq!(DELIVERIES_LAYOUT.partition_field, "created_at");
    assert_eq!(
        DELIVERIES_LAYOUT.clustering_fields,
        &["partner_id", "tenant_id"]
    );
}

#[test]
fn view_template_uses_two_placeholders() {
    let template = schemas::LATEST_RESULTS_VIEW_SQL;
    let mut placeholders = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').unwrap() + start;
        placeholders.insert(&rest[start..=end]);
        rest = &rest[end + 1..];
    }
    assert_eq!(
        placeholders,
        BTreeSet::from(["${dataset_id}", "${project_id}"])
    );
    assert!(
        !template.contains("%{"),
        "templatefile() would read %{{ as a directive"
    );
}

#[test]
fn render_view_sql_fills_both_tables() {
    let sql = schemas::render_view_sql("my-project", "enrichment");
    assert!(!sql.contains("${"), "{sql}");
    assert_eq!(sql.matches("`my-project.enrichment.results`").count(), 1);
    assert_eq!(sql.matches("`my-project.enrichment.deliveries`").count(), 1);
}
