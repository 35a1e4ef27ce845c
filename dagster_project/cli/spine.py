"""`demo` (the whole spine) and `replay` (live through 2013 day by day)."""

from __future__ import annotations

import argparse
from datetime import date, timedelta

from dagster_project.cli.admin import loop_records
from dagster_project.cli.output import (
    _cost_rows,
    _failures,
    _instance,
    _print_table,
    _run,
    _score_next_day,
    _summary,
    _training_summary,
)
from dagster_project.monitoring import retraining
from dagster_project.platform import clock, names, settings


def demo(args: argparse.Namespace) -> int:
    from dagster_project.definitions import build_definitions
    from dagster_project.defs.run_config import training_run_config
    from dagster_project.orchestration.partitions import range_tags
    from dagster_project.orchestration.resources import resolved
    from dagster_project.training import tracking

    start, end = replay_window(args.start, args.end)
    paths = settings.paths()
    print(f"[demo] tier={settings.profile()} state={settings.mlops_home()}")
    instance = _instance()
    # Built now, not at import, so the state folder is the one MLOPS_HOME names at call time.
    defs = build_definitions(paths)
    print(f"[demo] 1/3 ingest -> validate -> features -> online store for {start}..{end}")
    result, seconds = _run(
        defs,
        "ingest_features_job",
        instance,
        args.log_level,
        not args.no_progress,
        tags=range_tags(args.start, args.end),
    )
    _print_table(_summary(result, seconds))
    if not result.success:
        for line in _failures(result):
            print(f"[demo] FAILED {line}")
        return 1
    if args.skip_training:
        return 0

    endpoint = resolved(defs, "deployer").endpoint()  # its token is an EnvVar on `server`
    already_up = endpoint.is_up()
    print(f"[demo] 2/3 train (Optuna, {args.trials} trials per family) -> gate -> deploy")
    try:
        result, seconds = _run(
            defs,
            "training_job",
            instance,
            args.log_level,
            not args.no_progress,
            run_config=training_run_config(
                args.start,
                args.end,
                model={
                    "n_trials": args.trials,
                    "holdout_days": args.holdout_days,
                    "validation_days": args.validation_days,
                },
            ),
        )
        _print_table(_training_summary(result, seconds))
        if costs := _cost_rows(result):
            _print_table(costs)
        for line in _failures(result):
            print(f"[demo] {line}")
        if not result.success:
            print("[demo] training did not deploy a model; see the lines above")
            return 1
        next_day = end + timedelta(days=1)
        champion = tracking.Registry(paths.mlflow_tracking_uri).by_alias(names.CHAMPION)
        when = champion.prediction_time if champion else "day_start"
        how = (
            "each at its prediction time, the day's events streamed up to it"
            if when != "day_start"
            else "at the day's start"
        )
        print(
            f"[demo] 3/3 real requests to {endpoint.url}/predict/batch for flights of "
            f"{next_day} ({how})"
        )
        _print_table(
            _score_next_day(endpoint.url, next_day, args.requests, endpoint.token, defs, when)
        )
    finally:
        if not already_up and endpoint.stop():
            print(f"[demo] stopped the endpoint it started ({endpoint.url})")
    print("\nNext:")
    if tier_url := settings.dagster_url():  # the runs went to the tier's own Dagster
        print(f"  Dagster UI   {tier_url}/runs  the two runs above, each step's container")
        print(f"               MLflow store: {paths.mlflow_tracking_uri}")
        print(f"  serving      {endpoint.url}/docs  (the tier's serving, bearer token required)")
    else:
        print("  make up      starts the UIs in the background (make down stops them):")
        print("                 Dagster  http://127.0.0.1:3000  assets, checks, runs, plots")
        print("                 MLflow   http://127.0.0.1:5000  runs, `flight_delay` versions")
        print(
            "                 Airflow  http://127.0.0.1:8080  the schedules that launch Dagster jobs"
        )
        print("                 Feast    http://127.0.0.1:8888  entities, feature views, services")
        print(f"               MLflow store: {paths.mlflow_tracking_uri}")
        print(f"  make serve   the prediction endpoint alone, {endpoint.url}/docs")
    print("  python -m dagster_project status   the champion and the last runs")
    docs = (
        f"{paths.gx_docs_url}/data_docs/index.html"
        if paths.gx_docs_url
        else f"{paths.gx_dir}/gx/uncommitted/data_docs/local_site/index.html"
    )
    print(f"  Great Expectations Data Docs: {docs}")
    return 0


def replay_window(start: str | None, end: str | None) -> tuple[date, date]:
    """The replay's days: given ones, else from the simulated clock (shared with Airflow)."""
    if start:
        first = date.fromisoformat(start)
    elif clock.is_set() and clock.in_data(clock.simulated_today()):
        first = clock.simulated_today()
    else:
        first = date(2013, 7, 1)
    last = date.fromisoformat(end) if end else min(clock.DATA_LAST, first + timedelta(days=91))
    return first, last


