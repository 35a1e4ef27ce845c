"""Feature engineering as plain functions, with strict as-of timestamps.

Every feature row carries ``event_timestamp``: the moment its value became known. Feast's
point-in-time join only hands a flight the rows with ``event_timestamp <= prediction time``, so
a value must never be stamped earlier than the last observation it summarizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from dagster_project.platform.settings import TIMEZONE

TS = "event_timestamp"
DELAY_THRESHOLD_MIN = 15
LABEL = "dep_delayed_15"
WEATHER_COLUMNS = (
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)


PRECIP_WINDOW_S = 3 * 3600


def origin_weather(weather: pd.DataFrame) -> pd.DataFrame:
    """Hourly weather per origin airport, known at the observation hour, plus the rainfall of
    the observations in the 3 hours up to it, ``(t - 3h, t]``.

    One definition for the batch table and the weather stream: the consumer calls it on the
    observations it keeps. The 3-hour sum adds the same values in the same order (oldest
    first) whatever came before, so both paths agree to the bit (a rolling sum would carry
    rounding from the whole history)."""
    df = weather.sort_values(["origin", "time_hour"], kind="stable").reset_index(drop=True)
    out = df[["origin", "time_hour", *WEATHER_COLUMNS]].rename(columns={"time_hour": TS})
    out = out.astype({c: "float64" for c in WEATHER_COLUMNS})
    t = pd.DatetimeIndex(df["time_hour"]).asi8 // 10**9
    origin = df["origin"].to_numpy(dtype=object)
    precip = df["precip"].to_numpy(dtype="float64")
    n = len(df)
    total = np.full(n, np.nan)
    for k in range(n):  # k rows back; stops once no row has a k-th predecessor in its window
        prev = np.arange(n) - k
        ok = prev >= 0
        ok[ok] &= (origin[prev[ok]] == origin[ok]) & (t[ok] - t[prev[ok]] < PRECIP_WINDOW_S)
        if not ok.any():
            break
        # oldest first: add this k-th predecessor before the newer ones already summed
        value = precip[prev[ok]]
        newer = total[ok]
        total[ok] = np.where(
            np.isnan(value), newer, np.where(np.isnan(newer), value, value + newer)
        )
    out["precip_3h"] = total
    return out


def trailing_departure_stats(
    flights: pd.DataFrame, key: str, window_days: int, prefix: str
) -> pd.DataFrame:
    """Per ``key`` and day D: departures, mean departure delay and share delayed >15 min over
    the ``window_days`` days before D, from flights that had *actually departed* before D's
    local midnight. Stamped at D 00:00 local, so a flight scheduled on D sees only the past."""
    done = flights.loc[flights["departed_at"].notna(), [key, "departed_at", "dep_delay"]]
    if done.empty:
        return pd.DataFrame(columns=[key, TS])
    day = done["departed_at"].dt.tz_convert(TIMEZONE).dt.tz_localize(None).dt.normalize()
    daily = (
        done.assign(day=day, delayed=done["dep_delay"] > DELAY_THRESHOLD_MIN)
        .groupby(["day", key])
        .agg(n=("dep_delay", "size"), delay_sum=("dep_delay", "sum"), delayed=("delayed", "sum"))
    )
    days = pd.date_range(
        daily.index.get_level_values("day").min(),
        daily.index.get_level_values("day").max(),
        freq="D",
    )
    wide = daily.unstack(key).reindex(days, fill_value=0).fillna(0)
    rolled = wide.rolling(window_days, min_periods=1).sum()
    rolled.index = rolled.index + pd.Timedelta(days=1)  # stats through day d are known at d+1 00:00
    long = rolled.stack(key, future_stack=True).reset_index().rename(columns={"level_0": "day"})
    long = long[long["n"] > 0]
    out = pd.DataFrame(
        {
            key: long[key].astype(str),
            TS: long["day"].dt.tz_localize(TIMEZONE).dt.tz_convert("UTC"),
            f"{prefix}_departures_{window_days}d": long["n"].astype("int64"),
            f"{prefix}_mean_dep_delay_{window_days}d": long["delay_sum"] / long["n"],
            f"{prefix}_delayed_share_{window_days}d": long["delayed"] / long["n"],
        }
    )
    return out.sort_values([key, TS]).reset_index(drop=True)


def carrier_delay_stats(flights: pd.DataFrame, window_days: int = 7) -> pd.DataFrame:
    return trailing_departure_stats(flights, "carrier", window_days, "carrier")


def route_delay_stats(flights: pd.DataFrame, window_days: int = 28) -> pd.DataFrame:
    return trailing_departure_stats(flights, "route", window_days, "route")


PLANE_SPECS_AS_OF = pd.Timestamp("2012-12-31T00:00:00Z")


def plane_specs(planes: pd.DataFrame, as_of_year: int = 2013) -> pd.DataFrame:
    """Static plane features. Known before the data set starts, so stamped at 2012-12-31."""
    return pd.DataFrame(
        {
            "tailnum": planes["tailnum"].astype(str),
            TS: PLANE_SPECS_AS_OF,
            "plane_age": (as_of_year - planes["year"]).astype("float64"),
            "plane_seats": planes["seats"].astype("int64"),
            "plane_engines": planes["engines"].astype("int64"),
        }
    )


REQUEST_TIME_COLUMNS = ("dep_hour", "dep_dow", "dep_month", "log_distance")
SMALL_REQUEST = 64  # rows up to which the per-row path beats pandas' vectorised one


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZONE = ZoneInfo(TIMEZONE)
# The vectorised path agrees with zoneinfo from 1902 to 2036: pandas cannot hold instants
# outside 1677..2262, gives New York's local mean time until the 32-bit epoch's first instant
# (1901-12-13) and applies no DST after 2037; those take the row path
_VECTOR_SECONDS = (
    int(datetime(1902, 1, 1, tzinfo=UTC).timestamp()),
    int(datetime(2037, 1, 1, tzinfo=UTC).timestamp()),
)


def epoch_seconds(ts: datetime) -> int:
    """Whole seconds since 1970 (floored) of ``ts``; a naive ``ts`` is New York local time.
    Any datetime has one, including those whose UTC or New York time falls outside
    ``datetime``'s years 1..9999 (``ts.timestamp()`` raises there)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=_ZONE)
    return (ts - EPOCH) // timedelta(seconds=1)


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the proleptic Gregorian day ``days`` after 1970-01-01, for any
    integer (H. Hinnant's days_from_civil inverse): years 0 and 10000 included."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def local_time(epoch_s: int) -> tuple[int, int, int, int, int]:
    """(year, month, day, hour, weekday with Monday 0) in New York at ``epoch_s``. Beyond the
    years ``datetime`` can hold, the zone's offset at the nearest end of that range applies."""
    try:
        t = datetime.fromtimestamp(epoch_s, _ZONE)
        return t.year, t.month, t.day, t.hour, t.weekday()
    except (OverflowError, ValueError, OSError):
        edge = datetime.min if epoch_s < 0 else datetime.max
        offset = edge.replace(tzinfo=_ZONE).utcoffset() or timedelta(0)
        days, seconds = divmod(epoch_s + int(offset.total_seconds()), 86_400)
        year, month, day = _civil_from_days(days)
        return year, month, day, seconds // 3600, (days + 3) % 7  # 1970-01-01 was a Thursday


def local_date_iso(epoch_s: int) -> str:
    """The New York calendar day of ``epoch_s`` as YYYY-MM-DD."""
    year, month, day, _, _ = local_time(epoch_s)
    return f"{year:04d}-{month:02d}-{day:02d}"


def request_time_values(
    epoch_s: Sequence[int], distance: Sequence[float]
) -> dict[str, list[int] | list[float]]:
    """:func:`request_time_features` row by row with ``zoneinfo`` (no pandas): what a
    request-sized input takes, and any instant pandas cannot hold; the same values as the
    vectorised path (a test checks every hour of 2013, DST changes included)."""
    local = [local_time(int(s)) for s in epoch_s]
    return {
        "dep_hour": [t[3] for t in local],
        "dep_dow": [t[4] for t in local],
        "dep_month": [t[1] for t in local],
        "log_distance": [math.log1p(float(d)) for d in distance],
    }


def _log1p(values: np.ndarray) -> np.ndarray:
    """``math.log1p`` of each value, as the row path computes it (numpy's log1p differs from
    it in the last bit for some values: training/serving skew), once per distinct value."""
    unique, inverse = np.unique(values, return_inverse=True)
    return np.array([math.log1p(v) for v in unique], dtype="float64")[inverse.reshape(-1)]


def request_time_features(request: pd.DataFrame) -> pd.DataFrame:
    """Features computable from the request alone (the on-demand feature view calls this, and
    the endpoint calls it through :meth:`FeatureStoreClient.online_lookup`)."""
    epochs = request["sched_dep_epoch_s"]
    outside = (epochs < _VECTOR_SECONDS[0]) | (epochs > _VECTOR_SECONDS[1])
    if len(request) <= SMALL_REQUEST or bool(outside.any()):
        values = request_time_values(
            request["sched_dep_epoch_s"].tolist(), request["distance"].tolist()
        )
        return pd.DataFrame(
            {
                "dep_hour": np.array(values["dep_hour"], dtype="int64"),
                "dep_dow": np.array(values["dep_dow"], dtype="int64"),
                "dep_month": np.array(values["dep_month"], dtype="int64"),
                "log_distance": np.array(values["log_distance"], dtype="float64"),
            },
            index=request.index,
        )
    local = pd.to_datetime(request["sched_dep_epoch_s"], unit="s", utc=True).dt.tz_convert(TIMEZONE)
    return pd.DataFrame(
        {
            "dep_hour": local.dt.hour.astype("int64"),
            "dep_dow": local.dt.dayofweek.astype("int64"),
            "dep_month": local.dt.month.astype("int64"),
            "log_distance": _log1p(request["distance"].to_numpy(dtype="float64")),
        },
        index=request.index,
    )


PREDICTION_TIMES = ("day_start", "lead")


DEFAULT_LEAD_MINUTES = 60  # lead-time models score an hour before the scheduled departure


def prediction_times(
    sched_dep_ts: pd.Series, prediction_time: str = "lead", lead_minutes: int = DEFAULT_LEAD_MINUTES
) -> pd.Series:
    """When each flight is scored, hence the as-of time of its features.

    ``day_start``: local midnight starting the flight's day, i.e. what a daily-batch platform
    knows when it scores tomorrow's schedule after ingesting today (the replay, the demo): the
    day-level delay stats stamped at that midnight and the weather up to it. ``lead``: the
    scheduled departure minus ``lead_minutes`` (intraday scoring on fresh features)."""
    if prediction_time == "lead":
        return sched_dep_ts - pd.Timedelta(minutes=lead_minutes)
    if prediction_time == "day_start":
        return sched_dep_ts.dt.tz_convert(TIMEZONE).dt.normalize().dt.tz_convert("UTC")
    raise ValueError(f"prediction_time must be one of {PREDICTION_TIMES}, got {prediction_time!r}")


def prediction_label(prediction_time: str, lead_minutes: int = DEFAULT_LEAD_MINUTES) -> str:
    """How a model version records when it scores: ``day_start`` or ``lead_<minutes>``."""
    return "day_start" if prediction_time == "day_start" else f"lead_{lead_minutes}"


def parse_prediction_label(label: str) -> tuple[str, int]:
    """(prediction_time, lead_minutes) of a :func:`prediction_label`."""
    if label == "day_start":
        return "day_start", DEFAULT_LEAD_MINUTES
    if label.startswith("lead_") and label[5:].isdigit():
        return "lead", int(label[5:])
    raise ValueError(f"prediction time label must be day_start or lead_<minutes>, got {label!r}")


def as_of_epoch(label: str, sched_dep_epoch_s: int) -> int:
    """The as-of time (epoch seconds) of a flight's features for a model scoring at ``label``."""
    kind, lead = parse_prediction_label(label)
    if kind == "lead":
        return sched_dep_epoch_s - 60 * lead
    year, month, day, _, _ = local_time(sched_dep_epoch_s)
    return int(datetime(year, month, day, tzinfo=_ZONE).timestamp())


def training_entities(
    flights: pd.DataFrame,
    prediction_time: str = "lead",
    prediction_lead_minutes: int = DEFAULT_LEAD_MINUTES,
) -> pd.DataFrame:
    """One row per (non-cancelled) flight: entity keys, the prediction time as
    ``event_timestamp`` (see :func:`prediction_times`), request data and the label."""
    df = flights.loc[~flights["cancelled"]]
    day = (
        df["flight_date"]
        if "flight_date" in df
        else df["sched_dep_ts"].dt.tz_convert(TIMEZONE).dt.strftime("%Y-%m-%d")
    )
    return pd.DataFrame(
        {
            "flight_id": df["flight_id"],
            "origin": df["origin"],
            "carrier": df["carrier"],
            "route": df["route"],
            "tailnum": df["tailnum"].fillna("UNKNOWN").astype(str),
            "carrier_origin": df["carrier"].astype(str) + "|" + df["origin"].astype(str),
            "plane_day": df["tailnum"].fillna("UNKNOWN").astype(str) + "|" + day,
            TS: prediction_times(df["sched_dep_ts"], prediction_time, prediction_lead_minutes),
            "sched_dep_epoch_s": (df["sched_dep_ts"].astype("int64") // 10**9).astype("int64"),
            "distance": df["distance"].astype("float64"),
            LABEL: (df["dep_delay"] > DELAY_THRESHOLD_MIN).astype("int64"),
        }
    ).reset_index(drop=True)


def request_entity(
    carrier: str,
    origin: str,
    dest: str,
    tailnum: str | None,
    sched_dep_epoch_s: int,
    distance: float,
) -> dict[str, Any]:
    """Entity keys and request data of the feature services for one flight: what the endpoint
    reads online and the skew check asks the offline store for (the same keys
    :func:`training_entities` gives a training row)."""
    tail = tailnum or "UNKNOWN"
    return {
        "origin": origin,
        "carrier": carrier,
        "route": f"{origin}-{dest}",
        "tailnum": tail,
        "carrier_origin": f"{carrier}|{origin}",
        "plane_day": f"{tail}|{local_date_iso(sched_dep_epoch_s)}",
        "sched_dep_epoch_s": sched_dep_epoch_s,
        "distance": float(distance),
    }


def _stats_sources(key: str, window_days: int, prefix: str) -> dict[str, tuple[str, ...]]:
    return {
        key: (key,),
        TS: ("departed_at",),
        f"{prefix}_departures_{window_days}d": (key, "departed_at"),
        f"{prefix}_mean_dep_delay_{window_days}d": (key, "departed_at", "dep_delay"),
        f"{prefix}_delayed_share_{window_days}d": (key, "departed_at", "dep_delay"),
    }


# For each feature table: output column -> the columns of its upstream (validated) table it is
# computed from. What the catalog shows as column lineage; a test checks it against the builders.
COLUMN_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "origin_weather": {
        "origin": ("origin",),
        TS: ("time_hour",),
        **{c: (c,) for c in WEATHER_COLUMNS},
        "precip_3h": ("origin", "time_hour", "precip"),
    },
    "carrier_delay_stats": _stats_sources("carrier", 7, "carrier"),
    "route_delay_stats": _stats_sources("route", 28, "route"),
    "plane_specs": {
        "tailnum": ("tailnum",),
        "plane_age": ("year",),
        "plane_seats": ("seats",),
        "plane_engines": ("engines",),
    },
}

# training_set columns taken from the flights themselves (the rest come from the feature tables).
ENTITY_SOURCES: dict[str, tuple[str, ...]] = {
    "flight_id": ("flight_id",),
    "origin": ("origin",),
    "carrier": ("carrier",),
    "route": ("route",),
    "tailnum": ("tailnum",),
    "carrier_origin": ("carrier", "origin"),
    "plane_day": ("tailnum", "flight_date"),
    TS: ("sched_dep_ts",),
    "sched_dep_epoch_s": ("sched_dep_ts",),
    "distance": ("distance",),
    LABEL: ("dep_delay",),
}
