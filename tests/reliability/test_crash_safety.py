"""Crash safety: a writer SIGKILLed mid-write leaves the old or the new version, never a mix.

Each test runs the real writer in a subprocess that writes continuously, kills it at several
moments, and checks what a reader sees: a lake file (``storage.write_parquet``, what the IO
manager and the feature tables use), the prediction log (JSON lines) and the model registry
(the ``champion`` alias never names a version that is not fully registered and loadable).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dagster_project.platform import names, storage
from dagster_project.serving.prediction_log import FilePredictionLog
from tests.paths import REPO_ROOT


def _spawn(code: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"GX_ANALYTICS_ENABLED": "false"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the child says when it starts writing
    assert line.strip() == "writing", (line, proc.stderr.read() if proc.stderr else "")
    return proc


def _kill(proc: subprocess.Popen, after_s: float) -> None:
    time.sleep(after_s)
    assert proc.poll() is None, "the writer finished before it was killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


LAKE_WRITER = """
import io, sys
import numpy as np, pandas as pd
from dagster_project.platform import storage
url = sys.argv[1]
rng = np.random.default_rng(0)
n = 2_000_000
versions = []
for version in (2, 3):  # serialized up front: the loop below spends its time writing
    frame = pd.DataFrame({"version": np.full(n, version), "x": rng.random(n), "y": rng.integers(0, 1 << 60, n)})
    buf = io.BytesIO(); frame.to_parquet(buf, index=False); versions.append(buf.getvalue())
print("writing", flush=True)
i = 0
while True:
    storage.write_bytes_atomic(url, versions[i % 2])  # what write_parquet and the IO manager call
    i += 1
"""


def test_lake_file_is_old_or_new_after_a_kill_mid_write(tmp_path: Path):
    folder = tmp_path / "lake" / "validated_flights"
    url = str(folder / "2013-01-02.parquet")
    storage.write_parquet(url, pd.DataFrame({"version": [1] * 10, "x": 0.5, "y": 1}))
    mid_write = 0
    seen = set()
    for after in (0.05, 0.2, 0.4, 0.6, 0.85, 1.1):
        proc = _spawn(LAKE_WRITER, url)
        _kill(proc, after)
        df = storage.read_parquet(url)  # a torn file would not even parse
        versions = set(df["version"].unique())
        assert len(versions) == 1, f"mixed versions {versions}"
        version = versions.pop()
        assert len(df) == (10 if version == 1 else 2_000_000)
        seen.add(int(version))
        leftovers = [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
        mid_write += bool(leftovers)
        for p in leftovers:  # a killed write's temp file: never listed, never read
            assert p.name.endswith(".partial")
            p.unlink()
        assert storage.list_files(str(folder), ".parquet") == [url]
    assert seen - {1}, "no kill landed after a complete write"
    assert mid_write, "no kill landed while a temp file was being written"


LOG_WRITER = """
import sys
from pathlib import Path
from dagster_project.serving.prediction_log import FilePredictionLog
log = FilePredictionLog(Path(sys.argv[1]))
pad = "x" * 1500
print("writing", flush=True)
i = 0
while True:
    batch = [{"scheduled_date": "2013-08-01", "request_id": f"{i}-{j}", "n": j, "pad": pad} for j in range(1000)]
    log.append(batch)
    i += 1
"""


def _check_log(folder: Path) -> list[dict]:
    records = FilePredictionLog(folder).read_day("2013-08-01")
    for r in records:  # every record read back is whole
        assert set(r) == {"scheduled_date", "request_id", "n", "pad"}
        assert len(r["pad"]) == 1500
    return records


def test_prediction_log_keeps_whole_records_after_a_kill(tmp_path: Path):
    folder = tmp_path / "predictions"
    for after in (0.4, 0.9, 1.3):
        proc = _spawn(LOG_WRITER, str(folder))
        _kill(proc, after)
        before = _check_log(folder)
        assert before
        # the next writer (a restarted endpoint) appends after whatever the kill left
        FilePredictionLog(folder).append(
            [{"scheduled_date": "2013-08-01", "request_id": "after", "n": -1, "pad": "y" * 1500}]
        )
        after_records = _check_log(folder)
        assert after_records[-1]["request_id"] == "after"
        assert len(after_records) == len(before) + 1


def test_a_torn_last_line_is_skipped_and_never_glued_to_the_next(tmp_path: Path, caplog):
    """What a kill in the middle of ``write`` leaves (a partial last line), made exactly."""
    folder = tmp_path / "predictions"
    FilePredictionLog(folder).append(
        [{"scheduled_date": "2013-08-01", "request_id": str(i)} for i in range(3)]
    )
    path = folder / "2013-08-01.jsonl"
    size = path.stat().st_size
    os.truncate(path, size - 7)  # the third record loses its end
    assert [r["request_id"] for r in FilePredictionLog(folder).read_day("2013-08-01")] == [
        "0",
        "1",
    ]
    assert "torn line" in caplog.text
    FilePredictionLog(folder).append([{"scheduled_date": "2013-08-01", "request_id": "3"}])
    ids = [r["request_id"] for r in FilePredictionLog(folder).read_day("2013-08-01")]
    assert ids == ["0", "1", "3"]
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["request_id"] == "3"
    assert len(lines) == 4  # the fragment stays a line of its own


PROMOTER = """
import sys
import numpy as np
import mlflow, mlflow.sklearn
from sklearn.linear_model import LogisticRegression
from dagster_project.platform import names
from dagster_project.training import tracking
uri, artifacts = sys.argv[1], sys.argv[2]
tracking.configure(uri, artifacts)
registry = tracking.Registry(uri)
X = np.random.default_rng(0).random((50, 3)); y = (X[:, 0] > 0.5).astype(int)
print("writing", flush=True)
while True:
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="model")
    v = registry.register(info.model_uri, run.info.run_id, {"threshold": "0.5"})
    registry.set_alias(names.CHAMPION, v.version)
    print("promoted", v.version, flush=True)
"""


@pytest.mark.timeout(300)
def test_champion_alias_never_names_a_half_registered_version(tmp_path: Path):
    import mlflow.pyfunc

    from dagster_project.serving.config import under_roots
    from dagster_project.training import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = str(tmp_path / "artifacts")
    for after in (0.4,):
        proc = _spawn(PROMOTER, uri, artifacts)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("promoted")  # then kill during the next one
        _kill(proc, after)
        registry = tracking.Registry(uri)
        champion = registry.by_alias(names.CHAMPION)
        assert champion is not None
        assert champion.status == "READY"
        assert under_roots(registry.download_uri(champion.version), (artifacts,))
        model = mlflow.pyfunc.load_model(champion.uri)  # every file of it is there
        assert model.predict(pd.DataFrame([[0.9, 0.1, 0.1]])).shape == (1,)
    versions = tracking.Registry(uri).client.search_model_versions(f"name='{names.MODEL_NAME}'")
    assert versions, "no version was ever registered: the kills came too early"
