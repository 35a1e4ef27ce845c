"""The intraday clock end to end on one simulated day: every flight scored through the endpoint
at its prediction time (60 minutes before departure, a v2 model), on what the stream had
brought into the online store by then, and the day's `feature_skew` against the offline store
at zero."""

from datetime import date, datetime

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from dagster_project.features.engineering import epoch_seconds
from dagster_project.orchestration.resources import MonitoringResource
from dagster_project.platform.settings import Paths
from dagster_project.replay import replay
from dagster_project.serving import prediction_log, scoring
from tests.conftest import free_port

DAY = date(2013, 7, 2)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    paths = Paths(tmp_path_factory.mktemp("intraday") / "mlops")
    monitor = MonitoringResource(
        prediction_log=paths.prediction_log_url,
        folder=paths.monitoring_url,
        window_days=21,
        retrain_holdout_days=3,
        retrain_validation_days=3,
        retrain_trials=1,
    )
    defs = build_definitions(paths, free_port(), {"monitor": monitor})
    result = replay(defs, dg.DagsterInstance.ephemeral(), paths, DAY, DAY, trials=1, progress=False)
    return paths, result


def test_every_flight_is_scored_at_its_prediction_time(replayed):
    paths, result = replayed
    assert result.clock == "intraday"
    assert result.days == 1
    [day] = result.intraday
    records = prediction_log.open_log(paths.prediction_log_url).read_day(str(DAY))
    expected = {f["flight_id"] for f in scoring.scheduled_flights(DAY)}
    assert {r["flight"]["flight_id"] for r in records} == expected
    assert day.scored == len(expected) == len(records)
    for r in records:
        assert r["feature_service"] == "flight_delay_v2"
        # scheduled_departure is New York time: the as-of time is 60 minutes before it
        sched = epoch_seconds(datetime.fromisoformat(r["flight"]["scheduled_departure"]))
        assert datetime.fromisoformat(r["as_of"]).timestamp() == sched - 3600


def test_the_days_served_features_equal_the_offline_store(replayed):
    _, result = replayed
    [day] = result.intraday
    assert day.skew_cells is not None
    assert day.skew_cells > 30 * day.scored  # every feature of every flight
    assert day.skew_differing == 0
