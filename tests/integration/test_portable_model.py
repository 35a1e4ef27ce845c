"""The registered model is portable: ``models:/flight_delay@champion`` loads and scores in a
fresh virtual environment that holds only the model's own requirements (no project, no Dagster),
and its training data is recorded as MLflow datasets with their digests.

The environment is built with ``python -m venv`` + pip from the package index, from the
requirements file MLflow stored with the model, and cached per requirements under the temp dir
(the first build downloads xgboost and mlflow-skinny; later runs reuse it). The fresh
environment has no SQLAlchemy, so it reads the registry through an ``mlflow server`` started
on the test's store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest

from dagster_project.platform import names, storage
from dagster_project.training import pipeline, portable, tracking
from dagster_project.training.preprocess import input_frame
from tests.conftest import free_port

BIN = Path(sys.executable).parent

SCORE = r"""
import json, sys
import pandas as pd
import mlflow.pyfunc

try:
    import dagster  # noqa: F401
    sys.exit("dagster is importable in the fresh environment")
except ImportError:
    pass
model = mlflow.pyfunc.load_model("models:/flight_delay@champion")
import dagster_project
frame = pd.read_json(sys.argv[1], orient="split", dtype=False)
scores = model.predict(frame)
print(json.dumps({"scores": [float(s) for s in scores], "code": dagster_project.__file__}))
"""


@pytest.fixture(scope="module")
def champion(spine, first_model, tmp_path_factory):
    """A one-trial XGBoost model trained on the spine's training set in a registry of its own
    (the session's registry changes champions in other tests), aliased champion."""
    root = tmp_path_factory.mktemp("portable")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking.configure(uri, str(root / "artifacts"))
    registry = tracking.Registry(uri)
    training_set = storage.read_parquet(f"{spine.paths.lake_url}/training_set.parquet")
    lineage = tracking.Lineage(
        dagster_run_id="portable-test",
        partition_range="2013-01-01..2013-01-21",
        feature_service=names.FEATURE_SERVICE,
        training_set_hash=tracking.frame_hash(training_set),
        git_commit="test",
    )
    options = pipeline.TrainingOptions(
        model_kinds=("xgboost",), n_trials=1, holdout_days=5, validation_days=4
    )
    outcome = pipeline.train_and_register(training_set, options, lineage, registry)
    registry.set_alias(names.CHAMPION, outcome.version.version)
    yield uri, root, training_set, outcome
    tracking.configure(spine.paths.mlflow_tracking_uri, spine.paths.mlflow_artifacts)


def _fresh_venv(requirements: Path) -> Path:
    """A venv with exactly ``requirements``, cached by their content."""
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "flight-mlops-portable-venvs" / key
    python = cache / "bin" / "python"
    if (cache / ".complete").exists():
        return python
    shutil.rmtree(cache, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(cache)], check=True, timeout=120)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
        check=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    (cache / ".complete").write_text(requirements.read_text())
    return python


def _mlflow_server(uri: str, root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            *(str(BIN / "mlflow"), "server", "--backend-store-uri", uri),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        cwd=root,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"mlflow server not ready:\n{log.read_text()[-3000:]}")


@pytest.mark.slow  # the first build of the environment downloads and installs for ~5 minutes
def test_champion_loads_and_scores_in_a_venv_with_only_its_requirements(champion, tmp_path):
    uri, root, training_set, _outcome = champion
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/flight_delay@champion"))
    wanted = {line.split("==")[0] for line in requirements.read_text().split()}
    assert wanted == {"mlflow-skinny", "pandas", "numpy", "cloudpickle", "xgboost"}
    python = _fresh_venv(requirements)
    frame = input_frame(training_set.tail(50))
    expected = mlflow.pyfunc.load_model("models:/flight_delay@champion").predict(frame)
    rows = tmp_path / "rows.json"
    rows.write_text(frame.to_json(orient="split", index=False, date_format="iso"))
    server, url = _mlflow_server(uri, root, tmp_path / "mlflow-server.log")
    try:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("MLFLOW_", "MLOPS_"))
        }
        env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = url
        done = subprocess.run(
            [str(python), "-c", SCORE, str(rows)],
            cwd=tmp_path,  # not the checkout: the project must come from the model
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "/code/dagster_project/" in result["code"]  # the model's code_paths, not a checkout
    np.testing.assert_allclose(result["scores"], expected, rtol=1e-6)


def test_training_validation_and_holdout_are_logged_as_datasets(champion):
    uri, _root, training_set, outcome = champion
    run = mlflow.MlflowClient(uri).get_run(outcome.run_id)
    contexts = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d
        for d in run.inputs.dataset_inputs
    }
    assert set(contexts) == {"training", "validation", "holdout"}
    split = pipeline.time_split(training_set, holdout_days=5, validation_days=4)
    for context, frame in (
        ("training", split.train),
        ("validation", split.validation),
        ("holdout", split.holdout),
    ):
        dataset = contexts[context].dataset
        assert dataset.name == f"flight_delay_{context}"
        assert dataset.digest == portable.dataset_digest(frame)
        assert run.data.tags[f"dataset_digest_{context}"] == dataset.digest
        assert json.loads(dataset.profile)["num_rows"] == len(frame)
