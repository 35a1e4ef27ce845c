"""The stream's events as a log with consumer groups: a Redis Stream on the server tiers, an
append-only local file with the same interface (read pending first, ack) on ``local``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dagster_project.streaming.events import Event, decode

T = TypeVar("T")


class EventLog(Protocol):
    """An append-only log of events with consumer groups (Redis Streams semantics):
    ``read`` hands a consumer first its own delivered-but-unacknowledged events, then new ones."""

    def publish(self, events: Iterable[Event]) -> int: ...

    def read(
        self, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, Event]]: ...

    def ack(self, group: str, ids: Sequence[str]) -> None: ...

    def pending(self, group: str) -> int: ...

    def backlog(self, group: str) -> int:
        """Events not yet acknowledged by the group (pending and never delivered)."""
        ...

    def length(self) -> int: ...

    def reset(self) -> None:
        """Drop every event and consumer group."""
        ...


class RedisEventLog:
    """A Redis Stream ``<prefix>stream:events`` read through a consumer group."""

    def __init__(self, client: Any, prefix: str, name: str = "events"):
        self.client = client
        self.key = f"{prefix}stream:{name}"
        self._groups: set[str] = set()

    def publish(self, events: Iterable[Event]) -> int:
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

    def _regrouped(self, group: str, call: Callable[[], T]) -> T:
        """``call`` with ``group`` in place. A stream reset elsewhere (another process started
        it over) drops the group this log created: Redis answers NOGROUP, and the group is
        made again on the new stream instead of failing every later read (NOGROUP; "no such
        key" for XINFO on the deleted stream)."""
        import redis

        self._group(group)
        try:
            return call()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no such key" not in str(exc):
                raise
            self._groups.discard(group)
            self._group(group)
            return call()

    def read(self, group: str, consumer: str, count: int, block_ms: int) -> list[tuple[str, Event]]:
        def entries() -> list[Any]:
            # Own pending entries first (after a restart), then new ones.
            reply = self.client.xreadgroup(group, consumer, {self.key: "0"}, count=count)
            if reply and reply[0][1]:
                return list(reply[0][1])
            reply = self.client.xreadgroup(
                group, consumer, {self.key: ">"}, count=count, block=block_ms or None
            )
            return list(reply[0][1]) if reply else []

        return [(_text(i), decode(_decode(f))) for i, f in self._regrouped(group, entries)]

    def ack(self, group: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.xack(self.key, group, *ids)

    def pending(self, group: str) -> int:
        return int(self._regrouped(group, lambda: self.client.xpending(self.key, group))["pending"])

    def backlog(self, group: str) -> int:
        groups = self._regrouped(group, lambda: self.client.xinfo_groups(self.key))
        info = next((g for g in groups if _text(g["name"]) == group), None)
        lag = info.get("lag") if info else None
        pending = int(info["pending"]) if info else 0
        return pending + (int(lag) if lag is not None else self.length())

    def length(self) -> int:
        return int(self.client.xlen(self.key))

    def reset(self) -> None:
        self.client.delete(self.key)
        self._groups.clear()


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

    def publish(self, events: Iterable[Event]) -> int:
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

    def read(self, group: str, consumer: str, count: int, block_ms: int) -> list[tuple[str, Event]]:
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

    def _read_from(self, start: int, count: int) -> list[tuple[str, Event]]:
        if not self.path.exists():
            return []
        out: list[tuple[str, Event]] = []
        with self.path.open("rb") as fh:
            fh.seek(start)
            offset = start
            for raw in fh:
                if not raw.endswith(b"\n"):  # a line still being written
                    break
                offset += len(raw)
                out.append((str(offset), decode(json.loads(raw))))
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

    def reset(self) -> None:
        for path in [self.path, *self.folder.glob("group-*.offset")]:
            path.unlink(missing_ok=True)
        self._delivered.clear()

    def length(self) -> int:
        if not self.path.exists():
            return 0
        with self.path.open("rb") as fh:
            return sum(1 for _ in fh)
