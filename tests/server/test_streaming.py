"""The stream on the server tier: schedule, departure, weather and tick events on a Redis
Stream, the consumer's window state in Redis, every stream-fed view pushed to Feast's Redis
online store through its PushSource.

Parity: every row the live path pushed equals the batch table's row for the same key and
boundary, and what Feast serves online for every key of every view is the batch table's latest
row at the last closed boundary. Exactly once: a `consume` process SIGKILLed mid-stream and
restarted leaves every event counted once in every view."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import pytest

from dagster_project.features import aggregates
from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.platform import server, settings
from dagster_project.platform.names import FEATURE_SERVICE_V2, TRAFFIC_SERVICE
from dagster_project.streaming import consumer, event_log, events, window_state
from tests.paths import REPO_ROOT
from tests.stream_parity import (
    STREAM_VIEWS,
    assert_live_matches_batch,
    assert_online_matches,
    batch_tables,
    expected_online,
)

pytestmark = pytest.mark.integration

DAY = date(2013, 7, 1)  # rain, and every view busy


@dataclass(frozen=True)
class Day:
    flights: pd.DataFrame
    weather: pd.DataFrame
    batch: dict[str, pd.DataFrame]
    events: list  # the day's schedule, departures and observations in event-time order


@pytest.fixture(scope="module")
def day() -> Day:
    flights, weather = events.day_flights(DAY), events.day_weather(DAY)
    evs = events.in_order(
        events.schedule(flights), events.departures(flights), events.observations(weather)
    )
    return Day(flights, weather, batch_tables(flights, weather), evs)


def _feast() -> FeatureStoreClient:
    paths = settings.paths()
    assert paths.features_url.startswith("s3://")  # the offline tables behind the views
    client = FeatureStoreClient(
        paths.feast_template,
        paths.feast_dir,
        paths.features_url,
        paths.feast_overrides(),
    )
    client.apply()
    return client


def _redis_parts(
    tier: settings.ServerSettings,
) -> tuple[event_log.RedisEventLog, window_state.RedisWindowState]:
    client = server.redis_client(tier)
    return event_log.RedisEventLog(client, tier.redis_prefix), window_state.RedisWindowState(
        client, tier.redis_prefix
    )


# A flight's entity keys and request data; each view's own key is set per lookup.
BASE_ROW: dict[str, Any] = {
    "origin": "EWR",
    "carrier": "UA",
    "route": "EWR-ORD",
    "tailnum": "N14228",
    "carrier_origin": "UA|EWR",
    "plane_day": "N14228|2013-07-01",
    "sched_dep_epoch_s": 1372680000,
    "distance": 719.0,
}


def _online(feast: FeatureStoreClient, view: str, keys: list[str], how: str) -> dict[str, list]:
    """The online values of one view's ``keys`` through the v2 FeatureService: the serving hot
    path (``online_lookup``) or Feast's own ``get_online_features``."""
    key = STREAM_VIEWS[view][0]
    rows = [BASE_ROW | {key: k} for k in keys]
    if how == "lookup":
        return feast.online_lookup(rows, FEATURE_SERVICE_V2)
    return feast.online_features(rows, FEATURE_SERVICE_V2)


def _assert_online_is_batch(
    feast: FeatureStoreClient, batch: dict[str, pd.DataFrame], until: dict[str, Any]
) -> dict[str, int]:
    """For every view and every key of its batch table, both online paths serve the batch
    table's latest row at or before ``until[view]`` (nothing for a key without one)."""
    served = {}
    for view in STREAM_VIEWS:
        key = STREAM_VIEWS[view][0]
        keys = sorted(batch[view][key].unique())
        expected = expected_online(batch[view], view, until[view])
        for how in ("lookup", "feast"):
            served[view] = assert_online_matches(
                view, _online(feast, view, keys, how), keys, expected
            )
        assert served[view] == len(expected), view
    return served


def _consume(log, state, feast, until_idle: float = 0.2) -> consumer.ConsumerStats:
    worker = consumer.Consumer(log, state, feast.push, batch_size=50, keep_pushed=True)
    return worker.run(idle_exit_s=until_idle, block_ms=50)


