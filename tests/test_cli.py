"""`python -m dagster_project demo|replay|serve|status`: what a person types and reads."""

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from dagster_project import cli
from tests.conftest import check_demo_output, free_port


@pytest.mark.slow  # 90 s; the default suite runs the same CLI demo on the server tier
def test_demo_runs_the_spine_and_prints_the_summary(tmp_path, monkeypatch, capsys):
    home = tmp_path / "mlops"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setenv("MLOPS_SERVING_PORT", str(free_port()))
    args = ["--start", "2013-01-01", "--end", "2013-01-21", "--holdout-days", "5"]
    args += ["--validation-days", "4", "--trials", "1", "--requests", "5"]

    assert cli.main(["demo", *args]) == 0

    captured = capsys.readouterr()
    check_demo_output(captured.out, captured.err)
    assert (home / "lake" / "validated_flights" / "2013-01-02.parquet").exists()
    assert list((home / "serving" / "predictions").glob("2013-01-22.jsonl"))
    assert cli.main(["status"]) == 0
    status = capsys.readouterr().out
    assert re.search(r"ingest_features_job:\s+SUCCESS", status)
    assert re.search(r"training_job:\s+SUCCESS", status)
    assert "2013-01-01..2013-01-21" in status  # the range run's partitions
    assert "champion      flight_delay v1 (" in status
    assert "holdout AUC 0." in status


def test_demo_with_too_short_a_window_fails_with_the_reason(tmp_path, monkeypatch, capsys):
    home = tmp_path / "mlops"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setenv("MLOPS_SERVING_PORT", str(free_port()))
    assert cli.main(["demo", "--start", "2013-01-01", "--end", "2013-01-02"]) == 1
    out = capsys.readouterr().out
    assert "time split: the train window has 0 rows" in out
    assert "training did not deploy a model" in out


@pytest.mark.parametrize("command", ["demo", "replay", "serve", "status"])
def test_every_subcommand_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m dagster_project {command}")
    assert len(out.splitlines()) > 5


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "replay", "serve", "status"):
        assert f"  {command} " in out


def test_status_on_a_fresh_state_folder_says_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mlops" / "dagster_home"))
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "tier          local" in out
    assert "champion      none yet (run `make demo`)" in out
    assert "runs          none yet" in out


def test_serve_runs_the_endpoint_in_the_foreground(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env["MLOPS_HOME"] = str(tmp_path / "mlops")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_project", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the endpoint did not answer in 120 s")
        assert health.status_code == 200
        # no model yet: not ready, and it says why
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert ready.status_code == 503
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"[serve] flight_delay@champion on http://127.0.0.1:{port}" in out
