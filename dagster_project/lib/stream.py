"""Departure events as a stream, and the per-origin traffic feature computed from them.

The feature ``origin_traffic``: for each origin airport, at every 5-minute boundary ``b``, the
number of departures in ``(b - 60 min, b]`` and their mean departure delay. It is computed two
ways from one definition:

- in batch (:func:`window_aggregates`, :func:`origin_traffic`), from the validated flights, into
  Feast's offline store for training and backfills;
- live (:class:`Consumer`), from departure events on an :class:`EventLog` (a Redis Stream on the
  server tiers, an append-only local file on ``local``), pushed to Feast's online store through a
  PushSource.

Exactly once: the consumer keeps the window's events in a :class:`WindowState` keyed by event id
(adding an event twice changes nothing), pushes whole aggregates (not increments) and
acknowledges the events only after the push. A consumer that dies anywhere in between is handed
its unacknowledged events again by its consumer group and ends in the same state. A boundary is
closed (pushed) once an event after it has been seen; events must arrive in event-time order
(late events are counted in later windows only).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

WINDOW = timedelta(minutes=60)
HOP = timedelta(minutes=5)
VIEW = "origin_traffic"
PUSH_SOURCE = "origin_traffic_push"
COUNT = "origin_departures_60m"
MEAN_DELAY = "origin_mean_dep_delay_60m"
FEATURES = (COUNT, MEAN_DELAY)
GROUP = "origin-traffic"

# Output column -> the validated_flights columns it is computed from (the catalog's lineage).
COLUMN_SOURCES: dict[str, tuple[str, ...]] = {
    "origin": ("origin",),
    "event_timestamp": ("departed_at",),
    COUNT: ("origin", "departed_at"),
    MEAN_DELAY: ("origin", "departed_at", "dep_delay"),
}

_HOP_S = int(HOP.total_seconds())
_WINDOW_S = int(WINDOW.total_seconds())


@dataclass(frozen=True)
class Departure:
    """One flight pushing back: the stream's event."""

    event_id: str  # the flight id, e.g. 2013-01-01_UA1545_EWR
    origin: str
    departed_at: datetime  # UTC
    dep_delay: float  # minutes

    @property
    def epoch(self) -> float:
        return self.departed_at.timestamp()

    def encode(self) -> dict[str, str]:
        return {
            "event_id": self.event_id,
            "origin": self.origin,
            "departed_at": self.departed_at.isoformat(),
            "dep_delay": repr(float(self.dep_delay)),
        }

    @classmethod
    def decode(cls, fields: dict[str, str]) -> Departure:
        try:
            at = datetime.fromisoformat(fields["departed_at"])
            return cls(
                event_id=fields["event_id"],
                origin=fields["origin"],
                departed_at=at if at.tzinfo else at.replace(tzinfo=UTC),
                dep_delay=float(fields["dep_delay"]),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"malformed departure event {fields!r}: {exc}") from exc


def departures(validated_flights: pd.DataFrame) -> list[Departure]:
    """The departure events of validated flights (cancelled ones never depart), in event-time
    order (ties by flight id), as a producer publishes them."""
    df = validated_flights.loc[validated_flights["departed_at"].notna()]
    df = df.sort_values(["departed_at", "flight_id"], kind="stable")
    return [
        Departure(str(i), str(o), pd.Timestamp(t).to_pydatetime(), float(d))
        for i, o, t, d in zip(
            df["flight_id"], df["origin"], df["departed_at"], df["dep_delay"], strict=True
        )
    ]


def day_flights(day: date) -> pd.DataFrame:
    """One day of the data set's flights in their validated form (what the batch reads)."""
    from dagster_project.lib import cleaning, sources
    from dagster_project.lib.gate import REJECTED_BY
    from dagster_project.lib.landing import PARTITION

    raw = sources.day_rows("flights", day)
    raw[REJECTED_BY] = pd.Series(pd.NA, index=raw.index, dtype="string")
    raw[PARTITION] = day.isoformat()
    return cleaning.validated_flights(raw)


def day_departures(day: date) -> list[Departure]:
    """The real departures of one day of the data set (a producer's events)."""
    return departures(day_flights(day))


