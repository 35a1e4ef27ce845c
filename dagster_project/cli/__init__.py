"""The platform's command line: `python -m dagster_project` (or `flight-mlops`).

  demo     the whole spine on the local tier: ingest, validate, features, train, gate, deploy,
           then real HTTP requests for the next day's flights
  replay   live through 2013 day by day: ingest, score, monitor, retrain on breaches
  serve    the prediction endpoint in the foreground (flight_delay@champion)
  status   which tier, where the state is, the champion and challenger, the last runs

Each subcommand has its own --help. State lives in MLOPS_HOME (default ./.mlops).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from dagster_project.cli import clock_cmd
from dagster_project.features.feast_objects import TABLES
from dagster_project.platform import clock, names, settings


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
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            out.append(f"check {check.check_name}: {check.description}")
    return out


STEP_DONE = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED")


def _run(
    defs: Any, job: str, instance: Any, log_level: str, progress: bool = True, **kwargs: Any
) -> tuple[Any, float]:
    """One in-process run with a progress bar over its steps (one per asset or check)."""
    from tqdm import tqdm

    from dagster_project.orchestration.replay import run_job

    run_id = str(uuid.uuid4())  # known before the run starts, so its events can be followed
    steps = len(defs.get_job_def(job).nodes_in_topological_order)
    bar = tqdm(total=steps, desc=job, unit="step", disable=not progress, leave=True)

    def on_event(record: Any) -> None:
        event = record.dagster_event
        if event is not None and event.event_type_value in STEP_DONE:
            status = event.event_type_value.removeprefix("STEP_").lower()
            bar.set_postfix_str(f"{event.step_key} {status}", refresh=False)
            bar.update(1)

    instance.add_event_listener(run_id, on_event)
    started = time.perf_counter()
    try:
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
    from dagster_project.orchestration.compute_classes import usage_from_metadata
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


def _score_next_day(url: str, day: date, count: int) -> list[tuple[str, str]]:
    """Send the next day's scheduled flights to the endpoint (a real HTTP batch request)."""
    from dagster_project.serving import scoring

    flights = scoring.scheduled_flights(day, limit=count)
    actual = scoring.outcomes(day)
    rows = []
    for req, pred in zip(flights, scoring.score(url, flights), strict=True):
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