def test_stream_and_batch_agree_through_redis_and_feast(server_tier, day: Day):
    feast = _feast()
    log, state = _redis_parts(server_tier)
    # The day in two parts: online values are checked mid-day (windows full of departures)
    # and after a closing tick at its end.
    mid = pd.Timestamp(f"{DAY} 18:00", tz="America/New_York").timestamp()
    first = [e for e in day.events if e.epoch <= mid]
    rest = [e for e in day.events if e.epoch > mid]
    end = aggregates.closed_boundary(day.events[-1].epoch) + 4 * 3600
    closing = events.tick(pd.Timestamp(end, unit="s", tz="UTC"))
    since = float(aggregates.closed_boundary(day.events[0].epoch))

    log.publish(first)
    stats = _consume(log, state, feast)
    assert stats.events == len(first)
    assert log.backlog(consumer.GROUP) == 0
    closed = state.last_emitted()
    assert closed == aggregates.closed_boundary(first[-1].epoch)
    weather_seen = max(e.epoch for e in first if isinstance(e, events.Observation))
    until = {v: closed for v in aggregates.VIEWS} | {aggregates.ORIGIN_WEATHER: weather_seen}
    served = _assert_online_is_batch(feast, day.batch, until)
    traffic = expected_online(
        day.batch[aggregates.ORIGIN_TRAFFIC], aggregates.ORIGIN_TRAFFIC, closed
    )
    assert (traffic["origin_departures_60m"] > 5).all()  # a busy hour at every airport
    assert (
        0
        < served[aggregates.PLANE_TODAY]
        < day.batch[aggregates.PLANE_TODAY]["plane_day"].nunique()
    )
    # the traffic service serves the same values as the v2 service
    traffic_service = feast.online_features([{"origin": o} for o in traffic.index], TRAFFIC_SERVICE)
    assert traffic_service["origin_departures_180m"] == traffic["origin_departures_180m"].tolist()

    log.publish([*rest, closing])
    more = _consume(log, state, feast)
    assert more.events == len(rest) + 1
    assert state.last_emitted() == end
    live = {
        source: [f for s, f in (*stats.pushed, *more.pushed) if s == source]
        for _, _, source in STREAM_VIEWS.values()
    }
    compared = assert_live_matches_batch(live, day.batch, since=since, until=end)
    assert compared[aggregates.ORIGIN_WEATHER] == len(day.weather)
    assert compared[aggregates.ORIGIN_TRAFFIC] == 3 * (end - since) / aggregates.HOP_S
    last_obs = day.weather["time_hour"].max().timestamp()
    _assert_online_is_batch(
        feast, day.batch, {v: end for v in aggregates.VIEWS} | {aggregates.ORIGIN_WEATHER: last_obs}
    )


def _consumer_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dagster_project", "consume", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        env=os.environ.copy(),
    )


def test_a_killed_consumer_restarts_from_its_group_and_counts_every_event_once(
    server_tier, day: Day
):
    feast = _feast()
    log, state = _redis_parts(server_tier)
    log.publish(day.events)  # no closing tick: the last boundary falls among late departures
    kill_at = 2 * len(day.events) // 3  # well into the day's departures

    proc = _consumer_process("--batch-size", "10")
    seen: list[str] = []

    def kill_when_two_thirds_are_consumed() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("[consume] events=") and int(line.split()[1][7:]) >= kill_at:
                proc.send_signal(signal.SIGKILL)
                return

    reader = threading.Thread(target=kill_when_two_thirds_are_consumed, daemon=True)
    reader.start()
    reader.join(timeout=240)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "".join(seen[-20:])
    left = log.backlog(consumer.GROUP)
    assert 0 < left < len(day.events) - kill_at + 10, f"not killed mid-stream ({left} left)"

    rerun = subprocess.run(
        [sys.executable, "-m", "dagster_project", "consume", "--idle-exit", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
        env=os.environ.copy(),
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert log.backlog(consumer.GROUP) == 0
    assert log.pending(consumer.GROUP) == 0
    assert state.events() == len(day.events)  # each event id once in the window state
    closed = state.last_emitted()
    assert closed == aggregates.closed_boundary(day.events[-1].epoch)

    last_obs = day.weather["time_hour"].max().timestamp()
    until = {v: closed for v in aggregates.VIEWS} | {aggregates.ORIGIN_WEATHER: last_obs}
    served = _assert_online_is_batch(feast, day.batch, until)
    # Each aircraft's day counted every departure once (the last one's boundary is not closed
    # when it is the day's last departure): compare with a plain count of the flights.
    flights = day.flights.loc[day.flights["departed_at"].notna() & day.flights["tailnum"].notna()]
    flights = flights.loc[flights["departed_at"] <= pd.Timestamp(closed, unit="s", tz="UTC")]
    per_plane = flights.groupby(flights["tailnum"] + "|" + flights["flight_date"]).size()
    keys = sorted(per_plane.index)
    online = _online(feast, aggregates.PLANE_TODAY, keys, "lookup")
    assert online["plane_departures_today"] == per_plane.loc[keys].tolist()
    assert served[aggregates.PLANE_TODAY] == len(keys)


def test_a_reader_keeps_reading_after_another_process_starts_the_stream_over(server_tier, day: Day):
    """The tier's consumer runs for days; a replay or the demo starts the stream over
    (``StreamResource.reset``) from another process. The running reader's group went with the
    old stream: it makes it again on the new one and reads the new events, instead of failing
    every read with NOGROUP until it is restarted."""
    client = server.redis_client(server_tier)
    running = event_log.RedisEventLog(client, server_tier.redis_prefix)
    running.publish(day.events[:5])
    assert len(running.read(consumer.GROUP, "consumer-1", 100, 0)) == 5
    other = event_log.RedisEventLog(client, server_tier.redis_prefix)
    other.reset()
    other.publish(day.events[5:8])
    assert running.backlog(consumer.GROUP) == 3
    assert [e for _, e in running.read(consumer.GROUP, "consumer-1", 100, 0)] == day.events[5:8]
    assert running.pending(consumer.GROUP) == 3
