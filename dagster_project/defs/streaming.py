"""Streaming: the day's departures and weather observations published as events, and the
consumer that turns them into live feature rows in the online store (the batch definitions)."""

from datetime import date

import dagster as dg
import pandas as pd

from dagster_project.defs.features import feast_definitions
from dagster_project.features import aggregates, engineering, feast_store
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.metadata import OWNERS, code_version
from dagster_project.orchestration.partitions import daily_2013, single_run
from dagster_project.orchestration.resources import FeastResource, StreamResource
from dagster_project.streaming import consumer, event_log, events, window_state


@compute_asset(
    group_name="streaming",
    partitions_def=daily_2013,
    backfill_policy=single_run,
    ins={"validated_flights": dg.AssetIn(), "validated_weather": dg.AssetIn()},
    kinds={"redis", "pandas"},
    owners=OWNERS,
    code_version=code_version(events, event_log),
)
def stream_events(
    context: dg.AssetExecutionContext,
    validated_flights: pd.DataFrame,
    validated_weather: pd.DataFrame,
    stream: StreamResource,
) -> dg.MaterializeResult:
    """The partitions' schedules, departures and weather observations published to the stream in
    event-time order, then a tick at the last day's end (the daily replay's producer; the
    intraday replay publishes the same events step by step). Publishing a day twice is
    harmless: consumers count an event once."""
    last = max(date.fromisoformat(k) for k in context.partition_keys)
    end = pd.Timestamp(last, tz=engineering.TIMEZONE) + pd.Timedelta(days=1)
    batch = events.in_order(
        events.schedule(validated_flights),
        events.departures(validated_flights),
        events.observations(validated_weather),
    )
    published = stream.log().publish([*batch, events.tick(end)])
    counts = pd.Series([e.kind for e in batch]).value_counts().to_dict() if batch else {}
    context.log.info(f"published {published} events ({counts}) up to {end.isoformat()}")
    return dg.MaterializeResult(
        metadata={
            "events_published": dg.MetadataValue.int(published),
            "by_kind": dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()}),
        }
    )


@compute_asset(
    group_name="streaming",
    deps=[stream_events, feast_definitions],
    kinds={"redis", "feast"},
    owners=OWNERS,
    code_version=code_version(aggregates, event_log, window_state, consumer, feast_store),
)
def live_features(
    context: dg.AssetExecutionContext, stream: StreamResource, feast: FeastResource
) -> dg.MaterializeResult:
    """The stream drained into the online store: each weather observation's `origin_weather`
    row, and at every closed 5-minute boundary the rows of `origin_traffic`,
    `carrier_origin_traffic` and `plane_today`, pushed through their PushSources. `make up`
    runs the same consumer as a long-running process; this asset is its bounded form."""
    client = feast.client()
    run = stream.consumer(client.push, keep_pushed=True)
    stats = run.run(idle_exit_s=0.5, block_ms=200)
    context.log.info(f"consumed {stats.events} events, {stats.pushes} pushes")
    rows = {s: len(run.stats.rows(s)) for s in {s for s, _ in stats.pushed}}
    return dg.MaterializeResult(
        metadata={
            "events_consumed": dg.MetadataValue.int(stats.events),
            "pushes": dg.MetadataValue.int(stats.pushes),
            "rows_by_push_source": dg.MetadataValue.json(rows),
            "last_boundary": str(stats.last_boundary) if stats.last_boundary else "-",
        }
    )


assets = [stream_events, live_features]
