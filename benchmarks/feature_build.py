"""Full-year feature build and point-in-time training-set join, rows per second.

    .venv/bin/python benchmarks/feature_build.py [--repeat 3]

Medians over repetitions after one warm-up; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dagster_project.lib import cleaning, features, sources
from dagster_project.lib.feast_store import FeatureStoreClient
from dagster_project.lib.settings import FEATURE_REPO


def _accepted(table: str) -> pd.DataFrame:
    df = sources.load_table(table)
    if "time_hour" in df:
        df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True).dt.tz_localize(None)
    df["_rejected_by"] = None
    df["_partition"] = "2013"
    return df


def _median(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    flights = cleaning.validated_flights(_accepted("flights"))
    weather = cleaning.validated_weather(_accepted("weather"))
    planes = cleaning.validated_reference(_accepted("planes"))

    def build() -> None:
        features.origin_weather(weather)
        features.carrier_delay_stats(flights)
        features.route_delay_stats(flights)
        features.plane_specs(planes)

    input_rows = len(flights) * 2 + len(weather) + len(planes)
    build_s = _median(build, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        client = FeatureStoreClient(
            FEATURE_REPO,
            FEATURE_REPO / "feature_store.yaml",
            Path(tmp) / "feast",
            f"{tmp}/features",
        )
        client.write_offline_table("origin_weather", features.origin_weather(weather))
        client.write_offline_table("carrier_delay_stats", features.carrier_delay_stats(flights))
        client.write_offline_table("route_delay_stats", features.route_delay_stats(flights))
        client.write_offline_table("plane_specs", features.plane_specs(planes))
        client.apply()
        entities = features.training_entities(flights)
        join_s = _median(
            lambda: client.historical_features(entities, "flight_delay_v1"), args.repeat
        )
    print("| step | rows | median s | rows/s |\n|---|---|---|---|")
    print(
        f"| feature build (4 tables, full 2013) | {input_rows:,} | {build_s:.2f} | {input_rows / build_s:,.0f} |"
    )
    print(
        f"| training_set PIT join (Feast, DuckDB) | {len(entities):,} | {join_s:.2f} | {len(entities) / join_s:,.0f} |"
    )


if __name__ == "__main__":
    main()
