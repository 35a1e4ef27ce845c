"""`python -m dagster_project demo` runs the chain and prints the summary."""

from dagster_project import cli


def test_demo_prints_summary_and_records_the_run(tmp_path, monkeypatch, capsys):
    home = tmp_path / "mlops"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))

    assert cli.main(["demo", "--start", "2013-01-01", "--end", "2013-01-02"]) == 0

    out = capsys.readouterr().out
    for line in (
        "raw rows in (flights + weather)",
        "rows quarantined",
        "gates passed   ",
        "feature rows written",
        "rows loaded into online store",
        "time taken",
        "make up",
    ):
        assert line in out
    assert "5/5" in out
    assert (home / "lake" / "validated_flights" / "2013-01-02.parquet").exists()
    assert cli.main(["status"]) == 0
    assert "ingest_features_job: SUCCESS" in capsys.readouterr().out
