"""Values the gate reports (samples, observed values, metadata), made JSON-safe and short.

Whatever a cell of a landing file holds (NaN, infinities, a string of megabytes, bytes, a
timestamp, a numpy scalar, an object of any type), :func:`plain` returns something
``json.dumps(..., allow_nan=False)`` accepts, and no string in it is longer than
``MAX_TEXT`` characters.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

MAX_TEXT = 200  # characters of one reported value
MAX_ITEMS = 20  # items of one reported list or dict
MAX_DEPTH = 4


def short(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def plain(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, size-bounded rendering of ``value``."""
    if value is None or isinstance(value, bool):
        return value
    if depth >= MAX_DEPTH:
        return short(repr(value))
    if isinstance(value, str):
        return short(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return short(repr(bytes(value)))
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # 'nan', 'inf', '-inf'
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        return {short(str(k), 80): plain(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)[:MAX_ITEMS]
        return [plain(v, depth + 1) for v in items]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        try:
            return value.isoformat()
        except (ValueError, TypeError):  # NaT
            return short(str(value))
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        try:
            return plain(value.item(), depth)  # numpy / pandas scalars
        except (ValueError, TypeError):
            pass
    if hasattr(value, "isoformat"):
        try:
            return value.isoformat()
        except (ValueError, TypeError):
            pass
    return short(str(value))


def json_safe(value: Any) -> Any:
    """:func:`plain`, checked: the result serializes as strict JSON."""
    out = plain(value)
    json.dumps(out, allow_nan=False)
    return out


_CELL_TYPES = (str, int, float, bool, dt.datetime, dt.date)


def plain_cells(df: Any) -> Any:
    """``df`` with every object-column cell that is not text, a number, a boolean, a date or
    missing replaced by its ``repr`` (bytes, containers, arbitrary objects), so that hashing,
    comparing and writing the frame cannot fail; the rules then see a wrong value, not a crash."""
    out = df.copy()
    for col in out.columns[out.dtypes.astype(str) == "object"]:
        values = out[col]
        odd = values.map(lambda v: v is not None and not isinstance(v, _CELL_TYPES) and v == v)
        if odd.any():
            out[col] = values.where(~odd, values[odd].map(lambda v: short(repr(v), 10_000)))
    return out
