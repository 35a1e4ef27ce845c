"""Property-based tests (hypothesis): the request schema, the endpoint's request handling and
the feature functions never crash on odd input, and no NaN or infinity reaches the model's
input matrix without being imputed."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dagster_project.features import engineering
from dagster_project.ingestion.expectations import NYC_ORIGINS
from dagster_project.platform.settings import Paths
from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig
from dagster_project.serving.predictor import entity_row
from dagster_project.serving.schemas import EXAMPLE_FLIGHT, Flight
from dagster_project.training import tracking
from dagster_project.training.preprocess import CATEGORICAL, NUMERIC, Preprocessor, input_frame

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["EWR", "JFK", "LGA", "UA", "ORD", "N24211", "2013-08-01T08:00:00", ""]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
flight_like = st.fixed_dictionaries(
    {},
    optional={k: odd_scalars for k in (*EXAMPLE_FLIGHT, "flight_id", "extra")},
)
# mostly-valid flights with one field perturbed, so the valid branch is exercised too
perturbed = st.builds(
    lambda key, value: EXAMPLE_FLIGHT | {key: value},
    st.sampled_from(sorted(EXAMPLE_FLIGHT)),
    odd_scalars,
)
timestamps = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31)
) | st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14))]),
)


@FAST
@given(payload=flight_like | perturbed)
def test_flight_schema_accepts_valid_and_rejects_the_rest_cleanly(payload):
    try:
        flight = Flight.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors()  # a rejection names at least one field
        assert errors
        assert all(e["loc"] or e["type"] == "model_type" for e in errors)
        return
    assert flight.origin in NYC_ORIGINS
    assert 0 < flight.distance <= 10000
    assert math.isfinite(flight.distance)
    row = entity_row(flight)  # what the endpoint builds from it never fails
    assert isinstance(row["sched_dep_epoch_s"], int)
    assert row["route"] == f"{flight.origin}-{flight.dest}"


@FAST
@given(when=timestamps, distance=st.floats(min_value=1e-9, max_value=10000))
def test_valid_flights_at_any_time_make_finite_request_features(when, distance):
    flight = Flight.model_validate(
        EXAMPLE_FLIGHT | {"scheduled_departure": when.isoformat(), "distance": distance}
    )
    row = entity_row(flight)
    out = engineering.request_time_features(pd.DataFrame([row]))
    assert out.notna().all().all()
    assert np.isfinite(out.to_numpy(dtype="float64")).all()
    assert 0 <= out["dep_hour"][0] <= 23
    assert 1 <= out["dep_month"][0] <= 12


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    """The real app on an empty registry: a valid request gets as far as 'no model' (503)."""
    paths = Paths(tmp_path_factory.mktemp("fuzz") / "mlops")
    tracking.configure(paths.mlflow_tracking_uri, paths.mlflow_artifacts)
    config = ServingConfig.for_paths(paths, reload_interval_s=0)
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield client


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=json_values
    | flight_like.filter(
        lambda d: all(not (isinstance(v, float) and not math.isfinite(v)) for v in d.values())
    )
    | perturbed.filter(
        lambda d: all(not (isinstance(v, float) and not math.isfinite(v)) for v in d.values())
    )
)
def test_endpoint_answers_any_json_with_a_4xx_or_its_no_model_503(http, body):
    for path, payload in (("/predict", body), ("/predict/batch", {"flights": [body]})):
        r = http.post(path, json=payload)
        assert r.status_code in (422, 503), (path, payload, r.status_code, r.text)
        assert "Traceback" not in r.text
        if r.status_code == 503:  # only a valid request gets this far
            Flight.model_validate(body)


@pytest.fixture(scope="module")
def fitted() -> Preprocessor:
    rng = np.random.default_rng(1)
    n = 200
    train = pd.DataFrame({c: rng.normal(10, 3, n) for c in NUMERIC})
    train["carrier"] = rng.choice(["UA", "AA", "DL"], n)
    train["origin"] = rng.choice(sorted(NYC_ORIGINS), n)
    train["route"] = train["origin"] + "-ORD"
    train.loc[::7, "temp"] = np.nan
    return Preprocessor.fit(train)


cells = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.text(max_size=6),
)


@FAST
@given(
    rows=st.lists(
        st.fixed_dictionaries({c: cells for c in (*CATEGORICAL, *NUMERIC)}), min_size=1, max_size=5
    )
)
def test_no_nan_or_inf_reaches_the_model_matrix(fitted, rows):
    frame = input_frame(pd.DataFrame(rows))
    assert frame[list(CATEGORICAL)].notna().all().all()  # missing categories are "unknown"
    for scale in (True, False):
        block = fitted.numbers(frame, scale=scale)
        assert block.shape == (len(rows), len(NUMERIC))
        assert np.isfinite(block).all()
    tree = fitted.tree_matrix(frame)
    assert np.isfinite(tree).all()
    codes = fitted.codes(frame)
    assert (codes >= 0).all()
    assert (codes <= max(fitted.cardinalities().values())).all()


flight_rows = st.lists(
    st.tuples(
        st.sampled_from(["UA", "AA", "B6"]),
        st.integers(min_value=0, max_value=60 * 24 * 40),  # minutes after 2013-01-01
        st.one_of(st.none(), st.floats(min_value=-60, max_value=1500)),  # None: cancelled
    ),
    max_size=40,
)


@FAST
@given(rows=flight_rows, window=st.integers(min_value=1, max_value=30))
def test_trailing_departure_stats_are_finite_and_never_from_the_future(rows, window):
    base = pd.Timestamp("2013-01-01T05:00:00Z")
    sched = pd.Series(
        [base + pd.Timedelta(minutes=m) for _, m, _ in rows], dtype="datetime64[ns, UTC]"
    )
    delay = pd.Series([d for _, _, d in rows], dtype="float64")
    flights = pd.DataFrame(
        {
            "carrier": pd.Series([c for c, _, _ in rows], dtype=object),
            "dep_delay": delay,
            "departed_at": sched + pd.to_timedelta(delay, unit="min"),
        }
    )
    out = engineering.trailing_departure_stats(flights, "carrier", window, "carrier")
    if out.empty:
        assert flights["departed_at"].notna().sum() == 0
        return
    stats = out.drop(columns=["carrier", engineering.TS])
    assert np.isfinite(stats.to_numpy(dtype="float64")).all()
    assert (out[f"carrier_departures_{window}d"] > 0).all()
    share = out[f"carrier_delayed_share_{window}d"]
    assert ((share >= 0) & (share <= 1)).all()
    # a row stamped at t only summarizes departures before t
    for _, row in out.iterrows():
        before = flights[
            (flights["carrier"] == row["carrier"]) & (flights["departed_at"] < row[engineering.TS])
        ]
        assert row[f"carrier_departures_{window}d"] <= len(before)


@FAST
@given(
    values=st.lists(
        st.tuples(
            st.sampled_from(sorted(NYC_ORIGINS)),
            st.integers(min_value=0, max_value=200),
            st.one_of(st.none(), st.floats(min_value=0, max_value=5)),
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda t: (t[0], t[1]),
    )
)
def test_origin_weather_keeps_missing_rain_missing_not_invented(values):
    weather = pd.DataFrame(
        {
            "origin": [o for o, _, _ in values],
            "time_hour": [
                pd.Timestamp("2013-01-01T00:00:00Z") + pd.Timedelta(hours=h) for _, h, _ in values
            ],
            "precip": [p for _, _, p in values],
            **{c: 1.0 for c in engineering.WEATHER_COLUMNS if c != "precip"},
        }
    )
    out = engineering.origin_weather(weather)
    assert len(out) == len(weather)
    known = out["precip_3h"].dropna()
    assert (known >= 0).all()
    assert np.isfinite(known).all()
    # NaN that is left is handled downstream: the preprocessor imputes it (previous test)
