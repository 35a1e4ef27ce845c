"""The departure-stream features, one definition for batch and live.

Every row is stamped at a 5-minute boundary ``b`` and summarises the departures with
``departed_at <= b`` (a window ``(b - W, b]`` or the day so far): what was known at ``b``. The
batch (:func:`batch_tables`) computes the rows of every boundary of the data for Feast's offline
store; the live consumer computes the rows of each boundary it closes with the same functions
(:func:`tables`, over the events it keeps), and pushes them to the online store.

- ``origin_traffic`` (per origin, a row at every boundary): departures and mean departure delay
  over the last 60 and 180 minutes.
- ``carrier_origin_traffic`` (per ``carrier|origin``): the carrier's departures and mean delay
  at the origin over the last 180 minutes; a row at every boundary where the window gains or
  loses a departure (the view keeps the latest row, so sparse rows say the same as dense ones).
- ``plane_today`` (per ``tailnum|scheduled local date``): the aircraft's departures so far that
  day and the delay of its latest one (late-aircraft propagation); a row where it departs.

Delays are whole minutes, so window sums are exact in float64 and a mean does not depend on
which events were summed before: batch and live agree to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_project.features.engineering import TS
from dagster_project.platform.settings import TIMEZONE

HOP_S = 300
DAY_S = 86_400

ORIGIN_TRAFFIC = "origin_traffic"
CARRIER_ORIGIN_TRAFFIC = "carrier_origin_traffic"
PLANE_TODAY = "plane_today"
ORIGIN_WEATHER = "origin_weather"  # the weather stream's view (engineering.origin_weather)


@dataclass(frozen=True)
class View:
    """A stream-fed feature view: its key column, its features and how long the consumer must
    keep departures to compute it."""

    name: str
    key: str
    features: tuple[str, ...]
    horizon_s: int

    @property
    def push_source(self) -> str:
        return f"{self.name}_push"


VIEWS: dict[str, View] = {
    ORIGIN_TRAFFIC: View(
        ORIGIN_TRAFFIC,
        "origin",
        (
            "origin_departures_60m",
            "origin_mean_dep_delay_60m",
            "origin_departures_180m",
            "origin_mean_dep_delay_180m",
            "origin_scheduled_next_60m",
            "origin_pending_60m",
        ),
        180 * 60,
    ),
    CARRIER_ORIGIN_TRAFFIC: View(
        CARRIER_ORIGIN_TRAFFIC,
        "carrier_origin",
        ("carrier_origin_departures_180m", "carrier_origin_mean_dep_delay_180m"),
        180 * 60,
    ),
    PLANE_TODAY: View(
        PLANE_TODAY,
        "plane_day",
        ("plane_departures_today", "plane_last_dep_delay_today"),
        26 * 3600,  # a local day (25 h across DST) and a flight that left past midnight
    ),
}
KEEP_S = max(v.horizon_s for v in VIEWS.values()) + HOP_S  # departures the consumer keeps

# Output column -> the validated_flights columns it is computed from (the catalog's lineage).
COLUMN_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    ORIGIN_TRAFFIC: {
        "origin": ("origin",),
        TS: ("departed_at",),
        **{
            f: ("origin", "departed_at", *(("dep_delay",) if "mean" in f else ()))
            for f in VIEWS[ORIGIN_TRAFFIC].features[:4]
        },
        "origin_scheduled_next_60m": ("origin", "sched_dep_ts", "flight_date"),
        "origin_pending_60m": ("origin", "sched_dep_ts", "departed_at"),
    },
    CARRIER_ORIGIN_TRAFFIC: {
        "carrier_origin": ("carrier", "origin"),
        TS: ("departed_at",),
        "carrier_origin_departures_180m": ("carrier", "origin", "departed_at"),
        "carrier_origin_mean_dep_delay_180m": ("carrier", "origin", "departed_at", "dep_delay"),
    },
    PLANE_TODAY: {
        "plane_day": ("tailnum", "flight_date"),
        TS: ("departed_at",),
        "plane_departures_today": ("tailnum", "flight_date", "departed_at"),
        "plane_last_dep_delay_today": ("tailnum", "flight_date", "departed_at", "dep_delay"),
    },
}

FRAME_COLUMNS = ["event_id", "origin", "carrier", "tailnum", "day", "epoch", "dep_delay"]
# The schedule: each flight (cancelled ones too), its scheduled departure and when the schedule
# of its day became known (``pub``: the local midnight starting the day)
SCHEDULE_COLUMNS = ["event_id", "origin", "sched", "pub"]


def carrier_origin_key(carrier: str, origin: str) -> str:
    return f"{carrier}|{origin}"


def plane_day_key(tailnum: str, day: str) -> str:
    return f"{tailnum}|{day}"


def flights_frame(validated_flights: pd.DataFrame) -> pd.DataFrame:
    """The departed flights of a validated table as the aggregates' frame (what the producer
    publishes, without building event objects)."""
    df = validated_flights.loc[validated_flights["departed_at"].notna()]
    return pd.DataFrame(
        {
            "event_id": df["flight_id"].astype(str).to_numpy(),
            "origin": df["origin"].astype(str).to_numpy(),
            "carrier": df["carrier"].astype(str).to_numpy(),
            "tailnum": df["tailnum"].fillna("UNKNOWN").astype(str).to_numpy(),
            "day": df["flight_date"].astype(str).to_numpy(),
            "epoch": (pd.DatetimeIndex(df["departed_at"]).asi8 // 10**9).astype("int64"),
            "dep_delay": df["dep_delay"].astype("float64").to_numpy(),
        }
    )


def schedule_frame(validated_flights: pd.DataFrame) -> pd.DataFrame:
    """Every validated flight's scheduled departure and its day's publication time."""
    df = validated_flights
    pub = pd.to_datetime(df["flight_date"]).dt.tz_localize(TIMEZONE).dt.tz_convert("UTC")
    return pd.DataFrame(
        {
            "event_id": df["flight_id"].astype(str).to_numpy(),
            "origin": df["origin"].astype(str).to_numpy(),
            "sched": (pd.DatetimeIndex(df["sched_dep_ts"]).asi8 // 10**9).astype("int64"),
            "pub": (pd.DatetimeIndex(pub).asi8 // 10**9).astype("int64"),
        }
    )


def _interval_counts(lo: np.ndarray, hi: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """How many of the intervals ``[lo, hi)`` (epoch seconds) hold each boundary of the evenly
    spaced ``bounds``: integer counting, so any subset of the intervals gives the same count."""
    n = len(bounds)
    if not n:
        return np.zeros(0, dtype="int64")
    b0 = int(bounds[0])
    first = np.clip(-((b0 - lo) // HOP_S), 0, n)  # index of the first boundary >= lo
    stop = np.clip(-((b0 - hi) // HOP_S), 0, n)  # index of the first boundary >= hi
    keep = stop > first
    diff = np.zeros(n + 1, dtype="int64")
    np.add.at(diff, first[keep], 1)
    np.add.at(diff, stop[keep], -1)
    return np.cumsum(diff[:-1])


def _schedule_counts(
    sched: pd.DataFrame, departed: dict[str, int], bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For one origin's schedule: flights known at ``b`` to be scheduled in ``(b, b + 60 min]``,
    and flights scheduled in ``(b - 60 min, b]`` that have not departed by ``b``."""
    s = sched["sched"].to_numpy(dtype="int64")
    pub = sched["pub"].to_numpy(dtype="int64")
    far = np.iinfo("int64").max // 2
    d = np.array([departed.get(i, far) for i in sched["event_id"]], dtype="int64")
    upcoming = _interval_counts(np.maximum(s - 3600, pub), s, bounds)
    pending = _interval_counts(s, np.minimum(s + 3600, d), bounds)
    return upcoming, pending


