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

from dagster_project.features import aggregates
from dagster_project.features.engineering import WEATHER_COLUMNS
from dagster_project.platform.names import FEATURE_SERVICE_V1, FEATURE_SERVICE_V2, TRAFFIC_SERVICE

STREAM_VIEWS = (aggregates.ORIGIN_WEATHER, *aggregates.VIEWS)  # views with a PushSource
TABLES = (
    "origin_weather",
    "carrier_delay_stats",
    "route_delay_stats",
    "plane_specs",
    *aggregates.VIEWS,
)


# Views whose missing row is an answer, not a gap: the aircraft has not departed yet today; the
# carrier has had no departure at the origin in the window.
NOTHING_YET_VIEWS = frozenset({aggregates.PLANE_TODAY, aggregates.CARRIER_ORIGIN_TRAFFIC})


def push_source_name(view: str) -> str:
    return f"{view}_push"


@dataclass(frozen=True)
class FeatureObjects:
    entities: list[Entity]
    sources: list[FileSource | PushSource]
    views: list[FeatureView]
    on_demand_views: list
    services: list[FeatureService]

    def all(self) -> list:
        return [*self.entities, *self.views, *self.on_demand_views, *self.services]

    def stored_views(self, service: str) -> list[tuple[FeatureView, str]]:
        """The stored (not on-demand) views of a FeatureService, each with its entity's join
        key, in the order of :attr:`views`."""
        keys = {e.name: e.join_key for e in self.entities}
        (found,) = (s for s in self.services if s.name == service)
        used = {p.name for p in found.feature_view_projections}
        return [(v, keys[v.entities[0]]) for v in self.views if v.entities and v.name in used]


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

    carrier_origin = Entity(
        name="carrier_origin",
        join_keys=["carrier_origin"],
        value_type=ValueType.STRING,
        description="A carrier at an origin airport, e.g. UA|EWR",
    )
    plane_day = Entity(
        name="plane_day",
        join_keys=["plane_day"],
        value_type=ValueType.STRING,
        description="An aircraft on a scheduled local date, e.g. N14228|2013-07-01",
    )
    srcs: dict[str, FileSource | PushSource] = {t: source(t) for t in TABLES}
    # The stream-fed views: the consumer pushes live rows; the batch table backs each offline.
    push: dict[str, PushSource] = {
        v: PushSource(name=push_source_name(v), batch_source=srcs[v]) for v in STREAM_VIEWS
    }
    srcs |= push
    origin_weather = FeatureView(
        name="origin_weather",
        entities=[origin],
        ttl=timedelta(hours=3),
        source=srcs["origin_weather"],
        schema=[Field(name=n, dtype=Float64) for n in (*WEATHER_COLUMNS, "precip_3h")],
        description=(
            "Hourly weather at the origin airport, as observed at the hour: pushed live by the "
            "stream consumer as each observation arrives, computed in batch for training."
        ),
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
    stream_features = {v.name: v for v in aggregates.VIEWS.values()}

    def fields(view: str) -> list[Field]:
        return [
            Field(name=f, dtype=Float64 if "delay" in f else Int64)
            for f in stream_features[view].features
        ]

    origin_traffic = FeatureView(
        name=aggregates.ORIGIN_TRAFFIC,
        entities=[origin],
        ttl=timedelta(hours=2),
        source=srcs[aggregates.ORIGIN_TRAFFIC],
        schema=fields(aggregates.ORIGIN_TRAFFIC),
        description=(
            "Departures from the origin in the last 60 and 180 minutes and their mean delay, "
            "every 5 minutes: pushed live by the stream consumer, computed in batch for training."
        ),
        owner="data-platform@flight-mlops",
    )
    carrier_origin_traffic = FeatureView(
        name=aggregates.CARRIER_ORIGIN_TRAFFIC,
        entities=[carrier_origin],
        ttl=timedelta(0),  # sparse rows: the latest one holds until the window changes
        source=srcs[aggregates.CARRIER_ORIGIN_TRAFFIC],
        schema=fields(aggregates.CARRIER_ORIGIN_TRAFFIC),
        description=(
            "The carrier's departures at the origin in the last 180 minutes and their mean "
            "delay; a row whenever the window gains or loses a departure."
        ),
        owner="data-platform@flight-mlops",
    )
    plane_today = FeatureView(
        name=aggregates.PLANE_TODAY,
        entities=[plane_day],
        ttl=timedelta(0),  # keyed by the day: no row means no departure yet that day
        source=srcs[aggregates.PLANE_TODAY],
        schema=fields(aggregates.PLANE_TODAY),
        description=(
            "The aircraft's departures so far on the flight's day and the delay of its latest "
            "one (late-aircraft propagation); a row whenever it departs."
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

    v1 = [origin_weather, carrier_stats, route_stats, plane_specs, flight_request_time]
    service_v1 = FeatureService(
        name=FEATURE_SERVICE_V1,
        features=v1,
        description="Features of the flight_delay model, version 1 (scored at the day's start).",
        owner="ml-platform@flight-mlops",
    )
    service_v2 = FeatureService(
        name=FEATURE_SERVICE_V2,
        features=[*v1, origin_traffic, carrier_origin_traffic, plane_today],
        description=(
            "Features of the flight_delay model, version 2: version 1 plus the departure "
            "stream's (origin and carrier traffic, the aircraft's day), for scoring shortly "
            "before departure."
        ),
        owner="ml-platform@flight-mlops",
    )
    traffic_service = FeatureService(
        name=TRAFFIC_SERVICE,
        features=[origin_traffic],
        description="Live origin-airport traffic (stream features), version 1.",
        owner="ml-platform@flight-mlops",
    )
    return FeatureObjects(
        entities=[origin, carrier, route, plane, carrier_origin, plane_day],
        sources=[*(s for t, s in srcs.items() if t not in push), *push.values()],
        views=[
            origin_weather,
            carrier_stats,
            route_stats,
            plane_specs,
            origin_traffic,
            carrier_origin_traffic,
            plane_today,
        ],
        on_demand_views=[flight_request_time],
        services=[service_v1, service_v2, traffic_service],
    )
