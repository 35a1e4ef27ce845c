"""The columns that say *when* a row happened, reduced to comparable values.

A flights row says its day four ways (``year``/``month``/``day``, ``time_hour``, the partition
it was filed under, and ``sched_dep_time`` with ``hour``/``minute``); ``validated_flights``
builds ``flight_id``, ``flight_date`` and ``sched_dep_ts`` from ``year``/``month``/``day`` and
``sched_dep_time``. The consistency rules of ``expectations.py`` name pairs of the values below
that must be equal, so no row is filed under one day and dated another.

Every value is text (or ``None`` where the cells cannot say: not a whole number, not a date,
not a timestamp), so that odd cells make a row fail the rule instead of the gate crash.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from dagster_project.ingestion.landing import PARTITION
from dagster_project.platform.settings import TIMEZONE

PREFIX = "_when:"


def column(name: str) -> str:
    """The helper column the gate adds for the value ``name``."""
    return PREFIX + "".join(c if c.isalnum() else "_" for c in name)


def _whole(df: pd.DataFrame, col: str) -> pd.Series:
    """``col`` as whole numbers (float64 with NaN where a cell is not one)."""
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    values = df[col]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        values = pd.to_numeric(values.map(_number_or_none), errors="coerce")
    values = values.astype("float64")
    ok = np.isfinite(values) & (values == np.round(values)) & (values.abs() < 1e9)
    return values.where(ok)


def _number_or_none(value: object) -> object:
    return value if isinstance(value, int | float | str) and not isinstance(value, bool) else None


def _text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: None if pd.isna(v) else str(int(v))).astype(object)


def _local(df: pd.DataFrame, col: str) -> pd.Series | None:
    """The column as New York local time, or ``None`` when it is not a parsed timestamp."""
    if col not in df.columns or not pd.api.types.is_datetime64_any_dtype(df[col]):
        return None
    ts = df[col]
    ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    return ts.dt.tz_convert(TIMEZONE)


def _none(df: pd.DataFrame) -> pd.Series:
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def local_date(df: pd.DataFrame, col: str = "time_hour") -> pd.Series:
    local = _local(df, col)
    if local is None:
        return _none(df)
    return local.dt.strftime("%Y-%m-%d").where(local.notna(), None).astype(object)


def local_hour(df: pd.DataFrame, col: str = "time_hour") -> pd.Series:
    local = _local(df, col)
    return _none(df) if local is None else _text(local.dt.hour.astype("float64"))


def row_date(df: pd.DataFrame) -> pd.Series:
    """``year``/``month``/``day`` as a date, ``None`` where they are not a real day."""
    year, month, day = (_whole(df, c) for c in ("year", "month", "day"))
    ok = year.between(1, 9999) & month.between(1, 12) & day.between(1, 31)
    parts = pd.DataFrame(
        {"year": year.where(ok, 2000), "month": month.where(ok, 1), "day": day.where(ok, 1)}
    ).astype("int64")
    dates = pd.to_datetime(parts, errors="coerce")
    # pandas rolls nothing over with errors="coerce": 2013-02-30 is NaT
    return dates.dt.strftime("%Y-%m-%d").where(ok & dates.notna(), None).astype(object)


def whole(col: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: _text(_whole(df, col))


def hhmm(col: str, part: str) -> Callable[[pd.DataFrame], pd.Series]:
    """The hour (``part="hour"``) or minute of an HHMM clock time."""

    def derive(df: pd.DataFrame) -> pd.Series:
        values = _whole(df, col)
        return _text(values // 100 if part == "hour" else values % 100)

    return derive


def partition(df: pd.DataFrame) -> pd.Series:
    if PARTITION not in df.columns:
        return _none(df)
    return df[PARTITION].map(lambda v: None if pd.isna(v) else str(v)).astype(object)


VALUES: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "partition day": partition,
    "time_hour local date": local_date,
    "time_hour local hour": local_hour,
    "year/month/day": row_date,
    "hour": whole("hour"),
    "minute": whole("minute"),
    "sched_dep_time hour": hhmm("sched_dep_time", "hour"),
    "sched_dep_time minute": hhmm("sched_dep_time", "minute"),
}
SOURCES = {  # the raw columns each value is read from
    "partition day": (),
    "time_hour local date": ("time_hour",),
    "time_hour local hour": ("time_hour",),
    "year/month/day": ("year", "month", "day"),
    "hour": ("hour",),
    "minute": ("minute",),
    "sched_dep_time hour": ("sched_dep_time",),
    "sched_dep_time minute": ("sched_dep_time",),
}


def add_columns(df: pd.DataFrame, names: set[str]) -> pd.DataFrame:
    """``df`` with a helper column per value in ``names``."""
    out = df.copy()
    for name in sorted(names):
        out[column(name)] = VALUES[name](df).to_numpy()
    return out
