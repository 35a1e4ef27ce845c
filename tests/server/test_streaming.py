"""The stream on the server tier: departure events on a Redis Stream, the consumer's windows in
Redis, aggregates pushed to Feast's Redis online store through the PushSource.

Parity: every value the live path wrote equals the batch table's value for the same boundary.
Exactly once: a consumer process killed mid-stream and restarted leaves every event counted once
in the online feature."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.platform import server, settings
from dagster_project.platform.names import TRAFFIC_SERVICE
from dagster_project.streaming import consumer, event_log, traffic, window_state
from tests.stream_parity import assert_live_matches_batch

pytestmark = pytest.mark.integration


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


def _online(client: FeatureStoreClient, origins: list[str]) -> pd.DataFrame:
    values = client.online_features([{"origin": o} for o in origins], TRAFFIC_SERVICE)
    return pd.DataFrame(values).set_index("origin")


def _redis_parts(
    tier: settings.ServerSettings,
) -> tuple[event_log.RedisEventLog, window_state.RedisWindowState]:
    client = server.redis_client(tier)
    return event_log.RedisEventLog(client, tier.redis_prefix), window_state.RedisWindowState(
        client, tier.redis_prefix
    )


def test_stream_and_batch_agree_through_redis_and_feast(server_tier):
    flights = traffic.day_flights(date(2013, 6, 14))
    events = traffic.departures(flights)
    feast = _feast()
    log, state = _redis_parts(server_tier)
    log.publish(events)
    worker = consumer.Consumer(log, state, feast.push, batch_size=25, keep_pushed=True)
    stats = worker.run(idle_exit_s=0.2, block_ms=50)
    assert stats.events == len(events)
    assert log.backlog(traffic.GROUP) == 0

    batch = traffic.origin_traffic(flights)
    assert assert_live_matches_batch(stats.pushed, batch) >= 3 * 20
    # What the online store serves is the batch value at the last closed boundary.
    last = batch.loc[batch["event_timestamp"] == stats.last_boundary].set_index("origin")
    online = _online(feast, list(last.index))
    assert (online[traffic.COUNT] == last[traffic.COUNT]).all()
    np.testing.assert_allclose(
        online[traffic.MEAN_DELAY].astype(float), last[traffic.MEAN_DELAY], rtol=1e-9
    )


def _one_window_of_events(n: int) -> tuple[list[traffic.Departure], datetime]:
    """``n`` real departures re-timed 5 s apart inside one window, then one event just after the
    window's boundary that closes it: the boundary's aggregate covers all ``n`` events."""
    real = traffic.day_departures(date(2013, 5, 3))[:n]
    boundary = datetime(2013, 5, 3, 18, 0, tzinfo=UTC)
    start = boundary - timedelta(minutes=55)
    events = [
        traffic.Departure(e.event_id, e.origin, start + timedelta(seconds=5 * i), e.dep_delay)
        for i, e in enumerate(real)
    ]
    closing = traffic.Departure("closing", "EWR", boundary + timedelta(seconds=30), 0.0)
    return [*events, closing], boundary


def _consumer_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dagster_project", "consume", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )


def test_a_killed_consumer_restarts_from_its_group_and_counts_every_event_once(server_tier):
    events, boundary = _one_window_of_events(600)
    feast = _feast()
    log, state = _redis_parts(server_tier)
    log.publish(events)

    proc = _consumer_process("--batch-size", "2")
    seen: list[str] = []

    def kill_when_a_third_is_consumed() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("[consume] events=") and int(line.split()[1][7:]) >= 200:
                proc.send_signal(signal.SIGKILL)
                return

    reader = threading.Thread(target=kill_when_a_third_is_consumed, daemon=True)
    reader.start()
    reader.join(timeout=180)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "".join(seen[-20:])
    left = log.backlog(traffic.GROUP)
    assert 0 < left < len(events), f"not killed mid-stream ({left} events left)"

    rerun = subprocess.run(
        [sys.executable, "-m", "dagster_project", "consume", "--idle-exit", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ.copy(),
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert log.backlog(traffic.GROUP) == 0
    assert state.events() == len(events)  # each event id once in the window state

    window = traffic.events_frame(events[:-1])
    expected = window.groupby("origin")["dep_delay"].agg(["count", "mean"])
    online = _online(feast, list(expected.index))
    assert (online[traffic.COUNT] == expected["count"]).all(), online
    np.testing.assert_allclose(online[traffic.MEAN_DELAY].astype(float), expected["mean"])
    assert state.last_emitted() == boundary.timestamp()
