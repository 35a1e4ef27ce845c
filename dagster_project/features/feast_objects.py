"""Feast objects of the platform: entities, sources, views, on-demand views and FeatureServices.

:func:`build` makes them for a lake location (a path or ``s3://`` URL); Dagster, the endpoint and
the ``feast`` CLI (``feature_repo/definitions.py``) all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64

from dagster_project.features.engineering import WEATHER_COLUMNS
from dagster_project.platform.names import FEATURE_SERVICE, TRAFFIC_SERVICE
from dagster_project.streaming import traffic

TABLES = (
    "origin_weather",
    "carrier_delay_stats",
    "route_delay_stats",
    "plane_specs",
    traffic.VIEW,
)


@dataclass(frozen=True)
class FeatureObjects:
    entities: list[Entity]
    sources: list[FileSource | PushSource]
    views: list[FeatureView]
    on_demand_views: list
    services: list[FeatureService]

    def all(self) -> list:
        return [*self.entities, *self.views, *self.on_demand_views, *self.services]


def offline_table_url(features_url: str, table: str) -> str:
    return f"{features_url.rstrip('/')}/{table}.parquet"


def build(features_url: str) -> FeatureObjects:
    """All Feast objects, with offline sources under ``features_url`` (a path or ``s3://`` URL)."""
    origin = Entity(
        name="origin",
        join_keys=["origin"],
        value_type=ValueType.STRING,
        description="NYC departure airport (EWR, JFK, LGA)",
    )
    carrier = Entity(
        name="carrier",
        join_keys=["carrier"],
        value_type=ValueType.STRING,
        description="Two-letter airline code",
    )
    route = Entity(
        name="route",
        join_keys=["route"],
        value_type=ValueType.STRING,
        description="Origin-destination pair, e.g. JFK-LAX",
    )
    plane = Entity(
        name="plane",
        join_keys=["tailnum"],
        value_type=ValueType.STRING,
        description="Aircraft tail number",
    )

    def source(table: str) -> FileSource:
        return FileSource(
            name=f"{table}_source",
            path=offline_table_url(features_url, table),
            timestamp_field="event_timestamp",
        )

    srcs: dict[str, FileSource | PushSource] = {t: source(t) for t in TABLES}
    # The streaming view: the consumer pushes live aggregates; the batch table backs it offline.
    srcs[traffic.VIEW] = PushSource(name=traffic.PUSH_SOURCE, batch_source=srcs[traffic.VIEW])
    origin_weather = FeatureView(
        name="origin_weather",
        entities=[origin],
        ttl=timedelta(hours=3),
        source=srcs["origin_weather"],
        schema=[Field(name=n, dtype=Float64) for n in (*WEATHER_COLUMNS, "precip_3h")],
        description="Hourly weather at the origin airport, as observed at the hour.",
        owner="data-platform@flight-mlops",
    )
    carrier_stats = FeatureView(
        name="carrier_delay_stats",
        entities=[carrier],
        ttl=timedelta(days=2),
        source=srcs["carrier_delay_stats"],
        schema=[
            Field(name="carrier_departures_7d", dtype=Int64),
            Field(name="carrier_mean_dep_delay_7d", dtype=Float64),
            Field(name="carrier_delayed_share_7d", dtype=Float64),
        ],
        description="Carrier departure delays over the 7 days before the day, departed flights only.",
        owner="data-platform@flight-mlops",
    )
    route_stats = FeatureView(
        name="route_delay_stats",
        entities=[route],
        ttl=timedelta(days=2),
        source=srcs["route_delay_stats"],
        schema=[
            Field(name="route_departures_28d", dtype=Int64),
            Field(name="route_mean_dep_delay_28d", dtype=Float64),
            Field(name="route_delayed_share_28d", dtype=Float64),
        ],
        description="Route departure delays over the 28 days before the day, departed flights only.",
        owner="data-platform@flight-mlops",
    )
    plane_specs = FeatureView(
        name="plane_specs",
        entities=[plane],
        ttl=timedelta(0),
        source=srcs["plane_specs"],
        schema=[
            Field(name="plane_age", dtype=Float64),
            Field(name="plane_seats", dtype=Int64),
            Field(name="plane_engines", dtype=Int64),
        ],
        description="Static aircraft facts: age in 2013, seats, engines.",
        owner="data-platform@flight-mlops",
    )
    origin_traffic = FeatureView(
        name=traffic.VIEW,
        entities=[origin],
        ttl=timedelta(hours=2),
        source=srcs[traffic.VIEW],
        schema=[
            Field(name=traffic.COUNT, dtype=Int64),
            Field(name=traffic.MEAN_DELAY, dtype=Float64),
        ],
        description=(
            "Departures from the origin in the last 60 minutes and their mean delay, every 5 "
            "minutes: pushed live by the stream consumer, computed in batch for training."
        ),
        owner="data-platform@flight-mlops",
    )
    flight_request = RequestSource(
        name="flight_request",
        schema=[
            Field(name="sched_dep_epoch_s", dtype=Int64),
            Field(name="distance", dtype=Float64),
        ],
    )

    @on_demand_feature_view(
        sources=[flight_request],
        schema=[
            Field(name="dep_hour", dtype=Int64),
            Field(name="dep_dow", dtype=Int64),
            Field(name="dep_month", dtype=Int64),
            Field(name="log_distance", dtype=Float64),
        ],
        mode="pandas",
        description="Request-time features: local hour, weekday, month of departure; log distance.",
    )
    def flight_request_time(inputs: pd.DataFrame) -> pd.DataFrame:
        from dagster_project.features.engineering import request_time_features

        return request_time_features(inputs)

    service = FeatureService(
        name=FEATURE_SERVICE,
        features=[origin_weather, carrier_stats, route_stats, plane_specs, flight_request_time],
        description="Features of the flight_delay model, version 1.",
        owner="ml-platform@flight-mlops",
    )
    traffic_service = FeatureService(
        name=TRAFFIC_SERVICE,
        features=[origin_traffic],
        description="Live origin-airport traffic (stream features), version 1.",
        owner="ml-platform@flight-mlops",
    )
    return FeatureObjects(
        entities=[origin, carrier, route, plane],
        sources=list(srcs.values()),
        views=[origin_weather, carrier_stats, route_stats, plane_specs, origin_traffic],
        on_demand_views=[flight_request_time],
        services=[service, traffic_service],
    )