def events_frame(events: Iterable[Departure]) -> pd.DataFrame:
    rows = [(e.event_id, e.origin, e.departed_at, e.dep_delay) for e in events]
    df = pd.DataFrame(rows, columns=["event_id", "origin", "departed_at", "dep_delay"])
    df["departed_at"] = pd.to_datetime(df["departed_at"], utc=True)
    return df


def closed_boundary(max_seen: float) -> float:
    """The last boundary strictly before ``max_seen`` (epoch seconds): no later event can fall
    into its window when events arrive in order (an event *at* a boundary still belongs to it)."""
    return (math.ceil(max_seen / _HOP_S) - 1) * _HOP_S


def window_aggregates(
    events: pd.DataFrame, boundaries: list[pd.Timestamp] | pd.DatetimeIndex
) -> pd.DataFrame:
    """The batch definition: for every origin in ``events`` and every boundary ``b``, count and
    mean delay of the departures in ``(b - WINDOW, b]``. The mean is missing for an empty window.

    ``events`` has columns origin, departed_at (UTC), dep_delay."""
    bounds = pd.DatetimeIndex(boundaries)
    bounds = bounds.tz_localize("UTC") if bounds.tz is None else bounds.tz_convert("UTC")
    b = bounds.asi8 // 10**9
    frames = []
    for origin, grp in events.groupby("origin", sort=True):
        grp = grp.sort_values("departed_at", kind="stable")
        t = pd.DatetimeIndex(grp["departed_at"]).tz_convert("UTC").asi8 / 1e9
        delay = grp["dep_delay"].to_numpy(dtype=float)
        # events in (b - W, b]: index range [searchsorted(b - W, right), searchsorted(b, right))
        hi = np.searchsorted(t, b, side="right")
        lo = np.searchsorted(t, b - _WINDOW_S, side="right")
        count = hi - lo
        cum = np.concatenate([[0.0], np.cumsum(delay)])
        total = cum[hi] - cum[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "origin": origin,
                    "event_timestamp": bounds,
                    COUNT: count.astype("int64"),
                    MEAN_DELAY: mean,
                }
            )
        )
    columns = ["origin", "event_timestamp", COUNT, MEAN_DELAY]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def origin_traffic(validated_flights: pd.DataFrame) -> pd.DataFrame:
    """The offline feature table: every boundary of every day the flights depart on."""
    events = events_frame(departures(validated_flights))
    if events.empty:
        return window_aggregates(events, [])
    first = events["departed_at"].min().floor("D")
    last = events["departed_at"].max().ceil("D")
    boundaries = pd.date_range(first + HOP, last, freq=HOP, tz="UTC")
    return window_aggregates(events, boundaries)


# ---- the event log ------------------------------------------------------------------------------


class EventLog(Protocol):
    """An append-only log of departure events with consumer groups (Redis Streams semantics):
    ``read`` hands a consumer first its own delivered-but-unacknowledged events, then new ones."""

    def publish(self, events: Iterable[Departure]) -> int: ...

    def read(
        self, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, Departure]]: ...

    def ack(self, group: str, ids: Sequence[str]) -> None: ...

    def pending(self, group: str) -> int: ...

    def backlog(self, group: str) -> int:
        """Events not yet acknowledged by the group (pending and never delivered)."""
        ...

    def length(self) -> int: ...


