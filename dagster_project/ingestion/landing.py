"""The landing zone: where source files arrive, one file per table and day.

The writer (``land_*``) copies the real data set into the zone; the readers (``read_*``) only
know the zone's layout, so a user can point them at their own files instead::

    <landing_url>/flights/2013-01-05.csv      daily tables: flights, weather
    <landing_url>/reference/planes.csv        reference snapshots: airlines, airports, planes
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date

import pandas as pd

from dagster_project.ingestion import sources
from dagster_project.platform import storage

SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
PARTITION = "_partition"
LINEAGE_COLUMNS = (SOURCE_FILE, SOURCE_LINE, PARTITION)
TIMESTAMP_COLUMNS = ("time_hour",)


class LandingFileError(ValueError):
    """A landing file that cannot be read at all (missing, empty, not CSV, not UTF-8)."""


def daily_file_url(landing_url: str, table: str, day: date) -> str:
    return storage.join(landing_url, table, f"{day:%Y-%m-%d}.csv")


def reference_file_url(landing_url: str, table: str) -> str:
    return storage.join(landing_url, "reference", f"{table}.csv")


def _to_csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def land_day(landing_url: str, day: date) -> dict[str, int]:
    """Write the day's flights and weather files; returns rows written per table."""
    written = {}
    for table in sources.DAILY_TABLES:
        rows = sources.day_rows(table, day)
        storage.write_bytes_atomic(daily_file_url(landing_url, table, day), _to_csv(rows))
        written[table] = len(rows)
    return written


def land_reference(landing_url: str) -> dict[str, int]:
    """Write the reference snapshots (airlines, airports, planes)."""
    written = {}
    for table in sources.REFERENCE_TABLES:
        rows = sources.load_table(table)
        storage.write_bytes_atomic(reference_file_url(landing_url, table), _to_csv(rows))
        written[table] = len(rows)
    return written


MAX_FILE_BYTES = 512 * 1024 * 1024  # a landing file is read whole: refuse absurd ones


def _check_shape(url: str, text: str, df: pd.DataFrame, allow_empty: bool = False) -> None:
    """File-level rules a CSV parser lets through: a cut-off last row, a foreign delimiter,
    no data rows (unless ``allow_empty``: a table whose day may have none)."""
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])
    if len(header) == 1:
        for delimiter in (";", "\t", "|"):
            if delimiter in header[0]:
                raise LandingFileError(
                    f"{url}: column {header[0][:40]!r}..., rule csv_delimiter: the header is "
                    f"one column separated by {delimiter!r}; landing files are comma-separated"
                )
    if df.empty and not allow_empty:
        raise LandingFileError(
            f"{url}: rule at_least_one_row: header only ({len(header)} columns), no data rows"
        )
    if not text.endswith("\n"):
        last = text.rsplit("\n", 1)[-1]
        fields = next(csv.reader(io.StringIO(last)), [])
        if len(fields) < len(header):
            raise LandingFileError(
                f"{url}: column {header[len(fields)]!r}, rule complete_last_row: the file is truncated "
                f"(line {text.count(chr(10)) + 1} has {len(fields)} of {len(header)} fields "
                "and no newline at the end)"
            )


def read_file(url: str, max_bytes: int = MAX_FILE_BYTES, allow_empty: bool = False) -> pd.DataFrame:
    """Read one landing CSV as it is (dtypes inferred, nothing fixed) plus lineage columns.

    ``time_hour`` is parsed to a naive UTC timestamp when every value parses; otherwise it is left as text so that
    the validation gate reports a dtype failure naming the column instead of this reader guessing.
    Files that cannot be a table (empty, not UTF-8, not CSV, truncated, another delimiter,
    header only unless ``allow_empty``, over ``max_bytes``) raise :class:`LandingFileError`
    naming the file and rule.
    """
    if not storage.exists(url):
        raise LandingFileError(f"{url}: landing file not found")
    size = storage.size(url)
    if size > max_bytes:
        raise LandingFileError(
            f"{url}: rule max_file_bytes: {size} bytes, over the limit of {max_bytes}"
        )
    raw = storage.read_bytes(url)
    if not raw.strip():
        raise LandingFileError(f"{url}: file is empty (0 bytes of data, not even a header)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LandingFileError(
            f"{url}: not valid UTF-8 at byte {exc.start} ({raw[exc.start : exc.start + 8]!r})"
        ) from exc
    try:
        df = pd.read_csv(io.StringIO(text))
    except pd.errors.ParserError as exc:
        raise LandingFileError(f"{url}: not a well-formed CSV file: {exc}") from exc
    _check_shape(url, text, df, allow_empty)
    for col in TIMESTAMP_COLUMNS:
        if col in df.columns:
            parsed = pd.to_datetime(df[col], utc=True, errors="coerce")
            if parsed.notna().sum() == df[col].notna().sum():
                df[col] = parsed.dt.tz_localize(None)
    df[SOURCE_FILE] = url
    df[SOURCE_LINE] = pd.RangeIndex(2, len(df) + 2)  # line 1 is the header
    return df


def read_days(landing_url: str, table: str, days: Iterable[date]) -> pd.DataFrame:
    """Read the table's files for ``days``; each row carries its file, line and partition day."""
    frames = []
    for day in days:
        df = read_file(
            daily_file_url(landing_url, table, day), allow_empty=table in sources.MAY_BE_EMPTY
        )
        df[PARTITION] = f"{day:%Y-%m-%d}"
        frames.append(df)
    if not frames:
        raise ValueError(f"no days given to read for table {table!r}")
    # A header-only file (2013-12-31 has no weather) adds no rows, but its all-object columns
    # would turn every integer column of the concatenation into object and fail the type gate.
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def read_reference(landing_url: str, table: str) -> pd.DataFrame:
    df = read_file(reference_file_url(landing_url, table))
    df[PARTITION] = "reference"
    return df
