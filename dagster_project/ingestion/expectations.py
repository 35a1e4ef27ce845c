"""What each raw table must look like: the rules behind the Great Expectations suites.

Rules are plain data so that users bringing their own files change one place. ``level`` decides
the policy: a failing *row* rule quarantines the offending rows, a failing *table* rule fails the
gate (see ``gate.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

NUMBER = ("int64", "Int64", "float64", "Float64", "int32", "float32")
TEXT = ("object", "string", "str")
TIMESTAMP = ("datetime64[ns]", "datetime64[us]")  # naive UTC, as the landing reader parses them
NYC_ORIGINS = frozenset({"EWR", "JFK", "LGA"})
# Destinations served from NYC in 2013 that the FAA airport list of the data set lacks
# (Puerto Rico and the US Virgin Islands).
TERRITORY_AIRPORTS = frozenset({"BQN", "PSE", "SJU", "STT"})

# Formats of key and code columns: (pattern, maximum length). Checked per row; a failing row is
# quarantined with the rule, so a broken export (a key of megabytes, a code with a stray
# character) never becomes a validated row or an online-store key.
CARRIER = (r"^[A-Z0-9]{2}$", 2)
AIRPORT = (r"^[A-Z0-9]{3,4}$", 4)  # FAA location identifiers (some have digits: 04G)
NYC_AIRPORT = (r"^[A-Z]{3}$", 3)
TAILNUM = (r"^[A-Z0-9-]{2,10}$", 10)  # N-numbers are at most 6; foreign marks are longer
NAME = (r"^[^\x00-\x1f\x7f]+$", 200)  # free text: any printable characters, one line


@dataclass(frozen=True)
class TableRules:
    table: str
    columns: Mapping[str, tuple[str, ...]]  # column -> accepted pandas dtypes (table level)
    keys: tuple[str, ...]  # not null (row level)
    unique: tuple[str, ...]  # compound key, unique (row level: duplicates are quarantined)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # row level
    sets: Mapping[str, str] = field(default_factory=dict)  # column -> name of a known set
    formats: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # (pattern, max len)
    # pairs of "when" values (see when.py) that must be equal on every row (row level)
    agree: tuple[tuple[str, str], ...] = ()
    partition_timestamp: str | None = None  # the timestamp downstream tables use
    min_rows: int = 1
    # table level: at most this many rows per partition day (reference tables: in all); a
    # file far larger than usual (duplicated, concatenated, another table) fails the gate
    max_rows: int | None = None


FLIGHTS = TableRules(
    table="flights",
    columns={
        "year": NUMBER,
        "month": NUMBER,
        "day": NUMBER,
        "dep_time": NUMBER,
        "sched_dep_time": NUMBER,
        "dep_delay": NUMBER,
        "arr_time": NUMBER,
        "sched_arr_time": NUMBER,
        "arr_delay": NUMBER,
        "carrier": TEXT,
        "flight": NUMBER,
        "tailnum": TEXT,
        "origin": TEXT,
        "dest": TEXT,
        "air_time": NUMBER,
        "distance": NUMBER,
        "hour": NUMBER,
        "minute": NUMBER,
        "time_hour": TIMESTAMP,
    },
    keys=(
        "year",
        "month",
        "day",
        "carrier",
        "flight",
        "origin",
        "dest",
        "sched_dep_time",
        "time_hour",
    ),
    unique=("carrier", "flight", "origin", "year", "month", "day"),
    ranges={
        "month": (1, 12),
        "day": (1, 31),
        "sched_dep_time": (0, 2359),
        "dep_time": (1, 2400),
        "dep_delay": (-120, 1800),
        "arr_delay": (-180, 1800),
        "arr_time": (1, 2400),
        "sched_arr_time": (0, 2359),
        "air_time": (1, 1000),
        "distance": (1, 6000),
        "flight": (1, 9999),
        "hour": (0, 23),
        "minute": (0, 59),
    },
    sets={"origin": "nyc_origins", "dest": "airports", "carrier": "airlines"},
    formats={"carrier": CARRIER, "tailnum": TAILNUM, "origin": NYC_AIRPORT, "dest": AIRPORT},
    # validated_flights builds flight_id, flight_date and sched_dep_ts from year/month/day and
    # sched_dep_time: each must agree with the partition day and with time_hour.
    agree=(
        ("year/month/day", "partition day"),
        ("time_hour local date", "partition day"),
        ("time_hour local hour", "hour"),
        ("sched_dep_time hour", "hour"),
        ("sched_dep_time minute", "minute"),
    ),
    partition_timestamp="time_hour",
    max_rows=3000,  # the busiest day of 2013 had 1,014 departures
)

WEATHER = TableRules(
    table="weather",
    columns={
        "origin": TEXT,
        "year": NUMBER,
        "month": NUMBER,
        "day": NUMBER,
        "hour": NUMBER,
        "temp": NUMBER,
        "dewp": NUMBER,
        "humid": NUMBER,
        "wind_dir": NUMBER,
        "wind_speed": NUMBER,
        "wind_gust": NUMBER,
        "precip": NUMBER,
        "pressure": NUMBER,
        "visib": NUMBER,
        "time_hour": TIMESTAMP,
    },
    keys=("origin", "time_hour"),
    unique=("origin", "time_hour"),
    ranges={
        "temp": (-40, 130),
        "dewp": (-60, 100),
        "humid": (0, 100),
        "wind_dir": (0, 360),
        "wind_speed": (0, 150),
        "wind_gust": (0, 200),
        "precip": (0, 10),
        "pressure": (900, 1100),
        "visib": (0, 10),
        "hour": (0, 23),
    },
    sets={"origin": "nyc_origins"},
    formats={"origin": NYC_AIRPORT},
    # validated_weather keeps time_hour (joined on it); year/month/day/hour must say the same
    agree=(
        ("time_hour local date", "partition day"),
        ("year/month/day", "partition day"),
        ("time_hour local hour", "hour"),
    ),
    partition_timestamp="time_hour",
    max_rows=300,  # 3 airports x 24 hours (25 on the autumn DST day)
)

PLANES = TableRules(
    table="planes",
    columns={
        "tailnum": TEXT,
        "year": NUMBER,
        "type": TEXT,
        "manufacturer": TEXT,
        "model": TEXT,
        "engines": NUMBER,
        "seats": NUMBER,
        "speed": NUMBER,
        "engine": TEXT,
    },
    keys=("tailnum",),
    unique=("tailnum",),
    ranges={"year": (1940, 2013), "engines": (1, 4), "seats": (1, 1000), "speed": (0, 1000)},
    formats={"tailnum": TAILNUM, "type": NAME, "manufacturer": NAME, "model": NAME, "engine": NAME},
    max_rows=100_000,
)

AIRLINES = TableRules(
    table="airlines",
    columns={"carrier": TEXT, "name": TEXT},
    keys=("carrier", "name"),
    unique=("carrier",),
    formats={"carrier": CARRIER, "name": NAME},
    max_rows=10_000,
)

AIRPORTS = TableRules(
    table="airports",
    columns={
        "faa": TEXT,
        "name": TEXT,
        "lat": NUMBER,
        "lon": NUMBER,
        "alt": NUMBER,
        "tz": NUMBER,
        "dst": TEXT,
        "tzone": TEXT,
    },
    keys=("faa",),
    unique=("faa",),
    ranges={"lat": (-90, 90), "lon": (-180, 180), "alt": (-1500, 30000)},
    formats={
        "faa": AIRPORT,
        "name": NAME,
        "dst": (r"^[AENOUZ]$", 1),  # daylight saving rule letter of the OpenFlights data
        "tzone": (r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}$", 64),
    },
    max_rows=100_000,
)

RULES: dict[str, TableRules] = {r.table: r for r in (FLIGHTS, WEATHER, PLANES, AIRLINES, AIRPORTS)}
