"""`python -m dagster_project demo` runs the whole spine and prints what happened."""

from dagster_project import cli
from tests.conftest import free_port


def test_demo_runs_the_spine_and_prints_the_summary(tmp_path, monkeypatch, capsys):
    home = tmp_path / "mlops"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setenv("MLOPS_SERVING_PORT", str(free_port()))
    args = ["--start", "2013-01-01", "--end", "2013-01-21", "--holdout-days", "5"]
    args += ["--validation-days", "4", "--trials", "1", "--requests", "5"]

    assert cli.main(["demo", *args]) == 0

    out = capsys.readouterr().out
    for line in (
        "raw rows in (flights + weather)",
        "gates passed   ",
        "feature rows written",
        "rows loaded into online store",
        "holdout roc_auc",
        "v1 promoted: first model",
        "serving v1",
        "flights of 2013-01-22",
        "actual: ",
        "stopped the endpoint it started",
        "make up",
    ):
        assert line in out
    assert "5/5" in out
    assert out.count("actual: ") == 5  # one line per scored flight
    assert (home / "lake" / "validated_flights" / "2013-01-02.parquet").exists()
    assert list((home / "serving" / "predictions").glob("2013-01-22.jsonl"))
    assert cli.main(["status"]) == 0
    status = capsys.readouterr().out
    assert "ingest_features_job: SUCCESS" in status
    assert "training_job: SUCCESS" in status


def test_demo_with_too_short_a_window_fails_with_the_reason(tmp_path, monkeypatch, capsys):
    home = tmp_path / "mlops"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setenv("MLOPS_SERVING_PORT", str(free_port()))
    assert cli.main(["demo", "--start", "2013-01-01", "--end", "2013-01-02"]) == 1
    out = capsys.readouterr().out
    assert "time split: the train window has 0 rows" in out
    assert "training did not deploy a model" in out
