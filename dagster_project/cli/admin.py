"""`status`, `init` (the server tier's databases and bucket), `consume` (the stream consumer) and `serve`."""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from typing import Any

from dagster_project.cli.output import _instance, _print_table
from dagster_project.platform import names, settings


def loop_records(paths: settings.Paths) -> list[dict[str, Any]]:
    from dagster_project.monitoring import retraining
    from dagster_project.platform import storage

    return retraining.read_retrains(storage.join(paths.monitoring_url, "retrains"))


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
            ("lake", paths.lake_url),
            ("prediction log", paths.prediction_log_url),
            ("monitoring", paths.monitoring_url),
            ("GX Data Docs", f"{paths.gx_docs_url}/data_docs/index.html"),
            ("Feast project", paths.server.feast_project),
            ("Redis keys", f"{paths.server.redis_prefix}* on {paths.server.redis_url()}"),
        ]
    _print_table(rows)
    return 0


def consume(args: argparse.Namespace) -> int:
    """The long-running stream consumer (what `make up` starts): departure, weather and tick
    events in, live feature rows out, until interrupted (or idle for --idle-exit seconds)."""
    import signal

    from dagster_project.definitions import build_resources

    resources = build_resources(settings.paths())
    events: Any = resources["stream"]
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
