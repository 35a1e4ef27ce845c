"""Calling the prediction endpoint for a day's scheduled departures (demo and replay)."""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Mapping
from datetime import date
from typing import Any

import httpx

from dagster_project.features.engineering import DELAY_THRESHOLD_MIN
from dagster_project.ingestion import sources


def flight_id(day: date, row: Mapping[Hashable, Any]) -> str:
    """The same id `validated_flights` gives a flight: ``2013-08-01_UA1545_EWR``."""
    return f"{day.isoformat()}_{row['carrier']}{int(row['flight'])}_{row['origin']}"


def scheduled_flights(day: date, limit: int | None = None) -> list[dict[str, Any]]:
    """The day's departures as endpoint requests: what is known before take-off only (the
    schedule), spread over the day when ``limit`` is set."""
    rows = [dict(r) for r in sources.day_rows("flights", day).to_dict("records")]
    if limit:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    requests = []
    for f in sorted(rows, key=lambda r: int(r["sched_dep_time"])):
        hhmm = int(f["sched_dep_time"])
        tailnum = f["tailnum"] if isinstance(f["tailnum"], str) else None
        requests.append(
            {
                "flight_id": flight_id(day, f),
                "carrier": str(f["carrier"]),
                "origin": str(f["origin"]),
                "dest": str(f["dest"]),
                "tailnum": tailnum,
                "scheduled_departure": f"{day.isoformat()}T{hhmm // 100:02d}:{hhmm % 100:02d}:00",
                "distance": float(f["distance"]),
            }
        )
    return requests


def outcomes(day: date) -> dict[str, str]:
    """What happened to the day's flights (known only afterwards): delayed, on time, cancelled."""
    out = {}
    for f in sources.day_rows("flights", day).to_dict("records"):
        delay = f["dep_delay"]
        status = (
            "cancelled"
            if delay != delay
            else ("delayed" if delay > DELAY_THRESHOLD_MIN else "on time")
        )
        out[flight_id(day, f)] = status
    return out


def score(
    url: str,
    flights: list[dict[str, Any]],
    token: str | None = None,
    batch: int = 500,
    client: httpx.Client | None = None,
) -> list[dict[str, Any]]:
    """POST the flights to ``/predict/batch`` in chunks; raises on any non-200 answer.
    ``client``: an open client to reuse (the intraday replay scores every 5 minutes)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    predictions: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(httpx.Client(timeout=120))
        for i in range(0, len(flights), batch):
            r = client.post(
                f"{url}/predict/batch", json={"flights": flights[i : i + batch]}, headers=headers
            )
            if r.status_code != 200:
                raise RuntimeError(f"{url}/predict/batch answered {r.status_code}: {r.text[:500]}")
            predictions += r.json()["predictions"]
    return predictions
