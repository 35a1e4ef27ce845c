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
from typing import TYPE_CHECKING, Any

import pandas as pd

from dagster_project.ingestion import when
from dagster_project.ingestion.expectations import TableRules
from dagster_project.ingestion.landing import PARTITION, SOURCE_FILE, SOURCE_LINE
from dagster_project.ingestion.safe_values import plain, plain_cells, short
from dagster_project.platform import storage

if TYPE_CHECKING:  # GX takes ~2 s to import: only the steps that validate pay for it
    import great_expectations as gx

REJECTED_BY = "_rejected_by"
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
        where = f" in {', '.join(short(f) for f in self.files[:3])}" if self.files else ""
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
    if (cfg.meta or {}).get("about"):
        return str(cfg.meta["about"])
    if cfg.type == "expect_table_columns_to_match_set" and isinstance(observed, list):
        seen = {str(c) for c in observed if not str(c).startswith(when.PREFIX)}
        expected = set(kw["column_set"])
        missing, extra = sorted(expected - seen), sorted(seen - expected)
        parts = [f"missing {m}" for m in missing] + [f"unexpected {short(e, 60)}" for e in extra]
        return ", ".join(parts[:10]) or "*"
    if cfg.type == "expect_table_row_count_to_be_between":
        return "(row count)"
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
    import great_expectations as gx
    import great_expectations.expectations as gxe

    expectations: list[Any] = []
    table = {"level": "table"}
    row = {"level": "row"}
    lineage = [SOURCE_FILE, SOURCE_LINE, PARTITION]
    pairs = agreeing_pairs(rules, present)
    lineage += [when.column(n) for n in sorted({n for pair in pairs for n in pair})]
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
    for col, (pattern, max_length) in rules.formats.items():
        if col in present:
            expectations.append(
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column=col, min_value=1, max_value=max_length, meta=row
                )
            )
            expectations.append(
                gxe.ExpectColumnValuesToMatchRegex(column=col, regex=pattern, meta=row)
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
    for a, b in pairs:
        expectations.append(
            gxe.ExpectColumnPairValuesToBeEqual(
                column_A=when.column(a),
                column_B=when.column(b),
                ignore_row_if="neither",  # a value that cannot be read fails the rule too
                meta={"level": "row", "about": f"{a} vs {b}"},
            )
        )
    return gx.ExpectationSuite(name=f"raw_{rules.table}", expectations=expectations)


def agreeing_pairs(rules: TableRules, present: list[str]) -> list[tuple[str, str]]:
    """The consistency rules whose columns are all present (a missing one fails the table)."""
    return [
        (a, b) for a, b in rules.agree if all(c in present for n in (a, b) for c in when.SOURCES[n])
    ]


def _files_with_bad_type(
    df: pd.DataFrame, col: str, dtypes: tuple[str, ...]
) -> tuple[list[str], str | None]:
    """The source files whose values in ``col`` are not of the expected kind, and the first
    such value with its line (a report's footer line, a word in a number column)."""
    if SOURCE_FILE not in df.columns or col not in df.columns:
        return [], None
    bad, first = [], None
    for name, part in df.groupby(SOURCE_FILE, sort=True):
        values = part[col].dropna()
        if "float64" in dtypes:
            kind = "a number"
            ok = values.map(_is_number)
        elif "object" in dtypes:
            kind = "text"
            ok = values.map(lambda v: isinstance(v, str))
        else:
            kind = "a timestamp"
            ok = pd.to_datetime(values.astype(str), errors="coerce", utc=True).notna()
        if not ok.all():
            bad.append(str(name))
            if first is None:
                i = ok[~ok].index[0]
                line = part.at[i, SOURCE_LINE] if SOURCE_LINE in part else "?"
                where = str(line)
                first = f"line {where}: {short(repr(part.at[i, col]), 80)} is not {kind}"
    return bad, first


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float) or hasattr(value, "dtype"):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _replace_suite(ctx: Any, suite: gx.ExpectationSuite) -> gx.ExpectationSuite:
    """Store ``suite`` under its name. Deleting and adding is far cheaper than
    ``add_or_update``, which compares every expectation with the stored one (large value sets)."""
    if any(s.name == suite.name for s in ctx.suites.all()):
        ctx.suites.delete(suite.name)
    return ctx.suites.add(suite)


DOCS_SITE = ("gx", "uncommitted", "data_docs", "local_site")  # GX's file site, under gx_dir
RESULTS = ("gx", "uncommitted", "validations")


class Gate:
    """Runs suites against a file-backed GX context (Data Docs land in ``gx_dir``).

    With ``publish_url`` (the server tiers' ``s3://.../gx``) ``gx_dir`` is only a working copy:
    after each validation the Data Docs site is uploaded to ``<publish_url>/data_docs/`` and
    the validation results to ``<publish_url>/validations/``, and the result links the
    published index. Validation pages and results have unique names, so every step's survive
    side by side; the index lists the validations of the context that uploaded it last."""

    def __init__(self, gx_dir: Path, max_bad_share: float = 0.05, publish_url: str | None = None):
        self.gx_dir = Path(gx_dir)
        self.max_bad_share = max_bad_share
        self.publish_url = publish_url
        self._ctx: Any = None

    def _context(self) -> Any:
        if self._ctx is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

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
        import great_expectations as gx

        ctx = self._context()
        present = [c for c in df.columns if c in rules.columns]
        names = {n for pair in agreeing_pairs(rules, present) for n in pair}
        frame = when.add_columns(plain_cells(df.reset_index(drop=True)), names)
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
        return self._apply_policy(
            rules, frame, outcome.results, self._publish() or self._docs_url()
        )

    def _docs_url(self) -> str | None:
        sites = self._context().get_docs_sites_urls()
        return sites[0]["site_url"] if sites else None

    def _publish(self) -> str | None:
        """Upload the Data Docs and the validation results (``publish_url`` set); returns the
        published index's URL."""
        if not self.publish_url:
            return None
        site = self.gx_dir.joinpath(*DOCS_SITE)
        storage.upload_tree(
            self.gx_dir.joinpath(*RESULTS), storage.join(self.publish_url, "validations")
        )
        # GX's static assets (4 MB, the same for every validation) are uploaded once
        storage.upload_tree(site, storage.join(self.publish_url, "data_docs"), once=("static/",))
        return storage.join(self.publish_url, "data_docs", "index.html")

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
                sample=[plain(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
                observed=plain(res.get("observed_value")),
            )
            exc = (r.exception_info or {}).get("exception_message") if r.exception_info else None
            if exc:
                rr.success, rr.observed = False, short(f"error: {exc}")
            if level == "row" and not rr.success and not exc:
                idx = [i for i in (res.get("unexpected_index_list") or []) if i in rejected.index]
                reason = f"{cfg.type}({col})"
                fresh = rejected.loc[idx].isna()
                rejected.loc[fresh[fresh].index] = reason
                if SOURCE_FILE in frame:
                    rr.files = sorted(frame.loc[idx, SOURCE_FILE].astype(str).unique())[:3]
            elif not rr.success:
                if cfg.type == "expect_column_values_to_be_in_type_list":
                    rr.files, first = _files_with_bad_type(frame, col, rules.columns[col])
                    rr.observed = first or rr.observed
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


def quarantine_frame(df: pd.DataFrame, result: GateResult) -> pd.DataFrame:
    """The rejected rows with the rule that rejected them."""
    frame = plain_cells(df.reset_index(drop=True))
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
