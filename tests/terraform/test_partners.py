"""Per-partner resources: one partner module instance per map entry, keyed by partner id."""

from __future__ import annotations

import json
import re

import pytest

import tfconfig

PARTNER_MODULE_SOURCE = "../../modules/partner"

# Partner fields and their defaults: the outbound policy of the original integration (30 s
# timeout, 3 retries from 2 s, one request per second) and signature authentication.
PARTNER_FIELDS = {
    "webhook_url": "string",
    "requests_per_second": "optional(number, 1)",
    "max_retries": "optional(number, 3)",
    "retry_base_delay_secs": "optional(number, 2)",
    "request_timeout_secs": "optional(number, 30)",
    "inbound_auth_mode": 'optional(string, "signature")',
    "sign_requests": "optional(bool, true)",
    "deploy_services": "optional(bool, true)",
}

# Attributes that name a resource in a namespace shared by all partners of a project (or, for
# buckets, by all of Cloud Storage).
NAME_ATTRIBUTES = ("name", "account_id", "secret_id")


def _partner_fields(environment) -> dict[str, str]:
    type_expression = environment.variables["partners"]["type"]
    match = re.fullmatch(r"\$\{map\(object\(\{(.*)\}\)\)\}", type_expression, re.S)
    assert match, f"partners must be map(object({{...}})), found {type_expression}"
    fields = {}
    for part in re.split(r",\s*(?![^()]*\))", match.group(1)):
        name, _, field_type = part.partition("=")
        fields[name.strip()] = field_type.strip()
    return fields


def _partner_id_pattern(environment) -> str:
    validation = tfconfig.single_block(environment.variables["partners"], "validation")
    match = re.search(r'regex\(\\?"(.+?)\\?", id\)', validation["condition"])
    assert match, f"no regex(...) in the partners validation: {validation['condition']}"
    return match.group(1).replace("\\\\", "\\")


def _depends_on_partner_id(expression: str, partner) -> bool:
    """Whether an expression uses var.partner_id directly or through a local."""
    if "var.partner_id" in expression:
        return True
    for reference in tfconfig.references(expression):
        if reference.startswith("local."):
            local = partner.locals.get(reference.removeprefix("local."))
            if local is not None and _depends_on_partner_id(str(local), partner):
                return True
    return False


def test_partner_module_keyed_by_partner(environment):
    calls = {
        name: call for name, call in environment.modules.items() if call["source"] == PARTNER_MODULE_SOURCE
    }
    assert list(calls) == ["partner"]
    call = calls["partner"]
    assert call["for_each"] == "${var.partners}"
    assert call["partner_id"] == "${each.key}"


def test_partner_module_reads_all_fields(environment):
    call = environment.modules["partner"]
    used = set(re.findall(r"each\.value\.([a-z_]+)", json.dumps(call)))
    assert used == set(PARTNER_FIELDS)


def test_partners_variable_fields_and_defaults(environment):
    assert _partner_fields(environment) == PARTNER_FIELDS


def test_shared_resources_not_per_partner(pipeline, environment):
    for configuration in (pipeline, environment):
        for resource in configuration.resources:
            text = json.dumps(resource.body)
            assert "var.partners" not in text, f"{resource.address} iterates over the partners"
            assert "var.partner_id" not in text, f"{resource.address} belongs to one partner"
    assert "partner_id" not in pipeline.variables
    assert "partners" not in pipeline.variables


def test_partner_names_include_partner_id(partner):
    named = 0
    for resource in partner.resources:
        if resource.type.endswith(("_iam_member", "_iam_binding")):
            # Grants are attached to the partner's own resources and have no name of their own.
            continue
        for attribute in NAME_ATTRIBUTES:
            if attribute in resource.body:
                named += 1
                assert _depends_on_partner_id(str(resource.body[attribute]), partner), (
                    f"{resource.address}.{attribute} = {resource.body[attribute]} does not contain "
                    "the partner id, so two partners would collide"
                )
    assert named >= 12


def test_partner_id_patterns_agree(environment, partner):
    module_validation = tfconfig.single_block(partner.variables["partner_id"], "validation")
    assert _partner_id_pattern(environment) in module_validation["condition"].replace("\\\\", "\\")


@pytest.mark.parametrize(
    ("partner_id", "valid"),
    [
        ("acme", True),
        ("a1", True),
        ("acme-data-co-123", True),
        ("a", False),
        ("acme-data-co-1234", False),
        ("Acme", False),
        ("1acme", False),
        ("acme-", False),
        ("acme_data", False),
    ],
)
def test_partner_id_pattern(partner_id, valid, environment):
    assert bool(re.fullmatch(_partner_id_pattern(environment), partner_id)) is valid


def test_longest_names_fit_google_limits(partner):
    longest_partner_id = "a" * 16
    for resource in partner.resources_of_type("google_service_account"):
        account_id = resource.body["account_id"].replace("${var.partner_id}", longest_partner_id)
        assert len(account_id) <= 30, f"{resource.address}: {account_id} is longer than 30 characters"
    for name in ("receiver_service_name", "sender_service_name"):
        service_name = partner.locals[name].replace("${var.partner_id}", longest_partner_id)
        assert len(service_name) <= 49, f"Cloud Run service name {service_name} is too long"
    bucket = partner.locals["input_bucket_name"].replace("${var.partner_id}", longest_partner_id)
    bucket = bucket.replace("${var.project_id}", "p" * 30)
    assert len(bucket) <= 63, f"bucket name {bucket} is longer than 63 characters"


def test_tfvars_example_is_valid(environment):
    tfvars = tfconfig.load_file(tfconfig.EXAMPLE_ENVIRONMENT / "terraform.tfvars.example")
    assert set(tfvars) <= set(environment.variables), "terraform.tfvars.example sets undeclared variables"
    pattern = _partner_id_pattern(environment)
    assert tfvars["partners"], "the example declares no partner"
    for partner_id, settings in tfvars["partners"].items():
        assert re.fullmatch(pattern, partner_id), f"invalid partner id {partner_id}"
        assert set(settings) <= set(PARTNER_FIELDS), f"{partner_id}: unknown fields"
        assert settings["webhook_url"].startswith("https://")
