#!/usr/bin/env bash
# `make image`: the project's image built air-gapped and reproducibly.
#   1. the engine (engine.sh: docker.io + dockerd, started when down);
#   2. the base: PYTHON_IMAGE when given (e.g. python:3.11.14-slim-bookworm where a registry is
#      reachable), else the Debian root filesystem with Python 3.11 from base-image.sh (mmdebstrap);
#   3. the wheelhouse of the pinned dependencies (wheelhouse.sh, on the host, from the index);
#   4. docker build --network none (BuildKit: the Dockerfile's own .dockerignore), then the size.
# A second run with nothing changed reuses every layer. IMAGE names the tag (flight-mlops:0.1.0).
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE=${IMAGE:-flight-mlops:0.1.0}
bash infra/docker/engine.sh >/dev/null
BASE=${PYTHON_IMAGE:-flight-mlops-base:bookworm-py3.11}
if [ -z "${PYTHON_IMAGE:-}" ]; then bash infra/docker/base-image.sh "$BASE"; fi
bash infra/docker/wheelhouse.sh
# BuildKit through the CLI: Debian's docker 20.10 CLI has it built in; a newer CLI needs buildx.
DOCKER=docker
if ! docker buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; fi
start=$(date +%s)
DOCKER_BUILDKIT=1 "$DOCKER" build --network none --progress "${PROGRESS:-plain}" \
  -f infra/docker/Dockerfile --build-arg PYTHON_IMAGE="$BASE" -t "$IMAGE" . >&2
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "$IMAGE: built in $(( $(date +%s) - start )) s on $BASE, $(awk -v s="$size" 'BEGIN {printf "%.0f MB", s/1e6}')"
