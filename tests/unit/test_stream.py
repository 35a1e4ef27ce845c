"""The origin-traffic stream feature on the local tier: the batch definition, the consumer's
windows, batch/stream parity on a real day, and exactly-once across a crash."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from dagster_project.streaming import consumer, event_log, traffic, window_state
from tests.stream_parity import assert_live_matches_batch

T0 = datetime(2013, 1, 2, 12, 0, tzinfo=UTC)


def _event(i: int, origin: str, minutes: float, delay: float) -> traffic.Departure:
    return traffic.Departure(f"f{i}", origin, T0 + timedelta(minutes=minutes), delay)


def _consumer(folder: Path, pushed: list, batch_size: int = 500) -> consumer.Consumer:
    return consumer.Consumer(
        event_log.LocalEventLog(folder),
        window_state.SqliteWindowState(folder / "traffic.db"),
        pushed.append,
        batch_size=batch_size,
    )


def test_window_counts_departures_in_the_half_open_hour_before_the_boundary():
    events = traffic.events_frame(
        [
            _event(1, "EWR", 0, 10),  # exactly 60 min before 13:00: outside (b - 60, b]
            _event(2, "EWR", 1, 20),
            _event(3, "EWR", 60, 30),  # at the boundary: inside
            _event(4, "EWR", 61, 99),  # after it
            _event(5, "JFK", 30, 5),
        ]
    )
    out = traffic.window_aggregates(events, [pd.Timestamp(T0 + timedelta(minutes=60))])
    got = out.set_index("origin")
    assert got.loc["EWR", traffic.COUNT] == 2
    assert got.loc["EWR", traffic.MEAN_DELAY] == pytest.approx(25.0)
    assert got.loc["JFK", traffic.COUNT] == 1
    empty = traffic.window_aggregates(events, [pd.Timestamp(T0 + timedelta(hours=5))])
    assert (empty[traffic.COUNT] == 0).all()
    assert empty[traffic.MEAN_DELAY].isna().all()


def test_a_boundary_closes_only_once_a_later_event_is_seen():
    b = (T0 + timedelta(minutes=5)).timestamp()
    assert traffic.closed_boundary(b) == b - 300  # an event at b may still come
    assert traffic.closed_boundary(b + 1) == b


def test_stream_and_batch_agree_on_a_real_day(tmp_path: Path):
    flights = traffic.day_flights(date(2013, 7, 11))
    events = traffic.departures(flights)
    log = event_log.LocalEventLog(tmp_path)
    assert log.publish(events) == len(events) > 500
    pushed: list[pd.DataFrame] = []
    stats = _consumer(tmp_path, pushed, batch_size=17).run(idle_exit_s=0.1, block_ms=20)
    assert stats.events == len(events)
    assert log.pending(traffic.GROUP) == 0
    compared = assert_live_matches_batch(pushed, traffic.origin_traffic(flights))
    assert compared >= 3 * 40  # a push per batch that closes a boundary, all three airports


def test_a_consumer_that_dies_before_acknowledging_counts_each_event_once(tmp_path: Path):
    flights = traffic.day_flights(date(2013, 3, 4))
    events = traffic.departures(flights)
    event_log.LocalEventLog(tmp_path).publish(events[:400])
    pushed: list[pd.DataFrame] = []
    first = _consumer(tmp_path, pushed, batch_size=50)
    first.run(max_events=200, block_ms=0, idle_exit_s=0)
    first.read()  # the next 50 events are read, added and pushed ...
    first.emit()  # ... but the process dies before acknowledging them
    assert first.log.pending(traffic.GROUP) == 50  # delivered, not acknowledged
    log = event_log.LocalEventLog(tmp_path)  # what a restarted process sees
    assert log.backlog(traffic.GROUP) == 200
    event_log.LocalEventLog(tmp_path).publish(events[400:] + events[:100])  # and a duplicate burst
    second = _consumer(tmp_path, pushed, batch_size=50)
    second.run(idle_exit_s=0.1, block_ms=20)
    assert log.backlog(traffic.GROUP) == 0
    assert_live_matches_batch(pushed, traffic.origin_traffic(flights))


def test_malformed_events_are_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="departed_at"):
        traffic.Departure.decode({"event_id": "x", "origin": "EWR", "dep_delay": "1"})
