"""Retraining triggers: monitoring breaches, enough new labels, and a (stopped) weekly schedule.

The rules live in ``monitoring/retraining.py``; the sensors only read monitoring's materializations, keep a
cursor and turn a trigger into a `training_job` run request with a ``run_key``, so one breach
never retrains twice.
"""

import json
import time
from collections.abc import Mapping
from typing import Any

import dagster as dg

from dagster_project.defs.jobs import training_job
from dagster_project.defs.monitoring import QUALITY
from dagster_project.defs.run_config import retrain_run_config
from dagster_project.monitoring import retraining
from dagster_project.orchestration.resources import MonitoringResource


def day_statuses(
    instance: dg.DagsterInstance, after_day: str, limit: int = 400
) -> list[retraining.DayStatus]:
    """Monitoring's verdict per day after ``after_day`` (the latest materialization of each day)."""
    records = instance.fetch_materializations(QUALITY, limit=limit).records
    by_day: dict[str, retraining.DayStatus] = {}
    for record in records:  # newest first
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        day = str(meta["day"].value) if "day" in meta else record.partition_key
        if day is None or day <= after_day or day in by_day:
            continue
        by_day[day] = retraining.DayStatus(
            day=day,
            judged=bool(meta["judged"].value) if "judged" in meta else False,
            breaches=_strings(meta, "breaches"),
            drift_errors=_strings(meta, "drift_errors"),
            recorded_at=record.timestamp,
            drift_alarm=bool(meta["drift_alarm"].value) if "drift_alarm" in meta else None,
            drift_reason=str(meta["drift_reason"].value) if "drift_reason" in meta else "",
        )
    return sorted(by_day.values(), key=lambda s: s.day)


def _strings(meta: Mapping[str, Any], key: str) -> list[str]:
    value = meta[key].value if key in meta else None
    return [str(v) for v in value] if isinstance(value, list) else []


def _request(
    context: dg.SensorEvaluationContext,
    trigger: retraining.Trigger,
    policy: retraining.RetrainPolicy,
    history: list[retraining.DayStatus],
) -> dg.RunRequest:
    recorded = max((s.recorded_at for s in history if s.day == trigger.day), default=time.time())
    return dg.RunRequest(
        run_key=trigger.key,
        run_config=retrain_run_config(trigger, policy),
        tags={
            retraining.TAG_TRIGGER: context.sensor_name,
            retraining.TAG_REASON: trigger.reason[:250],
            retraining.TAG_DAY: trigger.day,
            retraining.TAG_BREACH_AT: f"{recorded:.3f}",
        },
    )


def _cursor(context: dg.SensorEvaluationContext) -> str:
    return str(json.loads(context.cursor or "{}").get("last_day", ""))


@dg.sensor(
    job=training_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def quality_breach_sensor(
    context: dg.SensorEvaluationContext, monitor: MonitoringResource
) -> dg.SensorResult:
    """Retrain when quality stays below the floor or the drift alarm stays on."""
    last = _cursor(context)
    history = day_statuses(context.instance, last)
    if not history:
        return dg.SensorResult(skip_reason="no new monitoring results")
    trigger = retraining.breach_trigger(history, monitor.policy(), last or None)
    if trigger is None:
        return dg.SensorResult(skip_reason=f"healthy through {history[-1].day}")
    return dg.SensorResult(
        run_requests=[_request(context, trigger, monitor.policy(), history)],
        cursor=json.dumps({"last_day": trigger.day}),
    )


@dg.sensor(
    job=training_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def new_labels_sensor(
    context: dg.SensorEvaluationContext, monitor: MonitoringResource
) -> dg.SensorResult:
    """Retrain once enough newly labeled days have arrived since the last such retrain."""
    history = day_statuses(context.instance, _cursor(context))
    trigger = retraining.labels_trigger(history, monitor.policy())
    if trigger is None:
        return dg.SensorResult(skip_reason=f"{sum(s.judged for s in history)} new labeled days")
    return dg.SensorResult(
        run_requests=[_request(context, trigger, monitor.policy(), history)],
        cursor=json.dumps({"last_day": trigger.day}),
    )


weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain_schedule",
    job=training_job,
    cron_schedule="0 6 * * 1",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    tags={
        retraining.TAG_TRIGGER: "weekly_retrain_schedule",
        retraining.TAG_REASON: "weekly retrain",
    },
    description="Weekly retrain on the default window (off by default; turn it on in the UI).",
)

sensors = [quality_breach_sensor, new_labels_sensor]
schedules = [weekly_retrain_schedule]
