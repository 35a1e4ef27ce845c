"""The stream consumer: departure, weather and clock events in, feature rows pushed to Feast out.

Exactly once: the consumer keeps the events in a
:class:`~dagster_project.streaming.window_state.WindowState` keyed by event id (adding an event
twice changes nothing), pushes whole rows (not increments) and acknowledges the events only
after the push. A consumer that dies anywhere in between is handed its unacknowledged events
again by its consumer group and ends in the same state.

- A weather observation is pushed as it is read: its ``origin_weather`` row, computed by the
  batch definition (:func:`engineering.origin_weather`) over the observations of its 3 hours.
- A 5-minute boundary closes once a departure or observation after it has been seen, or a tick
  (the producer's watermark) at or after it; the rows of every closed boundary, computed by
  the batch definitions (:func:`aggregates.tables`) over the kept departures, are pushed to
  their views. Events must arrive in event-time order (a late one counts in later windows).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from dagster_project.features import aggregates, engineering
from dagster_project.streaming.event_log import EventLog
from dagster_project.streaming.events import Event, Observation
from dagster_project.streaming.window_state import WindowState, weather_frame

GROUP = "features"
PRUNE_EVERY_S = 3600  # drop what no window needs any more once an hour of stream time
WEATHER_PUSH = f"{aggregates.ORIGIN_WEATHER}_push"


@dataclass
class ConsumerStats:
    events: int = 0
    batches: int = 0
    pushes: int = 0
    rows_pushed: int = 0
    last_boundary: datetime | None = None
    # (push source, rows) of every push, when the consumer keeps them (tests, the bounded asset)
    pushed: list[tuple[str, pd.DataFrame]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "batches": self.batches,
            "pushes": self.pushes,
            "rows_pushed": self.rows_pushed,
            "last_boundary": self.last_boundary.isoformat() if self.last_boundary else None,
        }

    def rows(self, source: str) -> pd.DataFrame:
        """Everything pushed to one push source, in push order."""
        frames = [f for s, f in self.pushed if s == source]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


Push = Callable[[pd.DataFrame, str], None]  # (rows, push source)


def closable(state: WindowState) -> int | None:
    """The last boundary no event still to come can change: strictly before the latest event
    seen, or at the producer's watermark."""
    seen, mark = state.max_seen(), state.watermark()
    candidates = []
    if seen is not None:
        candidates.append(aggregates.closed_boundary(seen))
    if mark is not None:
        candidates.append(math.floor(mark / aggregates.HOP_S) * aggregates.HOP_S)
    return max(candidates) if candidates else None


class Consumer:
    """Reads events with a consumer group, pushes the rows they complete and only then
    acknowledges them."""

    def __init__(
        self,
        log: EventLog,
        state: WindowState,
        push: Push,
        group: str = GROUP,
        name: str = "consumer-1",
        batch_size: int = 2000,
        keep_pushed: bool = False,
    ):
        self.log, self.state, self.push = log, state, push
        self.group, self.name, self.batch_size = group, name, batch_size
        self.stats = ConsumerStats()
        self.keep_pushed = keep_pushed
        self._pruned: float | None = None

    def read(self, block_ms: int = 0) -> list[tuple[str, Event]]:
        batch = self.log.read(self.group, self.name, self.batch_size, block_ms)
        self.state.add([e for _, e in batch])
        return batch

    def _wait(self, block_ms: int) -> bool:
        """Whether anything is (or within ``block_ms`` becomes) readable for this group."""
        deadline = time.monotonic() + block_ms / 1000
        while True:
            if self.log.backlog(self.group):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _push(self, source: str, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        self.push(frame, source)
        self.stats.pushes += 1
        self.stats.rows_pushed += len(frame)
        if self.keep_pushed:
            self.stats.pushed.append((source, frame))

    def push_weather(self, batch: list[Event]) -> pd.DataFrame:
        """The ``origin_weather`` rows of the batch's observations (their 3-hour rainfall from
        the observations kept before them)."""
        done = self.state.weather_pushed()
        # a copy of an observation older than the latest pushed (a day published again) would
        # put an old row over a newer one: observations come in order, so it was pushed before
        new = [e for e in batch if isinstance(e, Observation) and (done is None or e.epoch >= done)]
        if not new:
            return pd.DataFrame()
        since = min(e.epoch for e in new) - engineering.PRECIP_WINDOW_S
        kept = self.state.observations(since)
        rows = engineering.origin_weather(weather_frame(kept))
        ids = {(e.origin, pd.Timestamp(e.observed_at)) for e in new}
        mine = [
            (o, pd.Timestamp(t)) in ids
            for o, t in zip(rows["origin"], rows[engineering.TS], strict=True)
        ]
        frame = rows.loc[mine].reset_index(drop=True)
        self._push(WEATHER_PUSH, frame)
        self.state.set_weather_pushed(max(e.epoch for e in new))
        return frame

    def emit(self) -> dict[str, pd.DataFrame]:
        """Push the rows of the boundaries closed since the last push."""
        until = closable(self.state)
        if until is None:
            return {}
        last = self.state.last_emitted()
        if last is None:  # a fresh consumer starts at the boundary before its first event
            first = self.state.first_seen()
            last = aggregates.closed_boundary(first) if first is not None else until
        if until <= last:
            return {}
        since = last - aggregates.KEEP_S
        dep = self.state.departures(since)
        # a flight's schedule is published up to a day before it departs
        sched = self.state.schedule(since - aggregates.DAY_S)
        sched = sched.loc[sched["pub"] <= until]  # what was known at the last boundary
        out = aggregates.tables(dep, int(last), int(until), sched)
        for view, frame in out.items():
            self._push(aggregates.VIEWS[view].push_source, frame)
        self.state.set_last_emitted(until)
        horizon = until - aggregates.KEEP_S - aggregates.DAY_S - aggregates.HOP_S
        if horizon - (self._pruned or float("-inf")) >= PRUNE_EVERY_S:  # not every boundary
            self.state.prune(horizon)
            self._pruned = horizon
        self.stats.last_boundary = pd.Timestamp(until, unit="s", tz="UTC").to_pydatetime()
        return out

    def step(self, block_ms: int = 0) -> int:
        """One read-push-acknowledge cycle; returns the number of events read. Waits up to
        ``block_ms`` for events; steps of several consumers never interleave."""
        if block_ms and not self._wait(block_ms):
            return 0
        with self.state.lock(self.name):
            batch = self.read()
            self.push_weather([e for _, e in batch])
            self.emit()
            self.log.ack(self.group, [i for i, _ in batch])
        self.stats.events += len(batch)
        self.stats.batches += bool(batch)
        return len(batch)

    def run(
        self,
        idle_exit_s: float | None = None,
        max_events: int | None = None,
        block_ms: int = 1000,
        on_batch: Callable[[ConsumerStats], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ConsumerStats:
        """Consume until stopped, ``max_events`` were read, or nothing came for ``idle_exit_s``
        (``None``: run forever, the long-running service)."""
        idle_since = time.monotonic()
        while not should_stop():
            if max_events is not None and self.stats.events >= max_events:
                break
            n = self.step(block_ms)
            if n:
                idle_since = time.monotonic()
                if on_batch:
                    on_batch(self.stats)
            elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                break
        return self.stats
