"""``flight-mlops clock``: where the platform's simulated clock stands (``MLOPS_CLOCK_OFFSET_DAYS``)."""

from __future__ import annotations

import argparse
from datetime import date

from dagster_project.platform import clock


def clock_command(args: argparse.Namespace) -> int:
    if args.today:
        try:
            wanted = date.fromisoformat(args.today)
        except ValueError:
            print(f"[clock] --today {args.today!r} is not a date (YYYY-MM-DD)")
            return 2
        if not clock.in_data(wanted):
            print(f"[clock] {wanted} is outside the data ({clock.DATA_FIRST} .. {clock.DATA_LAST})")
            return 2
        print(f"export {clock.SETTING}={clock.offset_for(wanted)}")
        return 0
    try:
        offset, today = clock.offset_days(), clock.simulated_today()
    except clock.ClockError as exc:
        print(f"[clock] {exc}")
        return 2
    where = "inside" if clock.in_data(today) else "OUTSIDE"
    print(f"{clock.SETTING}={offset}: real {date.today()} is simulated {today}")
    print(f"that is {where} the data ({clock.DATA_FIRST} .. {clock.DATA_LAST})")
    if not clock.in_data(today):
        print(
            "scheduled Airflow runs are skipped; `flight-mlops clock --today 2013-07-01` prints a setting"
        )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "clock",
        help="the simulated clock: real today -> simulated day (MLOPS_CLOCK_OFFSET_DAYS)",
        description="Print the simulated today that the Airflow schedules and the replay use; "
        "with --today, print the MLOPS_CLOCK_OFFSET_DAYS that makes today that day.",
    )
    p.add_argument("--today", default=None, help="the simulated day wanted for today (YYYY-MM-DD)")
    p.set_defaults(func=clock_command)
