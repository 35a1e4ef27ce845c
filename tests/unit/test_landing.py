"""Landing zone writer and readers."""

from datetime import date

import pandas as pd
import pytest

from dagster_project.ingestion import landing, sources


def test_land_day_writes_the_real_days_rows(tmp_path):
    counts = landing.land_day(str(tmp_path), date(2013, 3, 5))
    expected = sources.day_rows("flights", date(2013, 3, 5))
    assert counts["flights"] == len(expected) > 700
    df = landing.read_days(str(tmp_path), "flights", [date(2013, 3, 5)])
    assert len(df) == len(expected)
    assert df[landing.SOURCE_LINE].iloc[0] == 2
    assert df[landing.PARTITION].unique().tolist() == ["2013-03-05"]
    assert str(df["time_hour"].dtype) == "datetime64[ns]"


def test_reader_reads_a_users_own_files(tmp_path):
    own = pd.DataFrame({"carrier": ["ZZ"], "name": ["Zed Air"]})
    (tmp_path / "reference").mkdir()
    own.to_csv(tmp_path / "reference" / "airlines.csv", index=False)
    df = landing.read_reference(str(tmp_path), "airlines")
    assert df["carrier"].tolist() == ["ZZ"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"carrier,name\nAA,Caf\xe9\n", "not valid UTF-8"),
        (b'a,b\n"1,2\n3,4,5,6\n', "CSV"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, content, message):
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "airlines.csv").write_bytes(content)
    with pytest.raises(landing.LandingFileError, match=message) as err:
        landing.read_reference(str(tmp_path), "airlines")
    assert "airlines.csv" in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(
        landing.LandingFileError, match=r"flights/2013-01-09.csv: landing file not found"
    ):
        landing.read_days(str(tmp_path), "flights", [date(2013, 1, 9)])


def test_a_day_without_rows_keeps_the_columns_types(tmp_path):
    """2013-12-31 has no weather: its header-only file must not turn the range's integer
    columns into object (which failed the full-year weather gate)."""
    days = [date(2013, 12, 30), date(2013, 12, 31)]
    for day in days:
        landing.land_day(str(tmp_path), day)
    df = landing.read_days(str(tmp_path), "weather", days)
    assert len(df) == len(sources.day_rows("weather", days[0])) > 0
    assert str(df["year"].dtype) == "int64"
    assert str(df["hour"].dtype) == "int64"
