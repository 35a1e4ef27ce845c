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

from dagster_project.cli import clock_cmd
from dagster_project.cli.admin import consume, init, serve, status
from dagster_project.cli.spine import demo, replay
from dagster_project.platform import settings


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
        "steps; a summary table follows each stage. With MLOPS_DAGSTER_URL (the container "
        "tier: `make demo PROFILE=k8s-docker` after `make up PROFILE=k8s-docker`) each run is "
        "launched on that Dagster, each step in its own container, and deploys to the tier's "
        "serving.",
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
    p.add_argument(
        "--drift-mode",
        choices=("calibrated", "fixed"),
        default=None,
        help="the drift alarm that drives retraining: calibrated (bars from the reference's "
        "own days, weighed by importance; the default) or fixed (PSI >= 0.25 on an "
        "important feature: the rule before); both are recorded and judged either way",
    )
    p.add_argument(
        "--clock",
        choices=("intraday", "daily"),
        default="intraday",
        help="intraday (the default): 5-minute steps that publish and consume the day's events "
        "and score each flight at its prediction time through the endpoint, closing each day "
        "at midnight; daily: one step a day, tomorrow's flights scored at the day's start "
        "(v1 models; faster, for long replays)",
    )
    p.set_defaults(func=replay)
    clock_cmd.add_parser(sub)
    p = sub.add_parser("init", help="prepare the tier (server: databases, bucket, dagster.yaml)")
    p.set_defaults(func=init)
    p = sub.add_parser(
        "consume",
        help="run the stream consumer: schedule, departure and weather events -> live online features",
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
    from dagster_project.cli.tier_runs import TierRunError
    from dagster_project.platform.server import ServiceUnavailableError

    try:
        return int(args.func(args))
    # a server-tier service is down, or the tier's Dagster did not take the run: say which
    except (ServiceUnavailableError, TierRunError) as exc:
        print(f"[{args.command}] FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
