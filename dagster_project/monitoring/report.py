"""What a person looks at: a PNG per monitored day and one self-contained HTML report.

Plain matplotlib (Agg backend, imported inside the functions) and the standard library; no
Dagster. The HTML report embeds its charts as base64 PNG data URIs and carries its own CSS, so
it opens from a file, an artifact store or an e-mail attachment with nothing else around it.
Every string that comes from data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from dagster_project.monitoring.measures import Thresholds
from dagster_project.platform import storage

OUTCOME_COLOURS = {"promoted": "#2ca02c", "rejected": "#d62728"}
OTHER_OUTCOME_COLOUR = "#7f7f7f"
VERSION_COLOUR = "#9467bd"
LEVEL_COLOURS = {"ok": "#4c72b0", "warn": "#dd8452", "error": "#c44e52"}
HISTORY_COLUMNS = (
    "day",
    "model_version",
    "volume",
    "positive_rate",
    "predicted_positive_rate",
    "roc_auc",
    "brier",
    "calibration_error",
    "max_psi",
)


def _number(value: Any) -> float | None:
    """A finite float, or None for None / NaN / text that is no number."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(value: Any, digits: int = 3) -> str:
    f = _number(value)
    return "n/a" if f is None else f"{f:,.{digits}f}"


def _text(value: Any) -> str | None:
    """``str(value)``, or None for None and NaN (a day without a model version)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


Target = TypeVar("Target", Path, str)


def _atomic_write(out: Target, data: bytes) -> Target:
    """Write ``data`` to ``out`` (a path, or a URL such as ``s3://``) atomically: readers see
    the old file or the new one (:func:`storage.write_bytes_atomic`)."""
    storage.write_bytes_atomic(str(out), data)
    return out


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_day(
    day: str,
    quality: dict[str, Any],
    drift: pd.DataFrame,
    out: Target,
    thresholds: Thresholds | None = None,
) -> Target:
    """One PNG for one monitored day: the reliability diagram (left; from ``quality``'s
    ``calibration_curve`` as :func:`monitoring.daily_quality` returns it) and the top 10
    features by PSI coloured by level with the warn / error lines (right); the title carries
    AUC, Brier and volume. Copes with no labels (``roc_auc`` None) and an empty ``drift``."""
    t = thresholds or Thresholds()
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))

    curve = quality.get("calibration_curve") or []
    left.plot([0, 1], [0, 1], ls="--", c="grey", label="perfectly calibrated")
    if curve:
        means = [float(c[0]) for c in curve]
        observed = [float(c[1]) for c in curve]
        counts = np.array([float(c[2]) for c in curve])
        sizes = 20 + 280 * counts / max(counts.max(), 1.0)
        left.plot(means, observed, c="#4c72b0", lw=1)
        left.scatter(means, observed, s=sizes, c="#4c72b0", alpha=0.7, label="bins (size = rows)")
        left.legend(loc="upper left")
    else:
        left.text(0.5, 0.5, "no labeled predictions yet", ha="center", va="center", c="grey")
    left.set(
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Reliability (ECE {_fmt(quality.get('calibration_error'))}, "
        f"{int(quality.get('labeled') or 0):,} labeled)",
        xlabel="mean predicted probability",
        ylabel="observed delayed share",
    )

    top = drift.head(10) if len(drift) else drift
    if len(top):
        names = [str(f) for f in top["feature"]][::-1]
        values = [_number(v) or 0.0 for v in top["psi"]][::-1]
        levels = [str(v) for v in top["level"]][::-1] if "level" in top else ["ok"] * len(names)
        colours = [LEVEL_COLOURS.get(lv, LEVEL_COLOURS["ok"]) for lv in levels]
        right.barh(names, values, color=colours)
        right.axvline(t.psi_warn, ls="--", c=LEVEL_COLOURS["warn"], label=f"warn {t.psi_warn:g}")
        right.axvline(
            t.psi_error, ls="--", c=LEVEL_COLOURS["error"], label=f"error {t.psi_error:g}"
        )
        right.legend(loc="lower right")
    else:
        right.text(0.5, 0.5, "no drift computed", ha="center", va="center", c="grey")
        right.set(xticks=[], yticks=[])
    right.set(title="Feature drift: top 10 by PSI", xlabel="PSI vs training reference")

    judged = "" if quality.get("judged", True) else " (too few labels to judge)"
    breaches = quality.get("breaches") or []
    fig.suptitle(
        f"{day}: ROC AUC {_fmt(quality.get('roc_auc'))}, Brier {_fmt(quality.get('brier'))}, "
        f"volume {int(quality.get('volume') or 0):,}{judged}"
        + (f"\n{'; '.join(str(b) for b in breaches)}" if breaches else ""),
        color="#c44e52" if breaches else "black",
    )
    fig.tight_layout()
    return _atomic_write(out, _png(fig))


def _history_frame(history: pd.DataFrame) -> pd.DataFrame:
    """The history with every expected column, numbers as floats, sorted by day."""
    h = history.copy()
    for c in HISTORY_COLUMNS:
        if c not in h.columns:
            h[c] = np.nan if c not in ("day", "model_version") else None
    h["day"] = [pd.Timestamp(str(d)).strftime("%Y-%m-%d") for d in h["day"]]
    for c in HISTORY_COLUMNS[2:]:
        h[c] = pd.to_numeric(h[c], errors="coerce").astype("float64")
    return h.sort_values("day", kind="mergesort").reset_index(drop=True)


def _version_changes(h: pd.DataFrame) -> list[tuple[str, str]]:
    """(day, version) where the served model version differs from the day before."""
    changes, previous = [], None
    for day, version in zip(h["day"], h["model_version"], strict=True):
        v = _text(version)
        if v is not None and previous is not None and v != previous:
            changes.append((str(day), v))
        if v is not None:
            previous = v
    return changes


def _mark_events(ax: Any, retrains: list[dict[str, Any]], changes: list[tuple[str, str]]) -> None:
    for r in retrains:
        if r.get("day") is None:
            continue
        colour = OUTCOME_COLOURS.get(str(r.get("outcome")), OTHER_OUTCOME_COLOUR)
        ax.axvline(pd.Timestamp(str(r["day"])), c=colour, lw=1.5, alpha=0.8)
    for day, _ in changes:
        ax.axvline(pd.Timestamp(day), c=VERSION_COLOUR, ls=":", lw=1.5)


def _legend_handles(retrains: list[dict[str, Any]], changes: list[tuple[str, str]]) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = []
    outcomes = sorted({str(r.get("outcome")) for r in retrains if r.get("day") is not None})
    for outcome in outcomes:
        colour = OUTCOME_COLOURS.get(outcome, OTHER_OUTCOME_COLOUR)
        handles.append(Line2D([], [], c=colour, lw=1.5, label=f"retrain: {outcome}"))
    if changes:
        handles.append(Line2D([], [], c=VERSION_COLOUR, ls=":", lw=1.5, label="new model version"))
    return handles


def _quality_chart(
    h: pd.DataFrame, retrains: list[dict[str, Any]], changes: list[tuple[str, str]], t: Thresholds
) -> bytes:
    plt = _pyplot()
    x = pd.to_datetime(h["day"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 6.5), sharex=True)
    top.plot(x, h["roc_auc"], marker="o", ms=3, label="ROC AUC")
    top.axhline(t.auc_floor, ls="--", c="#c44e52", label=f"floor {t.auc_floor:g}")
    top.set(ylabel="ROC AUC", title="Quality against delayed labels")
    bottom.plot(x, h["brier"], marker="o", ms=3, label="Brier score")
    bottom.plot(x, h["calibration_error"], marker="o", ms=3, label="calibration error (ECE)")
    bottom.axhline(
        t.calibration_error_max, ls="--", c="#c44e52", label=f"ECE max {t.calibration_error_max:g}"
    )
    bottom.set(ylabel="lower is better")
    return _finish(fig, (top, bottom), retrains, changes)


def _traffic_chart(
    h: pd.DataFrame, retrains: list[dict[str, Any]], changes: list[tuple[str, str]], t: Thresholds
) -> bytes:
    plt = _pyplot()
    x = pd.to_datetime(h["day"])
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(13, 8), sharex=True)
    top.bar(x, h["volume"].fillna(0.0), color="#8da0cb", label="predictions")
    top.set(ylabel="predictions", title="Traffic, outcomes and drift")
    middle.plot(x, h["positive_rate"], marker="o", ms=3, label="actual delayed share")
    middle.plot(x, h["predicted_positive_rate"], marker="o", ms=3, label="predicted delayed share")
    middle.set(ylabel="share")
    bottom.plot(x, h["max_psi"], marker="o", ms=3, c="#55a868", label="max feature PSI")
    bottom.axhline(t.psi_warn, ls="--", c=LEVEL_COLOURS["warn"], label=f"warn {t.psi_warn:g}")
    bottom.axhline(t.psi_error, ls="--", c=LEVEL_COLOURS["error"], label=f"error {t.psi_error:g}")
    bottom.set(ylabel="PSI")
    return _finish(fig, (top, middle, bottom), retrains, changes)


def _finish(
    fig: Any, axes: tuple[Any, ...], retrains: list[dict[str, Any]], changes: list[tuple[str, str]]
) -> bytes:
    """Retrain and version-change markers, legends outside the plot, grid; the PNG bytes."""
    for ax in axes:
        _mark_events(ax, retrains, changes)
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(
            handles=handles + _legend_handles(retrains, changes),
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
        )
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _e(value: Any) -> str:
    return html.escape("n/a" if value is None else str(value), quote=True)


def _cell(value: Any, bad: bool = False, digits: int = 3) -> str:
    cls = ' class="bad"' if bad else ""
    return f"<td{cls}>{_e(_fmt(value, digits))}</td>"


CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; }
.summary { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f4f4f4; }
td.text { text-align: left; }
td.bad { background: #fbe3e4; color: #a00; font-weight: bold; }
.promoted { color: #2ca02c; font-weight: bold; }
.rejected { color: #d62728; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.empty { color: #888; font-style: italic; }
"""


def render_report(
    history: pd.DataFrame,
    retrains: list[dict[str, Any]],
    out: Target,
    title: str = "flight_delay monitoring",
    thresholds: Thresholds | None = None,
) -> Target:
    """Write one self-contained HTML monitoring report to ``out`` (a path or a URL) and return
    it.

    ``history`` has one row per day (``day``, ``roc_auc``, ``brier``, ``calibration_error``,
    ``positive_rate``, ``predicted_positive_rate``, ``volume``, ``max_psi``,
    ``model_version``; a missing column or value shows as n/a). ``retrains`` items carry
    ``day``, ``reason``, ``outcome``, ``auc_before``, ``auc_after``, ``version`` (any may be
    None). The report holds a header (date range, counts), a quality chart (ROC AUC, Brier,
    calibration error) and a traffic chart (volume, delayed shares, max PSI), both with retrain
    days (green promoted, red rejected, grey otherwise) and model-version changes (dotted)
    marked, the retrain table and the daily table (threshold breaches highlighted).
    """
    t = thresholds or Thresholds()
    h = _history_frame(history)
    events = sorted(retrains, key=lambda r: str(r.get("day") or ""))
    changes = _version_changes(h)

    if len(h):
        first, last = h["day"].iloc[0], h["day"].iloc[-1]
        versions = sorted({v for v in map(_text, h["model_version"]) if v is not None})
        below = int((h["roc_auc"] < t.auc_floor).sum())
        promoted = sum(1 for r in retrains if r.get("outcome") == "promoted")
        summary = " &middot; ".join(
            [
                f"{_e(first)} to {_e(last)}",
                f"{len(h):,} days",
                f"{int(h['volume'].fillna(0).sum()):,} predictions",
                f"{len(retrains):,} retrains ({promoted:,} promoted)",
                f"model versions {_e(', '.join(versions) or 'n/a')}",
                f"{below:,} days with ROC AUC below {t.auc_floor:g}",
            ]
        )
        charts = _img(
            _quality_chart(h, events, changes, t), "ROC AUC and Brier score per day"
        ) + _img(_traffic_chart(h, events, changes, t), "volume, delayed share and max PSI per day")
    else:
        summary = "no monitored days yet"
        charts = '<p class="empty">no monitored days yet: nothing to chart</p>'

    if events:
        retrain_rows = "".join(
            "<tr>"
            f'<td class="text">{_e(r.get("day"))}</td>'
            f'<td class="text">{_e(r.get("reason"))}</td>'
            f'<td class="text {_e(r.get("outcome"))}">{_e(r.get("outcome"))}</td>'
            f"<td>{_e(_fmt(r.get('auc_before')))} &rarr; {_e(_fmt(r.get('auc_after')))}</td>"
            f'<td class="text">{_e(r.get("version"))}</td>'
            "</tr>"
            for r in events
        )
        retrain_table = (
            "<table><tr><th>day</th><th>why</th><th>outcome</th>"
            "<th>ROC AUC before &rarr; after</th><th>version</th></tr>"
            f"{retrain_rows}</table>"
        )
    else:
        retrain_table = '<p class="empty">no retraining in this period</p>'

    by_day: dict[str, list[str]] = {}
    for r in events:
        if r.get("day") is not None:
            by_day.setdefault(str(r["day"])[:10], []).append(str(r.get("outcome")))
    changed = dict(changes)
    daily_rows = []
    for row in h.itertuples(index=False):
        auc, ece, max_psi = (
            _number(row.roc_auc),
            _number(row.calibration_error),
            _number(row.max_psi),
        )
        notes = [f"retrain {o}" for o in by_day.get(str(row.day), [])]
        if str(row.day) in changed:
            notes.append(f"now v{changed[str(row.day)]}")
        daily_rows.append(
            "<tr>"
            f'<td class="text">{_e(row.day)}</td>'
            f'<td class="text">{_e(_text(row.model_version))}</td>'
            f"{_cell(row.volume, digits=0)}"
            f"{_cell(row.positive_rate)}"
            f"{_cell(row.predicted_positive_rate)}"
            f"{_cell(auc, bad=auc is not None and auc < t.auc_floor)}"
            f"{_cell(row.brier)}"
            f"{_cell(ece, bad=ece is not None and ece > t.calibration_error_max)}"
            f"{_cell(max_psi, bad=max_psi is not None and max_psi >= t.psi_error)}"
            f'<td class="text">{_e("; ".join(notes))}</td>'
            "</tr>"
        )
    daily_table = (
        (
            "<table><tr><th>day</th><th>model version</th><th>volume</th>"
            "<th>delayed share</th><th>predicted delayed share</th><th>ROC AUC</th>"
            "<th>Brier</th><th>calibration error</th><th>max PSI</th><th>events</th></tr>"
            + "".join(daily_rows)
            + "</table>"
        )
        if daily_rows
        else '<p class="empty">no monitored days yet</p>'
    )

    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="summary">{summary}</p>
<p class="summary">Thresholds: ROC AUC floor {t.auc_floor:g}, calibration error max
{t.calibration_error_max:g}, PSI warn {t.psi_warn:g} / error {t.psi_error:g}, judged from
{t.min_labeled:,} labeled predictions a day.</p>
<h2>Quality over time</h2>
{charts}
<h2>Retraining</h2>
{retrain_table}
<h2>Daily numbers</h2>
{daily_table}
</body>
</html>
"""
    return _atomic_write(out, page.encode("utf-8"))
