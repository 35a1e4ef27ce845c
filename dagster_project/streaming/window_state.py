"""The events of the current windows, keyed by event id, so that adding an event twice changes
nothing: Redis sorted sets on the server tiers, SQLite on ``local``.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dagster_project.streaming.event_log import _text
from dagster_project.streaming.traffic import WINDOW_S, Departure


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
        members = self.client.zrangebyscore(self._key(origin), f"({boundary - WINDOW_S}", boundary)
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
            (origin, boundary - WINDOW_S, boundary),
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
