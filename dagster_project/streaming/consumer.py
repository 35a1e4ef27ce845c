"""The stream consumer: departure events in, windowed origin traffic pushed to Feast out.

Exactly once: the consumer keeps the window's events in a
:class:`~dagster_project.streaming.window_state.WindowState` keyed by event id (adding an event
twice changes nothing), pushes whole aggregates (not increments) and acknowledges the events
only after the push. A consumer that dies anywhere in between is handed its unacknowledged
events again by its consumer group and ends in the same state. A boundary is closed (pushed)
once an event after it has been seen; events must arrive in event-time order (late events are
counted in later windows only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from dagster_project.streaming.event_log import EventLog
from dagster_project.streaming.traffic import (
    COUNT,
    GROUP,
    HOP_S,
    MEAN_DELAY,
    WINDOW_S,
    Departure,
    closed_boundary,
)
from dagster_project.streaming.window_state import WindowState


@dataclass
class ConsumerStats:
    events: int = 0
    batches: int = 0
    pushes: int = 0
    rows_pushed: int = 0
    last_boundary: datetime | None = None
    pushed: list[pd.DataFrame] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "batches": self.batches,
            "pushes": self.pushes,
            "rows_pushed": self.rows_pushed,
            "last_boundary": self.last_boundary.isoformat() if self.last_boundary else None,
        }


Push = Callable[[pd.DataFrame], None]


class Consumer:
    """Reads departure events with a consumer group, keeps the windows, pushes the newly closed
    boundary's aggregates (one row per origin) and only then acknowledges the events."""

    def __init__(
        self,
        log: EventLog,
        state: WindowState,
        push: Push,
        group: str = GROUP,
        name: str = "consumer-1",
        batch_size: int = 500,
        keep_pushed: bool = False,
    ):
        self.log, self.state, self.push = log, state, push
        self.group, self.name, self.batch_size = group, name, batch_size
        self.stats = ConsumerStats()
        self.keep_pushed = keep_pushed

    def read(self, block_ms: int = 0) -> list[tuple[str, Departure]]:
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

    def emit(self) -> pd.DataFrame | None:
        """Push the aggregates of the last closed boundary if it is new."""
        max_seen = self.state.max_seen()
        if max_seen is None:
            return None
        boundary = closed_boundary(max_seen)
        last = self.state.last_emitted()
        if last is not None and boundary <= last:
            return None
        at = pd.Timestamp(boundary, unit="s", tz="UTC")
        rows = []
        for origin in self.state.origins():
            count, mean = self.state.aggregate(origin, boundary)
            rows.append({"origin": origin, "event_timestamp": at, COUNT: count, MEAN_DELAY: mean})
        frame = pd.DataFrame(rows)
        self.push(frame)
        self.state.set_last_emitted(boundary)
        self.state.prune(boundary - WINDOW_S - HOP_S)
        self.stats.pushes += 1
        self.stats.rows_pushed += len(frame)
        self.stats.last_boundary = at.to_pydatetime()
        if self.keep_pushed:
            self.stats.pushed.append(frame)
        return frame

    def step(self, block_ms: int = 0) -> int:
        """One read-push-acknowledge cycle; returns the number of events read. Waits up to
        ``block_ms`` for events; steps of several consumers never interleave."""
        if block_ms and not self._wait(block_ms):
            return 0
        with self.state.lock(self.name):
            batch = self.read()
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
