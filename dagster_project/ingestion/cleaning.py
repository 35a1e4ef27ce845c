"""From accepted raw rows to the canonical, typed validated tables."""

from __future__ import annotations

import pandas as pd

from dagster_project.ingestion.expectations import WEATHER
from dagster_project.ingestion.gate import accepted_rows
from dagster_project.ingestion.landing import LINEAGE_COLUMNS, PARTITION, SOURCE_FILE, SOURCE_LINE
from dagster_project.platform.settings import TIMEZONE


def _utc(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts).dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")


def validated_flights(raw: pd.DataFrame) -> pd.DataFrame:
    """Accepted flights plus the timestamps everything downstream uses (all UTC).

    ``sched_dep_ts`` is the scheduled departure; ``departed_at`` the actual pushback
    (scheduled + departure delay), missing for cancelled flights.
    """
    df = accepted_rows(raw)
    hhmm = df["sched_dep_time"].astype(int)
    local = pd.to_datetime(
        {
            "year": df["year"],
            "month": df["month"],
            "day": df["day"],
            "hour": hhmm // 100,
            "minute": hhmm % 100,
        }
    )
    sched = local.dt.tz_localize(TIMEZONE, ambiguous=False, nonexistent="shift_forward")
    out = pd.DataFrame(
        {
            "flight_id": (
                local.dt.strftime("%Y-%m-%d")
                + "_"
                + df["carrier"]
                + df["flight"].astype(int).astype(str)
                + "_"
                + df["origin"]
            ),
            "flight_date": local.dt.strftime("%Y-%m-%d"),
            "carrier": df["carrier"].astype(str),
            "flight": df["flight"].astype(int),
            "tailnum": df["tailnum"].astype("string"),
            "origin": df["origin"].astype(str),
            "dest": df["dest"].astype(str),
            "route": df["origin"].astype(str) + "-" + df["dest"].astype(str),
            "distance": df["distance"].astype(float),
            "sched_dep_ts": sched.dt.tz_convert("UTC"),
            "dep_delay": df["dep_delay"].astype(float),
            "arr_delay": df["arr_delay"].astype(float),
            "air_time": df["air_time"].astype(float),
            "cancelled": df["dep_delay"].isna(),
        }
    )
    out["departed_at"] = out["sched_dep_ts"] + pd.to_timedelta(out["dep_delay"], unit="min")
    out[PARTITION] = df[PARTITION].to_numpy()
    return out


def validated_weather(raw: pd.DataFrame) -> pd.DataFrame:
    """Accepted weather, its columns in the rules' order whatever order the file had."""
    df = accepted_rows(raw).drop(columns=[SOURCE_FILE, SOURCE_LINE], errors="ignore")
    known = [c for c in WEATHER.columns if c in df.columns]
    df = df[known + [c for c in df.columns if c not in known]]
    df["time_hour"] = _utc(df["time_hour"])
    return df.sort_values(["origin", "time_hour"]).reset_index(drop=True)


def validated_reference(raw: pd.DataFrame) -> pd.DataFrame:
    return accepted_rows(raw).drop(columns=list(LINEAGE_COLUMNS), errors="ignore")
