#!/usr/bin/env bash
# The air-gapped base image: a Debian bookworm root filesystem with the distribution's Python 3.11,
# made by mmdebstrap from Debian's package archive (no container registry), then `docker import`.
# It stands in for python:3.11-slim-bookworm where no registry can be reached; the Dockerfile's
# PYTHON_IMAGE build argument takes either.
#
#   bash infra/docker/base-image.sh [TAG]     # default flight-mlops-base:bookworm-py3.11
#
# Reproducible: SOURCE_DATE_EPOCH fixes the file times mmdebstrap writes; the package set is fixed
# below (the archive's versions of the day). Skips the build when TAG already exists.
set -euo pipefail
TAG=${1:-flight-mlops-base:bookworm-py3.11}
if docker image inspect "$TAG" >/dev/null 2>&1; then echo "$TAG (present)"; exit 0; fi
PACKAGES=python3.11,python3.11-venv,python-is-python3,ca-certificates,libgomp1,passwd,tzdata
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}  # 2025-01-01
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  bookworm "$tmp/rootfs.tar" "${MMDEBSTRAP_MIRROR:-http://deb.debian.org/debian}"
docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$tmp/rootfs.tar" "$TAG" >/dev/null
echo "$TAG (built in $(( $(date +%s) - start )) s, $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
