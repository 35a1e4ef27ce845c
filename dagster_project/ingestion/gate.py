"""The validation gate: run a table's Great Expectations suite and apply the quarantine policy.

Policy: rows failing a row-level rule are quarantined (with the rule) and the rest continue; the
gate fails if any table-level rule fails or if, on any partition day, the share of quarantined
rows exceeds ``max_bad_share``. Great Expectations 1.x is called directly; Data Docs are written
to a persistent folder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from dagster_project.ingestion.expectations import TableRules
from dagster_project.ingestion.landing import PARTITION, SOURCE_FILE, SOURCE_LINE
from dagster_project.platform import storage
from dagster_project.platform.settings import TIMEZONE

REJECTED_BY = "_rejected_by"
LOCAL_DATE = "_local_date"
log = logging.getLogger(__name__)


@dataclass
class RuleResult:
    rule: str
    column: str
    level: str  # "row" or "table"
    success: bool
    unexpected_count: int = 0
    sample: list[Any] = field(default_factory=list)
    observed: Any = None
    files: list[str] = field(default_factory=list)

    def describe(self, table: str) -> str:
        where = f" in {', '.join(self.files[:3])}" if self.files else ""
        if self.level == "table":
            seen = f" (observed {self.observed})" if self.observed is not None else ""
            return f"table '{table}', column '{self.column}', rule {self.rule}: failed{seen}{where}"
        return (
            f"table '{table}', column '{self.column}', rule {self.rule}: "
            f"{self.unexpected_count} rows unexpected, e.g. {self.sample[:3]}{where}"
        )


@dataclass
class GateResult:
    table: str
    passed: bool
    rows: int
    rejected: pd.Series  # reason per row (index of the validated frame), None when accepted
    bad_share_by_partition: dict[str, float]
    rules: list[RuleResult]
    failures: list[str]
    docs_url: str | None = None

    @property
    def rejected_rows(self) -> int:
        return int(self.rejected.notna().sum())

    @property
    def message(self) -> str:
        if self.passed:
            return (
                f"gate passed for table '{self.table}': {self.rows} rows, "
                f"{self.rejected_rows} quarantined"
            )
        return f"gate FAILED for table '{self.table}': " + "; ".join(self.failures)


def _rule_column(cfg: Any, rules: TableRules, observed: Any) -> str:
    """The column(s) a rule is about, as a person would name them."""
    kw = cfg.kwargs
    if cfg.type == "expect_table_columns_to_match_set" and isinstance(observed, list):
        expected, seen = set(kw["column_set"]), set(observed) - {LOCAL_DATE}
        missing, extra = sorted(expected - seen), sorted(seen - expected)
        parts = [f"missing {m}" for m in missing] + [f"unexpected {e}" for e in extra]
        return ", ".join(parts) or "*"
    if cfg.type == "expect_table_row_count_to_be_between":
        return "(row count)"
    if kw.get("column_A") == LOCAL_DATE:
        return f"{rules.partition_timestamp} (local date vs partition day)"
    if kw.get("column"):
        return str(kw["column"])
    if kw.get("column_list"):
        return "+".join(kw["column_list"])
    if kw.get("column_A"):
        return f"{kw['column_A']}={kw['column_B']}"
    return "*"


def build_suite(
    rules: TableRules,
    present: list[str],
    known_sets: Mapping[str, frozenset[str]],
    partitions: int = 1,
) -> gx.ExpectationSuite:
    """The GX suite for one table; column rules only for the columns actually present.

    The expectations are collected first and handed to the suite at once: adding them one by one
    to a suite whose name is already in the file store rewrites the store on every addition
    (seconds per validation once the value sets are large)."""
    expectations: list[Any] = []
    table = {"level": "table"}
    row = {"level": "row"}
    lineage = [SOURCE_FILE, SOURCE_LINE, PARTITION]
    if rules.partition_timestamp and rules.partition_timestamp in present:
        lineage.append(LOCAL_DATE)
    expectations.append(
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[*rules.columns, *lineage], exact_match=True, meta=table
        )
    )
    max_rows = rules.max_rows * max(1, partitions) if rules.max_rows else None
    expectations.append(
        gxe.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=max_rows, meta=table)
    )
    for col, dtypes in rules.columns.items():
        if col in present:
            expectations.append(
                gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=list(dtypes), meta=table)
            )
    for col in rules.keys:
        if col in present:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=col, meta=row))
    for col, (lo, hi) in rules.ranges.items():
        if col in present:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi, meta=row)
            )
    for col, set_name in rules.sets.items():
        if col in present:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col, value_set=sorted(known_sets[set_name]), meta=row
                )
            )
    if len(rules.unique) == 1 and rules.unique[0] in present:
        expectations.append(gxe.ExpectColumnValuesToBeUnique(column=rules.unique[0], meta=row))
    elif all(c in present for c in rules.unique):
        expectations.append(
            gxe.ExpectCompoundColumnsToBeUnique(column_list=list(rules.unique), meta=row)
        )
    if rules.partition_timestamp and rules.partition_timestamp in present:
        expectations.append(
            gxe.ExpectColumnPairValuesToBeEqual(column_A=LOCAL_DATE, column_B=PARTITION, meta=row)
        )
    return gx.ExpectationSuite(name=f"raw_{rules.table}", expectations=expectations)


def _with_local_date(df: pd.DataFrame, ts_col: str | None) -> pd.DataFrame:
    """Add the local (New York) date of the table's timestamp, to compare with the partition."""
    if not ts_col or ts_col not in df.columns:
        return df
    out = df.copy()
    ts = out[ts_col]
    if pd.api.types.is_datetime64_any_dtype(ts):
        out[LOCAL_DATE] = ts.dt.tz_localize("UTC").dt.tz_convert(TIMEZONE).dt.strftime("%Y-%m-%d")
    else:
        out[LOCAL_DATE] = None
    return out


