"""Property: whatever the cells of a landing file hold, the gate ends with a verdict (issue 21).

Hypothesis replaces random cells of a small real flights file with odd values (NaN, infinities,
huge strings, bytes, numbers in text columns, text in number columns, blanks) and changes its
shape (columns dropped, duplicated, added; a footer line). The run must either pass with only
valid rows accepted, or fail with a message naming the file, column and rule; nothing else.
"""

import json
import math
import re
from pathlib import Path

import dagster as dg
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagster_project.defs.ingestion import gate_check_result
from dagster_project.ingestion import cleaning, expectations, landing, sources
from dagster_project.ingestion.gate import REJECTED_BY
from tests.ingestion.conftest import DAY

BASE = sources.day_rows("flights", DAY).head(20)
ODD = st.one_of(
    st.just(math.nan),
    st.sampled_from([math.inf, -math.inf, 1e308, -0.0, 2**63, -(2**70)]),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.just("N" * 200_000),
    st.just(""),
    st.sampled_from(["2012-03-05T14:00:00Z", "2013-03-05 09:00:00+05:00", "NaT", "null", "—"]),
    st.booleans(),
)
CELLS = st.lists(
    st.tuples(st.integers(0, len(BASE) - 1), st.sampled_from(list(BASE.columns)), ODD),
    max_size=6,
)
SHAPES = st.lists(
    st.sampled_from(["drop", "duplicate", "extra", "footer", "reverse", "head"]), max_size=2
)


def _mutate(cells, shapes, pick: int) -> pd.DataFrame:
    df = BASE.copy().astype(object)
    for row, col, value in cells:
        df.at[row, col] = value
    cols = list(df.columns)
    for shape in shapes:
        if shape == "drop":
            df = df.drop(columns=[cols[pick % len(cols)]], errors="ignore")
        elif shape == "duplicate":
            df[f"{cols[pick % len(cols)]}.1"] = df.iloc[:, pick % df.shape[1]]
        elif shape == "extra":
            df["Unnamed: 19"] = None
        elif shape == "reverse":
            df = df[list(reversed(df.columns))]
        elif shape == "head":
            df = df.head(1 + pick % len(df))
    return df


def _check(result, accepted: pd.DataFrame, file_name: str) -> None:
    json.dumps(
        {
            k: v.data
            for k, v in gate_check_result("raw_flights", result).metadata.items()
            if isinstance(v, dg.JsonMetadataValue)
        },
        allow_nan=False,
    )
    if not result.passed:
        message = result.message
        assert "table 'flights'" in message
        assert "rule " in message
        assert re.search(r"column '[^']+'|partition ", message), message
        assert file_name in message or "partition " in message, message
        return
    # passed: every accepted row is valid by the rules the downstream tables rely on
    validated = cleaning.validated_flights(accepted)
    assert set(validated["flight_date"]) <= {f"{DAY:%Y-%m-%d}"}
    assert validated["carrier"].str.fullmatch(r"[A-Z0-9]{2}").all()
    assert validated["origin"].isin(expectations.NYC_ORIGINS).all()
    assert validated["tailnum"].dropna().str.len().max() <= 10 if len(validated) else True


@settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(cells=CELLS, shapes=SHAPES, pick=st.integers(0, 100), through_csv=st.booleans())
def test_the_gate_always_ends_with_a_verdict(
    tmp_path_factory, gate, known, cells, shapes, pick, through_csv
):
    tmp = tmp_path_factory.mktemp("landing")
    df = _mutate(cells, shapes, pick)
    url = landing.daily_file_url(str(tmp), "flights", DAY)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    text = df.to_csv(index=False) + ("Total rows: 20\n" if "footer" in shapes else "")
    Path(url).write_text(text, encoding="utf-8", errors="surrogatepass")
    if through_csv:
        try:
            frame = landing.read_days(str(tmp), "flights", [DAY])
        except landing.LandingFileError as err:  # unreadable as a table: also a verdict
            error = str(err)
        else:
            error = ""
        if error:
            assert "2013-03-05.csv" in error
            return
    else:  # the frame as is: Python objects of mixed types in one column
        frame = df.reset_index(drop=True).assign(
            _source_file=url, _source_line=range(2, len(df) + 2), _partition=f"{DAY:%Y-%m-%d}"
        )
    result = gate.validate(expectations.FLIGHTS, frame, known)
    raw = frame.reset_index(drop=True).assign(**{REJECTED_BY: result.rejected.astype("string")})
    _check(result, raw, "2013-03-05.csv")


def test_a_footer_line_alone_fails_naming_file_column_rule(tmp_path, gate, known):
    url = landing.daily_file_url(str(tmp_path), "flights", DAY)
    Path(url).parent.mkdir(parents=True)
    Path(url).write_text(BASE.to_csv(index=False) + "Total rows: 20\n")
    result = gate.validate(
        expectations.FLIGHTS, landing.read_days(str(tmp_path), "flights", [DAY]), known
    )
    assert not result.passed
    assert "2013-03-05.csv" in result.message
    assert "column 'year'" in result.message
