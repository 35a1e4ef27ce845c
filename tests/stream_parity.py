"""Batch/stream parity, shared by the local and the Redis stream tests.

Every stream-fed view (``origin_weather`` and the departure views of
:mod:`dagster_project.features.aggregates`) has one definition for the batch table and the live
rows, so a live row must equal the batch row of the same key and boundary *bit for bit* (NaN
equal to NaN), and the live rows must leave out no batch row of the time they cover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.features import aggregates, engineering
from dagster_project.streaming import consumer

TS = engineering.TS
WEATHER_FEATURES = (*engineering.WEATHER_COLUMNS, "precip_3h")

# view -> (entity key column, feature columns, push source)
STREAM_VIEWS: dict[str, tuple[str, tuple[str, ...], str]] = {
    aggregates.ORIGIN_WEATHER: ("origin", WEATHER_FEATURES, consumer.WEATHER_PUSH),
    **{v.name: (v.key, v.features, v.push_source) for v in aggregates.VIEWS.values()},
}
DEPARTURE_VIEWS = tuple(aggregates.VIEWS)


def batch_tables(flights: pd.DataFrame, weather: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The offline table of every stream-fed view, from validated flights and weather."""
    out = {view: aggregates.batch_table(view, flights) for view in aggregates.VIEWS}
    out[aggregates.ORIGIN_WEATHER] = engineering.origin_weather(weather)
    return out


