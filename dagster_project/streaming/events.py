"""The stream's events: departures, hourly weather observations and clock ticks.

Each event has an id (publishing it twice is harmless: consumers keep events by id), an event
time (``epoch``, seconds) and a flat ``str -> str`` encoding (a Redis Stream entry or a JSON
line) tagged with its ``kind``. Producers turn a day of the data set into events in event-time
order; the consumer (:mod:`dagster_project.streaming.consumer`) turns them into feature rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd

from dagster_project.features.engineering import WEATHER_COLUMNS


def _utc(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _float(text: str) -> float:
    return float(text) if text not in ("", "nan", "None") else math.nan


@dataclass(frozen=True)
class Departure:
    """One flight pushing back: the departure stream's event."""

    event_id: str  # the flight id, e.g. 2013-01-01_UA1545_EWR
    origin: str
    departed_at: datetime  # UTC
    dep_delay: float  # minutes
    carrier: str = ""
    tailnum: str = ""
    day: str = ""  # the flight's scheduled local date (YYYY-MM-DD)

    kind = "departure"

    @property
    def epoch(self) -> float:
        return self.departed_at.timestamp()

    def encode(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "event_id": self.event_id,
            "origin": self.origin,
            "departed_at": self.departed_at.isoformat(),
            "dep_delay": repr(float(self.dep_delay)),
            "carrier": self.carrier,
            "tailnum": self.tailnum,
            "day": self.day,
        }

    @classmethod
    def decode(cls, fields: dict[str, str]) -> Departure:
        delay = float(fields["dep_delay"])
        if not math.isfinite(delay):  # a departure has a delay: the batch never sees one without
            raise ValueError(f"dep_delay must be a finite number of minutes, got {delay!r}")
        return cls(
            event_id=fields["event_id"],
            origin=fields["origin"],
            departed_at=_utc(fields["departed_at"]),
            dep_delay=delay,
            carrier=fields.get("carrier", ""),
            tailnum=fields.get("tailnum", ""),
            day=fields.get("day", ""),
        )


@dataclass(frozen=True)
class Observation:
    """One hourly weather observation at an origin airport, at its observation time."""

    event_id: str  # e.g. weather_EWR_2013-07-01T14:00:00+00:00
    origin: str
    observed_at: datetime  # UTC
    values: tuple[float, ...]  # WEATHER_COLUMNS, in order; NaN where not observed

    kind = "observation"

    @property
    def epoch(self) -> float:
        return self.observed_at.timestamp()

    def encode(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "event_id": self.event_id,
            "origin": self.origin,
            "observed_at": self.observed_at.isoformat(),
            **{c: repr(float(v)) for c, v in zip(WEATHER_COLUMNS, self.values, strict=True)},
        }

    @classmethod
    def decode(cls, fields: dict[str, str]) -> Observation:
        return cls(
            event_id=fields["event_id"],
            origin=fields["origin"],
            observed_at=_utc(fields["observed_at"]),
            values=tuple(_float(fields.get(c, "nan")) for c in WEATHER_COLUMNS),
        )


@dataclass(frozen=True)
class Scheduled:
    """A flight on the day's schedule, published when the day's schedule becomes known (its
    local midnight): schedule-known features (flights due in the next hour, flights still on
    the ground) come from it."""

    event_id: str  # sched_<flight id>
    origin: str
    scheduled_at: datetime  # UTC scheduled departure
    published_at: datetime  # UTC, the local midnight starting the flight's day

    kind = "scheduled"

    @property
    def epoch(self) -> float:
        return self.published_at.timestamp()

    @property
    def flight_id(self) -> str:
        return self.event_id.removeprefix("sched_")

    def encode(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "event_id": self.event_id,
            "origin": self.origin,
            "scheduled_at": self.scheduled_at.isoformat(),
            "published_at": self.published_at.isoformat(),
        }

    @classmethod
    def decode(cls, fields: dict[str, str]) -> Scheduled:
        return cls(
            event_id=fields["event_id"],
            origin=fields["origin"],
            scheduled_at=_utc(fields["scheduled_at"]),
            published_at=_utc(fields["published_at"]),
        )


@dataclass(frozen=True)
class Tick:
    """The producer's watermark: every event up to ``at`` has been published. It lets the
    consumer close a window when no departure comes after it (a quiet night, the replay's step)."""

    event_id: str
    at: datetime  # UTC

    kind = "tick"

    @property
    def epoch(self) -> float:
        return self.at.timestamp()

    def encode(self) -> dict[str, str]:
        return {"kind": self.kind, "event_id": self.event_id, "at": self.at.isoformat()}

    @classmethod
    def decode(cls, fields: dict[str, str]) -> Tick:
        return cls(event_id=fields["event_id"], at=_utc(fields["at"]))


