"""The gate against the export quirks that got through or crashed it (issue 21)."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from dagster_project.defs.ingestion import gate_check_result
from dagster_project.ingestion import cleaning, expectations, landing, sources
from dagster_project.ingestion.gate import REJECTED_BY
from tests.ingestion.conftest import DAY, rows


def _land(tmp_path: Path, text: str) -> pd.DataFrame:
    url = landing.daily_file_url(str(tmp_path), "flights", DAY)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    Path(url).write_text(text)
    return landing.read_days(str(tmp_path), "flights", [DAY])


def _metadata_is_strict_json(result) -> None:
    check = gate_check_result("raw_flights", result)
    for key, value in check.metadata.items():
        if isinstance(value, dg.JsonMetadataValue):
            text = json.dumps(value.data, allow_nan=False)
            assert len(text) < 20_000, key


def test_a_key_of_megabytes_is_quarantined_with_the_length_rule(tmp_path, gate, known, day_csv):
    df = pd.read_csv(pd.io.common.StringIO(day_csv))
    df.loc[4, "tailnum"] = "N" + "9" * 3_000_000
    df = _land(tmp_path, df.to_csv(index=False))
    result = gate.validate(expectations.FLIGHTS, df, known)
    assert result.passed  # one row of 965: under the share limit
    assert rows(result, "expect_column_value_lengths_to_be_between(tailnum)") == [4]
    _metadata_is_strict_json(result)
    described = [rr.describe("flights") for rr in result.rules if not rr.success]
    assert all(len(d) < 2_000 for d in described)
    raw = df.assign(**{REJECTED_BY: result.rejected.astype("string")})
    assert cleaning.validated_flights(raw)["tailnum"].str.len().max() <= 10


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("carrier", "U-", "expect_column_values_to_match_regex(carrier)"),
        ("dest", "ord", "expect_column_values_to_match_regex(dest)"),
        ("tailnum", "N1?2", "expect_column_values_to_match_regex(tailnum)"),
    ],
)
def test_a_malformed_code_is_quarantined(tmp_path, gate, known, day_csv, column, value, rule):
    df = pd.read_csv(pd.io.common.StringIO(day_csv))
    df.loc[9, column] = value
    result = gate.validate(expectations.FLIGHTS, _land(tmp_path, df.to_csv(index=False)), known)
    assert rows(result, rule) == [9]


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("year", 2012, "year/month/day vs partition day"),
        ("day", 6, "year/month/day vs partition day"),
        ("time_hour", "2012-03-05T14:00:00Z", "time_hour local date vs partition day"),
        ("sched_dep_time", 1, "sched_dep_time hour vs hour"),
        ("minute", 59, "sched_dep_time minute vs minute"),
    ],
)
def test_a_row_dated_otherwise_than_its_partition_is_quarantined(
    tmp_path, gate, known, day_csv, column, value, rule
):
    df = pd.read_csv(pd.io.common.StringIO(day_csv))
    df[column] = df[column].astype(object)
    df.loc[12, column] = value
    result = gate.validate(expectations.FLIGHTS, _land(tmp_path, df.to_csv(index=False)), known)
    assert 12 in rows(result, f"expect_column_pair_values_to_be_equal({rule})")
    assert result.rejected.notna().sum() == 1
    raw = _land(tmp_path, df.to_csv(index=False)).assign(
        **{REJECTED_BY: result.rejected.astype("string")}
    )
    validated = cleaning.validated_flights(raw)
    assert set(validated["flight_date"]) == {f"{DAY:%Y-%m-%d}"}


def test_the_real_day_passes_every_rule(tmp_path, gate, known, day_csv):
    result = gate.validate(expectations.FLIGHTS, _land(tmp_path, day_csv), known)
    assert result.passed, result.message
    assert result.rejected_rows == 0


def test_a_line_that_is_not_data_fails_the_gate_naming_file_column_rule(
    tmp_path, gate, known, day_csv
):
    df = _land(tmp_path, day_csv + "Total rows: 965\n")
    result = gate.validate(expectations.FLIGHTS, df, known)
    assert not result.passed
    message = result.message
    assert "2013-03-05.csv" in message
    assert "column 'year'" in message
    assert "expect_column_values_to_be_in_type_list" in message
    assert "line 967: 'Total rows: 965' is not a number" in message
    _metadata_is_strict_json(result)


@pytest.mark.parametrize("table", ["planes", "airlines", "airports"])
def test_reference_tables_pass_their_format_rules(tmp_path, gate, table):
    df = sources.load_table(table).assign(_source_file=f"{table}.csv", _partition="reference")
    df["_source_line"] = range(2, len(df) + 2)
    result = gate.validate(expectations.RULES[table], df, {})
    assert result.passed, result.message
    assert result.rejected_rows == 0
    df.loc[0, next(iter(expectations.RULES[table].formats))] = "x" * 5000
    assert gate.validate(expectations.RULES[table], df, {}).rejected.iloc[0]
