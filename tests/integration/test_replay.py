"""An in-process replay over a short window with drift planted in the weather files: the
drift reaches the served features, the calibrated check sees it, the sensor retrains, the gate
decides, a promoted model is redeployed, the frozen first champion shadows every day, and the
report covers this replay only."""

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from dagster_project.definitions import build_definitions
from dagster_project.ingestion import landing
from dagster_project.monitoring import retraining
from dagster_project.orchestration.resources import MonitoringResource
from dagster_project.platform import names
from dagster_project.platform.settings import Paths
from dagster_project.replay import ReplayError, replay
from dagster_project.serving.prediction_log import FilePredictionLog
from dagster_project.training import tracking
from tests.conftest import free_port

# Planted from the first day: the flights scored on it (those of the next day) are served the
# windy, foggy weather, so most of the replay's trailing window has it by the last days.
START, END, DRIFT_FROM = date(2013, 1, 25), date(2013, 1, 30), date(2013, 1, 25)


def _plant_drift(paths: Paths) -> None:
    """Land the replay days ourselves, then make the weather windier and foggier from DRIFT_FROM
    (still inside the gate's ranges, so it passes validation and reaches the features)."""
    day = START
    while day <= END:
        landing.land_day(paths.landing_url, day)
        if day >= DRIFT_FROM:
            url = landing.daily_file_url(paths.landing_url, "weather", day)
            weather = pd.read_csv(url)
            weather["wind_speed"] = weather["wind_speed"].fillna(0) + 40
            weather["visib"] = 0.5
            weather.to_csv(url, index=False)
        day += timedelta(days=1)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    paths = Paths(tmp_path_factory.mktemp("replay") / "mlops")
    monitor = MonitoringResource(
        prediction_log=paths.prediction_log_url,
        folder=paths.monitoring_url,
        auc_floor=0.0,  # only the planted drift may trigger
        calibration_error_max=1.0,
        min_labeled=100,
        # any feature beyond its calibrated bar raises the alarm here: the loop is under test;
        # how the alarm weighs features by importance is pinned by tests/unit/test_drift.py
        drift_importance_share=0.0,
        breach_days=2,
        window_days=21,
        retrain_holdout_days=3,
        retrain_validation_days=3,
        retrain_trials=1,
        # the daily clock scores at the day's start: v1 models
        retrain_feature_service="flight_delay_v1",
        retrain_prediction_time="day_start",
    )
    defs = build_definitions(paths, free_port(), {"monitor": monitor})
    import dagster as dg

    _plant_drift(paths)
    # a demo's training in the same state folder before the replay: not the replay's
    retraining.append_retrain(
        paths.monitoring_dir / "retrains",
        retraining.RetrainRecord(
            "2013-01-01T00:00:00",
            "demo-run",
            "manual",
            "demo",
            None,
            "2013-01-01..2013-01-20",
            "0",
            "promoted",
            None,
            0.7,
            "0",
        ),
    )
    instance = dg.DagsterInstance.ephemeral()
    result = replay(
        defs, instance, paths, START, END, trials=1, land=False, progress=False, clock="daily"
    )
    return paths, instance, result


@pytest.mark.slow  # the replay fixture: about 3 minutes (make test-slow)
def test_planted_drift_triggers_a_gated_retrain(replayed):
    paths, instance, result = replayed
    assert result.days == 6
    drift_retrains = [r for r in result.retrains if r.reason.startswith("drift")]
    assert drift_retrains, result.retrains
    first = drift_retrains[0]
    assert first.trigger == "quality_breach_sensor"
    assert first.day >= str(DRIFT_FROM)
    assert "visib" in first.reason or "wind_speed" in first.reason
    assert first.breach_to_start_s < 60
    records = retraining.read_retrains(paths.monitoring_dir / "retrains")
    gated = [r for r in records if r["trigger"] == "quality_breach_sensor"]
    assert gated
    assert gated[0]["decision"] in {"promoted", "rejected", "shadow"}
    assert gated[0]["data_window"].endswith(first.day)
    run = instance.get_run_by_id(first.run_id)
    assert run.tags[retraining.TAG_REASON].startswith("drift")
    assert run.tags["dagster/run_key"].startswith("drift:")


@pytest.mark.slow  # the replay fixture: about 3 minutes (make test-slow)
def test_a_promoted_retrain_is_what_the_endpoint_serves_next(replayed):
    paths, _, _ = replayed
    replay_id = retraining.read_replay(paths.monitoring_dir / "replay.json").replay_id
    records = retraining.read_retrains(paths.monitoring_dir / "retrains")
    promoted = [
        r
        for r in records
        if r["decision"] == "promoted"
        and r["trigger"] != "replay_bootstrap"
        and r.get("replay_id") == replay_id
    ]
    champion = tracking.Registry(paths.mlflow_tracking_uri).by_alias(names.CHAMPION)
    log = FilePredictionLog(paths.prediction_log_dir).read_day(str(END + timedelta(days=1)))
    assert log, "the last day scored the next day's flights"
    served = {r["model_version"] for r in log}
    if promoted:
        assert served == {promoted[-1]["challenger_version"]} == {champion.version}
    else:
        assert served == {champion.version}