Event = Departure | Observation | Scheduled | Tick
_KINDS: dict[str, type[Departure] | type[Observation] | type[Scheduled] | type[Tick]] = {
    "departure": Departure,
    "observation": Observation,
    "scheduled": Scheduled,
    "tick": Tick,
}


def decode(fields: dict[str, str]) -> Event:
    """An event from its encoding (entries without ``kind`` are departures, as before)."""
    try:
        return _KINDS[fields.get("kind", "departure")].decode(fields)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"malformed event {fields!r}: {exc}") from exc


def tick(at: datetime | pd.Timestamp) -> Tick:
    at = pd.Timestamp(at).tz_convert("UTC").to_pydatetime()
    return Tick(f"tick_{at.isoformat()}", at)


def departures(validated_flights: pd.DataFrame) -> list[Departure]:
    """The departure events of validated flights (cancelled ones never depart), in event-time
    order (ties by flight id), as a producer publishes them."""
    df = validated_flights.loc[validated_flights["departed_at"].notna()]
    df = df.sort_values(["departed_at", "flight_id"], kind="stable")
    days = df["flight_date"] if "flight_date" in df else pd.Series("", index=df.index)
    tails = df["tailnum"].fillna("UNKNOWN") if "tailnum" in df else pd.Series("", index=df.index)
    carriers = df["carrier"] if "carrier" in df else pd.Series("", index=df.index)
    return [
        Departure(str(i), str(o), pd.Timestamp(t).to_pydatetime(), float(d), str(c), str(n), s)
        for i, o, t, d, c, n, s in zip(
            df["flight_id"],
            df["origin"],
            df["departed_at"],
            df["dep_delay"],
            carriers,
            tails,
            days,
            strict=True,
        )
    ]


def schedule(validated_flights: pd.DataFrame) -> list[Scheduled]:
    """The schedule of validated flights (cancelled ones too), each published at the local
    midnight starting its day, in publication order (ties by flight id)."""
    from dagster_project.features.aggregates import schedule_frame

    df = schedule_frame(validated_flights).sort_values(["pub", "event_id"], kind="stable")
    return [
        Scheduled(
            f"sched_{i}",
            str(o),
            datetime.fromtimestamp(int(s), UTC),
            datetime.fromtimestamp(int(p), UTC),
        )
        for i, o, s, p in zip(df["event_id"], df["origin"], df["sched"], df["pub"], strict=True)
    ]


def observations(weather: pd.DataFrame) -> list[Observation]:
    """The weather observations of validated weather rows, in observation-time order."""
    df = weather.sort_values(["time_hour", "origin"], kind="stable")
    values = df[list(WEATHER_COLUMNS)].astype("float64").to_numpy()
    return [
        Observation(
            f"weather_{o}_{pd.Timestamp(t).isoformat()}",
            str(o),
            pd.Timestamp(t).to_pydatetime(),
            tuple(float(v) for v in row),
        )
        for o, t, row in zip(df["origin"], df["time_hour"], values, strict=True)
    ]


def in_order(*streams: Iterable[Event]) -> list[Event]:
    """Events of several producers merged in event-time order (stable within each)."""
    merged = [e for s in streams for e in s]
    return sorted(merged, key=lambda e: e.epoch)


def day_flights(day: date) -> pd.DataFrame:
    """One day of the data set's flights in their validated form (what the batch reads)."""
    from dagster_project.ingestion import cleaning, sources
    from dagster_project.ingestion.gate import REJECTED_BY
    from dagster_project.ingestion.landing import PARTITION

    raw = sources.day_rows("flights", day)
    raw[REJECTED_BY] = pd.Series(pd.NA, index=raw.index, dtype="string")
    raw[PARTITION] = day.isoformat()
    return cleaning.validated_flights(raw)


def day_weather(day: date) -> pd.DataFrame:
    """One day of the data set's weather observations in their validated form."""
    from dagster_project.ingestion import cleaning, sources
    from dagster_project.ingestion.gate import REJECTED_BY
    from dagster_project.ingestion.landing import PARTITION

    raw = sources.day_rows("weather", day)
    raw["time_hour"] = pd.to_datetime(raw["time_hour"], utc=True)
    raw[REJECTED_BY] = pd.Series(pd.NA, index=raw.index, dtype="string")
    raw[PARTITION] = day.isoformat()
    return cleaning.validated_weather(raw)


def day_departures(day: date) -> list[Departure]:
    """The real departures of one day of the data set (a producer's events)."""
    return departures(day_flights(day))


def day_events(day: date) -> list[Event]:
    """A day of the data set as the stream carries it: its schedule, departures and weather
    observations in event-time order."""
    flights = day_flights(day)
    return in_order(schedule(flights), departures(flights), observations(day_weather(day)))
