"""The platform's simulated clock, as the DAGs read it (stdlib only: no Airflow, no Dagster).

The data is one year of flights (2013-01-01 .. 2013-12-31). One setting maps real dates onto
that calendar, shared by the Airflow schedules, the replay and the CLI (``flight-mlops clock``):

    MLOPS_CLOCK_OFFSET_DAYS=N   simulated day = real day - N days   (default 0)

With the default, a 2013 logical date (a manual trigger or ``airflow backfill``) is that very
day, and today's real date is outside the data, so a scheduled run is *skipped* with the reason.
``flight-mlops clock --today 2013-07-01`` prints the N that makes today 2013-07-01. The same rule lives
in ``dagster_project/platform/clock.py`` for the Dagster side; a test keeps the two equal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date, timedelta

SETTING = "MLOPS_CLOCK_OFFSET_DAYS"
DATA_FIRST = date(2013, 1, 1)
DATA_LAST = date(2013, 12, 31)


class ClockError(ValueError):
    """The setting is not an integer number of days."""


def offset_days(env: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get(SETTING, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError as exc:
        raise ClockError(f"{SETTING}={raw!r} is not a whole number of days") from exc


def simulated_day(real: date, env: Mapping[str, str] | None = None) -> date:
    return real - timedelta(days=offset_days(env))


def outside_data(first: date, last: date | None = None) -> str | None:
    """Why the simulated day (or inclusive range) has no data, or None when it all has."""
    last = last or first
    if first >= DATA_FIRST and last <= DATA_LAST:
        return None
    span = f"{first}" if first == last else f"{first} .. {last}"
    return (
        f"simulated {span} is outside the data ({DATA_FIRST} .. {DATA_LAST}); "
        f"{SETTING}={offset_days()} maps real dates onto it (simulated = real - offset): "
        f"see docs/airflow.md"
    )
