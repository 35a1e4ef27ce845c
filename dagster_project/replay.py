"""The replay clock: a simulated "today" that walks through 2013 one day at a time.

Each simulated day D: D's partition is ingested and validated (its flights' outcomes are now
known), yesterday's predictions for D are judged (`prediction_quality`, partition D), the
scheduled flights of D+1 are scored through the deployed endpoint over HTTP (`scored_flights`,
partition D+1), and the retraining sensors are evaluated; a run they request is executed
(retrain -> promotion gate -> redeploy). Every step is a Dagster run on daily partitions, so the
UI shows them and any day can be re-run there.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from dagster_project.defs.run_config import retrain_run_config
from dagster_project.defs.sensors import sensors as retrain_sensors
from dagster_project.monitoring import retraining
from dagster_project.orchestration.partitions import range_tags
from dagster_project.orchestration.resources import resolved
from dagster_project.platform import names
from dagster_project.platform.settings import Paths
from dagster_project.training import tracking


class ReplayError(RuntimeError):
    pass


@dataclass
class Retrain:
    day: str
    trigger: str
    reason: str
    run_id: str
    success: bool
    breach_to_start_s: float


@dataclass
class ReplayResult:
    days: int = 0
    retrains: list[Retrain] = field(default_factory=list)
    seconds: float = 0.0
    report: str = ""
    last_auc: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # the report's headline numbers


def run_job(
    defs: dg.Definitions,
    job: str,
    instance: dg.DagsterInstance,
    *,
    partition: str | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict[str, Any] | None = None,
    log_level: str = "WARNING",
    skip: Sequence[str] = (),
    run_id: str | None = None,
) -> dg.ExecuteInProcessResult:
    """One in-process run of ``job`` that reports failure in its result instead of raising;
    ``skip`` leaves assets out of the job's selection; ``run_id`` lets a caller follow the
    run's events (``instance.add_event_listener``) while it runs."""
    job_def = defs.get_job_def(job)
    selection = None
    if skip:
        keys = job_def.asset_layer.executable_asset_keys
        selection = [k for k in keys if k.to_user_string() not in skip]
    return job_def.execute_in_process(
        instance=instance,
        partition_key=partition,
        asset_selection=selection,
        tags=tags,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}}
        | (run_config or {}),
        raise_on_error=False,
        run_id=run_id,
    )


def _require(result: dg.ExecuteInProcessResult, what: str) -> None:
    if result.success:
        return
    messages = [e.message for e in result.all_events if e.is_step_failure and e.message is not None]
    raise ReplayError(f"{what} failed (run {result.run_id}): {' | '.join(messages)[:1500]}")


def bootstrap(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    paths: Paths,
    start: date,
    policy: retraining.RetrainPolicy,
    trials: int,
    say: Callable[[str], None],
    replay_id: str | None = None,
) -> str:
    """Before the first day: the history up to the day before ``start`` is ingested and, if
    there is no champion yet, a first model is trained on the policy's window and deployed.
    The champion the replay starts with is frozen as the registry's `baseline`: the shadow
    every monitored day scores with. Returns its version."""
    replay_tags = {retraining.TAG_REPLAY: replay_id} if replay_id else {}
    eve = start - timedelta(days=1)
    first = max(date(2013, 1, 1), start - timedelta(days=policy.window_days))
    if eve - first < timedelta(days=1):
        raise ReplayError(f"the replay must start after 2013-01-02 (history needed), not {start}")
    say(f"bootstrap: ingesting {first}..{eve - timedelta(days=1)}")
    _require(
        run_job(
            defs,
            "ingest_features_job",
            instance,
            tags=range_tags(str(first), str(eve - timedelta(days=1))) | replay_tags,
        ),
        "bootstrap ingestion",
    )
    registry = tracking.Registry(paths.mlflow_tracking_uri)
    if registry.by_alias(names.CHAMPION) is None:
        last = eve - timedelta(days=1)
        say(f"bootstrap: training the first champion on {first}..{last}")
        config = retrain_run_config(
            retraining.Trigger("bootstrap", str(last), ""),
            dataclasses.replace(policy, n_trials=trials),
        )
        tags = {
            retraining.TAG_TRIGGER: "replay_bootstrap",
            retraining.TAG_REASON: "first model",
            retraining.TAG_DAY: str(last),
        } | replay_tags
        _require(run_job(defs, "training_job", instance, run_config=config, tags=tags), "bootstrap")
    champion = registry.by_alias(names.CHAMPION)
    if champion is None:
        raise ReplayError("no champion after the bootstrap: the gate rejected the first model")
    registry.set_alias(names.BASELINE, champion.version)
    say(f"bootstrap: v{champion.version} is the frozen baseline the shadow scores with")
    _require(run_job(defs, "deploy_job", instance, tags=replay_tags), "deploying the champion")
    # The eve of the first day: ingest it and score the first day's flights.
    _require(
        run_job(defs, "daily_loop_job", instance, partition=str(eve), tags=replay_tags),
        f"day {eve}",
    )
    return champion.version


