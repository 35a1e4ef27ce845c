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

from dagster_project.monitoring import outcomes
from dagster_project.monitoring.measures import Thresholds
from dagster_project.platform import storage

OUTCOME_COLOURS = {"promoted": "#2ca02c", "rejected": "#d62728"}
OTHER_OUTCOME_COLOUR = "#7f7f7f"
VERSION_COLOUR = "#9467bd"
LEVEL_COLOURS = {"ok": "#4c72b0", "warn": "#dd8452", "error": "#c44e52", "excluded": "#b0b0b0"}
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
    "shadow_roc_auc",
    "drift_score",
    "max_ratio",
    "prediction_psi",
    "candidate_roc_auc",
)
FLAG_COLUMNS = ("judged", "drift_alarm", "calibrated_alarm", "fixed_alarm")
SERVED_COLOUR = "#4c72b0"
FROZEN_COLOUR = "#dd8452"
CANDIDATE_COLOUR = "#8172b3"
ALARM_COLOURS = {"calibrated": "#c44e52", "fixed": "#8c564b"}
DROP_COLOUR = "#000000"
# The report's charts, in page order.
CHARTS = ("quality", "gain", "drift", "distribution", "traffic")


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

    calibrated = "ratio" in drift.columns
    top = drift.head(10) if len(drift) else drift
    if len(top):
        names = [str(f) for f in top["feature"]][::-1]
        column = "ratio" if calibrated else "psi"
        values = [_number(v) or 0.0 for v in top[column]][::-1]
        levels = [str(v) for v in top["level"]][::-1] if "level" in top else ["ok"] * len(names)
        colours = [LEVEL_COLOURS.get(lv, LEVEL_COLOURS["ok"]) for lv in levels]
        right.barh(names, values, color=colours)
        if calibrated:
            right.axvline(1.0, ls="--", c=LEVEL_COLOURS["error"], label="its error bar")
        else:
            right.axvline(
                t.psi_warn, ls="--", c=LEVEL_COLOURS["warn"], label=f"warn {t.psi_warn:g}"
            )
            right.axvline(
                t.psi_error, ls="--", c=LEVEL_COLOURS["error"], label=f"error {t.psi_error:g}"
            )
        right.legend(loc="lower right")
    else:
        right.text(0.5, 0.5, "no drift computed", ha="center", va="center", c="grey")
        right.set(xticks=[], yticks=[])
    if calibrated:
        right.set(
            title="Feature drift: top 10, distance / calibrated error bar",
            xlabel="KS (numbers) or TV (categories) distance / the feature's error bar",
        )
    else:
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
    """The history with every expected column, numbers as floats, flags as bools, by day."""
    h = history.copy()
    for c in HISTORY_COLUMNS:
        if c not in h.columns:
            h[c] = np.nan if c not in ("day", "model_version") else None
    h["day"] = [pd.Timestamp(str(d)).strftime("%Y-%m-%d") for d in h["day"]]
    for c in HISTORY_COLUMNS[2:]:
        h[c] = pd.to_numeric(h[c], errors="coerce").astype("float64")
    for c in FLAG_COLUMNS:
        default = c == "judged"
        h[c] = (
            [default if v is None or v is pd.NA or v != v else bool(v) for v in h[c]]
            if c in h.columns
            else [default] * len(h)
        )
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
        ax.axvline(pd.Timestamp(str(r["day"])), c=colour, lw=1.0, alpha=0.6)
    for day, _ in changes:
        ax.axvline(pd.Timestamp(day), c=VERSION_COLOUR, ls=":", lw=1.2)


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


def _daily(ax: Any, x: Any, values: pd.Series, colour: str, label: str) -> None:
    """A day-by-day series as a thin line with its 7-day rolling mean on top: readable over a
    week and over half a year (markers only while there are few days)."""
    few = len(values) <= 45
    ax.plot(
        x,
        values,
        lw=0.8,
        alpha=0.45 if not few else 0.9,
        c=colour,
        marker="o" if few else None,
        ms=3,
        label=f"{label} (daily)",
    )
    if not few:
        rolling = values.rolling(7, min_periods=3).mean()
        ax.plot(x, rolling, lw=2.0, c=colour, label=f"{label} (7-day mean)")


