"""`python -m dagster_project.serving [--host H] [--port P]`: run the endpoint with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import uvicorn

from dagster_project.serving.app import create_app
from dagster_project.serving.config import RedactingFilter, ServingConfigError
from dagster_project.serving.metrics import (
    MULTIPROC_ENV,
    PROMETHEUS_ENV,
    prepare_multiprocess_dir,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.serving", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("MLOPS_SERVING_WORKERS", "1")),
        help="uvicorn worker processes (default 1, or MLOPS_SERVING_WORKERS); each loads the "
        "model and opens the online store once",
    )
    parser.add_argument("--no-access-log", action="store_true", help="no uvicorn line per request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:  # secrets never reach the log
        handler.addFilter(RedactingFilter())
    # log_config=None: uvicorn's loggers go through the root handler and its redacting filter;
    # keep-alive longer than clients' and load balancers' idle timeouts: the server closing a
    # connection a client is reusing at that instant is a failed request for the client
    options = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "log_config": None,
        "timeout_keep_alive": 30,
        "access_log": not args.no_access_log,
    }
    if args.workers > 1:  # worker processes import the app factory themselves
        # Prometheus multiprocess mode: every worker writes its values under this folder and
        # /metrics sums them; set before the workers start (it picks the value class)
        folder = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="flight-delay-metrics-")
        prepare_multiprocess_dir(Path(folder))
        for name in (MULTIPROC_ENV, *PROMETHEUS_ENV):
            os.environ[name] = folder
        uvicorn.run(
            "dagster_project.serving.app:create_app", factory=True, workers=args.workers, **options
        )
        return
    try:
        app = create_app()
    except ServingConfigError as exc:
        sys.exit(f"refusing to start the endpoint: {exc}")
    uvicorn.run(app, **options)


if __name__ == "__main__":
    main()