def ceil_boundary(epoch: np.ndarray) -> np.ndarray:
    """The first boundary at or after each time (an event at a boundary belongs to it)."""
    return -((-epoch) // HOP_S) * HOP_S


def closed_boundary(max_seen: float) -> int:
    """The last boundary strictly before ``max_seen``: no later departure can fall into its
    window when departures arrive in order (one *at* a boundary still belongs to it)."""
    return (math.ceil(max_seen / HOP_S) - 1) * HOP_S


def _stamp(bounds: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(bounds, unit="s", utc=True))


def _windows(
    times: np.ndarray, delays: np.ndarray, bounds: np.ndarray, window_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Count and mean delay of the events (sorted ``times``) in ``(b - window_s, b]``."""
    hi = np.searchsorted(times, bounds, side="right")
    lo = np.searchsorted(times, bounds - window_s, side="right")
    count = hi - lo
    cum = np.concatenate([[0.0], np.cumsum(delays)])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, (cum[hi] - cum[lo]) / np.maximum(count, 1), np.nan)
    return count.astype("int64"), mean


def _groups(dep: pd.DataFrame, keys: np.ndarray) -> Iterable[tuple[str, np.ndarray]]:
    """(key, row positions sorted by time then event id) per key."""
    if not len(keys):
        return
    order = np.lexsort((dep["event_id"].to_numpy(), dep["epoch"].to_numpy(), keys))
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for s, e in zip(starts, ends, strict=True):
        yield str(sorted_keys[s]), order[s:e]


def origin_traffic(dep: pd.DataFrame, bounds: np.ndarray, sched: pd.DataFrame) -> pd.DataFrame:
    """A row per origin (of ``dep`` or ``sched``) and boundary of ``bounds`` (epoch seconds,
    evenly spaced): departures and mean delay over 60 and 180 minutes, flights scheduled in the
    next 60 minutes (as far as their day's schedule is published), flights of the last 60
    scheduled minutes still on the ground."""
    v = VIEWS[ORIGIN_TRAFFIC]
    bounds = np.asarray(bounds, dtype="int64")
    frames = []
    origins = sorted(set(dep["origin"]) | set(sched["origin"]))
    if origins and len(bounds):
        # only what the bounds' windows can see: departures of the last 180 minutes before the
        # first, flights scheduled from an hour before it to an hour after the last
        t = dep["epoch"].to_numpy()
        dep = dep.loc[(t > bounds[0] - 3 * 3600) & (t <= bounds[-1])]
        s = sched["sched"].to_numpy()
        sched = sched.loc[(s > bounds[0] - 3600) & (s <= bounds[-1] + 3600)]
        departed = dict(zip(dep["event_id"], dep["epoch"].astype("int64"), strict=True))
        t_all, d_all = dep["epoch"].to_numpy(), dep["dep_delay"].to_numpy()
        rows_of = dict(_groups(dep, dep["origin"].to_numpy(dtype=object))) if len(dep) else {}
        for origin in origins:
            rows = rows_of.get(origin, np.zeros(0, dtype="int64"))
            t, d = t_all[rows], d_all[rows]
            c60, m60 = _windows(t, d, bounds, 3600)
            c180, m180 = _windows(t, d, bounds, 3 * 3600)
            upcoming, pending = _schedule_counts(
                sched.loc[sched["origin"] == origin], departed, bounds
            )
            values = (c60, m60, c180, m180, upcoming, pending)
            frames.append(
                pd.DataFrame(
                    {
                        "origin": origin,
                        TS: _stamp(bounds),
                        **dict(zip(v.features, values, strict=True)),
                    }
                )
            )
    return _finish(frames, v)


def carrier_origin_traffic(dep: pd.DataFrame, since: int | None, until: int) -> pd.DataFrame:
    """The rows at the boundaries in ``(since, until]`` where a carrier's 180-minute window at
    an origin gains or loses a departure."""
    v = VIEWS[CARRIER_ORIGIN_TRAFFIC]
    window = v.horizon_s
    frames = []
    if len(dep):
        low = since if since is not None else -(2**62)
        t = dep["epoch"].to_numpy()
        entry, leave = ceil_boundary(t), ceil_boundary(t + window)
        changing = ((entry > low) & (entry <= until)) | ((leave > low) & (leave <= until))
        keys = (dep["carrier"] + "|" + dep["origin"]).to_numpy(dtype=object)
        wanted = np.isin(keys, np.unique(keys[changing]))  # keys with a row in the range
        dep, keys = dep.loc[wanted], keys[wanted]
        t_all, d_all = dep["epoch"].to_numpy(), dep["dep_delay"].to_numpy()
        for key, rows in _groups(dep, keys):
            t, d = t_all[rows], d_all[rows]
            changes = np.unique(np.concatenate([ceil_boundary(t), ceil_boundary(t + window)]))
            changes = changes[
                (changes > (since if since is not None else -(2**62))) & (changes <= until)
            ]
            if not len(changes):
                continue
            count, mean = _windows(t, d, changes, window)
            frames.append(
                pd.DataFrame(
                    {v.key: key, TS: _stamp(changes), v.features[0]: count, v.features[1]: mean}
                )
            )
    return _finish(frames, v)


def plane_today(dep: pd.DataFrame, since: int | None, until: int) -> pd.DataFrame:
    """The rows at the boundaries in ``(since, until]`` where an aircraft departs: its
    departures so far on the flight's scheduled day, and the delay of the latest one."""
    v = VIEWS[PLANE_TODAY]
    frames = []
    known = dep.loc[dep["tailnum"] != "UNKNOWN"]  # no tail number: not one aircraft
    if len(known):
        keys = (known["tailnum"] + "|" + known["day"]).to_numpy(dtype=object)
        t, d = known["epoch"].to_numpy(), known["dep_delay"].to_numpy()
        order = np.lexsort((known["event_id"].to_numpy(), t, keys))
        keys, t, d = keys[order], t[order], d[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        starts = np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))
        n = np.arange(len(keys)) - starts + 1  # departures of the key so far
        at = ceil_boundary(t)
        # the latest departure of each (key, boundary)
        last = np.r_[(keys[1:] != keys[:-1]) | (at[1:] != at[:-1]), True]
        low = since if since is not None else -(2**62)
        keep = last & (at > low) & (at <= until)
        frames.append(
            pd.DataFrame(
                {
                    v.key: keys[keep],
                    TS: _stamp(at[keep]),
                    v.features[0]: n[keep],
                    v.features[1]: d[keep],
                }
            )
        )
    return _finish(frames, v)


def _finish(frames: list[pd.DataFrame], v: View) -> pd.DataFrame:
    columns = [v.key, TS, *v.features]
    if not frames:
        out = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        out[TS] = pd.Series(dtype="datetime64[ns, UTC]")
    elif len(frames) == 1:
        out = frames[0][columns]
    else:
        out = pd.concat(frames, ignore_index=True)[columns]
    types = {f: ("float64" if "delay" in f else "int64") for f in v.features}
    if any(str(out[c].dtype) != t for c, t in types.items()):
        out = out.astype(types)
    if len(out) > 1:
        out = out.sort_values([TS, v.key], kind="stable")
    return out.reset_index(drop=True)


def _view_rows(
    view: str, dep: pd.DataFrame, since: int, until: int, sched: pd.DataFrame
) -> pd.DataFrame:
    if view == ORIGIN_TRAFFIC:
        bounds = np.arange(since + HOP_S, until + 1, HOP_S, dtype="int64")
        return origin_traffic(dep, bounds, sched)
    if view == CARRIER_ORIGIN_TRAFFIC:
        return carrier_origin_traffic(dep, since, until)
    if view == PLANE_TODAY:
        return plane_today(dep, since, until)
    raise KeyError(f"{view!r} is not a departure-stream view; those are {sorted(VIEWS)}")


def tables(
    dep: pd.DataFrame, since: int, until: int, sched: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The rows of every departure view at the boundaries in ``(since, until]``, from the
    departures ``dep`` and the schedule ``sched`` (which must hold every departure and every
    flight scheduled in the last :data:`KEEP_S` seconds before ``since``): what the live
    consumer pushes when it closes those boundaries."""
    return {view: _view_rows(view, dep, since, until, sched) for view in VIEWS}


def batch_table(view: str, validated_flights: pd.DataFrame) -> pd.DataFrame:
    """One view's offline table: every boundary from the first departure's UTC day to the end
    of the last one's (plus the longest window), computed as :func:`tables` computes live rows."""
    dep = flights_frame(validated_flights)
    sched = schedule_frame(validated_flights)
    if dep.empty:
        return _view_rows(view, dep, 0, 0, sched.iloc[:0])
    first = int(dep["epoch"].min()) // DAY_S * DAY_S
    last = -(-int(dep["epoch"].max()) // DAY_S) * DAY_S + 3 * 3600
    return _view_rows(view, dep, first, last, sched)


def batch_tables(validated_flights: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {view: batch_table(view, validated_flights) for view in VIEWS}
