"""Helpers of the infrastructure tests: where infra/ is, the Kubernetes version, the renderer."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import REPO_ROOT

INFRA = REPO_ROOT / "infra"
OVERLAYS = ("staging", "prod")
# Every rendered manifest and step Job is validated against this Kubernetes version's OpenAPI
# schema (strict: unknown fields fail), offline, with the kubernetes-validate package.
KUBERNETES_VERSION = "1.33.0"


def kubectl() -> str:
    """kubectl for `kubectl kustomize` (offline). Missing: skipped on a laptop, a failure in CI."""
    found = shutil.which("kubectl")
    if found is None:
        message = "kubectl is not installed (`make setup` installs Debian's kubectl package)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def render(folder: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"kubectl kustomize {folder} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]
