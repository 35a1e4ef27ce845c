"""`make demo PROFILE=server` through the CLI, to its end: ingest into S3, train into the
PostgreSQL-backed MLflow, deploy, and score the next day's flights over HTTP with the bearer
token the server tier requires (it used to die on a 401 there: the scoring request sent none)."""

from __future__ import annotations

import secrets

import pytest

from dagster_project import cli
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_the_server_tier_demo_runs_to_its_end(server_tier, tmp_path, monkeypatch, capsys):
    home = tmp_path / "mlops"
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setenv("MLOPS_SERVING_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_SERVING_TOKEN", secrets.token_hex(16))
    args = ["--start", "2013-01-01", "--end", "2013-01-21", "--holdout-days", "5"]
    args += ["--validation-days", "4", "--trials", "1", "--requests", "5"]

    assert cli.main(["demo", *args]) == 0

    captured = capsys.readouterr()
    out = captured.out
    assert "tier=server" in out
    for line in (
        "raw rows in (flights + weather)",
        "gates passed",
        "feature rows written",
        "rows loaded into online store",
        "holdout roc_auc",
        "v1 promoted: first model",
        "serving v1",
        "flights of 2013-01-22",
        "make up",
    ):
        assert line in out, line
    assert "5/5" in out
    # a progress bar per Dagster run, over its steps (as on `local`: tests/test_cli.py)
    assert "ingest_features_job: 100%" in captured.err
    assert "training_job: 100%" in captured.err
    assert out.count("actual: ") == 5  # every scored flight answered, none refused with a 401
    assert "stopped the endpoint it started" in out
