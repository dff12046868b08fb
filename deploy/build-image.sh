#!/usr/bin/env bash
# Builds the function image from deploy/Dockerfile and pushes it to Artifact Registry.
#
# Usage: deploy/build-image.sh [--cloud-build] [TAG]
#
#   TAG            image tag (default: the git short commit hash, with a -dirty suffix when
#                  the work tree has uncommitted changes)
#   --cloud-build  build and push on Cloud Build (deploy/cloudbuild.yaml) instead of with the
#                  local Docker engine
#
# Environment:
#   PROJECT_ID   Google Cloud project (default: the gcloud configuration's project)
#   REGION       region of the Artifact Registry repository, as Terraform's region (required)
#   REPOSITORY   repository id (default: enrichment, Terraform's artifact_repository_id)
#   IMAGE_NAME   image name in the repository (default: enrichment-functions, Terraform's
#                image_name)
#
# The last line of output is the pushed image reference; give its tag to Terraform as
# image_tag.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,20s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

use_cloud_build=0
tag=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --cloud-build)
        use_cloud_build=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        usage >&2
        die "unknown option: $1"
        ;;
    *)
        [[ -z "$tag" ]] || die "more than one TAG given: $tag and $1"
        tag=$1
        shift
        ;;
    esac
done

command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed. Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"

PROJECT_ID=${PROJECT_ID:-$(gcloud config get-value project 2>/dev/null || true)}
[[ -n "$PROJECT_ID" ]] || die "PROJECT_ID is not set and gcloud has no default project"
[[ -n "${REGION:-}" ]] || die "REGION is not set. Set it to the region of the Terraform deployment, for example REGION=europe-west1"
REPOSITORY=${REPOSITORY:-enrichment}
IMAGE_NAME=${IMAGE_NAME:-enrichment-functions}

if [[ -z "$tag" ]]; then
    tag=$(git rev-parse --short HEAD) || die "no TAG given and git cannot name the commit"
    if [[ -n "$(git status --porcelain)" ]]; then
        echo "warning: the work tree has uncommitted changes, so the image is tagged $tag-dirty" >&2
        tag="$tag-dirty"
    fi
fi
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid image tag: $tag"

image="$REGION-docker.pkg.dev/$PROJECT_ID/$REPOSITORY/$IMAGE_NAME:$tag"

if ((use_cloud_build)); then
    gcloud builds submit . \
        --project "$PROJECT_ID" \
        --config deploy/cloudbuild.yaml \
        --substitutions "_IMAGE=$image"
else
    command -v docker >/dev/null 2>&1 || die "docker is not installed. Install it, or build on Cloud Build with --cloud-build"
    # Lets docker push authenticate to Artifact Registry with the gcloud credentials.
    gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
    DOCKER_BUILDKIT=1 docker build --file deploy/Dockerfile --tag "$image" .
    docker push "$image"
fi

echo "$image"
