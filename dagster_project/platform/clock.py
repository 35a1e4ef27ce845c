"""The platform's simulated clock: one setting maps real dates onto the data's calendar.

The data is one year of flights (2013-01-01 .. 2013-12-31). ``MLOPS_CLOCK_OFFSET_DAYS=N``
(default 0) makes the simulated day ``real day - N days``. It is read by

* the Airflow DAGs (``airflow_dags/dagster_trigger/clock.py``, the same rule without this
  package: DAG files import neither Dagster nor the project), which run the simulated day's
  partition and skip a run whose simulated date has no data;
* the replay (``flight-mlops replay`` starts on the simulated today when the setting is given);
* ``flight-mlops clock``, which prints the simulated today, and with ``--today D`` the offset that
  makes today D.

See docs/airflow.md.
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


def is_set(env: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if env is None else env).get(SETTING, "").strip())


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


def simulated_today(env: Mapping[str, str] | None = None) -> date:
    return simulated_day(date.today(), env)


def offset_for(simulated_today: date, today: date | None = None) -> int:
    """The setting's value that makes ``today`` (default: the real today) ``simulated_today``."""
    return ((today or date.today()) - simulated_today).days


def in_data(day: date) -> bool:
    return DATA_FIRST <= day <= DATA_LAST
