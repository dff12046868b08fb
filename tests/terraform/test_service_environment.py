"""The Cloud Run services set every environment variable their function needs at start-up."""

from __future__ import annotations

import dataclasses
import re

import pytest

import tfconfig

# Secrets reach the functions only through Secret Manager references.
SECRET_VARS = {"LOG_HASH_KEY", "WEBHOOK_SECRETS", "BEARER_TOKENS", "PARTNER_SIGNING_SECRET"}

# The configuration names that deployment relies on, per function: set on every deployment
# (always) or only in some partner configurations (conditional).
EXPECTED = {
    "inbound-receiver": {
        "always": {
            "GOOGLE_CLOUD_PROJECT",
            "PARTNER_ID",
            "RESULTS_TOPIC",
            "AUTH_MODE",
            "SIGNATURE_TOLERANCE_SECS",
            "MAX_BODY_BYTES",
            "LOG_HASH_KEY",
        },
        "conditional": {"WEBHOOK_SECRETS", "BEARER_TOKENS"},
    },
    "outbound-sender": {
        "always": {
            "GOOGLE_CLOUD_PROJECT",
            "PARTNER_ID",
            "PARTNER_WEBHOOK_URL",
            "DELIVERY_QUEUE",
            "CLOUD_TASKS_QUEUE",
            "DELIVER_URL",
            "DELIVER_SERVICE_ACCOUNT",
            "REQUEST_TIMEOUT_SECS",
            "MAX_RETRIES",
            "RETRY_BASE_DELAY_SECS",
            "MIN_REQUEST_INTERVAL_MS",
            "BIGQUERY_DATASET",
            "DELIVERIES_TABLE",
            "INPUT_PREFIX",
            "STATE_BUCKET",
            "LOG_HASH_KEY",
        },
        "conditional": {"PARTNER_SIGNING_SECRET"},
    },
    "results-sink": {
        "always": {
            "GOOGLE_CLOUD_PROJECT",
            "BIGQUERY_DATASET",
            "RESULTS_TABLE",
            "ARCHIVE_BUCKET",
            "BATCH_MAX_ROWS",
            "BATCH_MAX_WAIT_MS",
            "LOG_HASH_KEY",
        },
        "conditional": set(),
    },
}


@dataclasses.dataclass
class ServiceEnvironment:
    """The env entries of one Cloud Run service's container."""

    address: str
    # Name to env block, for the env blocks that every deployment has.
    always: dict[str, dict]
    # Name to content block, for the env blocks inside `dynamic "env"` blocks.
    conditional: dict[str, dict]


def _function_services(configurations) -> dict[str, ServiceEnvironment]:
    """Map each function crate name to the env of the Cloud Run service that runs it.

    A service runs the function that its container command names, /usr/local/bin/CRATE.
    """
    services = {}
    for configuration in configurations:
        for service in configuration.resources_of_type("google_cloud_run_v2_service"):
            template = tfconfig.single_block(service.body, "template")
            container = tfconfig.single_block(template, "containers")
            command = container["command"]
            assert isinstance(command, list) and len(command) == 1, f"{service.address}: command {command}"
            crate = command[0].removeprefix("/usr/local/bin/")
            assert crate not in services, f"two services run {crate}"

            always = {env["name"]: env for env in tfconfig.blocks(container, "env")}
            conditional = {}
            for dynamic in tfconfig.dynamic_blocks(container, "env"):
                content = tfconfig.single_block(dynamic, "content")
                conditional[content["name"]] = content
            services[crate] = ServiceEnvironment(service.address, always, conditional)
    return services


@pytest.fixture(scope="module")
def function_services(configurations) -> dict[str, ServiceEnvironment]:
    return _function_services(configurations)


def test_each_function_has_one_service(function_services):
    assert sorted(function_services) == sorted(EXPECTED)


@pytest.mark.parametrize("crate", sorted(EXPECTED))
def test_required_vars_are_set(crate, function_services):
    required = tfconfig.required_vars(crate)
    assert required, f"functions/{crate}/src/config.rs lists no REQUIRED_VARS"
    service = function_services[crate]
    missing = sorted(set(required) - set(service.always))
    assert missing == [], (
        f"{service.address} does not always set {missing}, which {crate} requires at start-up"
    )


@pytest.mark.parametrize("crate", sorted(EXPECTED))
def test_configuration_names_are_set(crate, function_services):
    service = function_services[crate]
    assert set(service.always) == EXPECTED[crate]["always"] | {"LOG_FORMAT", "RUST_LOG"}
    assert set(service.conditional) == EXPECTED[crate]["conditional"]


@pytest.mark.parametrize("crate", sorted(EXPECTED))
def test_port_is_left_to_cloud_run(crate, function_services):
    service = function_services[crate]
    assert "PORT" not in service.always
    assert "PORT" not in service.conditional


@pytest.mark.parametrize("crate", sorted(EXPECTED))
def test_secrets_come_from_secret_manager(crate, function_services):
    service = function_services[crate]
    entries = {**service.always, **service.conditional}
    for name, env in entries.items():
        if name in SECRET_VARS:
            assert "value" not in env, f"{service.address}: {name} is a plain value"
            source = tfconfig.single_block(env, "value_source")
            reference = tfconfig.single_block(source, "secret_key_ref")
            assert reference["version"] == "latest", f"{service.address}: {name}"
        else:
            assert "value_source" not in env, f"{service.address}: {name} is not a secret"


def test_sender_delivers_through_cloud_tasks(partner, function_services):
    env = function_services["outbound-sender"].always
    assert env["DELIVERY_QUEUE"]["value"] == "cloud-tasks"
    assert env["CLOUD_TASKS_QUEUE"]["value"] == "${google_cloud_tasks_queue.deliveries.id}"
    assert env["DELIVER_SERVICE_ACCOUNT"]["value"] == "${google_service_account.invoker.email}"
    assert env["INPUT_PREFIX"]["value"] == "${local.input_prefix}"
    assert partner.locals["input_prefix"] == "incoming/"
    assert env["STATE_BUCKET"]["value"] == "${google_storage_bucket.input.name}"


def test_sender_deliver_url(partner, function_services):
    # The URL must be Cloud Run's deterministic one: the service cannot read its own uri.
    env = function_services["outbound-sender"].always
    assert env["DELIVER_URL"]["value"] == "${local.sender_url}/deliver"
    assert partner.locals["sender_url"] == (
        "https://${local.sender_service_name}-${var.project_number}.${var.region}.run.app"
    )
    sender = partner.resource("google_cloud_run_v2_service", "sender")
    assert sender.body["name"] == "${local.sender_service_name}"


def test_services_wait_for_secret_access(configurations):
    # Cloud Run rejects a revision whose service account cannot read a referenced secret.
    for configuration in configurations:
        for service in configuration.resources_of_type("google_cloud_run_v2_service"):
            depends_on = " ".join(service.body.get("depends_on", []))
            assert re.search(r"google_secret_manager_secret_iam_member\.\w+", depends_on), (
                f"{service.address} does not depend on its secret accessor grants"
            )


def test_secrets_revision_label(configurations):
    # Secrets referenced as `latest` are read when an instance starts, so rotating a secret
    # needs new instances: changing this label starts a new revision of every service.
    for configuration in configurations:
        for service in configuration.resources_of_type("google_cloud_run_v2_service"):
            template = tfconfig.single_block(service.body, "template")
            assert template["labels"] == '${merge(local.labels, {"secrets-revision" = var.secrets_revision})}', (
                service.address
            )