def _files_with_bad_type(df: pd.DataFrame, col: str, dtypes: tuple[str, ...]) -> list[str]:
    """The source files whose values in ``col`` are not of the expected kind."""
    if SOURCE_FILE not in df.columns:
        return []
    bad = []
    for name, part in df.groupby(SOURCE_FILE, sort=True):
        values = part[col].dropna()
        if "float64" in dtypes:
            ok = pd.to_numeric(values, errors="coerce").notna().all()
        elif "object" in dtypes:
            ok = values.map(lambda v: isinstance(v, str)).all()
        else:
            ok = pd.to_datetime(values, errors="coerce", utc=True).notna().all()
        if not ok:
            bad.append(str(name))
    return bad


def _replace_suite(ctx: Any, suite: gx.ExpectationSuite) -> gx.ExpectationSuite:
    """Store ``suite`` under its name. Deleting and adding is far cheaper than
    ``add_or_update``, which compares every expectation with the stored one (large value sets)."""
    if any(s.name == suite.name for s in ctx.suites.all()):
        ctx.suites.delete(suite.name)
    return ctx.suites.add(suite)


class Gate:
    """Runs suites against a file-backed GX context (Data Docs land in ``gx_dir``)."""

    def __init__(self, gx_dir: Path, max_bad_share: float = 0.05):
        self.gx_dir = Path(gx_dir)
        self.max_bad_share = max_bad_share
        self._ctx: Any = None

    def _context(self) -> Any:
        if self._ctx is None:
            self.gx_dir.mkdir(parents=True, exist_ok=True)
            ctx = gx.get_context(mode="file", project_root_dir=str(self.gx_dir))
            ctx.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
            self._ctx = ctx
        return self._ctx

    def validate(
        self,
        rules: TableRules,
        df: pd.DataFrame,
        known_sets: Mapping[str, frozenset[str]] | None = None,
    ) -> GateResult:
        ctx = self._context()
        frame = _with_local_date(df.reset_index(drop=True), rules.partition_timestamp)
        present = [c for c in df.columns if c in rules.columns]
        partitions = int(df[PARTITION].nunique()) if PARTITION in df.columns else 1
        suite = _replace_suite(ctx, build_suite(rules, present, known_sets or {}, partitions))
        source = ctx.data_sources.add_or_update_pandas("landing_zone")
        asset = next((a for a in source.assets if a.name == rules.table), None)
        if asset is None:
            asset = source.add_dataframe_asset(rules.table)
        batch_def = next(iter(asset.batch_definitions), None) or (
            asset.add_batch_definition_whole_dataframe("partition")
        )
        vdef = ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"raw_{rules.table}", data=batch_def, suite=suite)
        )
        checkpoint = ctx.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"raw_{rules.table}_gate",
                validation_definitions=[vdef],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                result_format={"result_format": "COMPLETE", "partial_unexpected_count": 5},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frame})
        outcome = next(iter(run.run_results.values()))
        return self._apply_policy(rules, frame, outcome.results, self._docs_url())

    def _docs_url(self) -> str | None:
        sites = self._context().get_docs_sites_urls()
        return sites[0]["site_url"] if sites else None

    def _apply_policy(
        self, rules: TableRules, frame: pd.DataFrame, results: list[Any], docs_url: str | None
    ) -> GateResult:
        rejected = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        rule_results: list[RuleResult] = []
        failures: list[str] = []
        for r in results:
            cfg = r.expectation_config
            level = (cfg.meta or {}).get("level", "table")
            res = r.result or {}
            col = _rule_column(cfg, rules, res.get("observed_value"))
            rr = RuleResult(
                rule=cfg.type,
                column=col,
                level=level,
                success=bool(r.success),
                unexpected_count=int(res.get("unexpected_count") or 0),
                sample=[_plain(v) for v in (res.get("partial_unexpected_list") or [])][:5],
                observed=_plain(res.get("observed_value")),
            )
            exc = (r.exception_info or {}).get("exception_message") if r.exception_info else None
            if exc:
                rr.success, rr.observed = False, f"error: {exc}"
            if level == "row" and not rr.success and not exc:
                idx = [i for i in (res.get("unexpected_index_list") or []) if i in rejected.index]
                reason = f"{cfg.type}({col.split(' ')[0]})"
                fresh = rejected.loc[idx].isna()
                rejected.loc[fresh[fresh].index] = reason
                rr.files = sorted(frame.loc[idx, SOURCE_FILE].astype(str).unique().tolist())[:3]
            elif not rr.success:
                if cfg.type == "expect_column_values_to_be_in_type_list":
                    rr.files = _files_with_bad_type(frame, col, rules.columns[col])
                elif SOURCE_FILE in frame and frame[SOURCE_FILE].nunique() == 1:
                    rr.files = [str(frame[SOURCE_FILE].iloc[0])]
                failures.append(rr.describe(rules.table))
            rule_results.append(rr)
        share = (
            rejected.notna().groupby(frame[PARTITION]).mean()
            if len(frame) and PARTITION in frame
            else pd.Series(dtype=float)
        )
        for part, value in share.items():
            if value > self.max_bad_share:
                worst = [
                    rr.describe(rules.table)
                    for rr in rule_results
                    if rr.level == "row" and not rr.success
                ]
                failures.append(
                    f"table '{rules.table}', partition {part}: {value:.1%} of rows failed row "
                    f"rules (limit {self.max_bad_share:.0%}): " + "; ".join(worst)
                )
        result = GateResult(
            table=rules.table,
            passed=not failures,
            rows=len(frame),
            rejected=rejected,
            bad_share_by_partition={str(k): float(v) for k, v in share.items()},
            rules=rule_results,
            failures=failures,
            docs_url=docs_url,
        )
        log.info(result.message)
        return result


