#!/usr/bin/env bash
# A wheel of every pinned runtime dependency of the project in wheelhouse/, for an image build
# with no network (`docker build --network none`). Uses the host's pip and its configured index
# (torch's CPU wheel from the machine's local find-links, as `make setup`). Skipped when the
# wheelhouse was made from the same requirements.lock and pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=wheelhouse
key=$(cat requirements.lock pyproject.toml "$0" | sha256sum | cut -c1-16)
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$key" ]; then
  echo "wheelhouse: up to date ($(ls "$OUT"/*.whl | wc -l) wheels)"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
grep -v -E '^(flight-mlops|-e )' requirements.lock > "$tmp/constraints.txt"
rm -f "$OUT"/*.whl "$OUT/.stamp"
start=$(date +%s)
# the project's runtime dependencies (not [dev]) at the lock's versions, plus the installers
# plus what only the image's Python needs: Debian bookworm's 3.11.2 is below redis's
# `async-timeout; python_full_version < "3.11.3"` marker, the host's 3.11 may not be.
IMAGE_ONLY=(async-timeout==5.0.1)
"$PY" -m pip wheel --quiet --wheel-dir "$OUT" -c "$tmp/constraints.txt" . pip setuptools wheel \
  "${IMAGE_ONLY[@]}" \
  >"$tmp/pip.log" 2>&1 || { grep -v "is ignored: it is neither" "$tmp/pip.log" >&2; exit 1; }
rm -f "$OUT"/flight_mlops-*.whl
echo "$key" > "$OUT/.stamp"
echo "wheelhouse: $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1), $(( $(date +%s) - start )) s"
