"""The per-origin traffic feature, one definition for batch and live.

``origin_traffic``: for each origin airport, at every 5-minute boundary ``b``, the number of
departures in ``(b - 60 min, b]`` and their mean departure delay. In batch
(:func:`window_aggregates`, :func:`origin_traffic`) it is computed from the validated flights for
Feast's offline store; live, :class:`~dagster_project.streaming.consumer.Consumer` computes the
same aggregates from departure events with the same :func:`window_aggregates`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

WINDOW = timedelta(minutes=60)
HOP = timedelta(minutes=5)
VIEW = "origin_traffic"
PUSH_SOURCE = "origin_traffic_push"
COUNT = "origin_departures_60m"
MEAN_DELAY = "origin_mean_dep_delay_60m"
FEATURES = (COUNT, MEAN_DELAY)
GROUP = "origin-traffic"

# Output column -> the validated_flights columns it is computed from (the catalog's lineage).
COLUMN_SOURCES: dict[str, tuple[str, ...]] = {
    "origin": ("origin",),
    "event_timestamp": ("departed_at",),
    COUNT: ("origin", "departed_at"),
    MEAN_DELAY: ("origin", "departed_at", "dep_delay"),
}

HOP_S = int(HOP.total_seconds())
WINDOW_S = int(WINDOW.total_seconds())


@dataclass(frozen=True)
class Departure:
    """One flight pushing back: the stream's event."""

    event_id: str  # the flight id, e.g. 2013-01-01_UA1545_EWR
    origin: str
    departed_at: datetime  # UTC
    dep_delay: float  # minutes

    @property
    def epoch(self) -> float:
        return self.departed_at.timestamp()

    def encode(self) -> dict[str, str]:
        return {
            "event_id": self.event_id,
            "origin": self.origin,
            "departed_at": self.departed_at.isoformat(),
            "dep_delay": repr(float(self.dep_delay)),
        }

    @classmethod
    def decode(cls, fields: dict[str, str]) -> Departure:
        try:
            at = datetime.fromisoformat(fields["departed_at"])
            return cls(
                event_id=fields["event_id"],
                origin=fields["origin"],
                departed_at=at if at.tzinfo else at.replace(tzinfo=UTC),
                dep_delay=float(fields["dep_delay"]),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"malformed departure event {fields!r}: {exc}") from exc


def departures(validated_flights: pd.DataFrame) -> list[Departure]:
    """The departure events of validated flights (cancelled ones never depart), in event-time
    order (ties by flight id), as a producer publishes them."""
    df = validated_flights.loc[validated_flights["departed_at"].notna()]
    df = df.sort_values(["departed_at", "flight_id"], kind="stable")
    return [
        Departure(str(i), str(o), pd.Timestamp(t).to_pydatetime(), float(d))
        for i, o, t, d in zip(
            df["flight_id"], df["origin"], df["departed_at"], df["dep_delay"], strict=True
        )
    ]


def day_flights(day: date) -> pd.DataFrame:
    """One day of the data set's flights in their validated form (what the batch reads)."""
    from dagster_project.ingestion import cleaning, sources
    from dagster_project.ingestion.gate import REJECTED_BY
    from dagster_project.ingestion.landing import PARTITION

    raw = sources.day_rows("flights", day)
    raw[REJECTED_BY] = pd.Series(pd.NA, index=raw.index, dtype="string")
    raw[PARTITION] = day.isoformat()
    return cleaning.validated_flights(raw)


def day_departures(day: date) -> list[Departure]:
    """The real departures of one day of the data set (a producer's events)."""
    return departures(day_flights(day))


def events_frame(events: Iterable[Departure]) -> pd.DataFrame:
    rows = [(e.event_id, e.origin, e.departed_at, e.dep_delay) for e in events]
    df = pd.DataFrame(rows, columns=["event_id", "origin", "departed_at", "dep_delay"])
    df["departed_at"] = pd.to_datetime(df["departed_at"], utc=True)
    return df


def closed_boundary(max_seen: float) -> float:
    """The last boundary strictly before ``max_seen`` (epoch seconds): no later event can fall
    into its window when events arrive in order (an event *at* a boundary still belongs to it)."""
    return (math.ceil(max_seen / HOP_S) - 1) * HOP_S


def window_aggregates(
    events: pd.DataFrame, boundaries: list[pd.Timestamp] | pd.DatetimeIndex
) -> pd.DataFrame:
    """The batch definition: for every origin in ``events`` and every boundary ``b``, count and
    mean delay of the departures in ``(b - WINDOW, b]``. The mean is missing for an empty window.

    ``events`` has columns origin, departed_at (UTC), dep_delay."""
    bounds = pd.DatetimeIndex(boundaries)
    bounds = bounds.tz_localize("UTC") if bounds.tz is None else bounds.tz_convert("UTC")
    b = bounds.asi8 // 10**9
    frames = []
    for origin, grp in events.groupby("origin", sort=True):
        grp = grp.sort_values("departed_at", kind="stable")
        t = pd.DatetimeIndex(grp["departed_at"]).tz_convert("UTC").asi8 / 1e9
        delay = grp["dep_delay"].to_numpy(dtype=float)
        # events in (b - W, b]: index range [searchsorted(b - W, right), searchsorted(b, right))
        hi = np.searchsorted(t, b, side="right")
        lo = np.searchsorted(t, b - WINDOW_S, side="right")
        count = hi - lo
        cum = np.concatenate([[0.0], np.cumsum(delay)])
        total = cum[hi] - cum[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "origin": origin,
                    "event_timestamp": bounds,
                    COUNT: count.astype("int64"),
                    MEAN_DELAY: mean,
                }
            )
        )
    columns = ["origin", "event_timestamp", COUNT, MEAN_DELAY]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def origin_traffic(validated_flights: pd.DataFrame) -> pd.DataFrame:
    """The offline feature table: every boundary of every day the flights depart on."""
    events = events_frame(departures(validated_flights))
    if events.empty:
        return window_aggregates(events, [])
    first = events["departed_at"].min().floor("D")
    last = events["departed_at"].max().ceil("D")
    boundaries = pd.date_range(first + HOP, last, freq=HOP, tz="UTC")
    return window_aggregates(events, boundaries)