def _plain(value: Any) -> Any:
    """JSON-friendly version of a GX observed/unexpected value."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def quarantine_frame(df: pd.DataFrame, result: GateResult) -> pd.DataFrame:
    """The rejected rows with the rule that rejected them."""
    frame = df.reset_index(drop=True)
    bad = result.rejected.notna()
    out = frame.loc[bad].copy()
    out[REJECTED_BY] = result.rejected[bad]
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].astype("string")
    return out


def write_quarantine(quarantine_url: str, table: str, df: pd.DataFrame, result: GateResult) -> int:
    """Write each partition's rejected rows to ``<quarantine>/<table>/<partition>.parquet``.

    Every partition of the run is rewritten (possibly empty) so that re-running a fixed file
    clears its old quarantine.
    """
    bad = quarantine_frame(df, result)
    parts = df[PARTITION].astype(str).unique() if PARTITION in df else ["all"]
    for part in parts:
        rows = bad[bad[PARTITION].astype(str) == part] if PARTITION in bad else bad
        storage.write_parquet(storage.join(quarantine_url, table, f"{part}.parquet"), rows)
    return len(bad)


def accepted_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """The rows the gate accepted, without the gate's bookkeeping column."""
    if REJECTED_BY not in raw.columns:
        raise ValueError(
            f"frame has no {REJECTED_BY!r} column: it did not pass through the validation gate"
        )
    return raw.loc[raw[REJECTED_BY].isna()].drop(columns=[REJECTED_BY]).reset_index(drop=True)
