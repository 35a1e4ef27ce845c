"""The events the consumer keeps, keyed by event id, so that adding an event twice changes
nothing: Redis sorted sets on the server tiers, SQLite on ``local``.

It holds the departures of the longest window (:data:`aggregates.KEEP_S`), the weather
observations of the 3-hour rainfall, the clock (the latest event time seen, the producer's
watermark) and the last boundary whose rows were pushed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from dagster_project.features import aggregates
from dagster_project.features.engineering import WEATHER_COLUMNS
from dagster_project.streaming.events import Departure, Event, Observation, Scheduled, Tick


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def departures_frame(events: Sequence[Departure]) -> pd.DataFrame:
    """Departure events as the frame the aggregates read (``epoch`` in whole seconds)."""
    rows = [
        (e.event_id, e.origin, e.carrier, e.tailnum, e.day, int(e.epoch), float(e.dep_delay))
        for e in events
    ]
    return pd.DataFrame(rows, columns=aggregates.FRAME_COLUMNS).astype(
        {"epoch": "int64", "dep_delay": "float64"}
    )


def schedule_frame(events: Sequence[Scheduled]) -> pd.DataFrame:
    """Scheduled events as the schedule frame the aggregates read."""
    rows = [(e.flight_id, e.origin, int(e.scheduled_at.timestamp()), int(e.epoch)) for e in events]
    return pd.DataFrame(rows, columns=aggregates.SCHEDULE_COLUMNS).astype(
        {"sched": "int64", "pub": "int64"}
    )


def weather_frame(observations: Sequence[Observation]) -> pd.DataFrame:
    """Observations as validated weather rows (what :func:`engineering.origin_weather` reads)."""
    df = pd.DataFrame(
        [o.values for o in observations], columns=list(WEATHER_COLUMNS), dtype="float64"
    )
    df.insert(0, "origin", [o.origin for o in observations])
    df.insert(1, "time_hour", pd.to_datetime([o.observed_at for o in observations], utc=True))
    return df


class WindowState(Protocol):
    """The consumer's events (adding one twice is a no-op) and clock."""

    def add(self, events: Sequence[Event]) -> None: ...

    def departures(self, since: float) -> pd.DataFrame:
        """Departures with event time after ``since``, as :func:`aggregates.frame` gives."""
        ...

    def observations(self, since: float) -> list[Observation]: ...

    def schedule(self, since: float) -> pd.DataFrame:
        """Flights whose schedule was published after ``since`` (:func:`schedule_frame`)."""
        ...

    def first_seen(self) -> float | None: ...

    def max_seen(self) -> float | None: ...

    def watermark(self) -> float | None: ...

    def last_emitted(self) -> float | None: ...

    def set_last_emitted(self, boundary: float) -> None: ...

    def weather_pushed(self) -> float | None:
        """The latest observation time whose weather row was pushed."""
        ...

    def set_weather_pushed(self, epoch: float) -> None: ...

    def prune(self, before: float) -> None: ...

    def reset(self) -> None: ...

    def revision(self) -> float:
        """A counter every add and prune moves on (a cache of the events checks it)."""
        ...

    def pruned(self) -> float | None:
        """The time before which events are dropped (and late copies of them refused)."""
        ...

    def lock(self, owner: str) -> contextlib.AbstractContextManager[Any]: ...


_REDIS_KIND = {"departure": "dep", "observation": "obs", "scheduled": "sch"}


def _member(event: Departure | Observation | Scheduled) -> str:
    return json.dumps(event.encode(), sort_keys=True, separators=(",", ":"))