def demo(args: argparse.Namespace) -> int:
    from dagster_project.definitions import build_definitions
    from dagster_project.orchestration.partitions import range_tags

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

    endpoint = (defs.resources or {})["deployer"].endpoint()
    already_up = endpoint.is_up()
    print(f"[demo] 2/3 train (Optuna, {args.trials} trials per family) -> gate -> deploy")
    try:
        result, seconds = _run(
            defs,
            "training_job",
            instance,
            args.log_level,
            not args.no_progress,
            run_config={
                "ops": {
                    "training_set": {"config": {"start_date": args.start, "end_date": args.end}},
                    "flight_delay_model": {
                        "config": {
                            "n_trials": args.trials,
                            "holdout_days": args.holdout_days,
                            "validation_days": args.validation_days,
                        }
                    },
                }
            },
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
        print(f"[demo] 3/3 real requests to {endpoint.url}/predict/batch for flights of {next_day}")
        _print_table(_score_next_day(endpoint.url, next_day, args.requests))
    finally:
        if not already_up and endpoint.stop():
            print(f"[demo] stopped the endpoint it started ({endpoint.url})")
    print("\nNext:")
    print("  make up      starts the UIs in the background (make down stops them):")
    print("                 Dagster  http://127.0.0.1:3000  assets, checks, runs, plots")
    print("                 MLflow   http://127.0.0.1:5000  runs, `flight_delay` versions")
    print("                 Airflow  http://127.0.0.1:8080  the schedules that launch Dagster jobs")
    print("                 Feast    http://127.0.0.1:8888  entities, feature views, services")
    print(f"               MLflow store: {paths.mlflow_tracking_uri}")
    print(f"  make serve   the prediction endpoint alone, {endpoint.url}/docs")
    print("  python -m dagster_project status   the champion and the last runs")
    print(
        f"  Great Expectations Data Docs: {paths.gx_dir}/gx/uncommitted/data_docs/local_site/index.html"
    )
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
    from dagster_project.orchestration.replay import ReplayError
    from dagster_project.orchestration.replay import replay as run_replay

    start, end = replay_window(args.start, args.end)
    paths = settings.paths()
    print(f"[replay] tier={settings.profile()} state={settings.mlops_home()} {start}..{end}")
    try:
        result = run_replay(
            build_definitions(paths),
            _instance(),
            paths,
            start,
            end,
            trials=args.trials,
            land=not args.no_land,
        )
    except ReplayError as exc:
        print(f"[replay] FAILED: {exc}")
        return 1
    rows = [("days replayed", str(result.days)), ("retrains", str(len(result.retrains)))]
    for r in result.retrains:
        rows.append(
            (
                f"  {r.day} {r.trigger}",
                f"{r.reason[:80]} -> {'promoted/deployed' if r.success else 'rejected'} "
                f"(breach -> run start {r.breach_to_start_s:.1f} s)",
            )
        )
    for rec in loop_records(paths):
        before = f"{rec['auc_before']:.4f}" if rec["auc_before"] is not None else "-"
        rows.append(
            (
                f"  gate v{rec['challenger_version']} ({rec['trigger']})",
                f"{rec['decision']}: holdout AUC champion {before} -> challenger "
                f"{rec['auc_after']:.4f} on {rec['data_window']}",
            )
        )
    rows += [
        ("last day's AUC", f"{result.last_auc:.4f}" if result.last_auc else "-"),
        ("report", result.report),
        ("time taken", f"{result.seconds:.0f} s"),
    ]
    _print_table(rows)
    return 0


def loop_records(paths: settings.Paths) -> list[dict[str, Any]]:
    from dagster_project.monitoring import retraining

    return retraining.read_retrains(paths.monitoring_dir / "retrains.jsonl")


def _model_rows(tracking_uri: str) -> list[tuple[str, str]]:
    """The champion and challenger of `flight_delay`, or why there is none."""
    from dagster_project.training import tracking

    if tracking_uri.startswith("sqlite:///") and not os.path.exists(
        tracking_uri.removeprefix("sqlite:///")
    ):
        return [("champion", "none yet (run `make demo`)")]
    registry = tracking.Registry(tracking_uri)
    rows = []
    for alias in (names.CHAMPION, names.CHALLENGER):
        version = registry.by_alias(alias)
        if version is None:
            rows.append((alias, "none"))
            continue
        tags = version.tags
        auc = tags.get("holdout_roc_auc")
        rows.append(
            (
                alias,
                f"flight_delay v{version.version} ({tags.get('model_kind', '?')})"
                + (f", holdout AUC {float(auc):.4f}" if auc else "")
                + (
                    f", trained on {tags[tracking.TAG_PARTITIONS]}"
                    if tracking.TAG_PARTITIONS in tags
                    else ""
                ),
            )
        )
    return rows


def _run_row(record: Any) -> tuple[str, str]:
    run = record.dagster_run
    started = (
        datetime.fromtimestamp(record.start_time).strftime("%Y-%m-%d %H:%M")
        if record.start_time
        else "not started"
    )
    took = (
        f"{record.end_time - record.start_time:.0f} s"
        if record.start_time and record.end_time
        else "-"
    )
    partition = run.tags.get("dagster/partition") or (
        f"{run.tags['dagster/asset_partition_range_start']}..{run.tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in run.tags
        else ""
    )
    return (
        f"run {run.run_id[:8]}",
        f"{run.job_name + ':':<21} {run.status.value:<8} {started}  {took:>6}  {partition}".rstrip(),
    )


def status(args: argparse.Namespace) -> int:
    paths = settings.paths()
    instance = _instance()
    rows = [
        ("tier", settings.profile()),
        ("state folder", str(settings.mlops_home())),
        ("MLflow store", paths.mlflow_tracking_uri),
    ]
    rows += _model_rows(paths.mlflow_tracking_uri)
    records = instance.get_run_records(limit=args.runs)
    rows += [_run_row(r) for r in records] or [("runs", "none yet")]
    _print_table(rows)
    return 0


def init(args: argparse.Namespace) -> int:
    """Prepare the tier: on `server`, the PostgreSQL databases, the S3 bucket, dagster.yaml."""
    from dagster_project.platform import server

    paths = settings.paths()
    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    rows = [("tier", settings.profile()), ("state folder", str(paths.home))]
    if paths.server:
        try:
            done = server.prepare(paths.server, paths.dagster_home)
        except server.ServiceUnavailableError as exc:
            print(f"[init] FAILED: {exc}")
            return 1
        rows += list(done.items())
        rows += [
            ("MLflow store", paths.mlflow_tracking_uri),
            ("landing zone", paths.landing_url),
            ("Feast project", paths.server.feast_project),
            ("Redis keys", f"{paths.server.redis_prefix}* on {paths.server.redis_url()}"),
        ]
    _print_table(rows)
    return 0


def consume(args: argparse.Namespace) -> int:
    """The long-running stream consumer (what `make up` starts): departure events in, live
    origin-traffic features out, until interrupted (or idle for --idle-exit seconds)."""
    import signal

    from dagster_project.definitions import build_resources

    resources = build_resources(settings.paths())
    events: Any = resources["events"]
    if args.batch_size:
        events = events.model_copy(update={"batch_size": args.batch_size})
    client = resources["feast"].client()  # type: ignore[attr-defined]
    stop = {"now": False}

    def request_stop(signum: int, _frame: Any) -> None:
        print(f"[consume] signal {signum}: stopping after this batch", flush=True)
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    consumer = events.consumer(client.push)
    print(
        f"[consume] tier={settings.profile()} group={consumer.group} name={consumer.name} "
        f"backlog={consumer.log.backlog(consumer.group)}",
        flush=True,
    )

    def progress(stats: Any) -> None:
        print(
            f"[consume] events={stats.events} pushes={stats.pushes} boundary={stats.last_boundary}",
            flush=True,
        )

    while True:
        try:
            stats = consumer.run(
                idle_exit_s=args.idle_exit, on_batch=progress, should_stop=lambda: stop["now"]
            )
            break
        except Exception as exc:  # a service blip: nothing was acknowledged, so retry
            if args.idle_exit is not None:
                raise
            print(f"[consume] {type(exc).__name__}: {exc}; retrying in 5 s", flush=True)
            time.sleep(5)
    _print_table([(k, str(v)) for k, v in stats.summary().items()])
    return 0


def serve(args: argparse.Namespace) -> int:
    from dagster_project.serving.__main__ import main as serve_main

    print(f"[serve] flight_delay@champion on http://{args.host}:{args.port} (docs: /docs)")
    serve_main(["--host", args.host, "--port", str(args.port), "--log-level", args.log_level])
    return 0


def main(argv: list[str] | None = None) -> int:
    # MLflow's download bars would interleave with the replay's progress bar.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = argparse.ArgumentParser(
        prog="python -m dagster_project",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo",
        help="the whole spine: ingest .. features, train, gate, deploy, score",
        description="Ingest, validate and featurize START..END in one Dagster run, train and "
        "gate a model on it (the last --holdout-days held out), deploy the champion to a local "
        "endpoint and send it the next day's flights over HTTP. Progress bars follow each run's "
        "steps; a summary table follows each stage.",
    )
    p.add_argument("--start", default="2013-01-01", help="first day (YYYY-MM-DD)")
    p.add_argument("--end", default="2013-07-31", help="last day, inclusive (YYYY-MM-DD)")
    p.add_argument("--holdout-days", type=int, default=31, help="last days held out for the gate")
    p.add_argument("--validation-days", type=int, default=14, help="days before the holdout")
    p.add_argument("--trials", type=int, default=6, help="Optuna trials per model family")
    p.add_argument("--requests", type=int, default=12, help="next-day flights to score")
    p.add_argument("--skip-training", action="store_true", help="stop after the features")
    p.add_argument(
        "--log-level",
        default="WARNING",
        help="Dagster console log level (INFO shows every step's log; default WARNING)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=demo)
    p = sub.add_parser(
        "replay",
        help="walk day by day through 2013: ingest, score, monitor, retrain",
        description="A simulated clock walks START..END: each day is ingested, scored through "
        "the endpoint and judged against its outcomes; the retraining sensors decide on "
        "retrains. Ends with a table of the retrains and the HTML report's path.",
    )
    p.add_argument(
        "--start",
        default=None,
        help="first simulated day (YYYY-MM-DD; default: the clock's simulated today when "
        "MLOPS_CLOCK_OFFSET_DAYS is set, else 2013-07-01)",
    )
    p.add_argument(
        "--end", default=None, help="last simulated day, inclusive (default: 91 days on)"
    )
    p.add_argument("--trials", type=int, default=4, help="Optuna trials for the first model")
    p.add_argument(
        "--no-land",
        action="store_true",
        help="use the files already in the landing zone instead of copying the data set's",
    )
    p.set_defaults(func=replay)
    clock_cmd.add_parser(sub)
    p = sub.add_parser("init", help="prepare the tier (server: databases, bucket, dagster.yaml)")
    p.set_defaults(func=init)
    p = sub.add_parser(
        "consume", help="run the stream consumer: departure events -> live online features"
    )
    p.add_argument(
        "--idle-exit", type=float, default=None, help="stop after this many idle seconds"
    )
    p.add_argument("--batch-size", type=int, default=0, help="events per read (default 500)")
    p.set_defaults(func=consume)
    p = sub.add_parser(
        "serve",
        help="the prediction endpoint in the foreground (flight_delay@champion)",
        description="Run the FastAPI endpoint with uvicorn; it loads models:/flight_delay@champion "
        "and reads Feast's online store. Ctrl-C stops it.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=settings.serving_port(),
        help="port (default MLOPS_SERVING_PORT or 8000)",
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    p.set_defaults(func=serve)
    p = sub.add_parser(
        "status",
        help="which tier, the champion and challenger, the last runs",
        description="What is there: the tier, the state folder, the `flight_delay` champion and "
        "challenger in MLflow, and the last Dagster runs (job, status, start, duration, partition).",
    )
    p.add_argument("--runs", type=int, default=8, help="how many recent runs to list")
    p.set_defaults(func=status)
    args = parser.parse_args(argv)
    from dagster_project.platform.server import ServiceUnavailableError

    try:
        return int(args.func(args))
    except ServiceUnavailableError as exc:  # a server-tier service is down: say which, no trace
        print(f"[{args.command}] FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
