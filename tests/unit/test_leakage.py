"""Leakage: a value observed one minute after a flight's prediction time must not reach its
training row (Feast point-in-time join over the platform's own feature tables)."""

from datetime import date

import pandas as pd
import pytest

from dagster_project.features import aggregates, engineering
from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.ingestion import cleaning, sources
from dagster_project.platform.settings import feast_template

PLANTED_TEMP = 123.4


def _accepted(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True).dt.tz_localize(None)
    df["_rejected_by"] = None
    df["_partition"] = "2013-01-02"
    return df


@pytest.fixture
def store(tmp_path):
    days = [date(2013, 1, 1), date(2013, 1, 2)]
    flights = cleaning.validated_flights(
        _accepted(pd.concat([sources.day_rows("flights", d) for d in days]))
    )
    weather = cleaning.validated_weather(
        _accepted(pd.concat([sources.day_rows("weather", d) for d in days]))
    )
    planes = sources.load_table("planes").assign(_rejected_by=None)
    client = FeatureStoreClient(
        feast_template("local"),
        tmp_path / "feast",
        str(tmp_path / "features"),
    )
    return client, flights, weather, planes


def _write_tables(client, flights, weather, planes):
    client.write_offline_table("origin_weather", engineering.origin_weather(weather))
    client.write_offline_table("carrier_delay_stats", engineering.carrier_delay_stats(flights))
    client.write_offline_table("route_delay_stats", engineering.route_delay_stats(flights))
    client.write_offline_table(
        "plane_specs", engineering.plane_specs(cleaning.validated_reference(planes))
    )
    for view in aggregates.VIEWS:
        client.write_offline_table(view, aggregates.batch_table(view, flights))
    client.apply()


@pytest.mark.parametrize("prediction_time", ["lead", "day_start"])
def test_row_observed_after_prediction_time_does_not_leak(store, prediction_time):
    client, flights, weather, planes = store
    flight = flights[
        (flights["flight_date"] == "2013-01-02")
        & (flights["origin"] == "JFK")
        & ~flights["cancelled"]
    ].iloc[100:101]
    entity = engineering.training_entities(flight, prediction_time, prediction_lead_minutes=120)
    as_of = entity["event_timestamp"].iloc[0]
    planted = (
        weather[weather["origin"] == "JFK"]
        .iloc[[0]]
        .assign(time_hour=as_of + pd.Timedelta(minutes=1), temp=PLANTED_TEMP)
    )
    _write_tables(client, flights, pd.concat([weather, planted]), planes)

    # The same flight, asked for one minute after the planted row, does see it: the join works,
    # so the check below can fail.
    later = entity.assign(event_timestamp=as_of + pd.Timedelta(minutes=2), flight_id="later")
    rows = client.historical_features(pd.concat([entity, later]), "flight_delay_v1")
    rows = rows.set_index("flight_id")
    assert rows.loc["later", "temp"] == PLANTED_TEMP

    honest = rows.loc[entity["flight_id"].iloc[0], "temp"]
    assert honest != PLANTED_TEMP
    jfk = weather[(weather["origin"] == "JFK") & (weather["time_hour"] <= as_of)]
    assert honest == jfk.sort_values("time_hour")["temp"].iloc[-1]


def test_carrier_stats_of_the_flight_day_exclude_that_day(store):
    client, flights, weather, planes = store
    _write_tables(client, flights, weather, planes)
    jan2 = flights[(flights["flight_date"] == "2013-01-02") & ~flights["cancelled"]]
    entities = engineering.training_entities(jan2.head(200), "day_start")
    rows = client.historical_features(entities, "flight_delay_v1")
    departed_jan1 = flights[
        flights["departed_at"].dt.tz_convert("America/New_York").dt.date == date(2013, 1, 1)
    ]
    expected = departed_jan1.groupby("carrier").size()
    got = rows.groupby("carrier")["carrier_departures_7d"].first()
    assert (got == expected.reindex(got.index)).all()


STREAM_FEATURES = {
    "origin_departures_60m",
    "origin_departures_180m",
    "carrier_origin_departures_180m",
    "plane_departures_today",
    "plane_last_dep_delay_today",
}


@pytest.mark.parametrize("lead", [60, 30])
def test_departure_one_minute_after_prediction_time_does_not_leak(store, lead):
    """A departure planted one minute after the prediction time, from the flight's origin, by
    its carrier and by its very aircraft, changes none of its stream features; asked at the
    next 5-minute boundary (when it has happened), every one of them sees it."""
    client, flights, weather, planes = store
    day = flights[(flights["flight_date"] == "2013-01-02") & ~flights["cancelled"]]
    flight = day[(day["origin"] == "EWR") & day["tailnum"].notna()].iloc[[150]]
    entity = engineering.training_entities(flight, "lead", prediction_lead_minutes=lead)
    as_of = entity["event_timestamp"].iloc[0]
    planted = flight.assign(
        flight_id="planted",
        sched_dep_ts=as_of - pd.Timedelta(minutes=30),
        dep_delay=29.0 + 2,  # departs at as_of + 1 minute
    )
    planted["departed_at"] = planted["sched_dep_ts"] + pd.Timedelta(minutes=31)
    assert planted["departed_at"].iloc[0] == as_of + pd.Timedelta(minutes=1)

    seen_at = aggregates.ceil_boundary(
        pd.DatetimeIndex([as_of + pd.Timedelta(minutes=1)]).asi8 // 10**9
    )[0]
    later = entity.assign(
        event_timestamp=pd.Timestamp(seen_at, unit="s", tz="UTC"), flight_id="later"
    )
    both = pd.concat([entity, later])
    _write_tables(client, flights, weather, planes)
    before = client.historical_features(both, "flight_delay_v2").set_index("flight_id")
    _write_tables(client, pd.concat([flights, planted]), weather, planes)
    rows = client.historical_features(both, "flight_delay_v2").set_index("flight_id")
    own = entity["flight_id"].iloc[0]
    for feature in sorted(STREAM_FEATURES):
        assert rows.loc[own, feature] == before.loc[own, feature] or (
            pd.isna(rows.loc[own, feature]) and pd.isna(before.loc[own, feature])
        ), feature
    # the join does see the planted departure once it has happened: the check above can fail
    assert rows.loc["later", "plane_last_dep_delay_today"] == 31.0
    for feature in (
        "origin_departures_60m",
        "origin_departures_180m",
        "carrier_origin_departures_180m",
        "plane_departures_today",
    ):
        was = before.loc["later", feature]
        assert rows.loc["later", feature] == (0 if pd.isna(was) else was) + 1, feature