def _quality_chart(
    h: pd.DataFrame, retrains: list[dict[str, Any]], changes: list[tuple[str, str]], t: Thresholds
) -> bytes:
    plt = _pyplot()
    x = pd.to_datetime(h["day"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 6.5), sharex=True)
    _daily(top, x, h["roc_auc"], SERVED_COLOUR, "served ROC AUC")
    if h["shadow_roc_auc"].notna().any():
        _daily(top, x, h["shadow_roc_auc"], FROZEN_COLOUR, "frozen first champion")
    if h["candidate_roc_auc"].notna().any():  # the days a candidate was scored in shadow
        top.scatter(
            x, h["candidate_roc_auc"], s=12, marker="^", c=CANDIDATE_COLOUR, zorder=3,
            label="candidate in shadow (daily)",
        )  # fmt: skip
    top.axhline(t.auc_floor, ls="--", c="#c44e52", label=f"floor {t.auc_floor:g}")
    top.set(ylabel="ROC AUC", title="Quality against delayed labels: served vs frozen model")
    bottom.plot(x, h["brier"], lw=1.0, label="Brier score")
    bottom.plot(x, h["calibration_error"], lw=1.0, label="calibration error (ECE)")
    bottom.axhline(
        t.calibration_error_max, ls="--", c="#c44e52", label=f"ECE max {t.calibration_error_max:g}"
    )
    bottom.set(ylabel="lower is better")
    return _finish(fig, (top, bottom), retrains, changes)


def _gain_chart(
    h: pd.DataFrame,
    value: outcomes.RetrainingValue,
    retrains: list[dict[str, Any]],
    changes: list[tuple[str, str]],
) -> bytes:
    plt = _pyplot()
    x = pd.to_datetime(h["day"])
    gain = h["roc_auc"] - h["shadow_roc_auc"]
    fig, ax = plt.subplots(1, 1, figsize=(13, 3.6))
    colours = np.where(gain.fillna(0.0) >= 0, "#55a868", "#c44e52")
    ax.bar(x, gain.fillna(0.0), color=colours, width=0.9, label="daily gain (served - frozen)")
    ax.plot(x, gain.rolling(7, min_periods=3).mean(), c="black", lw=1.5, label="7-day mean")
    if value.mean_gain is not None:
        ax.axhline(value.mean_gain, c="#4c72b0", lw=1.2, label=f"mean {value.mean_gain:+.4f}")
        ax.axhspan(
            float(value.low or 0.0),
            float(value.high or 0.0),
            color="#4c72b0",
            alpha=0.15,
            label=f"{value.level:.0%} interval (block bootstrap, {value.block_days} d blocks)",
        )
    ax.axhline(0.0, c="grey", lw=0.8)
    ax.set(ylabel="ROC AUC gain", title="The value of retraining: served minus frozen, per day")
    return _finish(fig, (ax,), retrains, changes)


def _shade(ax: Any, x: Any, flags: Any, colour: str, label: str) -> None:
    """Days where ``flags`` is true, as a vertical band per day."""
    shown = False
    for day, flag in zip(x, flags, strict=True):
        if flag:
            ax.axvspan(
                day - pd.Timedelta(hours=12),
                day + pd.Timedelta(hours=12),
                color=colour,
                alpha=0.18,
                lw=0,
                label=None if shown else label,
            )
            shown = True


