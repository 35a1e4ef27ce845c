"""Command line: `python -m dagster_project demo|status`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from typing import Any

from dagster_project.lib import settings


def _instance() -> Any:
    import dagster as dg

    home = settings.paths().dagster_home
    home.mkdir(parents=True, exist_ok=True)
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

    feature_tables = ("origin_weather", "carrier_delay_stats", "route_delay_stats", "plane_specs")
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


def demo(args: argparse.Namespace) -> int:
    from dagster_project.definitions import build_definitions
    from dagster_project.partitions import range_tags

    date.fromisoformat(args.start), date.fromisoformat(args.end)  # clear error on a bad date
    print(f"[demo] tier={settings.profile()} state={settings.mlops_home()}")
    print(f"[demo] ingest -> validate -> features -> online store for {args.start}..{args.end}")
    instance = _instance()
    # Built now, not at import, so the state folder is the one MLOPS_HOME names at call time.
    job = build_definitions(settings.paths()).get_job_def("ingest_features_job")
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags=range_tags(args.start, args.end),
        run_config={"loggers": {"console": {"config": {"log_level": args.log_level}}}},
        raise_on_error=False,
    )
    rows = _summary(result, time.perf_counter() - started)
    _print_table(rows)
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                data: Any = event.event_specific_data
                print(f"[demo] FAILED step {event.step_key}: {data.error.message}")
        return 1
    print("\nNext: open the Dagster UI to see the asset graph, checks and this run:")
    print("  make up        (or: DAGSTER_HOME=.mlops/dagster_home dagster dev -w workspace.yaml)")
    print("  then http://127.0.0.1:3000  ->  Assets -> View global asset lineage")
    print(
        f"  Great Expectations Data Docs: {settings.paths().gx_dir}/gx/uncommitted/data_docs/local_site/index.html"
    )
    return 0


def status(args: argparse.Namespace) -> int:
    instance = _instance()
    rows = [("tier", settings.profile()), ("state folder", str(settings.mlops_home()))]
    for record in instance.get_run_records(limit=args.runs):
        run = record.dagster_run
        rows.append((f"run {run.run_id[:8]}", f"{run.job_name}: {run.status.value}"))
    _print_table(rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagster_project", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run ingestion -> validation -> features -> online store")
    p.add_argument("--start", default="2013-01-01", help="first day (YYYY-MM-DD)")
    p.add_argument("--end", default="2013-01-31", help="last day, inclusive (YYYY-MM-DD)")
    p.add_argument("--log-level", default="INFO", help="Dagster console log level")
    p.set_defaults(func=demo)
    p = sub.add_parser("status", help="which tier, where the state is, the last runs")
    p.add_argument("--runs", type=int, default=5)
    p.set_defaults(func=status)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