def replay(args: argparse.Namespace) -> int:
    from dagster_project.definitions import build_definitions
    from dagster_project.orchestration.resources import MonitoringResource, resolved
    from dagster_project.replay import ReplayError
    from dagster_project.replay import replay as run_replay

    start, end = replay_window(args.start, args.end)
    paths = settings.paths()
    print(f"[replay] tier={settings.profile()} state={settings.mlops_home()} {start}..{end}")
    defs = build_definitions(paths)
    clock_kind = getattr(args, "clock", "intraday")
    changes: dict[str, object] = {}
    if getattr(args, "drift_mode", None):
        changes["drift_mode"] = args.drift_mode
        print(f"[replay] drift alarm: {args.drift_mode}")
    if clock_kind == "daily":  # scores at the day's start: retrain v1 models for that time
        changes |= {
            "retrain_feature_service": names.FEATURE_SERVICE_V1,
            "retrain_prediction_time": "day_start",
        }
    print(f"[replay] clock: {clock_kind}")
    if changes:
        monitor = resolved(defs, "monitor")
        fields = {k: getattr(monitor, k) for k in MonitoringResource.model_fields}
        overrides: dict[str, object] = {"monitor": MonitoringResource(**(fields | changes))}
        defs = build_definitions(paths, resource_overrides=overrides)
    try:
        result = run_replay(
            defs,
            _instance(),
            paths,
            start,
            end,
            trials=args.trials,
            land=not args.no_land,
            clock=clock_kind,
        )
    except ReplayError as exc:
        print(f"[replay] FAILED: {exc}")
        return 1
    rows = [("days replayed", str(result.days)), ("retrains", str(len(result.retrains)))]
    for day, why in result.blocked.items():
        rows.append((f"  {day} BLOCKED", f"data-quality gate: {why[:200]}"))
    for r in result.retrains:
        rows.append(
            (
                f"  {r.day} {r.trigger}",
                f"{r.reason[:80]} -> {r.outcome or ('promoted' if r.success else 'rejected')} "
                f"(breach -> run start {r.breach_to_start_s:.1f} s)",
            )
        )
    for rec in loop_records(paths):
        before = f"{rec['auc_before']:.4f}" if rec["auc_before"] is not None else "-"
        reviewed = rec["trigger"] == retraining.REVIEW_TRIGGER
        if rec["trigger"] == retraining.ROLLBACK_TRIGGER:
            rows.append(
                (
                    f"  rollback v{rec['challenger_version']} ({rec['trigger']})",
                    f"{rec['day']}: served mean daily AUC {before} -> frozen "
                    f"v{rec['champion_version']} {rec['auc_after']:.4f}",
                )
            )
            continue
        rows.append(
            (
                f"  {'review' if reviewed else 'gate'} v{rec['challenger_version']} "
                f"({rec['trigger']})",
                f"{rec['decision']}: {'shadow mean daily' if reviewed else 'holdout'} AUC "
                f"champion {before} -> challenger {rec['auc_after']:.4f} on {rec['data_window']}",
            )
        )
    for d in result.intraday:
        skew = f"{d.skew_differing} of {d.skew_cells}" if d.skew_cells is not None else "-"
        rows.append(
            (
                f"  {d.day}",
                f"{d.scored} scored, {d.seconds:.1f} s wall (stream {d.stream_seconds:.1f}, "
                f"scoring {d.scoring_seconds:.1f}, close {d.close_seconds:.1f}), skew {skew}",
            )
        )
    rows += _figure_rows(result.figures)
    rows += [
        ("last day's AUC", f"{result.last_auc:.4f}" if result.last_auc else "-"),
        ("report", result.report),
        ("time taken", f"{result.seconds:.0f} s"),
    ]
    _print_table(rows)
    return 0


def _share(value: object) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "n/a"


def _figure_rows(figures: dict) -> list[tuple[str, str]]:
    """The report's judgement of the replay: alarms against drops, served vs frozen."""
    if not figures:
        return []
    rows = []
    for rule, score in (figures.get("by_rule") or {}).items():
        drove = " (drove retraining)" if rule == figures.get("drift_mode") else ""
        rows.append(
            (
                f"alarms, {rule}{drove}",
                f"{score['alarms']} days, precision {_share(score['precision'])} "
                f"({score['followed_by_drop']} followed by a drop within "
                f"{score['horizon_days']} d; base rate {_share(score.get('base_rate'))}), "
                f"recall {_share(score['recall'])} ({score['preceded_by_alarm']} of "
                f"{score['drops']} drops)",
            )
        )
    gain = figures.get("mean_auc_gain")
    if isinstance(gain, int | float):
        rows.append(
            (
                f"AUC gain over frozen v{figures.get('frozen_version')}",
                f"{gain:+.4f} (95% interval {figures['auc_gain_low']:+.4f} .. "
                f"{figures['auc_gain_high']:+.4f}, {figures['auc_gain_days']} days)",
            )
        )
    return rows
