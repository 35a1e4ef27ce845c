"""The prediction log: every answer the endpoint gives, one whole record each, per scheduled
departure date (what monitoring joins with the labels).

Two stores, one interface (``append`` a batch, ``read_day``), picked by where the log lives
(:func:`open_log`):

* a folder (the `local` tier): JSON lines, one file per date, appended by one process;
* a ``postgresql://`` URL (the `server` and `k8s` tiers): one table that every serving replica
  appends to and monitoring reads, on whichever machine each runs. A batch is one
  transaction, so a reader sees all of a batch's records or none, and concurrent replicas
  never interleave bytes of one record (each is one row).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import orjson

from dagster_project.platform.settings import ServerSettings

log = logging.getLogger("flight_delay.serving")


class PredictionLog(Protocol):
    def append(self, records: list[dict[str, Any]]) -> None: ...

    def read_day(self, day: str) -> list[dict[str, Any]]: ...


def _by_day(records: list[dict[str, Any]]) -> dict[str, list[bytes]]:
    by_day: dict[str, list[bytes]] = {}
    for r in records:
        by_day.setdefault(r["scheduled_date"], []).append(orjson.dumps(r, default=str))
    return by_day


class FilePredictionLog:
    """Append-only JSON lines, one file per scheduled departure date.

    Crash safety: each append is one ``write`` of whole lines on an ``O_APPEND`` descriptor, so
    a reader sees complete records only, plus at worst one torn last line if the process dies
    mid-write. Before a process first appends to a file it ends a torn tail with a newline, so
    the fragment stays a line of its own (:meth:`read_day` skips it) and never glues onto the
    next record."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._checked: set[Path] = set()

    def _torn_tail(self, fd: int) -> bool:
        size = os.fstat(fd).st_size
        return size > 0 and os.pread(fd, 1, size - 1) != b"\n"

    def append(self, records: list[dict[str, Any]]) -> None:
        by_day = _by_day(records)
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            for day, lines in by_day.items():
                path = self.folder / f"{day}.jsonl"
                data = b"\n".join(lines) + b"\n"
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    if path not in self._checked:
                        if self._torn_tail(fd):
                            data = b"\n" + data
                        self._checked.add(path)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)

    def read_day(self, day: str) -> list[dict[str, Any]]:
        """Every prediction logged for flights scheduled on ``day``. A line cut short by a
        crash mid-append is not JSON (or not a record) and is skipped, with a warning; it is
        never half-read."""
        path = self.folder / f"{day}.jsonl"
        if not path.exists():
            return []
        records, torn = [], 0
        for line in path.read_bytes().split(b"\n"):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                torn += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                torn += 1
        if torn:
            log.warning("%s: skipped %d torn line(s) (a crash mid-append)", path, torn)
        return records


TABLE = "prediction_log"
_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    scheduled_date date NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT now(),
    record jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS {TABLE}_scheduled_date ON {TABLE} (scheduled_date, id);
"""


class PostgresPredictionLog:
    """The prediction log as a PostgreSQL table (``url``: a database URL without a password;
    ``MLOPS_PG_PASSWORD`` is read when connecting). One connection per process, used under a
    lock; the table is created on first use (under an advisory lock: replicas starting
    together do not race on it)."""

    def __init__(self, url: str, connect_timeout_s: int = 5):
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(
            self.url,
            password=ServerSettings.pg_password(),
            connect_timeout=self.connect_timeout_s,
            application_name="flight-mlops prediction log",
        )
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
            cur.execute(_DDL)
        return conn

    def _run(self, work: Any) -> Any:
        """``work(cursor)`` in one transaction; a broken connection is reopened once."""
        import psycopg2

        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                try:
                    with self._conn, self._conn.cursor() as cur:
                        return work(cur)
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    self.close_locked()
                    if attempt == 2:
                        raise
            return None

    def close_locked(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        from psycopg2.extras import execute_values

        rows = [(day, line.decode()) for day, lines in _by_day(records).items() for line in lines]

        def insert(cur: Any) -> None:
            execute_values(
                cur,
                f"INSERT INTO {TABLE} (scheduled_date, record) VALUES %s",
                rows,
                template="(%s, %s::jsonb)",
                page_size=1000,
            )

        self._run(insert)

    def read_day(self, day: str) -> list[dict[str, Any]]:
        def select(cur: Any) -> list[dict[str, Any]]:
            cur.execute(
                f"SELECT record::text FROM {TABLE} WHERE scheduled_date = %s ORDER BY id", (day,)
            )
            return [orjson.loads(row[0]) for row in cur.fetchall()]

        return list(self._run(select))


def open_log(where: str | Path) -> FilePredictionLog | PostgresPredictionLog:
    """The prediction log at ``where``: a ``postgresql://`` URL, or a local folder."""
    target = str(where)
    if target.startswith(("postgresql://", "postgres://")):
        return PostgresPredictionLog(target)
    return FilePredictionLog(Path(target))
