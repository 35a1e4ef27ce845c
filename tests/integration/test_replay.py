"""An in-process replay over a short window with drift planted in the weather files: the
drift is seen, the sensor retrains, the gate decides, and a promoted model is redeployed."""

from datetime import date, timedelta

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

START, END, DRIFT_FROM = date(2013, 1, 25), date(2013, 1, 30), date(2013, 1, 26)


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
        breach_days=2,
        window_days=21,
        retrain_holdout_days=3,
        retrain_validation_days=3,
        retrain_trials=1,
    )
    defs = build_definitions(paths, free_port(), {"monitor": monitor})
    import dagster as dg

    _plant_drift(paths)
    instance = dg.DagsterInstance.ephemeral()
    result = replay(defs, instance, paths, START, END, trials=1, land=False, progress=False)
    return paths, instance, result


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
    assert gated[0]["decision"] in {"promoted", "rejected"}
    assert gated[0]["data_window"].endswith(first.day)
    run = instance.get_run_by_id(first.run_id)
    assert run.tags[retraining.TAG_REASON].startswith("drift")
    assert run.tags["dagster/run_key"].startswith("drift:")


def test_a_promoted_retrain_is_what_the_endpoint_serves_next(replayed):
    paths, _, _ = replayed
    records = retraining.read_retrains(paths.monitoring_dir / "retrains")
    promoted = [
        r for r in records if r["decision"] == "promoted" and r["trigger"] != "replay_bootstrap"
    ]
    champion = tracking.Registry(paths.mlflow_tracking_uri).by_alias(names.CHAMPION)
    log = FilePredictionLog(paths.prediction_log_dir).read_day(str(END + timedelta(days=1)))
    assert log, "the last day scored the next day's flights"
    served = {r["model_version"] for r in log}
    if promoted:
        assert served == {promoted[-1]["challenger_version"]} == {champion.version}
    else:
        assert served == {champion.version}


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


def test_replay_rejects_an_empty_range(tmp_path):
    import dagster as dg

    paths = Paths(tmp_path / "mlops")
    with pytest.raises(ReplayError, match="nothing to replay"):
        replay(build_definitions(paths), dg.DagsterInstance.ephemeral(), paths, END, START)
