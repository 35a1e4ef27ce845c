"""Shared fixtures: every test gets its own state folder (landing zone, lake, GX, Feast)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# prometheus_client chooses, once per process at its import, between in-memory values and
# files under PROMETHEUS_MULTIPROCESS_DIR; importing Feast first sets that variable (for its
# gunicorn workers), and then every app a test builds in this process would add to the same
# files. Imported first, this process's metrics stay in memory, as in one endpoint process.
import prometheus_client.values  # noqa: F401  (before anything imports Feast)
import pytest

from dagster_project.platform.settings import Paths

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "mlops")


@pytest.fixture
def defs(paths: Paths):
    from dagster_project.definitions import build_definitions

    return build_definitions(paths)


def check_demo_output(out: str, err: str, requests: int = 5, next_day: str = "2013-01-22") -> None:
    """What `python -m dagster_project demo` prints on any tier: each step's summary line, a
    line per scored flight of the next day, and a progress bar per Dagster run on stderr."""
    for line in (
        "raw rows in (flights + weather)",
        "gates passed",
        "feature rows written",
        "rows loaded into online store",
        "holdout roc_auc",
        "v1 promoted: first model",
        "serving v1",
        f"flights of {next_day}",
        "stopped the endpoint it started",
        "make up",
    ):
        assert line in out, line
    assert f"{requests}/{requests}" in out
    assert out.count("actual: ") == requests  # every scored flight answered (none refused)
    assert "ingest_features_job: 100%" in err
    assert "training_job: 100%" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Spine:
    """A state folder with ingested features for SPINE_DAYS and a loopback port for serving."""

    paths: Paths
    port: int
    defs: object
    instance: object

    def run_training(self, model: dict, promotion: dict | None = None):
        from dagster_project.defs.run_config import training_run_config

        job = self.defs.get_job_def("training_job")
        config = training_run_config(
            *SPINE_DAYS,
            model={"holdout_days": 5, "validation_days": 4} | model,
            promotion=promotion,
        )
        return job.execute_in_process(
            instance=self.instance, run_config=config, raise_on_error=False
        )


SPINE_DAYS = ("2013-01-01", "2013-01-21")


@pytest.fixture(scope="session")
def spine(tmp_path_factory) -> Iterator[Spine]:
    """Ingest + features for three weeks of January, once per session (about 15 s)."""
    import dagster as dg

    from dagster_project.definitions import build_definitions
    from dagster_project.orchestration.partitions import range_tags
    from dagster_project.serving.deploy import LocalEndpoint

    paths = Paths(tmp_path_factory.mktemp("spine") / "mlops")
    port = free_port()
    defs = build_definitions(paths, serving_port=port)
    instance = dg.DagsterInstance.ephemeral()
    result = defs.get_job_def("ingest_features_job").execute_in_process(
        tags=range_tags(*SPINE_DAYS), instance=instance
    )
    assert result.success
    yield Spine(paths, port, defs, instance)
    LocalEndpoint("127.0.0.1", port, paths.home / "run").stop()


@pytest.fixture(scope="session")
def first_model(spine: Spine):
    """The first training run: XGBoost, 2 trials; promoted (first model) and deployed."""
    result = spine.run_training({"model_kinds": ["xgboost"], "n_trials": 2})
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result