def _drift_chart(
    h: pd.DataFrame,
    drops: pd.DataFrame,
    retrains: list[dict[str, Any]],
    changes: list[tuple[str, str]],
    t: Thresholds,
) -> bytes:
    plt = _pyplot()
    x = pd.to_datetime(h["day"])
    fig, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(13, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.2]}
    )
    top.plot(x, h["drift_score"], lw=1.2, c=ALARM_COLOURS["calibrated"], label="drifted importance")
    top.axhline(
        t.drift_importance_share,
        ls="--",
        c="black",
        lw=1,
        label=f"alarm at {t.drift_importance_share:.0%}",
    )
    _shade(top, x, h["calibrated_alarm"], ALARM_COLOURS["calibrated"], "calibrated alarm")
    top.set(
        ylabel="share of importance",
        ylim=(-0.02, 1.02),
        title="Drift: calibrated rule (importance beyond each feature's own bar) and fixed rule "
        "(max PSI)",
    )
    middle.plot(x, h["max_psi"].clip(lower=1e-3), lw=1.2, c=ALARM_COLOURS["fixed"], label="max PSI")
    middle.axhline(t.psi_error, ls="--", c="black", lw=1, label=f"fixed error {t.psi_error:g}")
    _shade(middle, x, h["fixed_alarm"], ALARM_COLOURS["fixed"], "fixed alarm")
    middle.set(ylabel="PSI (log)", yscale="log")
    dropped = set(drops.loc[drops["drop"], "day"]) if len(drops) else set()
    rows: list[tuple[str, list[bool], str]] = [
        ("calibrated alarm", list(h["calibrated_alarm"]), ALARM_COLOURS["calibrated"]),
        ("fixed alarm", list(h["fixed_alarm"]), ALARM_COLOURS["fixed"]),
        ("quality drop", [d in dropped for d in h["day"]], DROP_COLOUR),
    ]
    for i, (label, flags, colour) in enumerate(rows):
        days = [d for d, f in zip(x, flags, strict=True) if f]
        bottom.scatter(days, [i] * len(days), marker="|", s=120, c=colour, label=label)
    bottom.set(yticks=range(len(rows)), yticklabels=[r[0] for r in rows], ylim=(-0.6, 2.6))
    return _finish(fig, (top, middle, bottom), retrains, changes)


def _distribution_chart(h: pd.DataFrame, t: Thresholds) -> bytes:
    plt = _pyplot()
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.4))
    psi = h["max_psi"].dropna()
    if len(psi):
        left.hist(np.log10(psi.clip(lower=1e-3)), bins=30, color=ALARM_COLOURS["fixed"])
        left.axvline(np.log10(t.psi_error), ls="--", c="black", label=f"error {t.psi_error:g}")
        left.legend(fontsize=8)
    left.set(title="fixed rule: max PSI per day", xlabel="log10 PSI", ylabel="days")
    score = h["drift_score"].dropna()
    if len(score):
        middle.hist(score, bins=np.linspace(0, 1, 21), color=ALARM_COLOURS["calibrated"])
        middle.axvline(t.drift_importance_share, ls="--", c="black", label="alarm")
        middle.legend(fontsize=8)
    middle.set(title="calibrated rule: drifted importance per day", xlabel="share", ylabel="days")
    ratio = h["max_ratio"].dropna()
    if len(ratio):
        right.hist(np.log10(ratio.clip(lower=1e-3)), bins=30, color="#4c72b0")
        right.axvline(0.0, ls="--", c="black", label="at its error bar")
        right.legend(fontsize=8)
    right.set(
        title="largest distance over its own bar per day",
        xlabel="log10 (distance / error bar)",
        ylabel="days",
    )
    fig.tight_layout()
    return _png(fig)


def _traffic_chart(
    h: pd.DataFrame, retrains: list[dict[str, Any]], changes: list[tuple[str, str]], t: Thresholds
) -> bytes:
    plt = _pyplot()
    x = pd.to_datetime(h["day"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 5.5), sharex=True)
    top.bar(x, h["volume"].fillna(0.0), color="#8da0cb", width=0.9, label="predictions")
    top.set(ylabel="predictions", title="Traffic and outcomes")
    _daily(bottom, x, h["positive_rate"], "#4c72b0", "actual delayed share")
    bottom.plot(
        x, h["predicted_positive_rate"], lw=1.0, c="#dd8452", label="predicted delayed share"
    )
    bottom.set(ylabel="share")
    return _finish(fig, (top, bottom), retrains, changes)