def evaluate_sensors(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursors: dict[str, str | None],
    sensors: Sequence[dg.SensorDefinition] = retrain_sensors,
    replay_id: str | None = None,
) -> list[Retrain]:
    """One tick of each retraining sensor, in process; a requested run is executed right away
    (a run_key that already ran is skipped, as the daemon would) and tagged with the replay."""
    done = []
    resources = {"monitor": resolved(defs, "monitor")}
    for sensor in sensors:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursors.get(sensor.name),
            resources=resources,
            sensor_name=sensor.name,
        )
        result = sensor(context)
        if not isinstance(result, dg.SensorResult):
            continue
        if result.cursor is not None:
            cursors[sensor.name] = result.cursor
        for request in result.run_requests or []:
            key = request.run_key or ""
            if instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": key}), limit=1):
                continue
            tags = dict(request.tags) | {"dagster/run_key": key, "dagster/sensor_name": sensor.name}
            if replay_id:
                tags[retraining.TAG_REPLAY] = replay_id
            started = time.time()
            config = dict(request.run_config)
            # A rejection fails the run by design; the replay reports the outcome itself.
            run = run_job(
                defs, "training_job", instance, run_config=config, tags=tags, log_level="CRITICAL"
            )
            record = instance.get_run_record_by_id(run.run_id)
            start_time = record.start_time if record and record.start_time else started
            done.append(
                Retrain(
                    day=tags.get(retraining.TAG_DAY, ""),
                    trigger=sensor.name,
                    reason=tags.get(retraining.TAG_REASON, ""),
                    run_id=run.run_id,
                    success=run.success,
                    breach_to_start_s=start_time
                    - float(tags.get(retraining.TAG_BREACH_AT, started)),
                )
            )
    return done


def replay(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    paths: Paths,
    start: date,
    end: date,
    *,
    trials: int = 4,
    land: bool = True,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> ReplayResult:
    """Walk ``start``..``end``; returns what happened. The endpoint is stopped at the end if the
    replay started it. ``land=False`` reads the days' files already in the landing zone (your
    own data) instead of copying them from the data set."""
    from tqdm import tqdm

    if end < start:
        raise ReplayError(f"nothing to replay: {start} is after {end}")
    monitor = resolved(defs, "monitor")
    policy = monitor.policy()
    endpoint = resolved(defs, "deployer").endpoint()
    already_up = endpoint.is_up()
    result = ReplayResult()
    began = time.perf_counter()
    cursors: dict[str, str | None] = {}
    started_at = datetime.now(UTC)
    replay_id = f"{started_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    tags = {retraining.TAG_REPLAY: replay_id}
    try:
        baseline = bootstrap(defs, instance, paths, start, policy, trials, say, replay_id)
        retraining.write_replay(
            monitor.replay_url,
            retraining.ReplayRecord(
                replay_id=replay_id,
                start=str(start),
                end=str(end),
                started_at=started_at.isoformat(timespec="seconds"),
                baseline_version=baseline,
                drift_mode=monitor.drift_mode,
            ),
        )
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        bar = tqdm(days, desc="replay", unit="day", disable=not progress)
        for day in bar:
            today = str(day)
            skip = () if land else ("landed_daily_files",)
            run = run_job(defs, "daily_loop_job", instance, partition=today, skip=skip, tags=tags)
            _require(run, f"day {today}")
            for retrain in evaluate_sensors(defs, instance, cursors, replay_id=replay_id):
                result.retrains.append(retrain)
                bar.write(
                    f"[replay] {today}: retrain by {retrain.trigger} ({retrain.reason}) -> "
                    f"{'gate passed' if retrain.success else 'not promoted'}"
                )
            meta = _quality_meta(run)
            result.last_auc = meta.get("roc_auc", result.last_auc)
            bar.set_postfix(
                auc=f"{result.last_auc:.3f}" if result.last_auc else "-",
                model=f"v{meta.get('model_version', '?')}",
                retrains=len(result.retrains),
            )
            result.days += 1
        report = run_job(defs, "report_job", instance, tags=tags)
        _require(report, "monitoring report")
        result.figures = _report_figures(report)
        result.report = monitor.url("report.html")
    finally:
        if not already_up and endpoint.stop():
            say(f"[replay] stopped the endpoint it started ({endpoint.url})")
    result.seconds = time.perf_counter() - began
    return result


def _quality_meta(run: dg.ExecuteInProcessResult) -> dict[str, Any]:
    for event in run.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("prediction_quality"):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    return {}


def _report_figures(run: dg.ExecuteInProcessResult) -> dict[str, Any]:
    for event in run.get_asset_materialization_events():
        meta = event.materialization.metadata
        if "figures" in meta and isinstance(meta["figures"].value, dict):
            return dict(meta["figures"].value)
    return {}