@pytest.mark.slow  # the replay fixture: about 3 minutes (make test-slow)
def test_monitoring_outputs_and_report(replayed):
    paths, instance, result = replayed
    for day in ("2013-01-25", "2013-01-30"):
        assert (paths.monitoring_dir / "days" / f"{day}.png").stat().st_size > 5000
    html = (paths.monitoring_dir / "report.html").read_text()
    assert "drift" in html
    assert "2013-01-30" in html
    assert result.report.endswith("report.html")
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg_check("feature_drift")]
    )
    assert checks
    # the catalog shows the last judged day's reliability diagram inline
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey("prediction_quality"))
    meta = event.asset_materialization.metadata
    assert meta["day"].value == "2013-01-30"
    assert meta["calibration_plot"].value.startswith("![2013-01-30 calibration (")
    assert "(data:image/png;base64,iVBOR" in meta["calibration_plot"].value


def dg_check(name: str):
    import dagster as dg

    return dg.AssetCheckKey(dg.AssetKey("prediction_quality"), name)


def _days(paths: Paths) -> pd.DataFrame:
    found = sorted((Path(paths.lake_url) / "prediction_quality").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in found], ignore_index=True).set_index("day")


@pytest.mark.slow  # the replay fixture: about 3 minutes (make test-slow)
def test_the_planted_weather_is_served_and_beyond_its_calibrated_bars(replayed):
    paths, instance, _ = replayed
    days = _days(paths)
    last = days.loc[str(END)]
    assert last["calibrated_alarm"]
    assert last["drift_mode"] == "calibrated"
    assert {"wind_speed", "visib"} & set(str(last["drift_errors"]).split(","))
    # the fixed rule is recorded beside it, and the score distribution in its own check
    assert "fixed_alarm" in days.columns
    import dagster as dg

    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg_check("prediction_drift")]
    )
    assert check
    event = instance.get_latest_materialization_event(dg.AssetKey("prediction_quality"))
    meta = event.asset_materialization.metadata
    assert meta["drift_alarm"].value is True
    assert "calibrated bars" in meta["drift_reason"].value


@pytest.mark.slow  # the replay fixture: about 3 minutes (make test-slow)
def test_the_frozen_first_champion_shadows_every_judged_day(replayed):
    paths, _, _ = replayed
    registry = tracking.Registry(paths.mlflow_tracking_uri)
    baseline = registry.by_alias(names.BASELINE)
    assert baseline is not None
    assert baseline.version == "1"
    judged = _days(paths).loc[str(START) : str(END)]
    judged = judged[judged["labeled"] > 0]
    assert len(judged) == 6
    assert set(judged["shadow_version"]) == {"1"}
    assert judged["shadow_roc_auc"].between(0.5, 1.0).all()
    # while v1 is served, the shadow is the same model on the same flights
    same = judged[judged["model_version"] == "1"]
    assert (same["shadow_roc_auc"] - same["roc_auc"]).abs().max() < 1e-9


@pytest.mark.slow  # the replay fixture: about 3 minutes (make test-slow)
def test_the_report_covers_this_replay_only(replayed):
    paths, _, _result = replayed
    record = retraining.read_replay(paths.monitoring_dir / "replay.json")
    assert (record.start, record.end, record.baseline_version) == (str(START), str(END), "1")
    page = (paths.monitoring_dir / "report.html").read_text()
    assert f"replay {record.replay_id}" in page
    assert "demo" not in page  # the demo's training is not this replay's
    assert "2013-01-24" not in page  # the eve is ingested and scored, not monitored
    assert "alarm days" in page
    assert "frozen" in page
    runs = [r for r in retraining.read_retrains(paths.monitoring_dir / "retrains")]
    assert {r.get("replay_id") for r in runs if r["trigger"] != "manual"} == {record.replay_id}


def test_replay_rejects_an_empty_range(tmp_path):
    import dagster as dg

    paths = Paths(tmp_path / "mlops")
    with pytest.raises(ReplayError, match="nothing to replay"):
        replay(build_definitions(paths), dg.DagsterInstance.ephemeral(), paths, END, START)


# a bootstrap on six weeks, then two days: under a minute (in the default suite)
def test_a_day_its_gate_blocks_is_reported_and_the_replay_goes_on(tmp_path):
    """2013-12-31 has no weather rows in the data set: the weather gate blocks that day's run;
    the replay records it, renders its report and returns (the CLI exits 0)."""
    import dagster as dg

    paths = Paths(tmp_path / "mlops")
    monitor = MonitoringResource(
        prediction_log=paths.prediction_log_url,
        folder=paths.monitoring_url,
        min_labeled=100,
        # enough December days for the first model to pass the gate's floors
        window_days=42,
        retrain_holdout_days=7,
        retrain_validation_days=7,
        retrain_trials=1,
        retrain_feature_service="flight_delay_v1",
        retrain_prediction_time="day_start",
    )
    defs = build_definitions(paths, free_port(), {"monitor": monitor})
    result = replay(
        defs,
        dg.DagsterInstance.ephemeral(),
        paths,
        date(2013, 12, 30),
        date(2013, 12, 31),
        trials=1,
        progress=False,
        clock="daily",
    )
    assert result.days == 1
    assert list(result.blocked) == ["2013-12-31"]
    assert "raw_weather: gx_gate" in result.blocked["2013-12-31"]
    assert result.report.endswith("report.html")
    assert (paths.monitoring_dir / "report.html").exists()
