"""The simulated clock: the Dagster side and the DAGs' copy apply one rule to one setting, the
CLI prints it, the replay starts on it."""

from __future__ import annotations

import importlib.util
from datetime import date, timedelta
from pathlib import Path

import pytest

from dagster_project.cli import main
from dagster_project.cli.spine import replay_window
from dagster_project.platform import clock

DAG_CLOCK = Path(__file__).resolve().parents[2] / "airflow_dags" / "dagster_trigger" / "clock.py"


def _dag_clock():
    """The DAGs' clock module, loaded from its file (stdlib only: no Airflow import)."""
    spec = importlib.util.spec_from_file_location("dag_clock", DAG_CLOCK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("offset", ["", "0", "4901", "-3"])
def test_dags_and_platform_read_the_same_setting_the_same_way(offset: str):
    dag_clock = _dag_clock()
    env = {clock.SETTING: offset}
    assert dag_clock.SETTING == clock.SETTING
    assert (dag_clock.DATA_FIRST, dag_clock.DATA_LAST) == (clock.DATA_FIRST, clock.DATA_LAST)
    for real in (date(2013, 1, 1), date(2026, 12, 1), date(2024, 2, 29)):
        assert dag_clock.simulated_day(real, env) == clock.simulated_day(real, env)
    assert clock.simulated_day(date(2026, 12, 1), env) == date(2026, 12, 1) - timedelta(
        days=int(offset or 0)
    )


def test_bad_setting_names_the_setting():
    with pytest.raises(clock.ClockError, match="MLOPS_CLOCK_OFFSET_DAYS='a week'"):
        clock.offset_days({clock.SETTING: "a week"})
    dag_clock = _dag_clock()
    with pytest.raises(dag_clock.ClockError, match="MLOPS_CLOCK_OFFSET_DAYS"):
        dag_clock.offset_days({clock.SETTING: "1.5"})


def test_outside_data_says_why():
    dag_clock = _dag_clock()
    assert dag_clock.outside_data(date(2013, 1, 1), date(2013, 12, 31)) is None
    why = dag_clock.outside_data(date(2026, 12, 1))
    assert why is not None
    assert "2026-12-01 is outside the data (2013-01-01 .. 2013-12-31)" in why
    assert "MLOPS_CLOCK_OFFSET_DAYS" in why
    assert dag_clock.outside_data(date(2012, 12, 25), date(2012, 12, 31)) is not None


def test_cli_prints_the_offset_that_makes_today_a_data_day(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    assert main(["clock", "--today", "2013-07-01"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"export {clock.SETTING}=")
    offset = line.split("=", 1)[1]
    monkeypatch.setenv(clock.SETTING, offset)
    assert clock.simulated_today() == date(2013, 7, 1)
    assert main(["clock"]) == 0
    assert "is simulated 2013-07-01" in capsys.readouterr().out
    assert main(["clock", "--today", "2014-01-01"]) == 2
    assert "outside the data" in capsys.readouterr().out


def test_replay_starts_on_the_simulated_today_when_the_clock_is_set(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv(clock.SETTING, raising=False)
    assert replay_window(None, None) == (date(2013, 7, 1), date(2013, 9, 30))
    monkeypatch.setenv(clock.SETTING, str(clock.offset_for(date(2013, 11, 20))))
    assert replay_window(None, None) == (date(2013, 11, 20), date(2013, 12, 31))
    assert replay_window("2013-02-01", "2013-02-03") == (date(2013, 2, 1), date(2013, 2, 3))
