"""Feature functions: values and strict as-of timestamps."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dagster_project.features import engineering

UTC = "UTC"


def _flight(carrier, route, sched, delay):
    sched_ts = pd.Timestamp(sched, tz="America/New_York").tz_convert(UTC)
    departed = sched_ts + pd.Timedelta(minutes=delay) if delay is not None else pd.NaT
    return {
        "flight_id": f"{sched}_{carrier}",
        "carrier": carrier,
        "route": route,
        "origin": route.split("-")[0],
        "tailnum": "N1",
        "distance": 1000.0,
        "sched_dep_ts": sched_ts,
        "departed_at": departed,
        "dep_delay": delay,
        "cancelled": delay is None,
    }


@pytest.fixture
def flights():
    rows = [
        _flight("AA", "JFK-LAX", "2013-01-01 08:00", 30),  # delayed
        _flight("AA", "JFK-LAX", "2013-01-01 12:00", 0),
        _flight("AA", "JFK-LAX", "2013-01-01 23:50", 20),  # departs 00:10 on Jan 2
        _flight("AA", "JFK-LAX", "2013-01-02 09:00", 100),
        _flight("AA", "JFK-LAX", "2013-01-03 09:00", None),  # cancelled
    ]
    df = pd.DataFrame(rows)
    df["departed_at"] = pd.to_datetime(df["departed_at"], utc=True)
    return df


def test_carrier_stats_use_only_flights_departed_before_the_day(flights):
    stats = engineering.carrier_delay_stats(flights, window_days=7).set_index(engineering.TS)
    jan2 = stats.loc[pd.Timestamp("2013-01-02", tz="America/New_York").tz_convert(UTC)]
    # Jan 2 00:00 local sees only the two flights that departed on Jan 1 (not the 23:50 one,
    # which pushed back at 00:10 on Jan 2).
    assert jan2["carrier_departures_7d"] == 2
    assert jan2["carrier_mean_dep_delay_7d"] == pytest.approx(15.0)
    assert jan2["carrier_delayed_share_7d"] == pytest.approx(0.5)
    jan3 = stats.loc[pd.Timestamp("2013-01-03", tz="America/New_York").tz_convert(UTC)]
    assert jan3["carrier_departures_7d"] == 4
    assert jan3["carrier_delayed_share_7d"] == pytest.approx(0.75)


def test_trailing_window_drops_old_days(flights):
    stats = engineering.route_delay_stats(flights, window_days=1).set_index(engineering.TS)
    jan3 = stats.loc[pd.Timestamp("2013-01-03", tz="America/New_York").tz_convert(UTC)]
    assert jan3["route_departures_1d"] == 2  # the 00:10 pushback and the 09:00 one of Jan 2
    assert jan3["route_mean_dep_delay_1d"] == pytest.approx(60.0)


def test_no_stats_row_stamped_before_its_last_observation(flights):
    stats = engineering.carrier_delay_stats(flights)
    done = flights.dropna(subset=["departed_at"])
    first_departure = done["departed_at"].min()
    assert (stats[engineering.TS] > first_departure).all()


def test_origin_weather_rolls_precip_over_three_hours():
    ts = pd.date_range("2013-01-01 06:00", periods=5, freq="h", tz=UTC)
    weather = pd.DataFrame({"origin": "JFK", "time_hour": ts, "precip": [0.1, 0.2, 0.0, 0.3, 0.0]})
    for col in engineering.WEATHER_COLUMNS:
        if col not in weather:
            weather[col] = 1.0
    out = engineering.origin_weather(weather)
    assert out["precip_3h"].round(3).tolist() == [0.1, 0.3, 0.3, 0.5, 0.3]
    assert (out[engineering.TS] == ts).all()


def test_plane_specs_age_and_static_stamp():
    planes = pd.DataFrame(
        {"tailnum": ["N1", "N2"], "year": [2000.0, np.nan], "seats": [100, 50], "engines": [2, 1]}
    )
    out = engineering.plane_specs(planes)
    assert out["plane_age"].tolist()[0] == 13.0
    assert np.isnan(out["plane_age"].tolist()[1])
    assert (out[engineering.TS] < pd.Timestamp("2013-01-01", tz=UTC)).all()


def test_request_time_features_are_local_time():
    # 2013-07-04 17:30 New York (EDT) = 21:30 UTC
    epoch = int(pd.Timestamp("2013-07-04 21:30", tz=UTC).timestamp())
    out = engineering.request_time_features(
        pd.DataFrame({"sched_dep_epoch_s": [epoch], "distance": [0.0]})
    )
    assert out.iloc[0].to_dict() == {
        "dep_hour": 17,
        "dep_dow": 3,
        "dep_month": 7,
        "log_distance": 0.0,
    }


def test_training_entities_prediction_time_and_label(flights):
    ent = engineering.training_entities(flights, "lead", prediction_lead_minutes=120)
    assert len(ent) == 4  # cancelled flight dropped
    assert (ent[engineering.TS] == flights["sched_dep_ts"].iloc[:4] - pd.Timedelta(hours=2)).all()
    default = engineering.training_entities(flights)  # lead 60, the v2 default
    assert (
        default[engineering.TS] == flights["sched_dep_ts"].iloc[:4] - pd.Timedelta(hours=1)
    ).all()
    local = flights["sched_dep_ts"].iloc[:4].dt.tz_convert("America/New_York")
    assert (
        default["plane_day"]
        == (
            flights["tailnum"].iloc[:4].fillna("UNKNOWN")
            + "|"
            + local.dt.strftime("%Y-%m-%d").to_numpy()
        ).to_numpy()
    ).all()
    assert (
        default["carrier_origin"]
        == (flights["carrier"] + "|" + flights["origin"]).iloc[:4].to_numpy()
    ).all()
    assert ent[engineering.LABEL].tolist() == [1, 0, 1, 1]


def test_day_start_prediction_time_is_the_local_midnight_of_the_flight_day(flights):
    ent = engineering.training_entities(flights, "day_start")
    local = ent[engineering.TS].dt.tz_convert("America/New_York")
    sched = (
        flights["sched_dep_ts"].iloc[:4].dt.tz_convert("America/New_York").reset_index(drop=True)
    )
    assert (local.dt.date == sched.dt.date).all()
    assert (local.dt.strftime("%H:%M:%S") == "00:00:00").all()
    with pytest.raises(ValueError, match="prediction_time"):
        engineering.training_entities(flights, "noon")


def test_request_time_features_row_path_equals_the_vectorised_path():
    """The endpoint computes request-time features row by row; training through Feast's
    on-demand view on whole frames: every hour of 2013 (both DST changes) gives the same."""
    from dagster_project.features.engineering import request_time_features, request_time_values

    epochs = pd.date_range("2013-01-01", "2014-01-01", freq="37min", tz="UTC").astype("int64")
    request = pd.DataFrame(
        {
            "sched_dep_epoch_s": epochs // 10**9,
            # whole miles, as in the data (numpy's log1p is a bit off math's for some, e.g. 184)
            "distance": np.round(np.linspace(17, 4983, len(epochs))),
        }
    )
    whole = request_time_features(request)
    assert len(request) > 64  # the vectorised path
    rows = pd.DataFrame(
        request_time_values(request["sched_dep_epoch_s"].tolist(), request["distance"].tolist())
    )
    pd.testing.assert_frame_equal(
        whole.reset_index(drop=True), rows, check_dtype=False, check_exact=True
    )
    small = request_time_features(request.iloc[:50])
    pd.testing.assert_frame_equal(small, whole.iloc[:50])


def test_calendar_arithmetic_matches_the_calendar_at_both_ends_and_between():
    """The arithmetic fallback (for New York times outside years 1..9999) is the proleptic
    Gregorian calendar: it names the same day as ``date`` for every day it can hold."""
    from datetime import date

    from dagster_project.features.engineering import _civil_from_days

    unix = date(1970, 1, 1).toordinal()
    for ordinal in [*range(1, 800), *range(unix - 400, unix + 400), *range(3_652_000, 3_652_059)]:
        d = date.fromordinal(ordinal)
        assert _civil_from_days(ordinal - unix) == (d.year, d.month, d.day)
    assert _civil_from_days(date(1, 1, 1).toordinal() - unix - 1) == (0, 12, 31)
    assert _civil_from_days(date(9999, 12, 31).toordinal() - unix + 1) == (10000, 1, 1)


@given(
    st.datetimes(
        timezones=st.none()
        | st.timezones()
        | st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439))
    )
)
@example(datetime(1901, 1, 1, 0, 56))  # pandas' local mean time before 1901-12-13
@example(datetime(2038, 7, 1, 0, 30))  # pandas' missing DST after 2037
@settings(max_examples=300, deadline=None)
def test_any_scheduled_departure_has_request_time_features(ts):
    """Whatever datetime a request holds (the schema allows years 1..9999 with any UTC
    offset), it has an epoch and request-time features, equal to ``zoneinfo``'s wherever
    New York's wall clock is a ``datetime``; both paths of the on-demand view agree."""
    from zoneinfo import ZoneInfo

    from dagster_project.features.engineering import (
        epoch_seconds,
        local_date_iso,
        request_time_features,
        request_time_values,
    )

    epoch = epoch_seconds(ts)
    values = request_time_values([epoch], [100.0])
    local_date_iso(epoch)
    ny = ts.replace(tzinfo=ZoneInfo("America/New_York")) if ts.tzinfo is None else ts
    try:
        wall = ny.astimezone(ZoneInfo("America/New_York"))
    except (OverflowError, ValueError):
        wall = None  # past the ends of datetime: the arithmetic's answer stands
    if wall is not None:
        assert (values["dep_hour"][0], values["dep_dow"][0], values["dep_month"][0]) == (
            wall.hour, wall.weekday(), wall.month,
        )  # fmt: skip
        assert local_date_iso(epoch) == wall.date().isoformat()
    many = pd.DataFrame({"sched_dep_epoch_s": [epoch] * 100, "distance": [100.0] * 100})
    assert request_time_features(many)["dep_hour"].tolist() == values["dep_hour"] * 100


@pytest.mark.parametrize(
    ("start", "end"), [("1899-06-01", "1903-06-01"), ("2035-06-01", "2039-06-01")]
)
def test_request_time_paths_agree_across_the_edges_of_the_vectorised_band(start, end):
    """Frames on either side of the band where pandas agrees with zoneinfo, and straddling it,
    give the row path's values (every 37 minutes over four years)."""
    from dagster_project.features.engineering import request_time_features, request_time_values

    epochs = pd.date_range(start, end, freq="37min", tz="UTC").astype("int64") // 10**9
    for part in (epochs[: len(epochs) // 2], epochs[len(epochs) // 2 :], epochs):
        request = pd.DataFrame({"sched_dep_epoch_s": part, "distance": 100.0})
        rows = request_time_values(part.tolist(), [100.0] * len(part))
        got = request_time_features(request)
        assert got["dep_hour"].tolist() == rows["dep_hour"]
        assert got["dep_dow"].tolist() == rows["dep_dow"]