class RedisWindowState:
    """Two sorted sets (departures, observations; member: the event's canonical JSON, score:
    its time) and a hash for the clock."""

    def __init__(self, client: Any, prefix: str):
        self.client = client
        self.prefix = f"{prefix}window:"

    def add(self, events: Sequence[Event]) -> None:
        pruned = self.pruned()
        if pruned is not None:  # a late copy of an event already pruned: nothing to keep
            events = [e for e in events if isinstance(e, Tick) or e.epoch >= pruned]
        if not events:
            return
        clock: dict[str, float] = {}
        with self.client.pipeline(transaction=True) as pipe:
            for e in events:
                if isinstance(e, Tick):
                    clock["watermark"] = max(clock.get("watermark", e.epoch), e.epoch)
                    continue
                kind = _REDIS_KIND[e.kind]
                pipe.zadd(f"{self.prefix}{kind}", {_member(e): e.epoch})
                clock["max_seen"] = max(clock.get("max_seen", e.epoch), e.epoch)
                clock["first_seen"] = min(clock.get("first_seen", e.epoch), e.epoch)
            for name, value in clock.items():
                pipe.zadd(f"{self.prefix}clock", {name: value}, **_order(name))
            pipe.zincrby(f"{self.prefix}clock", 1, "revision")
            pipe.execute()

    def _events(self, kind: str, since: float) -> list[dict[str, str]]:
        members = self.client.zrangebyscore(f"{self.prefix}{kind}", f"({since}", "+inf")
        return [json.loads(_text(m)) for m in members]

    def departures(self, since: float) -> pd.DataFrame:
        return departures_frame([Departure.decode(f) for f in self._events("dep", since)])

    def observations(self, since: float) -> list[Observation]:
        return [Observation.decode(f) for f in self._events("obs", since)]

    def schedule(self, since: float) -> pd.DataFrame:
        return schedule_frame([Scheduled.decode(f) for f in self._events("sch", since)])

    def _clock(self, name: str) -> float | None:
        value = self.client.zscore(f"{self.prefix}clock", name)
        return None if value is None else float(value)

    def first_seen(self) -> float | None:
        return self._clock("first_seen")

    def max_seen(self) -> float | None:
        return self._clock("max_seen")

    def watermark(self) -> float | None:
        return self._clock("watermark")

    def last_emitted(self) -> float | None:
        return self._clock("emitted")

    def set_last_emitted(self, boundary: float) -> None:
        self.client.zadd(f"{self.prefix}clock", {"emitted": boundary})

    def revision(self) -> float:
        return self._clock("revision") or 0.0

    def pruned(self) -> float | None:
        return self._clock("pruned")

    def weather_pushed(self) -> float | None:
        return self._clock("weather_pushed")

    def set_weather_pushed(self, epoch: float) -> None:
        self.client.zadd(f"{self.prefix}clock", {"weather_pushed": epoch}, gt=True)

    def prune(self, before: float) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(f"{self.prefix}dep", "-inf", f"({before}")
            pipe.zremrangebyscore(f"{self.prefix}obs", "-inf", f"({before}")
            pipe.zremrangebyscore(f"{self.prefix}sch", "-inf", f"({before}")
            pipe.zadd(f"{self.prefix}clock", {"pruned": before}, gt=True)
            pipe.zincrby(f"{self.prefix}clock", 1, "revision")
            pipe.execute()

    def events(self) -> int:
        return sum(int(self.client.zcard(f"{self.prefix}{k}")) for k in _REDIS_KIND.values())

    def reset(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}*"))
        if keys:
            self.client.delete(*keys)

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


def _order(name: str) -> dict[str, bool]:
    """The clock only moves one way: the first event time down, the others up."""
    return {"lt": True} if name == "first_seen" else {"gt": True}


