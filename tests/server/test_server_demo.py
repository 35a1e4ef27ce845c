"""`make demo PROFILE=server` through the CLI, to its end: ingest into S3, train into the
PostgreSQL-backed MLflow, deploy, and score the next day's flights over HTTP with the bearer
token the server tier requires (it used to die on a 401 there: the scoring request sent none).
The endpoint process it starts logs its predictions to PostgreSQL, and nothing the demo
produced is in the local lake folder."""

from __future__ import annotations

import secrets

import pytest

from dagster_project import cli
from dagster_project.platform import settings, storage
from dagster_project.serving.prediction_log import PostgresPredictionLog, open_log
from tests.conftest import check_demo_output, free_port

# slow: the whole server-tier demo (about 90 s); the server spine test covers the tier by default
pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    check_demo_output(out, captured.err)  # as on `local` (tests/test_cli.py); no 401s

    paths = settings.paths()
    assert not (home / "lake").exists()
    assert not (home / "serving").exists()
    assert not (home / "gx").exists()
    assert storage.list_files(f"{paths.lake_url}/validated_flights", ".parquet")
    assert f"Great Expectations Data Docs: {paths.gx_docs_url}/data_docs/index.html" in out
    log = open_log(paths.prediction_log_url)
    assert isinstance(log, PostgresPredictionLog)
    scored = log.read_day("2013-01-22")
    assert len(scored) >= 5  # the demo's requests, logged by the endpoint process it started
    assert {r["model_version"] for r in scored} == {"1"}
