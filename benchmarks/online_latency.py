"""Online feature read latency: Feast's Redis online store (server tier) vs SQLite (local tier).

    .venv/bin/python benchmarks/online_latency.py [--reads 10000] [--days 14]

Builds the features of the first ``--days`` days of 2013 once (the local tier's
``ingest_features_job`` in a temporary state folder), materializes the same offline tables into
both online stores (SQLite file; Redis on MLOPS_REDIS_HOST:PORT with the Feast registry in
PostgreSQL, under a throwaway namespace that is dropped afterwards), then times ``--reads``
single-flight reads of the `flight_delay_v1` FeatureService, as the endpoint issues them, against
each store in turn: p50, p90, p99 and the mean, after a warm-up. Needs PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.platform import names, server
from dagster_project.platform.settings import Paths, ServerSettings

SERVICE = names.FEATURE_SERVICE


def build_features(home: Path, days: int) -> Paths:
    import dagster as dg

    from dagster_project.definitions import build_definitions
    from dagster_project.orchestration.partitions import range_tags

    paths = Paths(home)
    end = f"2013-01-{days:02d}"
    result = (
        build_definitions(paths)
        .get_job_def("ingest_features_job")
        .execute_in_process(
            tags=range_tags("2013-01-01", end), instance=dg.DagsterInstance.ephemeral()
        )
    )
    if not result.success:
        raise SystemExit("feature build failed")
    return paths


def entity_rows(paths: Paths, n: int, seed: int = 7) -> list[dict]:
    from dagster_project.platform import storage

    files = storage.list_files(f"{paths.lake_url}/validated_flights", ".parquet")
    flights = pd.concat([storage.read_parquet(f) for f in files], ignore_index=True)
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        f = flights.iloc[rng.randrange(len(flights))]
        rows.append(
            {
                "origin": f["origin"],
                "carrier": f["carrier"],
                "route": f["route"],
                "tailnum": f["tailnum"] if isinstance(f["tailnum"], str) else "unknown",
                "sched_dep_epoch_s": int(f["sched_dep_ts"].timestamp()),
                "distance": float(f["distance"]),
            }
        )
    return rows


def time_reads(client: FeatureStoreClient, rows: list[dict], warmup: int = 200) -> dict:
    for row in rows[:warmup]:
        client.online_features([row], SERVICE)
    samples = []
    for row in rows:
        t = time.perf_counter()
        client.online_features([row], SERVICE)
        samples.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(samples, n=100)
    return {
        "reads": len(samples),
        "p50_ms": q[49],
        "p90_ms": q[89],
        "p99_ms": q[98],
        "mean_ms": statistics.fmean(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building {args.days} days of features ...", flush=True)
        paths = build_features(Path(tmp) / "mlops", args.days)
        rows = entity_rows(paths, args.reads)
        start, end = datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 1, args.days + 1, tzinfo=UTC)
        sqlite = FeatureStoreClient(paths.feast_template, paths.feast_dir, paths.features_url)
        tier = ServerSettings(namespace=f"bench{uuid.uuid4().hex[:8]}")
        server.ensure_databases(tier)
        try:
            redis = FeatureStoreClient(
                Paths(paths.home, tier).feast_template,
                Path(tmp) / "feast-redis",
                paths.features_url,
                Paths(paths.home, tier).feast_overrides(),
            )
            redis.apply()
            redis.materialize(start, end)
            results = {}
            for name, client in (("sqlite", sqlite), ("redis", redis)):
                print(f"{args.reads} reads from {name} ...", flush=True)
                results[name] = time_reads(client, rows)
        finally:
            server.drop_databases(tier)
            server.drop_redis_keys(tier)
    table = pd.DataFrame(results).T
    print(table.round(3).to_markdown())
    print(
        f"\nredis/sqlite p50 {results['redis']['p50_ms'] / results['sqlite']['p50_ms']:.2f}x, "
        f"p99 {results['redis']['p99_ms'] / results['sqlite']['p99_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