def live_tables(pushed: consumer.ConsumerStats | Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Everything pushed, per view: from a consumer's stats (``keep_pushed=True``), or from
    ``{push source: frame or list of frames}``."""
    out: dict[str, pd.DataFrame] = {}
    for view, (_, _, source) in STREAM_VIEWS.items():
        if isinstance(pushed, consumer.ConsumerStats):
            frame = pushed.rows(source)
        else:
            got = pushed.get(source)
            if isinstance(got, list):
                got = pd.concat(got, ignore_index=True) if got else None
            frame = got if got is not None else pd.DataFrame()
        out[view] = frame
    return out


def recorder() -> tuple[dict[str, list[pd.DataFrame]], Any]:
    """A push callable that keeps every frame per push source (what Feast would receive)."""
    pushed: dict[str, list[pd.DataFrame]] = {}

    def push(frame: pd.DataFrame, source: str) -> None:
        pushed.setdefault(source, []).append(frame.copy())

    return pushed, push


def _bits(values: Any) -> np.ndarray:
    """float64 values as their bit patterns, every NaN as one pattern (so NaN == NaN, and
    -0.0 != 0.0)."""
    a = np.asarray(values, dtype="float64").copy()
    nan = np.isnan(a)
    a[nan] = np.nan
    bits = a.view("int64").copy()
    bits[nan] = np.array([np.nan]).view("int64")[0]
    return bits


def same_values(a: Any, b: Any) -> np.ndarray:
    """Element-wise: equal to the bit, NaN (or None) equal to NaN."""
    a = pd.Series(a, dtype="float64").to_numpy()
    b = pd.Series(b, dtype="float64").to_numpy()
    return _bits(a) == _bits(b)


def _range(
    view: str,
    live: pd.DataFrame,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
) -> tuple[pd.Timestamp, pd.Timestamp, bool]:
    """The time the live rows of ``view`` cover: ``(since, until]`` for the departure views
    when the consumer's boundaries are given, else from the first to the last live row."""
    if view in DEPARTURE_VIEWS and since is not None:
        lo, lo_open = pd.Timestamp(since), True
    else:
        lo, lo_open = live[TS].min(), False
    hi = pd.Timestamp(until) if view in DEPARTURE_VIEWS and until is not None else live[TS].max()
    return lo, hi, lo_open


def assert_view_matches(
    view: str,
    live: pd.DataFrame,
    batch: pd.DataFrame,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> int:
    """Every live row of ``view`` equals the batch row of its key and ``event_timestamp`` bit
    for bit (a row pushed twice must be the same row twice), and no batch row of the time the
    live rows cover is missing from them. Returns the number of live rows compared."""
    key, features, _ = STREAM_VIEWS[view]
    assert len(live), f"{view}: nothing was pushed"
    assert list(live.columns) == list(batch.columns), (view, list(live.columns))
    for column in features:
        assert live[column].dtype == batch[column].dtype, (view, column, live[column].dtype)
    assert not batch.duplicated([key, TS]).any(), f"{view}: the batch table repeats a row"

    both = live.merge(
        batch, on=[key, TS], how="left", suffixes=("", "_batch"), indicator=True, validate="m:1"
    )
    extra = both.loc[both["_merge"] == "left_only", [key, TS]]
    assert extra.empty, f"{view}: {len(extra)} live rows have no batch row:\n{extra.head()}"
    for column in features:
        ok = same_values(both[column], both[f"{column}_batch"])
        bad = both.loc[~ok, [key, TS, column, f"{column}_batch"]]
        assert bad.empty, f"{view}.{column}: {len(bad)} live values differ:\n{bad.head(10)}"

    lo, hi, lo_open = _range(view, live, since, until)
    after_lo = batch[TS] > lo if lo_open else batch[TS] >= lo
    covered = batch.loc[after_lo & (batch[TS] <= hi), [key, TS]]
    seen = pd.MultiIndex.from_frame(live[[key, TS]])
    missing = covered.loc[~pd.MultiIndex.from_frame(covered).isin(seen)]
    assert missing.empty, (
        f"{view}: {len(missing)} batch rows in [{lo}, {hi}] were never pushed:\n{missing.head()}"
    )
    return len(both)


def assert_live_matches_batch(
    live: consumer.ConsumerStats | Mapping[str, Any],
    batch: Mapping[str, pd.DataFrame],
    since: pd.Timestamp | float | None = None,
    until: pd.Timestamp | float | None = None,
    views: Sequence[str] = tuple(STREAM_VIEWS),
) -> dict[str, int]:
    """:func:`assert_view_matches` for every stream-fed view (by default all four).

    ``since``/``until`` (timestamps or epoch seconds): the boundary before the consumer's first
    and its last closed boundary; when given, every batch row of a departure view in
    ``(since, until]`` must have been pushed. Returns the rows compared per view."""
    since, until = (
        None if t is None else pd.Timestamp(t, unit="s", tz="UTC") if _number(t) else _utc(t)
        for t in (since, until)
    )
    tables = live_tables(live) if not _is_tables(live) else dict(live)
    return {
        view: assert_view_matches(view, tables[view], batch[view], since, until) for view in views
    }


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating)


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _is_tables(live: Any) -> bool:
    """A ``{view: frame}`` mapping (rather than stats or ``{push source: frames}``)."""
    return isinstance(live, Mapping) and set(live) <= set(STREAM_VIEWS) and bool(live)


def final_rows(live: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each view's distinct pushed rows, sorted: a row pushed again (a consumer resuming
    unacknowledged events) must be the same row, so this fails on a conflicting re-push."""
    out = {}
    for view, frame in live.items():
        key = STREAM_VIEWS[view][0]
        rows = frame.drop_duplicates().sort_values([TS, key], kind="stable")
        assert not rows.duplicated([key, TS]).any(), f"{view}: a row was pushed with two values"
        out[view] = rows.reset_index(drop=True)
    return out


def expected_online(batch: pd.DataFrame, view: str, until: pd.Timestamp | float) -> pd.DataFrame:
    """What the online store must hold for ``view`` once the rows up to ``until`` were pushed:
    each key's latest batch row at or before ``until`` (indexed by key)."""
    key = STREAM_VIEWS[view][0]
    until = pd.Timestamp(until, unit="s", tz="UTC") if _number(until) else _utc(until)
    known = batch.loc[batch[TS] <= until].sort_values([key, TS], kind="stable")
    return known.groupby(key, sort=True).tail(1).set_index(key)


def assert_online_matches(
    view: str, online: Mapping[str, list[Any]], keys: Sequence[str], expected: pd.DataFrame
) -> int:
    """The online values of ``keys`` (a Feast ``to_dict``-like answer, one entry per key) equal
    ``expected``'s row of each key bit for bit, and are missing (None) for keys without one.
    Returns how many keys had a value."""
    features = STREAM_VIEWS[view][1]
    have = [k in expected.index for k in keys]
    for column in features:
        got = pd.Series(online[column], index=list(keys), dtype="float64")
        want = expected[column].reindex(list(keys)).astype("float64")
        ok = same_values(got.to_numpy(), want.to_numpy())
        bad = pd.DataFrame({"online": got[~ok], "batch": want[~ok]})
        assert bad.empty, f"{view}.{column}: {len(bad)} of {len(keys)} online values:\n{bad}"
        if "departures" in column:  # counts come back as integers
            got_ints = zip(online[column], have, strict=True)
            assert all(isinstance(v, int) for v, h in got_ints if h), (view, column)
    missing = [k for k, h in zip(keys, have, strict=True) if not h]
    for column in features:
        values = dict(zip(keys, online[column], strict=True))
        assert all(values[k] is None for k in missing), f"{view}.{column}: a value for no row"
    return sum(have)
