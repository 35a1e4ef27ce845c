"""Running a job from the CLI with a progress bar, and the tables the commands print."""

from __future__ import annotations

import os
import time
import uuid
from datetime import date
from typing import Any

from dagster_project.features.feast_objects import TABLES
from dagster_project.platform import settings


def _instance() -> Any:
    import dagster as dg

    paths = settings.paths()
    home = paths.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if paths.server:  # PostgreSQL storage: the databases and dagster.yaml first
        from dagster_project.platform import server

        server.prepare(paths.server, home)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def _summary(result: Any, seconds: float) -> list[tuple[str, str]]:
    """One line per figure. A range run attaches the same metadata to every partition's
    materialization, so each asset is counted once."""
    meta: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        meta.setdefault(m.asset_key.to_user_string(), {k: v.value for k, v in m.metadata.items()})

    def total(keys: Any, field: str) -> float:
        return sum(float(meta.get(k, {}).get(field) or 0) for k in keys)

    feature_tables = TABLES
    feature_secs = total(feature_tables, "build_seconds")
    checks = result.get_asset_check_evaluations()
    return [
        ("tier", settings.profile()),
        ("run id", result.run_id),
        ("assets materialized", str(len(meta))),
        (
            "raw rows in (flights + weather)",
            f"{total(('raw_flights', 'raw_weather'), 'dagster/row_count'):,.0f}",
        ),
        ("rows quarantined", f"{total(meta, 'rows_quarantined'):,.0f}"),
        ("gates passed", f"{sum(c.passed for c in checks)}/{len(checks)}"),
        ("feature rows written (offline)", f"{total(feature_tables, 'dagster/row_count'):,.0f}"),
        (
            "feature build (input rows/s)",
            f"{total(feature_tables, 'input_rows') / feature_secs:,.0f}" if feature_secs else "-",
        ),
        (
            "rows loaded into online store",
            f"{total(['online_features'], 'rows_materialized'):,.0f}",
        ),
        ("time taken", f"{seconds:.1f} s"),
    ]


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print("\n" + "-" * (width + 30))
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print("-" * (width + 30))


def _failures(result: Any) -> list[str]:
    out = []
    for event in result.all_events:
        if event.is_step_failure:
            data: Any = event.event_specific_data
            error = data.error
            while error.cause is not None:  # the user's exception, not the framework wrapper
                error = error.cause
            out.append(f"step {event.step_key}: {error.message.strip()}")
    if not out and not result.success:  # the run itself failed: its launcher, its container
        out += [f"run: {e.message}" for e in result.all_events if e.is_run_failure]
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            out.append(f"check {check.check_name}: {check.description}")
    return out


STEP_DONE = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED")


def _run(
    defs: Any, job: str, instance: Any, log_level: str, progress: bool = True, **kwargs: Any
) -> tuple[Any, float]:
    """One run with a progress bar over its steps (one per asset or check): in this process,
    or, where the tier has a Dagster of its own (``MLOPS_DAGSTER_URL``; the container tier),
    launched there, each step in its own container, and followed through the event log."""
    from tqdm import tqdm

    from dagster_project.replay import run_job

    steps = len(defs.get_job_def(job).nodes_in_topological_order)
    bar = tqdm(total=steps, desc=job, unit="step", disable=not progress, leave=True)

    def on_event(record: Any) -> None:
        event = record.dagster_event
        if event is not None and event.event_type_value in STEP_DONE:
            status = event.event_type_value.removeprefix("STEP_").lower()
            bar.set_postfix_str(f"{event.step_key} {status}", refresh=False)
            bar.update(1)

    started = time.perf_counter()
    try:
        if url := settings.dagster_url():
            from dagster_project.cli import tier_runs

            run_id = tier_runs.launch(url, job, kwargs.get("run_config"), kwargs.get("tags"))
            bar.write(f"[{job}] launched on {url}: run {run_id} (Dagster UI: {url}/runs/{run_id})")
            result: Any = tier_runs.follow(instance, run_id, on_event)
        else:
            run_id = str(uuid.uuid4())  # known before the run starts, so it can be followed
            instance.add_event_listener(run_id, on_event)
            result = run_job(defs, job, instance, log_level=log_level, run_id=run_id, **kwargs)
    finally:
        bar.close()
    return result, time.perf_counter() - started


def _training_summary(result: Any, seconds: float) -> list[tuple[str, str]]:
    meta: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        meta[m.asset_key.to_user_string()] = {k: v.value for k, v in m.metadata.items()}
    model = meta.get("flight_delay_model", {})
    rows = [
        ("training run id", result.run_id),
        ("training rows", f"{meta.get('training_set', {}).get('dagster/row_count', 0):,}"),
        ("windows", ", ".join(f"{k} {v}" for k, v in (model.get("windows") or {}).items())),
        ("challenger", f"flight_delay v{model.get('model_version')} ({model.get('model_kind')})"),
    ]
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error", "f1"):
        if f"holdout_{name}" in model:
            rows.append((f"holdout {name}", f"{model[f'holdout_{name}']:.4f}"))
    for check in result.get_asset_check_evaluations():
        rows.append(
            ("promotion gate", check.description or ("passed" if check.passed else "failed"))
        )
    endpoint = meta.get("deployed_endpoint")
    if endpoint:
        rows.append(("deployed", f"{endpoint['url']} serving v{endpoint['model_version']}"))
    rows.append(("time taken", f"{seconds:.1f} s"))
    return rows


def _cost_rows(result: Any) -> list[tuple[str, str]]:
    """Each materialized asset's resource usage and estimated cost at its compute class's price
    (what the step would cost on the `k8s` tier; dagster_project/platform/profiles.yaml)."""
    from dagster_project.orchestration.compute_asset import usage_from_metadata
    from dagster_project.platform.metering import cost_table

    return cost_table(
        [
            (
                e.materialization.asset_key.to_user_string(),
                usage_from_metadata(e.materialization.metadata),
            )
            for e in result.get_asset_materialization_events()
        ]
    )


def _score_next_day(
    url: str,
    day: date,
    count: int,
    token: str | None = None,
    defs: Any = None,
    prediction_time: str = "day_start",
) -> list[tuple[str, str]]:
    """Send the next day's scheduled flights to the endpoint (real HTTP requests, with the
    endpoint's bearer token where it wants one). A lead-time model gets each flight at its
    prediction time, after the stream has brought the online store up to then."""
    from dagster_project.serving import scoring

    flights = scoring.scheduled_flights(day, limit=count)
    actual = scoring.outcomes(day)
    if prediction_time != "day_start" and defs is not None:
        from dagster_project.replay import score_when_due

        predictions = score_when_due(defs, flights, day, prediction_time)
    else:
        predictions = scoring.score(url, flights, token)
    rows = []
    for req, pred in zip(flights, predictions, strict=True):
        decision = "DELAYED" if pred["delayed"] else "on time"
        flight = req["flight_id"].split("_")[1]
        rows.append(
            (
                f"{req['scheduled_departure'][11:16]} {flight:<7} {req['origin']}-{req['dest']}",
                f"p={pred['probability']:.2f} -> {decision:<8} v{pred['model_version']} "
                f"({pred['model_kind']}{', fallback' if pred['fallback'] else ''})"
                f"   actual: {actual[req['flight_id']]}",
            )
        )
    return rows
