"""The BigQuery files that Terraform reads exist, are valid and match the Rust row types."""

from __future__ import annotations

import json
import re

import pytest

import tfconfig

TABLE_FILES = {"results": "results.json", "deliveries": "deliveries.json"}
RUST_ROW_TYPES = {"results": "ResultRow", "deliveries": "DeliveryRow"}

# Column types of BigQuery's JSON schema format, with the legacy aliases it accepts.
COLUMN_TYPES = {
    "STRING", "BYTES", "INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC",
    "BOOLEAN", "BOOL", "TIMESTAMP", "DATE", "TIME", "DATETIME", "GEOGRAPHY", "JSON",
    "RECORD", "STRUCT", "INTERVAL", "RANGE",
}
MODES = {"NULLABLE", "REQUIRED", "REPEATED"}
FIELD_KEYS = {
    "name", "type", "mode", "description", "fields", "policyTags", "maxLength", "precision",
    "scale", "roundingMode", "collation", "defaultValueExpression", "rangeElementType",
}
# BigQuery clusters only on top-level, non-repeated columns of these types.
CLUSTERING_TYPES = {
    "STRING", "INTEGER", "INT64", "NUMERIC", "BIGNUMERIC", "BOOLEAN", "BOOL", "TIMESTAMP",
    "DATE", "DATETIME", "GEOGRAPHY", "RANGE",
}


def _referenced_files(configuration: tfconfig.Configuration) -> list[str]:
    """Return the paths in file(...) and templatefile(...) calls, with locals substituted."""
    paths = []
    for resource in configuration.resources:
        text = json.dumps(resource.body)
        for match in re.finditer(r"\b(?:file|templatefile)\(\\?\"([^\"\\]+)\\?\"", text):
            path = match.group(1)
            for name, value in configuration.locals.items():
                path = path.replace("${local.%s}" % name, str(value))
            paths.append(path.replace("${path.module}", str(configuration.directory)))
    return paths


def _check_fields(fields, where: str) -> None:
    assert isinstance(fields, list) and fields, f"{where}: a schema is a non-empty JSON array"
    seen = set()
    for field in fields:
        assert isinstance(field, dict), f"{where}: {field!r} is not an object"
        name = field.get("name", "")
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,299}", name), f"{where}: invalid column name {name!r}"
        assert name.lower() not in seen, f"{where}: column {name} appears twice"
        seen.add(name.lower())
        assert set(field) <= FIELD_KEYS, f"{where}.{name}: unknown keys {sorted(set(field) - FIELD_KEYS)}"
        assert field.get("type") in COLUMN_TYPES, f"{where}.{name}: invalid type {field.get('type')!r}"
        assert field.get("mode", "NULLABLE") in MODES, f"{where}.{name}: invalid mode {field.get('mode')!r}"
        if field["type"] in ("RECORD", "STRUCT"):
            _check_fields(field.get("fields"), f"{where}.{name}")
        else:
            assert "fields" not in field, f"{where}.{name}: only RECORD columns have fields"


def _schema(table: str) -> list[dict]:
    return json.loads((tfconfig.SCHEMA_DIR / TABLE_FILES[table]).read_text(encoding="utf-8"))


def test_files_read_by_terraform_exist(pipeline):
    paths = _referenced_files(pipeline)
    expected = {
        tfconfig.SCHEMA_DIR / "results.json",
        tfconfig.SCHEMA_DIR / "deliveries.json",
        tfconfig.SCHEMA_DIR / "latest_results.sql",
    }
    assert {tfconfig.pathlib.Path(p).resolve() for p in paths} == expected
    for path in expected:
        assert path.is_file(), f"Terraform reads {path.relative_to(tfconfig.REPO_ROOT)}, which does not exist"


@pytest.mark.parametrize("table", sorted(TABLE_FILES))
def test_schema_file_is_a_bigquery_schema(table):
    _check_fields(_schema(table), TABLE_FILES[table])


@pytest.mark.parametrize("table", sorted(TABLE_FILES))
def test_schema_columns_match_rust_row(table):
    rust_fields = tfconfig.rust_struct_fields(tfconfig.REPO_ROOT / "shared" / "src" / "rows.rs", RUST_ROW_TYPES[table])
    schema_names = [field["name"] for field in _schema(table)]
    assert sorted(rust_fields) == sorted(schema_names)


@pytest.mark.parametrize("table", sorted(TABLE_FILES))
def test_table_layout_matches_tables_json(table, pipeline):
    layouts = json.loads((tfconfig.SCHEMA_DIR / "tables.json").read_text(encoding="utf-8"))
    layout = layouts[table]
    resource = pipeline.resource("google_bigquery_table", table)
    partitioning = tfconfig.single_block(resource.body, "time_partitioning")

    assert resource.body["table_id"] == table
    assert resource.body["schema"] == '${file("${local.schema_dir}/%s")}' % layout["schema_file"]
    assert partitioning["type"] == layout["time_partitioning"]["type"]
    assert partitioning["field"] == layout["time_partitioning"]["field"]
    assert partitioning["expiration_ms"] == "${local.partition_expiration_ms}"
    assert resource.body["clustering"] == layout["clustering"]


@pytest.mark.parametrize("table", sorted(TABLE_FILES))
def test_partition_and_cluster_columns_exist(table, pipeline):
    columns = {field["name"]: field for field in _schema(table)}
    resource = pipeline.resource("google_bigquery_table", table)

    partition_field = tfconfig.single_block(resource.body, "time_partitioning")["field"]
    assert partition_field in columns, f"{table}: partition column {partition_field} is not in the schema"
    assert columns[partition_field]["type"] in ("TIMESTAMP", "DATE", "DATETIME")
    assert columns[partition_field].get("mode", "NULLABLE") != "REPEATED"

    clustering = resource.body["clustering"]
    assert 1 <= len(clustering) <= 4, "BigQuery clusters on one to four columns"
    for name in clustering:
        assert name in columns, f"{table}: clustering column {name} is not in the schema"
        assert columns[name]["type"] in CLUSTERING_TYPES, f"{table}: cannot cluster on {name}"
        assert columns[name].get("mode", "NULLABLE") != "REPEATED"


def test_view_template_placeholders(pipeline):
    sql = (tfconfig.SCHEMA_DIR / "latest_results.sql").read_text(encoding="utf-8")
    # templatefile() fails on any ${...} whose variable it is not given.
    placeholders = set(re.findall(r"\$\{([^}]*)\}", sql))
    assert placeholders == {"project_id", "dataset_id"}

    view = tfconfig.single_block(pipeline.resource("google_bigquery_table", "latest_results").body, "view")
    assert view["use_legacy_sql"] is False
    assert "project_id = var.project_id" in view["query"]
    assert "dataset_id = google_bigquery_dataset.enrichment.dataset_id" in view["query"]

    tables = set(re.findall(r"`\$\{project_id\}\.\$\{dataset_id\}\.([A-Za-z0-9_]+)`", sql))
    assert tables == set(TABLE_FILES)
