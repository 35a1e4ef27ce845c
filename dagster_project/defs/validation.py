"""Validated tables: the rows the gate accepted, typed and with derived timestamps."""

import dagster as dg
import pandas as pd

from dagster_project.ingestion import cleaning
from dagster_project.ingestion.sources import REFERENCE_TABLES
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.metadata import OWNERS, code_version, frame_metadata
from dagster_project.orchestration.partitions import daily_2013, single_run

VERSION = code_version(cleaning)


def _output(df: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    return dg.Output(df, metadata=frame_metadata(df))


@compute_asset(
    group_name="validation",
    partitions_def=daily_2013,
    backfill_policy=single_run,
    kinds={"pandas"},
    owners=OWNERS,
    code_version=VERSION,
)
def validated_flights(raw_flights: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Accepted flights with UTC scheduled/actual departure times, route and flight id."""
    return _output(cleaning.validated_flights(raw_flights))


@compute_asset(
    group_name="validation",
    partitions_def=daily_2013,
    backfill_policy=single_run,
    kinds={"pandas"},
    owners=OWNERS,
    code_version=VERSION,
)
def validated_weather(raw_weather: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Accepted hourly weather observations with UTC timestamps."""
    return _output(cleaning.validated_weather(raw_weather))


def _validated_reference(table: str) -> dg.AssetsDefinition:
    @compute_asset(
        name=f"validated_{table}",
        group_name="validation",
        kinds={"pandas"},
        owners=OWNERS,
        code_version=VERSION,
        ins={"raw": dg.AssetIn(f"raw_{table}")},
        description=f"Accepted rows of the {table} reference table.",
    )
    def _asset(raw: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        return _output(cleaning.validated_reference(raw))

    return _asset


validated_reference_assets = [_validated_reference(t) for t in REFERENCE_TABLES]
assets = [validated_flights, validated_weather, *validated_reference_assets]