class SqliteWindowState:
    """The local tier's window state: one SQLite file, event id as the primary key."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock_path = path.with_suffix(".lock")
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
            " epoch REAL NOT NULL, body TEXT NOT NULL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS by_time ON events (kind, epoch)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL)")

    def add(self, events: Sequence[Event]) -> None:
        pruned = self.pruned()
        if pruned is not None:  # a late copy of an event already pruned: nothing to keep
            events = [e for e in events if isinstance(e, Tick) or e.epoch >= pruned]
        if not events:
            return
        stored = [e for e in events if not isinstance(e, Tick)]
        ticks = [e.epoch for e in events if isinstance(e, Tick)]
        with self._tx():
            self.db.executemany(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)",
                [(e.event_id, e.kind, e.epoch, _member(e)) for e in stored],
            )
            if stored:
                self._move("max_seen", max(e.epoch for e in stored), "max")
                self._move("first_seen", min(e.epoch for e in stored), "min")
            if ticks:
                self._move("watermark", max(ticks), "max")
            self._bump()

    def _move(self, key: str, value: float, how: str) -> None:
        self.db.execute(
            f"INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
            f" SET value = {how}(value, excluded.value)",
            (key, value),
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

    def _events(self, kind: str, since: float) -> list[dict[str, str]]:
        rows = self.db.execute(
            "SELECT body FROM events WHERE kind = ? AND epoch > ? ORDER BY epoch, event_id",
            (kind, since),
        )
        return [json.loads(r[0]) for r in rows]

    def departures(self, since: float) -> pd.DataFrame:
        return departures_frame([Departure.decode(f) for f in self._events("departure", since)])

    def observations(self, since: float) -> list[Observation]:
        return [Observation.decode(f) for f in self._events("observation", since)]

    def schedule(self, since: float) -> pd.DataFrame:
        return schedule_frame([Scheduled.decode(f) for f in self._events("scheduled", since)])

    def _meta(self, key: str) -> float | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def first_seen(self) -> float | None:
        return self._meta("first_seen")

    def max_seen(self) -> float | None:
        return self._meta("max_seen")

    def watermark(self) -> float | None:
        return self._meta("watermark")

    def last_emitted(self) -> float | None:
        return self._meta("emitted")

    def set_last_emitted(self, boundary: float) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES ('emitted', ?) ON CONFLICT(key) DO UPDATE"
            " SET value = excluded.value",
            (boundary,),
        )

    def prune(self, before: float) -> None:
        with self._tx():
            self.db.execute("DELETE FROM events WHERE epoch < ?", (before,))
            self._move("pruned", before, "max")
            self._bump()

    def _bump(self) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES ('revision', 1) ON CONFLICT(key) DO UPDATE"
            " SET value = value + 1"
        )

    def revision(self) -> float:
        return self._meta("revision") or 0.0

    def pruned(self) -> float | None:
        return self._meta("pruned")

    def weather_pushed(self) -> float | None:
        return self._meta("weather_pushed")

    def set_weather_pushed(self, epoch: float) -> None:
        self._move("weather_pushed", epoch, "max")

    def events(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def reset(self) -> None:
        with self._tx():
            self.db.execute("DELETE FROM events")
            self.db.execute("DELETE FROM meta")

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


class MirroredState:
    """A window state with the events also held in memory, so a consumer step reads them
    without decoding them from the store. Writes go to the store first; the mirror is reloaded
    whenever the store's :meth:`revision` is not the one it last saw (another consumer wrote,
    or a restart)."""

    def __init__(self, state: WindowState):
        self.state = state
        self._rev: float | None = None
        self._kept: dict[str, dict[str, Departure | Observation | Scheduled]] = {}
        self._frames: dict[str, tuple[int, pd.DataFrame, pd.Series]] = {}
        self._generation: dict[str, int] = {}  # moves when a kind's events change

    def __getattr__(self, name: str) -> Any:  # the clock, locks and the rest: the store's
        return getattr(self.state, name)

    def sync(self) -> None:
        if self._rev is not None and self.state.revision() == self._rev:
            return
        everything = [
            *self._as_events(self.state.departures(float("-inf")), "departure"),
            *self.state.observations(float("-inf")),
            *self._as_events(self.state.schedule(float("-inf")), "scheduled"),
        ]
        self._kept = {"departure": {}, "observation": {}, "scheduled": {}}
        for e in everything:
            self._kept[e.kind][e.event_id] = e
        self._rev = self.state.revision()
        self._generation = {k: self._generation.get(k, 0) + 1 for k in self._kept}

    @staticmethod
    def _as_events(frame: pd.DataFrame, kind: str) -> list[Departure | Scheduled]:
        out: list[Departure | Scheduled] = []
        for r in frame.to_dict("records"):
            if kind == "departure":
                out.append(
                    Departure(
                        str(r["event_id"]),
                        str(r["origin"]),
                        _at(float(r["epoch"])),
                        float(r["dep_delay"]),
                        str(r["carrier"]),
                        str(r["tailnum"]),
                        str(r["day"]),
                    )
                )
            else:
                out.append(
                    Scheduled(
                        f"sched_{r['event_id']}",
                        str(r["origin"]),
                        _at(float(r["sched"])),
                        _at(float(r["pub"])),
                    )
                )
        return out

    def add(self, events: Sequence[Event]) -> None:
        self.sync()
        pruned = self.state.pruned()
        self.state.add(events)
        for e in events:
            if isinstance(e, Tick) or (pruned is not None and e.epoch < pruned):
                continue
            self._kept[e.kind][e.event_id] = e
            self._generation[e.kind] = self._generation.get(e.kind, 0) + 1
        self._rev = self.state.revision()

    def prune(self, before: float) -> None:
        self.sync()
        self.state.prune(before)
        for kind, table in self._kept.items():
            gone = [k for k, e in table.items() if e.epoch < before]
            for key in gone:
                del table[key]
            if gone:
                self._generation[kind] = self._generation.get(kind, 0) + 1
        self._rev = self.state.revision()

    def _since(self, kind: str, since: float) -> list[Any]:
        self.sync()
        kept = (e for e in self._kept[kind].values() if e.epoch > since)
        return sorted(kept, key=lambda e: (e.epoch, e.event_id))

    def _frame(self, kind: str, since: float) -> pd.DataFrame:
        """The kind's events after ``since`` as a frame, built once per revision."""
        self.sync()
        cached = self._frames.get(kind)
        generation = self._generation.get(kind, 0)
        if cached is None or cached[0] != generation:
            events = self._since(kind, float("-inf"))
            build = departures_frame if kind == "departure" else schedule_frame
            frame = build(events)
            epochs = pd.Series([e.epoch for e in events], dtype="float64")
            cached = (generation, frame, epochs)
            self._frames[kind] = cached
        _, frame, epochs = cached
        return frame.loc[(epochs > since).to_numpy()].reset_index(drop=True)

    def departures(self, since: float) -> pd.DataFrame:
        return self._frame("departure", since)

    def observations(self, since: float) -> list[Observation]:
        return self._since("observation", since)

    def schedule(self, since: float) -> pd.DataFrame:
        return self._frame("scheduled", since)

    def reset(self) -> None:
        self.state.reset()
        self._rev = None


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
