"""The prediction log: one JSON line per prediction, appended whole (never a torn record)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson


class PredictionLog:
    """Append-only JSON lines, one file per scheduled departure date (what monitoring reads).

    Crash safety: each append is one ``write`` of whole lines on an ``O_APPEND`` descriptor, so
    a reader sees complete records only, plus at worst one torn last line if the process dies
    mid-write. Before a process first appends to a file it ends a torn tail with a newline, so
    the fragment stays a line of its own (readers skip it, see ``loop.read_prediction_log``)
    and never glues onto the next record."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._checked: set[Path] = set()

    def _torn_tail(self, fd: int) -> bool:
        size = os.fstat(fd).st_size
        return size > 0 and os.pread(fd, 1, size - 1) != b"\n"

    def append(self, records: list[dict[str, Any]]) -> None:
        by_day: dict[str, list[bytes]] = {}
        for r in records:
            by_day.setdefault(r["scheduled_date"], []).append(orjson.dumps(r, default=str))
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