def _finish(
    fig: Any, axes: tuple[Any, ...], retrains: list[dict[str, Any]], changes: list[tuple[str, str]]
) -> bytes:
    """Retrain and version-change markers, legends outside the plot, month ticks over long
    spans, grid; the PNG bytes."""
    import matplotlib.dates as mdates

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
    low, high = axes[-1].get_xlim()
    if high - low > 60:  # months on the axis, weeks as minor ticks
        axes[-1].xaxis.set_major_locator(mdates.MonthLocator())
        axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%b %Y"))
        axes[-1].xaxis.set_minor_locator(mdates.WeekdayLocator(byweekday=mdates.MO))
    else:
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


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


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
.note { color: #555; font-size: 0.9em; }
"""


def _bar_text(q: float) -> str:
    return (
        "beyond the most drifted window of the reference"
        if q >= 1.0
        else f"at the {q:g} quantile of the reference's windows"
    )


def _thresholds_text(t: Thresholds, assessment: outcomes.Assessment) -> str:
    return (
        f"Quality: ROC AUC floor {t.auc_floor:g}, calibration error max "
        f"{t.calibration_error_max:g}, judged from {t.min_labeled:,} labeled predictions a day. "
        f"Drift (the alarm that drove retraining: <b>{_e(t.drift_mode)}</b>). Calibrated rule: "
        f"each feature's distance from the champion's reference (KS for numbers, total "
        f"variation for categories, over the trailing {t.drift_window_days} days) errs "
        f"{_bar_text(t.drift_error_quantile)} and warns {_bar_text(t.drift_warn_quantile)}, "
        f"the distance of each run of as many days inside it from the rest (never below "
        f"{t.drift_floor:g}), with KS / chi-square p &lt; {t.ks_pvalue:g}; the alarm fires when "
        f"the features at error level carry at least {t.drift_importance_share:.0%} of the "
        "champion's permutation importance"
        + (" or the score distribution errs" if t.prediction_in_alarm else "")
        + "; the calendar month is shown but not alarmed. Fixed rule (before calibration): PSI "
        f"&ge; {t.psi_error:g} with p &lt; {t.ks_pvalue:g} on an important feature. A quality "
        f"drop: {_e(assessment.rule.describe())}; an alarm counts as followed by a drop "
        f"within {t.alarm_horizon_days} days."
    )


def _alarm_table(assessment: outcomes.Assessment) -> str:
    if not assessment.alarms:
        return '<p class="empty">no alarms recorded in this period</p>'
    rows = []
    for name, score in assessment.alarms.items():
        mark = " (drove retraining)" if name == assessment.driving else " (recorded beside)"
        rows.append(
            "<tr>"
            f'<td class="text">{_e(name)}{_e(mark)}</td>'
            f"<td>{score.alarms:,}</td><td>{score.followed:,}</td>"
            f"<td>{_e(_share(score.precision))}</td><td>{_e(_share(score.base_rate))}</td>"
            f"<td>{score.drops:,}</td><td>{score.preceded:,}</td>"
            f"<td>{_e(_share(score.recall))}</td>"
            f'<td class="text">{_e(", ".join(score.missed[:12]) or "none")}'
            f"{_e(' ...' if len(score.missed) > 12 else '')}</td>"
            "</tr>"
        )
    return (
        "<table><tr><th>alarm rule</th><th>alarm days</th><th>followed by a drop</th>"
        "<th>precision</th><th>base rate</th><th>drops</th><th>preceded by an alarm</th>"
        "<th>recall</th><th>drops no alarm preceded (onsets)</th></tr>" + "".join(rows) + "</table>"
    )


def _retrain_table(events: list[dict[str, Any]], assessment: outcomes.Assessment) -> str:
    if not events:
        return '<p class="empty">no retraining in this period</p>'
    after = {str(p["version"]): p for p in assessment.promotions}
    n = assessment.promotion_days
    rows = []
    for r in events:
        p = after.get(str(r.get("version"))) if r.get("outcome") == "promoted" else None
        rows.append(
            "<tr>"
            f'<td class="text">{_e(r.get("day"))}</td>'
            f'<td class="text">{_e(r.get("reason"))}</td>'
            f'<td class="text {_e(r.get("outcome"))}">{_e(r.get("outcome"))}'
            + (f" (rolled back {_e(r['rolled_back'])})" if r.get("rolled_back") else "")
            + "</td>"
            f"<td>{_e(_fmt(r.get('auc_before')))} &rarr; {_e(_fmt(r.get('auc_after')))}</td>"
            f'<td class="text">{_e(r.get("version"))}</td>'
            + (
                f"<td>{_e(_fmt(p['served_auc']))}</td><td>{_e(_fmt(p['frozen_auc']))}</td>"
                f"<td>{_e(p['first_served'])} ({p['days']} d)</td>"
                if p
                else "<td></td><td></td><td></td>"
            )
            + "</tr>"
        )
    return (
        "<table><tr><th>day</th><th>why</th><th>outcome</th>"
        "<th>holdout ROC AUC champion &rarr; challenger</th><th>version</th>"
        f"<th>served AUC, next {n} d</th><th>frozen AUC, next {n} d</th>"
        "<th>from (days judged)</th></tr>" + "".join(rows) + "</table>"
    )


def assess(
    history: pd.DataFrame, retrains: list[dict[str, Any]], thresholds: Thresholds | None = None
) -> outcomes.Assessment:
    """What the report judges (:func:`outcomes.assess`) on the history as the report reads it."""
    events = sorted(retrains, key=lambda r: str(r.get("day") or ""))
    return outcomes.assess(_history_frame(history), events, thresholds or Thresholds())


def _skew_cell(row: Any) -> str:
    """The day's training/serving skew: cells of served feature vectors that differ from the
    offline store's rows (`feature_skew`), of all compared; blank where it was not measured."""
    cells = getattr(row, "skew_cells", None)
    differing = getattr(row, "skew_differing", None)
    if cells is None or cells != cells or differing is None or differing != differing:
        return '<td class="text"></td>'
    bad = ' class="bad"' if differing else ""
    return f"<td{bad}>{int(differing):,} of {int(cells):,}</td>"


def render_report(
    history: pd.DataFrame,
    retrains: list[dict[str, Any]],
    out: Target,
    title: str = "flight_delay monitoring",
    thresholds: Thresholds | None = None,
    scope: str | None = None,
) -> Target:
    """Write one self-contained HTML monitoring report to ``out`` (a path or a URL) and return
    it.

    ``history`` has one row per day (``day``, ``roc_auc``, ``brier``, ``calibration_error``,
    ``positive_rate``, ``predicted_positive_rate``, ``volume``, ``max_psi``,
    ``model_version``, and from the calibrated monitoring ``shadow_roc_auc`` (the frozen
    model's AUC on the same flights), ``drift_score``, ``max_ratio``, ``judged``,
    ``drift_alarm``, ``calibrated_alarm``, ``fixed_alarm``; a missing column or value shows as
    n/a). ``retrains`` items carry ``day``, ``reason``, ``outcome``, ``auc_before``,
    ``auc_after``, ``version`` (any may be None). ``scope`` says which days and retrains these
    are (e.g. the replay's id and window).

    The report holds a header (date range, counts, alarms with precision and recall, the mean
    AUC gain over the frozen model with its interval), the thresholds, charts (served vs frozen
    ROC AUC with Brier and calibration error; the daily gain; drift under both rules with the
    alarm days and quality drops; the distribution of the drift statistics; traffic), all with
    retrain days (green promoted, red rejected, grey otherwise) and model-version changes
    (dotted) marked, the alarm table, the retrain table (each promotion with the served and
    frozen AUC over the following days) and the daily table (breaches highlighted).
    """
    t = thresholds or Thresholds()
    h = _history_frame(history)
    events = sorted(retrains, key=lambda r: str(r.get("day") or ""))
    changes = _version_changes(h)
    assessment = assess(history, retrains, t)
    value = assessment.value

    if len(h):
        first, last = h["day"].iloc[0], h["day"].iloc[-1]
        versions = sorted({v for v in map(_text, h["model_version"]) if v is not None})
        below = int((h["roc_auc"] < t.auc_floor).sum())
        promoted = sum(1 for r in retrains if r.get("outcome") == "promoted")
        driving = assessment.alarms.get(assessment.driving)
        parts = [
            f"{_e(first)} to {_e(last)}",
            f"{len(h):,} days",
            f"{int(h['volume'].fillna(0).sum()):,} predictions",
            f"{len(retrains):,} retrains ({promoted:,} promoted)",
            f"model versions {_e(', '.join(versions) or 'n/a')}",
            f"{below:,} days with ROC AUC below {t.auc_floor:g}",
        ]
        if driving is not None:
            parts.append(
                f"{driving.alarms:,} alarm days ({_e(assessment.driving)}), precision "
                f"{_share(driving.precision)} (base rate {_share(driving.base_rate)}), recall "
                f"{_share(driving.recall)} of {driving.drops:,} quality drops"
            )
        parts.append(_e(value.describe()))
        summary = " &middot; ".join(parts)
        charts = (
            _img(_quality_chart(h, events, changes, t), "served and frozen ROC AUC per day")
            + _img(_gain_chart(h, value, events, changes), "daily ROC AUC gain over the frozen")
            + _img(_drift_chart(h, assessment.drops, events, changes, t), "drift and alarms")
            + _img(_distribution_chart(h, t), "distribution of the daily drift statistics")
            + _img(_traffic_chart(h, events, changes, t), "volume and delayed share per day")
        )
    else:
        summary = "no monitored days yet"
        charts = '<p class="empty">no monitored days yet: nothing to chart</p>'

    by_day: dict[str, list[str]] = {}
    for r in events:
        if r.get("day") is not None:
            by_day.setdefault(str(r["day"])[:10], []).append(str(r.get("outcome")))
    changed = dict(changes)
    dropped = dict(zip(assessment.drops["day"], assessment.drops["why"], strict=True))
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
        if row.drift_alarm:
            notes.append("drift alarm")
        if dropped.get(str(row.day)):
            notes.append(f"quality drop: {dropped[str(row.day)]}")
        daily_rows.append(
            "<tr>"
            f'<td class="text">{_e(row.day)}</td>'
            f'<td class="text">{_e(_text(row.model_version))}</td>'
            f"{_cell(row.volume, digits=0)}"
            f"{_cell(row.positive_rate)}"
            f"{_cell(row.predicted_positive_rate)}"
            f"{_cell(auc, bad=auc is not None and auc < t.auc_floor)}"
            f"{_cell(row.shadow_roc_auc)}"
            f"{_cell(row.brier)}"
            f"{_cell(ece, bad=ece is not None and ece > t.calibration_error_max)}"
            f"{_cell(max_psi, bad=max_psi is not None and max_psi >= t.psi_error)}"
            f"{_cell(row.drift_score, bad=bool(row.calibrated_alarm), digits=2)}"
            f"{_skew_cell(row)}"
            f'<td class="text">{_e("; ".join(notes))}</td>'
            "</tr>"
        )
    daily_table = (
        (
            "<table><tr><th>day</th><th>model version</th><th>volume</th>"
            "<th>delayed share</th><th>predicted delayed share</th><th>ROC AUC</th>"
            "<th>frozen ROC AUC</th><th>Brier</th><th>calibration error</th><th>max PSI</th>"
            "<th>drifted importance</th><th>skew (cells differing)</th><th>events</th></tr>"
            + "".join(daily_rows)
            + "</table>"
        )
        if daily_rows
        else '<p class="empty">no monitored days yet</p>'
    )
    scope_line = f'<p class="note">{_e(scope)}</p>' if scope else ""

    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{_e(title)}</h1>
{scope_line}
<p class="summary">{summary}</p>
<p class="summary">Thresholds: {_thresholds_text(t, assessment)}</p>
<h2>Quality over time</h2>
{charts}
<h2>Alarms against outcomes</h2>
<p class="note">Every day's drift alarm under both rules, judged against the quality drops that
followed it. A drop: {_e(assessment.rule.describe())}; a run of such days is one drop, from its
first day. Precision is the share of alarm days followed by the start of a drop within
{t.alarm_horizon_days} days, recall the share of drops an alarm preceded within as many; the
base rate is the share of all days followed by the start of a drop within as many (what an
alarm that is always on would score).</p>
{_alarm_table(assessment)}
<h2>Retraining</h2>
<p class="note">{_e(value.describe())}. The frozen model is the champion the replay started
with, scoring the same logged features in process (nothing served). For each promotion: the
mean daily ROC AUC of the served and the frozen model over the {assessment.promotion_days} days
from the first day the new version served.</p>
{_retrain_table(events, assessment)}
<h2>Daily numbers</h2>
{daily_table}
</body>
</html>
"""
    return _atomic_write(out, page.encode("utf-8"))
