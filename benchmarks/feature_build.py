"""Full-year feature build and point-in-time training-set join, rows per second.

    .venv/bin/python -m benchmarks.feature_build [--repeat 3]

Medians over repetitions after one warm-up; prints a Markdown table. The full suite
(`make bench`, benchmarks/suite.py) measures the same steps through Dagster, against a
merge_asof floor and at 1x/2x/4x the data.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import accepted
from dagster_project.features import engineering
from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.ingestion import cleaning
from dagster_project.platform import names
from dagster_project.platform.settings import feast_template


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
    flights = cleaning.validated_flights(accepted("flights"))
    weather = cleaning.validated_weather(accepted("weather"))
    planes = cleaning.validated_reference(accepted("planes"))

    def build() -> None:
        engineering.origin_weather(weather)
        engineering.carrier_delay_stats(flights)
        engineering.route_delay_stats(flights)
        engineering.plane_specs(planes)

    input_rows = len(flights) * 2 + len(weather) + len(planes)
    build_s = _median(build, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        client = FeatureStoreClient(
            feast_template("local"),
            Path(tmp) / "feast",
            f"{tmp}/features",
        )
        client.write_offline_table("origin_weather", engineering.origin_weather(weather))
        client.write_offline_table("carrier_delay_stats", engineering.carrier_delay_stats(flights))
        client.write_offline_table("route_delay_stats", engineering.route_delay_stats(flights))
        client.write_offline_table("plane_specs", engineering.plane_specs(planes))
        client.apply()
        entities = engineering.training_entities(flights)
        join_s = _median(
            lambda: client.historical_features(entities, names.FEATURE_SERVICE), args.repeat
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
