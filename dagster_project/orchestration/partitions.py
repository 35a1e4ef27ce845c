"""Daily partitions over 2013 (New York local days) and helpers to read a run's range."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg

from dagster_project.platform.settings import TIMEZONE

daily_2013 = dg.DailyPartitionsDefinition(
    start_date="2013-01-01", end_date="2014-01-01", timezone=TIMEZONE
)
single_run = dg.BackfillPolicy.single_run()


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """Every day in the run's partition range (one day for a single-partition run)."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    return [start + timedelta(days=i) for i in range((end - start).days)]


def utc_window(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    window = context.partition_time_window
    return window.start, window.end


def range_tags(start: str, end: str) -> dict[str, str]:
    """Run tags that select partitions ``start``..``end`` (inclusive) in one run."""
    return {
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
    }
