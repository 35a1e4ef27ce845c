"""Retraining sensors through `build_sensor_context` on a real (ephemeral) Dagster instance with
monitoring results recorded as materializations."""

import json

import dagster as dg
import pytest

from dagster_project.defs.sensors import (
    new_labels_sensor,
    quality_breach_sensor,
    weekly_retrain_schedule,
)
from dagster_project.monitoring import retraining
from dagster_project.orchestration.resources import MonitoringResource
from dagster_project.platform import names


@pytest.fixture
def monitor(tmp_path):
    return MonitoringResource(
        prediction_log=str(tmp_path / "log"),
        folder=str(tmp_path / "mon"),
        breach_days=2,
        new_label_days=3,
        window_days=60,
    )


def _record(instance, day, breaches=(), drift=(), judged=True, alarm=None):
    metadata = {
        "day": day,
        "judged": judged,
        "breaches": dg.MetadataValue.json(list(breaches)),
        "drift_errors": dg.MetadataValue.json(list(drift)),
    }
    if alarm is not None:
        metadata |= {"drift_alarm": alarm, "drift_reason": "features drifted"}
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="prediction_quality", partition=day, metadata=metadata)
    )


def _tick(sensor, instance, monitor, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"monitor": monitor}, sensor_name=sensor.name
    )
    return sensor(context)


def test_healthy_days_request_nothing(monitor):
    with dg.instance_for_test() as instance:
        _record(instance, "2013-07-01")
        _record(instance, "2013-07-02", breaches=["ROC AUC 0.60 below floor 0.65"])
        result = _tick(quality_breach_sensor, instance, monitor)
        assert not result.run_requests
        assert "healthy" in result.skip_reason.skip_message


def test_a_breach_requests_exactly_one_run_and_the_cursor_stops_a_second(monitor):
    with dg.instance_for_test() as instance:
        _record(instance, "2013-07-01", breaches=["ROC AUC 0.60 below floor 0.65"])
        _record(instance, "2013-07-02", breaches=["ROC AUC 0.58 below floor 0.65"])
        result = _tick(quality_breach_sensor, instance, monitor)
        (request,) = result.run_requests
        assert request.run_key == "quality:2013-07-01..2013-07-02"
        assert request.tags[retraining.TAG_TRIGGER] == "quality_breach_sensor"
        assert "0.58" in request.tags[retraining.TAG_REASON]
        assert float(request.tags[retraining.TAG_BREACH_AT]) > 0
        window = request.run_config["ops"]["training_set"]["config"]
        assert window == {
            "start_date": "2013-05-04",
            "end_date": "2013-07-02",
            "feature_service": names.FEATURE_SERVICE,
            "prediction_time": "lead",
            "prediction_lead_minutes": 60,
        }
        assert json.loads(result.cursor) == {"last_day": "2013-07-02"}
        again = _tick(quality_breach_sensor, instance, monitor, cursor=result.cursor)
        assert not again.run_requests


def test_drift_on_important_features_requests_a_run(monitor):
    with dg.instance_for_test() as instance:
        _record(instance, "2013-08-01", drift=["visib", "wind_speed"])
        _record(instance, "2013-08-02", drift=["visib"])
        (request,) = _tick(quality_breach_sensor, instance, monitor).run_requests
        assert request.run_key == "drift:2013-08-01..2013-08-02"


def test_the_recorded_drift_alarm_drives_the_sensor(monitor):
    with dg.instance_for_test() as instance:
        # important features at error, but the (calibrated) alarm stayed off: no run
        _record(instance, "2013-08-01", drift=["visib"], alarm=False)
        _record(instance, "2013-08-02", drift=["visib"], alarm=False)
        assert not _tick(quality_breach_sensor, instance, monitor).run_requests
        _record(instance, "2013-08-03", drift=["temp"], alarm=True)
        _record(instance, "2013-08-04", drift=["temp"], alarm=True)
        (request,) = _tick(quality_breach_sensor, instance, monitor).run_requests
        assert request.run_key == "drift:2013-08-03..2013-08-04"
        assert "temp" in request.tags[retraining.TAG_REASON]


def test_new_labels_sensor_counts_labeled_days_since_its_cursor(monitor):
    with dg.instance_for_test() as instance:
        for day in ("2013-07-01", "2013-07-02"):
            _record(instance, day)
        assert not _tick(new_labels_sensor, instance, monitor).run_requests
        _record(instance, "2013-07-03")
        result = _tick(new_labels_sensor, instance, monitor)
        (request,) = result.run_requests
        assert request.run_key == "labels:2013-07-03"
        assert not _tick(new_labels_sensor, instance, monitor, cursor=result.cursor).run_requests


def test_weekly_schedule_is_off_by_default():
    assert weekly_retrain_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert weekly_retrain_schedule.job_name == "training_job"
