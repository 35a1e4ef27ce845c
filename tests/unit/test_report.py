"""The per-day PNG and the self-contained HTML monitoring report."""

from __future__ import annotations

import base64
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dagster_project.monitoring import measures, report
from dagster_project.monitoring.measures import Thresholds

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _quality_and_drift() -> tuple[dict, pd.DataFrame]:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=1000)
    day = pd.DataFrame(
        {"probability": p, "delayed": p >= 0.5, "label": (rng.uniform(size=1000) < p).astype(int)}
    )
    quality = measures.daily_quality(day, Thresholds())
    ref = pd.DataFrame({f"x{i}": rng.normal(size=2000) for i in range(12)})
    cur = pd.DataFrame({f"x{i}": rng.normal(loc=i / 10, size=2000) for i in range(12)})
    ref["carrier"] = rng.choice(["AA", "UA"], 2000)
    cur["carrier"] = rng.choice(["AA", "UA", "B6"], 2000)
    drift = measures.feature_drift(ref, cur, list(ref.columns[:12]), ["carrier"], Thresholds())
    return quality, drift


def test_plot_day_writes_a_png(tmp_path):
    quality, drift = _quality_and_drift()
    out = report.plot_day("2013-08-01", quality, drift, tmp_path / "days" / "2013-08-01.png")
    assert out == tmp_path / "days" / "2013-08-01.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000
    assert [p.name for p in out.parent.iterdir()] == ["2013-08-01.png"]  # no temp file left


