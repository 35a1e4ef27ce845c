"""Harmless export quirks pass the gate to byte-identical validated partitions (issue 21)."""

import io
from pathlib import Path

import pandas as pd
import pytest

from dagster_project.ingestion import cleaning, expectations, landing, sources
from dagster_project.ingestion.gate import REJECTED_BY
from tests.ingestion.conftest import DAY

CLEAN = {"flights": cleaning.validated_flights, "weather": cleaning.validated_weather}


def _offset_timestamps(text: str) -> str:
    df = pd.read_csv(io.StringIO(text))
    local = pd.to_datetime(df["time_hour"], utc=True).dt.tz_convert("America/New_York")
    df["time_hour"] = local.map(lambda t: t.isoformat())  # 2013-03-05T09:00:00-05:00
    return df.to_csv(index=False)


def _reordered(text: str) -> str:
    df = pd.read_csv(io.StringIO(text))
    return df[list(reversed(df.columns))].to_csv(index=False)


QUIRKS = {
    "bom": lambda t: "\ufeff" + t,
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "reordered_columns": _reordered,
    "offset_timestamps": _offset_timestamps,
}


def _validated_bytes(tmp: Path, table: str, text: str, gate, known) -> bytes:
    url = landing.daily_file_url(str(tmp), table, DAY)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    Path(url).write_bytes(text.encode("utf-8"))
    df = landing.read_days(str(tmp), table, [DAY])
    result = gate.validate(expectations.RULES[table], df, known)
    assert result.passed, result.message
    assert result.rejected_rows == 0
    raw = df.assign(**{REJECTED_BY: result.rejected.astype("string")})
    buf = io.BytesIO()
    validated = CLEAN[table](raw).drop(columns=[landing.PARTITION], errors="ignore")
    validated.to_parquet(buf, index=False)
    return buf.getvalue()


@pytest.mark.parametrize("table", ["flights", "weather"])
def test_harmless_quirks_give_byte_identical_validated_partitions(tmp_path, gate, known, table):
    text = sources.day_rows(table, DAY).to_csv(index=False)
    expected = _validated_bytes(tmp_path / "plain", table, text, gate, known)
    for name, quirk in QUIRKS.items():
        got = _validated_bytes(tmp_path / name, table, quirk(text), gate, known)
        assert got == expected, f"{name}: validated {table} partition differs"
