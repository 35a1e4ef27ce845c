"""Catalog metadata a person can read: owners, code versions, schemas, column lineage, counts,
previews and plots."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import dagster as dg
import pandas as pd

from dagster_project.monitoring import plots

OWNERS = ["team:data-platform"]
ML_OWNERS = ["team:ml-platform"]


def code_version(*modules: ModuleType | str) -> str:
    """A deterministic version of the code an asset runs: a hash of its modules' source (a
    module, or a dotted name, read without importing it).

    Dagster marks an asset "code version changed" (stale) when this differs from the version
    its last materialization was made with, so editing e.g. ``features/engineering.py`` flags the feature
    tables and everything downstream of them."""
    digest = hashlib.sha256()
    for module in modules:
        if isinstance(module, str):
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise ModuleNotFoundError(module)
            with open(spec.origin, "rb") as f:
                digest.update(f.read())
        else:
            digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]


def column_schema(columns: Mapping[str, Any]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=str(n), type=str(t)) for n, t in columns.items()]
    )


def schema_metadata(columns: Mapping[str, Any]) -> dict[str, Any]:
    """Definition-time column schema (shown in the asset graph before anything runs)."""
    return {"dagster/column_schema": column_schema(columns)}


def column_lineage(
    sources: Mapping[str, Sequence[tuple[str, str]]],
) -> dict[str, dg.TableColumnLineage]:
    """``{output column: [(upstream asset, upstream column), ...]}`` as Dagster column lineage."""
    return {
        "dagster/column_lineage": dg.TableColumnLineage(
            deps_by_column={
                column: [
                    dg.TableColumnDep(asset_key=dg.AssetKey(asset), column_name=upstream)
                    for asset, upstream in deps
                ]
                for column, deps in sources.items()
                if deps
            }
        )
    }


def image(alt: str, png: bytes) -> dg.MetadataValue:
    """A PNG the asset page shows inline (Markdown with a base64 data URI)."""
    return dg.MetadataValue.md(plots.markdown_image(alt, png))


def _short_cells(df: pd.DataFrame, limit: int = 80) -> pd.DataFrame:
    """A preview whose text cells are at most ``limit`` characters (a landing file may hold a
    cell of megabytes)."""
    return df.map(lambda v: f"{v[:limit]}..." if isinstance(v, str) and len(v) > limit else v)


def frame_metadata(
    df: pd.DataFrame, preview_rows: int = 5, plot_title: str | None = None
) -> dict[str, Any]:
    """Row count, column schema and a Markdown preview; with ``plot_title``, histograms of the
    first numeric columns too (skipped when the frame has none)."""
    out: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "dagster/column_schema": column_schema({str(c): str(t) for c, t in df.dtypes.items()}),
        "preview": dg.MetadataValue.md(
            _short_cells(df.head(preview_rows)).to_markdown(index=False)
        ),
    }
    columns = plots.numeric_columns(df)
    if plot_title and len(df) and columns:
        out["distributions"] = image(plot_title, plots.distributions(df, columns, plot_title))
    return out
