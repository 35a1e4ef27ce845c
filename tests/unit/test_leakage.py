"""Leakage: a value observed one minute after a flight's prediction time must not reach its
training row (Feast point-in-time join over the platform's own feature tables)."""

from datetime import date

import pandas as pd
import pytest

from dagster_project.features import engineering
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
    entities = engineering.training_entities(jan2.head(200))
    rows = client.historical_features(entities, "flight_delay_v1")
    departed_jan1 = flights[
        flights["departed_at"].dt.tz_convert("America/New_York").dt.date == date(2013, 1, 1)
    ]
    expected = departed_jan1.groupby("carrier").size()
    got = rows.groupby("carrier")["carrier_departures_7d"].first()
    assert (got == expected.reindex(got.index)).all()
