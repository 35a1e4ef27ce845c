"""Small PNG charts for the asset catalog: feature distributions, model metrics, calibration.

Plain matplotlib (Agg backend, imported inside the functions); no Dagster. Every function
returns PNG bytes, small on purpose (4 x 3 inches at 80 dpi by default): they travel inside
materialization metadata as base64 data URIs, so the Dagster UI shows them without a file server.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

SIZE = (4.0, 3.0)  # inches
DPI = 80


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = SIZE) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=size, squeeze=False)


def _png(fig: Any, dpi: int = DPI) -> bytes:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_image(alt: str, png: bytes) -> str:
    """A Markdown image with the PNG inline (what Dagster's Markdown metadata renders)."""
    return f"![{alt.replace(']', ')')}]({data_uri(png)})"


def numeric_columns(df: pd.DataFrame, limit: int = 6) -> list[str]:
    """The first ``limit`` numeric columns that hold at least one finite value."""
    out = []
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            continue
        if np.isfinite(col.to_numpy(dtype="float64", na_value=np.nan)).any():
            out.append(str(name))
        if len(out) == limit:
            break
    return out


def distributions(df: pd.DataFrame, columns: Sequence[str], title: str) -> bytes:
    """One small histogram per column (NaNs dropped; the count of missing values in the title)."""
    if not columns:
        raise ValueError(f"{title}: no numeric column to plot")
    cols = min(3, len(columns))
    rows = -(-len(columns) // cols)
    fig, axes = _figure(rows, cols, size=(2.2 * cols, 1.8 * rows + 0.4))
    for ax, name in zip(axes.flat, columns, strict=False):
        values = df[name].to_numpy(dtype="float64", na_value=np.nan)
        finite = values[np.isfinite(values)]
        ax.hist(finite, bins=30, color="#4c72b0")
        missing = len(values) - len(finite)
        ax.set_title(name + (f" ({missing:,} missing)" if missing else ""), fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    return _png(fig)


def metric_bars(metrics: Mapping[str, float], title: str) -> bytes:
    """Horizontal bars of metrics in [0, 1] (ROC AUC, F1, ...), each labelled with its value."""
    if not metrics:
        raise ValueError(f"{title}: no metric to plot")
    fig, axes = _figure()
    ax = axes[0][0]
    names = list(metrics)
    values = [float(metrics[n]) for n in names]
    ax.barh(names, values, color="#4c72b0")
    for i, v in enumerate(values):
        ax.text(min(v, 1.0) + 0.01, i, f"{v:.3f}", va="center", fontsize=7)
    ax.set_xlim(0, 1.15)
    ax.invert_yaxis()
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8)
    return _png(fig)


def calibration(curve: Sequence[Sequence[float]], error: float, title: str) -> bytes:
    """Reliability diagram from ``(mean predicted, observed share, count)`` bins."""
    if not curve:
        raise ValueError(f"{title}: empty calibration curve")
    fig, axes = _figure()
    ax = axes[0][0]
    means = [float(c[0]) for c in curve]
    observed = [float(c[1]) for c in curve]
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.plot(means, observed, marker="o", ms=3, label=f"ECE {error:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_xlabel("mean predicted", fontsize=7)
    ax.set_ylabel("observed delayed share", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title, fontsize=8)
    return _png(fig)