class RedisEventLog:
    """A Redis Stream ``<prefix>stream:departures`` read through a consumer group."""

    def __init__(self, client: Any, prefix: str, name: str = "departures"):
        self.client = client
        self.key = f"{prefix}stream:{name}"
        self._groups: set[str] = set()

    def publish(self, events: Iterable[Departure]) -> int:
        n = 0
        with self.client.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(self.key, event.encode())
                n += 1
            pipe.execute()
        return n

    def _group(self, group: str) -> None:
        import redis

        if group in self._groups:
            return
        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: it exists
            self.client.xgroup_create(self.key, group, id="0", mkstream=True)
        self._groups.add(group)

    def read(
        self, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, Departure]]:
        self._group(group)
        # Own pending entries first (after a restart), then new ones.
        reply = self.client.xreadgroup(group, consumer, {self.key: "0"}, count=count)
        entries = reply[0][1] if reply else []
        if not entries:
            reply = self.client.xreadgroup(
                group, consumer, {self.key: ">"}, count=count, block=block_ms or None
            )
            entries = reply[0][1] if reply else []
        return [(_text(i), Departure.decode(_decode(f))) for i, f in entries]

    def ack(self, group: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.xack(self.key, group, *ids)

    def pending(self, group: str) -> int:
        self._group(group)
        return int(self.client.xpending(self.key, group)["pending"])

    def backlog(self, group: str) -> int:
        self._group(group)
        info = next(
            (g for g in self.client.xinfo_groups(self.key) if _text(g["name"]) == group), None
        )
        lag = info.get("lag") if info else None
        pending = int(info["pending"]) if info else 0
        return pending + (int(lag) if lag is not None else self.length())

    def length(self) -> int:
        return int(self.client.xlen(self.key))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(fields: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


class LocalEventLog:
    """The local tier's stream: ``events.jsonl`` (append-only, one event a line, appended under
    a file lock) and one committed byte offset per consumer group (written atomically). An
    event's id is the byte offset just after its line; acknowledging commits the offset."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "events.jsonl"
        self._delivered: dict[str, int] = {}

    def publish(self, events: Iterable[Departure]) -> int:
        lines = [json.dumps(e.encode(), separators=(",", ":")) + "\n" for e in events]
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write("".join(lines).encode())
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return len(lines)

    def _offset_path(self, group: str) -> Path:
        return self.folder / f"group-{group}.offset"

    def committed(self, group: str) -> int:
        try:
            return int(self._offset_path(group).read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def read(
        self, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, Departure]]:
        # Another process may have acknowledged further: never hand out acknowledged events.
        start = max(self._delivered.get(group, 0), self.committed(group))
        deadline = time.monotonic() + block_ms / 1000
        while True:
            out = self._read_from(start, count)
            if out or time.monotonic() >= deadline:
                break
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if out:
            self._delivered[group] = int(out[-1][0])
        return out

    def _read_from(self, start: int, count: int) -> list[tuple[str, Departure]]:
        if not self.path.exists():
            return []
        out: list[tuple[str, Departure]] = []
        with self.path.open("rb") as fh:
            fh.seek(start)
            offset = start
            for raw in fh:
                if not raw.endswith(b"\n"):  # a line still being written
                    break
                offset += len(raw)
                out.append((str(offset), Departure.decode(json.loads(raw))))
                if len(out) >= count:
                    break
        return out

    def ack(self, group: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        upto = max(int(i) for i in ids)
        if upto <= self.committed(group):
            return
        path = self._offset_path(group)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(upto))
        os.replace(tmp, path)

    def pending(self, group: str) -> int:
        delivered = max(self._delivered.get(group, 0), self.committed(group))
        return self.backlog(group) - len(self._read_from(delivered, 10**9))

    def backlog(self, group: str) -> int:
        committed = self.committed(group)
        if not self.path.exists() or self.path.stat().st_size <= committed:
            return 0
        return len(self._read_from(committed, 10**9))

    def length(self) -> int:
        if not self.path.exists():
            return 0
        with self.path.open("rb") as fh:
            return sum(1 for _ in fh)


# ---- the window state ---------------------------------------------------------------------------


class WindowState(Protocol):
    """The events of the current windows, keyed by event id (adding one twice is a no-op)."""

    def add(self, events: Sequence[Departure]) -> None: ...

    def aggregate(self, origin: str, boundary: float) -> tuple[int, float]: ...

    def origins(self) -> list[str]: ...

    def max_seen(self) -> float | None: ...

    def last_emitted(self) -> float | None: ...

    def set_last_emitted(self, boundary: float) -> None: ...

    def prune(self, before: float) -> None: ...

    def lock(self, owner: str) -> contextlib.AbstractContextManager[Any]: ...


def _mean(delays: list[float]) -> tuple[int, float]:
    return len(delays), (float(np.mean(delays)) if delays else math.nan)


class RedisWindowState:
    """One sorted set per origin (member ``event_id|delay``, score the departure epoch)."""

    def __init__(self, client: Any, prefix: str):
        self.client = client
        self.prefix = f"{prefix}traffic:"

    def _key(self, origin: str) -> str:
        return f"{self.prefix}origin:{origin}"

    def add(self, events: Sequence[Departure]) -> None:
        if not events:
            return
        with self.client.pipeline(transaction=True) as pipe:
            for e in events:
                pipe.zadd(self._key(e.origin), {f"{e.event_id}|{e.dep_delay!r}": e.epoch})
                pipe.sadd(f"{self.prefix}origins", e.origin)
            pipe.zadd(f"{self.prefix}clock", {"max_seen": max(e.epoch for e in events)}, gt=True)
            pipe.execute()

    def aggregate(self, origin: str, boundary: float) -> tuple[int, float]:
        members = self.client.zrangebyscore(self._key(origin), f"({boundary - _WINDOW_S}", boundary)
        return _mean([float(_text(m).rsplit("|", 1)[1]) for m in members])

    def origins(self) -> list[str]:
        return sorted(_text(o) for o in self.client.smembers(f"{self.prefix}origins"))

    def max_seen(self) -> float | None:
        value = self.client.zscore(f"{self.prefix}clock", "max_seen")
        return None if value is None else float(value)

    def last_emitted(self) -> float | None:
        value = self.client.get(f"{self.prefix}emitted")
        return None if value is None else float(value)

    def set_last_emitted(self, boundary: float) -> None:
        self.client.set(f"{self.prefix}emitted", repr(boundary))

    def prune(self, before: float) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for origin in self.origins():
                pipe.zremrangebyscore(self._key(origin), "-inf", f"({before}")
            pipe.execute()

    def events(self) -> int:
        return sum(int(self.client.zcard(self._key(o))) for o in self.origins())

    @contextlib.contextmanager
    def lock(self, owner: str, ttl_ms: int = 60_000, wait_s: float = 600) -> Iterator[None]:
        """One consumer step at a time across processes (so windows close in event order).

        The lock expires after ``ttl_ms``; a consumer restarted under the same name takes over
        the lock its killed predecessor left instead of waiting for it to expire."""
        key = f"{self.prefix}lock"
        deadline = time.monotonic() + wait_s
        while not self.client.set(key, owner, nx=True, px=ttl_ms):
            if _text(self.client.get(key) or b"") == owner:
                self.client.pexpire(key, ttl_ms)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumer lock {key} held by another consumer for {wait_s}s")
            time.sleep(0.02)
        try:
            yield
        finally:
            if _text(self.client.get(key) or b"") == owner:
                self.client.delete(key)


class SqliteWindowState:
    """The local tier's window state: one SQLite file, event id as the primary key."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = path.with_suffix(".lock")
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, origin TEXT NOT NULL,"
            " epoch REAL NOT NULL, delay REAL NOT NULL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS by_time ON events (origin, epoch)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS origins (origin TEXT PRIMARY KEY)")

    def add(self, events: Sequence[Departure]) -> None:
        if not events:
            return
        with self._tx():
            self.db.executemany(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)",
                [(e.event_id, e.origin, e.epoch, e.dep_delay) for e in events],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO origins VALUES (?)", [(e.origin,) for e in events]
            )
            self.db.execute(
                "INSERT INTO meta VALUES ('max_seen', ?) ON CONFLICT(key) DO UPDATE"
                " SET value = max(value, excluded.value)",
                (max(e.epoch for e in events),),
            )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def aggregate(self, origin: str, boundary: float) -> tuple[int, float]:
        rows = self.db.execute(
            "SELECT delay FROM events WHERE origin = ? AND epoch > ? AND epoch <= ?",
            (origin, boundary - _WINDOW_S, boundary),
        ).fetchall()
        return _mean([r[0] for r in rows])

    def origins(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT origin FROM origins ORDER BY origin")]

    def _meta(self, key: str) -> float | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def max_seen(self) -> float | None:
        return self._meta("max_seen")

    def last_emitted(self) -> float | None:
        return self._meta("emitted")

    def set_last_emitted(self, boundary: float) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES ('emitted', ?) ON CONFLICT(key) DO UPDATE"
            " SET value = excluded.value",
            (boundary,),
        )

    def prune(self, before: float) -> None:
        self.db.execute("DELETE FROM events WHERE epoch < ?", (before,))

    def events(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    @contextlib.contextmanager
    def lock(self, owner: str) -> Iterator[None]:
        """One consumer step at a time across processes (so windows close in event order);
        the operating system releases it when its holder dies."""
        with self.lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


# ---- the consumer -------------------------------------------------------------------------------


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
        self.state.prune(boundary - _WINDOW_S - _HOP_S)
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
