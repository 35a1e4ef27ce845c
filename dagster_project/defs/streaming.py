"""Streaming: the day's departures published as events, and the consumer that turns them into
live per-origin traffic features in the online store (the same definition as the batch table)."""

import dagster as dg
import pandas as pd

from dagster_project.defs.features import feast_definitions
from dagster_project.features import feast_store
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.metadata import OWNERS, code_version
from dagster_project.orchestration.partitions import daily_2013, single_run
from dagster_project.orchestration.resources import FeastResource, StreamResource
from dagster_project.streaming import consumer, event_log, traffic, window_state


@compute_asset(
    group_name="streaming",
    partitions_def=daily_2013,
    backfill_policy=single_run,
    ins={"validated_flights": dg.AssetIn()},
    kinds={"redis", "pandas"},
    owners=OWNERS,
    code_version=code_version(traffic, event_log),
)
def departure_events(
    context: dg.AssetExecutionContext, validated_flights: pd.DataFrame, events: StreamResource
) -> dg.MaterializeResult:
    """The partition's departures published to the event stream, in departure order (the
    replay's producer; publishing a day twice is harmless: consumers count an event once)."""
    published = events.log().publish(traffic.departures(validated_flights))
    context.log.info(f"published {published} departure events")
    return dg.MaterializeResult(metadata={"events_published": dg.MetadataValue.int(published)})


@compute_asset(
    group_name="streaming",
    deps=[departure_events, feast_definitions],
    kinds={"redis", "feast"},
    owners=OWNERS,
    code_version=code_version(traffic, event_log, window_state, consumer, feast_store),
)
def origin_traffic_live(
    context: dg.AssetExecutionContext, events: StreamResource, feast: FeastResource
) -> dg.MaterializeResult:
    """The stream drained into the online store: departures and mean delay per origin over the
    last 60 minutes, pushed through Feast's PushSource at every closed 5-minute boundary. `make
    up` runs the same consumer as a long-running process; this asset is its bounded form."""
    client = feast.client()
    consumer = events.consumer(client.push, keep_pushed=True)
    stats = consumer.run(idle_exit_s=0.5, block_ms=200)
    context.log.info(f"consumed {stats.events} events, {stats.pushes} pushes")
    last = stats.pushed[-1] if stats.pushed else pd.DataFrame()
    return dg.MaterializeResult(
        metadata={
            "events_consumed": dg.MetadataValue.int(stats.events),
            "pushes": dg.MetadataValue.int(stats.pushes),
            "last_boundary": str(stats.last_boundary) if stats.last_boundary else "-",
            "latest_values": dg.MetadataValue.md(
                last.to_markdown(index=False) if not last.empty else "(nothing new)"
            ),
        }
    )


assets = [departure_events, origin_traffic_live]
