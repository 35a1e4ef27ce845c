"""Materialization metadata a person can read: counts, schemas, previews."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

OWNERS = ["team:data-platform"]


def column_schema(columns: Mapping[str, Any]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=str(n), type=str(t)) for n, t in columns.items()]
    )


def schema_metadata(columns: Mapping[str, Any]) -> dict[str, Any]:
    """Definition-time column schema (shown in the asset graph before anything runs)."""
    return {"dagster/column_schema": column_schema(columns)}


def frame_metadata(df: pd.DataFrame, preview_rows: int = 5) -> dict[str, Any]:
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "dagster/column_schema": column_schema({str(c): str(t) for c, t in df.dtypes.items()}),
        "preview": dg.MetadataValue.md(df.head(preview_rows).to_markdown(index=False)),
    }