def test_plot_day_without_labels_or_drift(tmp_path):
    quality = measures.daily_quality(
        pd.DataFrame({"probability": [0.2, 0.7], "delayed": [False, True], "label": [np.nan] * 2}),
        Thresholds(),
    )
    assert quality["roc_auc"] is None
    empty = measures.feature_drift(pd.DataFrame(), pd.DataFrame(), ["x"], [], Thresholds())
    out = report.plot_day("2013-08-02", quality, empty, tmp_path / "d.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


def _history(days: int = 10) -> pd.DataFrame:
    day = pd.date_range("2013-08-01", periods=days, freq="D").strftime("%Y-%m-%d")
    auc = np.linspace(0.74, 0.6, days)
    auc[days // 3] = np.nan  # a day without both classes
    return pd.DataFrame(
        {
            "day": day,
            "roc_auc": auc,
            "brier": np.linspace(0.17, 0.2, days),
            "calibration_error": np.linspace(0.02, 0.1, days),
            "positive_rate": np.linspace(0.2, 0.3, days),
            "predicted_positive_rate": np.linspace(0.22, 0.25, days),
            "volume": np.full(days, 900),
            "max_psi": np.linspace(0.05, 0.4, days),
            "model_version": [str(1 + (i >= 6)) for i in range(days)],
        }
    )


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_render_report_is_self_contained_escaped_and_lists_retrains(tmp_path):
    retrains: list[dict[str, Any]] = [
        {
            "day": "2013-08-07",
            "reason": "ROC AUC 0.61 below floor 0.65 <script>alert(1)</script>",
            "outcome": "promoted",
            "auc_before": 0.61,
            "auc_after": 0.7234,
            "version": "2",
        },
        {
            "day": "2013-08-04",
            "reason": "drift: wind_gust PSI 0.31",
            "outcome": "rejected",
            "auc_before": None,
            "auc_after": 0.6,
            "version": None,
        },
    ]
    out = report.render_report(_history(), retrains, tmp_path / "r" / "report.html", title="A & B")
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>A &amp; B</title>" in page
    assert "2013-08-01 to 2013-08-10" in page
    assert "0.610 &rarr; 0.723" in page
    assert "n/a &rarr; 0.600" in page
    assert "drift: wind_gust PSI 0.31" in page
    assert page.index("2013-08-04</td>") < page.index("2013-08-07</td>")  # retrains by day
    assert "retrain promoted" in page  # marked on its day in the daily table
    assert "now v2" in page  # the model-version change
    images = _images(page)
    assert len(images) == len(report.CHARTS)
    assert all(i.startswith(PNG_MAGIC) and len(i) > 5_000 for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing external to fetch


def test_render_report_without_retrains_and_with_missing_auc(tmp_path):
    history = _history(3)
    history["roc_auc"] = [None, np.nan, 0.7]
    out = report.render_report(history, [], tmp_path / "report.html")
    page = out.read_text(encoding="utf-8")
    assert "no retraining in this period" in page
    daily = page[page.index("<h2>Daily numbers</h2>") :]
    assert daily.count("<tr>") == 3 + 1  # header plus one row per day
    assert "n/a" in page
    assert len(_images(page)) == len(report.CHARTS)


def test_render_report_flags_breaches_and_copes_with_no_days(tmp_path):
    page = report.render_report(_history(), [], tmp_path / "a.html").read_text()
    assert 'class="bad">0.600</td>' in page  # the last day's AUC is below the 0.65 floor
    empty = pd.DataFrame(columns=list(report.HISTORY_COLUMNS))
    page = report.render_report(empty, [], tmp_path / "b.html").read_text()
    assert "no monitored days yet" in page


def _replayed(days: int = 184) -> pd.DataFrame:
    """Half a year of monitored days: a frozen model, a served one that is promoted twice,
    the fixed alarm always on, the calibrated one on a few days before a drop."""
    rng = np.random.default_rng(3)
    h = _history(days)
    h["roc_auc"] = 0.72 + rng.normal(0, 0.015, days)
    h.loc[100:106, "roc_auc"] = 0.60  # a real drop (a bad week), announced by the alarm
    h["shadow_roc_auc"] = h["roc_auc"] - np.where(np.arange(days) >= 40, 0.02, 0.0)
    h["shadow_version"] = "1"
    # v2 was the candidate, scored in shadow, for the 14 days before it was promoted
    shadow = (np.arange(days) >= 26) & (np.arange(days) < 40)
    h["candidate_roc_auc"] = np.where(shadow, h["roc_auc"] + 0.01, np.nan)
    h["model_version"] = ["1" if i < 40 else "2" if i < 120 else "3" for i in range(days)]
    h["judged"] = True
    h["fixed_alarm"] = True
    h["calibrated_alarm"] = [i in (96, 97) for i in range(days)]
    h["drift_alarm"] = h["calibrated_alarm"]
    h["drift_score"] = np.where(h["calibrated_alarm"], 0.4, 0.02)
    h["max_ratio"] = np.where(h["calibrated_alarm"], 1.5, 0.4)
    h["max_psi"] = 8.26
    return h


def test_render_report_judges_alarms_and_values_retraining(tmp_path):
    retrains = [
        {
            "day": "2013-09-08",
            "reason": "drift",
            "outcome": "promoted",
            "version": "2",
            "auc_before": 0.7,
            "auc_after": 0.72,
        },
        {
            "day": "2013-11-27",
            "reason": "labels",
            "outcome": "promoted",
            "version": "3",
            "auc_before": 0.7,
            "auc_after": 0.73,
        },
    ]
    t = Thresholds(alarm_horizon_days=7, drop_auc_margin=0.05)
    history = _replayed()
    page = report.render_report(history, retrains, tmp_path / "r.html", thresholds=t).read_text()
    assessment = report.assess(history, retrains, t)
    calibrated, fixed = assessment.alarms["calibrated"], assessment.alarms["fixed"]
    assert (calibrated.alarms, calibrated.followed) == (2, 2)
    assert calibrated.drops >= 1
    (onset,) = [d for d in assessment.drops.loc[assessment.drops["onset"], "day"] if d > "2013-09"]
    assert "2013-11-09" <= onset <= "2013-11-15"  # the bad week pulls the weekly mean down
    assert onset not in calibrated.missed
    assert fixed.alarms == 184
    assert fixed.precision == pytest.approx(fixed.base_rate)  # always on
    # the alarm table, with the rule that drove retraining and the thresholds that made it
    assert "calibrated (drove retraining)" in page
    assert "fixed (recorded beside)" in page
    assert f"<td>{calibrated.alarms:,}</td><td>{calibrated.followed:,}</td>" in page
    assert "the most drifted window of the reference" in page
    assert "within 7 days" in page
    assert assessment.rule.describe() in page
    # served vs frozen: the mean gain with its interval, and each promotion's next 14 days
    value = assessment.value
    assert value.mean_gain == pytest.approx((184 - 40) / 184 * 0.02, abs=0.002)
    assert f"{value.mean_gain:+.4f}" in page
    assert f"{value.low:+.4f}" in page
    assert "served AUC, next 14 d" in page
    (second, _third) = assessment.promotions
    assert second["first_served"] == "2013-09-10"
    assert second["days"] == 14
    assert second["served_auc"] - second["frozen_auc"] == pytest.approx(0.02)
    assert f"<td>{second['served_auc']:,.3f}</td>" in page
    images = _images(page)
    assert len(images) == len(report.CHARTS)
    assert all(i.startswith(PNG_MAGIC) for i in images)


def test_half_a_year_of_days_is_drawn_as_lines_with_weekly_means():
    h = report._history_frame(_replayed())
    import matplotlib.dates as mdates

    fig_png = report._quality_chart(h, [], [], Thresholds())
    assert fig_png.startswith(PNG_MAGIC)
    # the daily series get a 7-day mean and no markers over a long span
    plt = report._pyplot()
    fig, ax = plt.subplots()
    report._daily(ax, pd.to_datetime(h["day"]), h["roc_auc"], "b", "AUC")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["AUC (daily)", "AUC (7-day mean)"]
    assert lines[0].get_marker() in ("None", None, "")
    report._finish(fig, (ax,), [], [])
    assert isinstance(ax.xaxis.get_major_locator(), mdates.MonthLocator)
