"""The package runs installed: a wheel built from the checkout, installed into a fresh virtual
environment outside it, loads the Dagster definitions and the serving app there.

The fresh environment gets the project's pinned dependencies from this test session's
environment (a path entry, not a copy: installing torch, Feast and Dagster again would take
minutes), but not its editable install of the project: ``dagster_project`` can only come from
the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

PROBE = """
import json, sys
from pathlib import Path
import dagster_project
from dagster_project import definitions
from dagster_project.platform import compute_classes, settings
from dagster_project.serving.app import create_app

app = create_app()
print(json.dumps({
    "package": dagster_project.__file__,
    "assets": len(list(definitions.defs.assets or [])),
    "jobs": sorted(j.name for j in definitions.defs.jobs or []),
    "routes": sorted({r.path for r in app.routes}),
    "profiles": str(compute_classes.PROFILES_FILE),
    "profiles_exist": compute_classes.PROFILES_FILE.is_file(),
    "feast_template": str(settings.feast_template("server")),
    "feast_template_exists": settings.feast_template("server").is_file(),
    "classes": sorted(compute_classes.load_profiles().classes),
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment outside the checkout with the project's wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            dist,
            ".",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("flight_mlops-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # the dependencies: this environment's site-packages as a plain path entry (its .pth
    # files, among them the editable finder of the checkout, are not processed from there)
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", site, wheel],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def test_definitions_and_serving_app_load_from_the_installed_wheel(installed, tmp_path):
    import json

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "MLOPS_HOME", "DAGSTER_HOME", "MLOPS_PROFILE"}
    }
    env["MLOPS_HOME"] = str(tmp_path / "mlops")
    out = subprocess.run(
        [installed, "-c", PROBE],
        cwd=tmp_path,  # outside the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    site = str(installed.parent.parent)
    assert got["package"].startswith(site), got["package"]  # not the checkout's copy
    assert not got["package"].startswith(str(REPO_ROOT))
    assert got["assets"] >= 24
    assert {"ingest_features_job", "training_job", "daily_loop_job"} <= set(got["jobs"])
    assert {"/predict", "/predict/batch", "/health", "/ready", "/metrics"} <= set(got["routes"])
    assert got["profiles"].startswith(site)
    assert got["profiles_exist"]
    assert got["feast_template"].startswith(site)
    assert got["feast_template_exists"]
    assert {"data-processing", "training", "serving"} <= set(got["classes"])
    # nothing was written outside the state folder named by MLOPS_HOME
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["mlops"])
