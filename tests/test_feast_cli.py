"""`feast -c feature_repo ...` works as a Feast user would run it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster_project.features.feast_objects import build
from tests.paths import FEATURE_REPO


def _feast(repo: Path, *args: str) -> str:
    env = {**os.environ, "MLOPS_HOME": str(repo.parent / ".mlops")}
    feast = Path(sys.executable).parent / "feast"
    out = subprocess.run(
        [str(feast), "-c", str(repo), *args],
        cwd=repo.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_feast_apply_and_list(tmp_path):
    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".mlops" / "feast").mkdir(parents=True)
    applied = _feast(repo, "apply")
    assert "flight_delay_v1" in applied
    views = _feast(repo, "feature-views", "list")
    objects = build(str(tmp_path / "features"))
    for view in [*objects.views, *objects.on_demand_views]:
        assert view.name in views
    services = _feast(repo, "feature-services", "list")
    for service in objects.services:
        assert service.name in services
    assert (tmp_path / ".mlops" / "feast" / "registry.db").exists()
