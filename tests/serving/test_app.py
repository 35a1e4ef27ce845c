"""The endpoint through FastAPI's TestClient, on the session's trained spine (real MLflow
registry and Feast online store)."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig
from dagster_project.serving.schemas import EXAMPLE_FLIGHT, MAX_BATCH
from dagster_project.training import tracking


@pytest.fixture(scope="module")
def config(spine, first_model) -> ServingConfig:
    return ServingConfig.for_paths(
        spine.paths,
        prediction_log=str(spine.paths.home / "test_app_predictions"),
        reload_interval_s=0,
    )


@pytest.fixture(scope="module")
def client(config):
    with TestClient(create_app(config)) as c:
        yield c


# A flight inside the spine's days (the online store holds rows up to 2013-01-21).
IN_SPINE = EXAMPLE_FLIGHT | {"scheduled_departure": "2013-01-20T08:00:00"}


def _log_lines(config: ServingConfig) -> list[dict]:
    files = sorted(Path(config.prediction_log).glob("*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_valid_request_returns_probability_decision_version_and_features(client, config):
    before = len(_log_lines(config))
    r = client.post("/predict", json=IN_SPINE | {"flight_id": "UA1545"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 < body["probability"] < 1
    assert body["delayed"] == (body["probability"] >= body["threshold"])
    champion = tracking.Registry(config.tracking_uri).by_alias("champion")
    assert body["threshold_policy"] == champion.threshold_policy == "base_rate"
    assert body["model_version"] == champion.version
    assert body["features"]["route"] == "EWR-ORD"
    assert body["features"]["dep_hour"] == 8
    assert body["features"]["carrier_departures_7d"] > 0
    assert body["fallback"] is False
    logged = _log_lines(config)
    assert len(logged) == before + 1
    assert logged[-1]["flight"]["flight_id"] == "UA1545"
    assert logged[-1]["scheduled_date"] == "2013-01-20"
    assert logged[-1]["probability"] == body["probability"]


def test_rows_older_than_their_ttl_are_missing_and_said_so(client):
    """August, months after the store's last rows: the daily views are past their TTL, so the
    values are missing (as the offline point-in-time join leaves them), and the reply says why."""
    body = client.post("/predict", json=EXAMPLE_FLIGHT).json()
    assert body["fallback"] is True
    assert "carrier_departures_7d" in body["missing_features"]
    assert any("older than the view's TTL" in f for f in body["fallbacks"])


def test_batch(client, config):
    flights = [EXAMPLE_FLIGHT, EXAMPLE_FLIGHT | {"origin": "JFK", "dest": "LAX", "carrier": "AA"}]
    before = len(_log_lines(config))
    r = client.post("/predict/batch", json={"flights": flights})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["features"]["route"] for p in preds] == ["EWR-ORD", "JFK-LAX"]
    assert len(_log_lines(config)) == before + 2


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"carrier": None}, "carrier", ""),
        ({"distance": "far"}, "distance", "valid number"),
        ({"distance": -5}, "distance", "greater than 0"),
        ({"origin": "BOS"}, "origin", "unknown origin airport 'BOS'"),
        ({"dest": "XQX"}, "dest", "unknown destination airport 'XQX'"),
        ({"scheduled_departure": "tomorrow"}, "scheduled_departure", "datetime"),
        # a number is not an ISO 8601 string (Pydantic alone would read Unix seconds)
        ({"scheduled_departure": 1375358400}, "scheduled_departure", "ISO 8601"),
        ({"seats": 3}, "seats", "Extra inputs"),
    ],
)
def test_bad_payload_is_a_422_naming_the_field(client, config, change, field, message):
    payload = {k: v for k, v in (EXAMPLE_FLIGHT | change).items() if v is not None}
    before = len(_log_lines(config))
    r = client.post("/predict", json=payload)
    assert r.status_code == 422
    errors = r.json()["detail"]
    assert any(e["loc"][-1] == field and message in e["msg"] for e in errors), errors
    assert len(_log_lines(config)) == before  # nothing logged for a rejected request


def test_batch_limits(client):
    assert client.post("/predict/batch", json={"flights": []}).status_code == 422
    too_many = {"flights": [EXAMPLE_FLIGHT] * (MAX_BATCH + 1)}
    assert client.post("/predict/batch", json=too_many).status_code == 422


def test_unknown_entities_fall_back_to_imputed_features(client):
    r = client.post("/predict", json=EXAMPLE_FLIGHT | {"carrier": "ZZ", "tailnum": "N0NE"})
    assert r.status_code == 200
    body = r.json()
    assert body["fallback"] is True
    assert any("carrier_delay_stats" in f for f in body["fallbacks"])
    assert any("plane_specs" in f for f in body["fallbacks"])
    assert any("'ZZ' was not seen in training" in f for f in body["fallbacks"])
    assert "carrier_departures_7d" in body["missing_features"]


def test_ops_endpoints(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    client.post("/predict", json=EXAMPLE_FLIGHT)
    text = client.get("/metrics").text
    assert "flight_delay_predictions_total" in text
    assert 'flight_delay_http_requests_total{method="POST",path="/predict",status="200"}' in text
    assert client.get("/model").json()["name"] == "flight_delay"


def test_bearer_token_when_configured(config):
    with TestClient(create_app(replace(config, api_token="s3cret"))) as c:
        assert c.post("/predict", json=EXAMPLE_FLIGHT).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert c.post("/predict", json=EXAMPLE_FLIGHT, headers=wrong).status_code == 403
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/predict", json=EXAMPLE_FLIGHT, headers=ok).status_code == 200
        assert c.post("/admin/reload").status_code == 401
        assert c.get("/health").status_code == 200


def test_no_champion_yet_is_a_clear_503(config, tmp_path):
    empty = replace(config, tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}")
    tracking.configure(empty.tracking_uri, str(tmp_path / "artifacts"))
    try:
        with TestClient(create_app(empty)) as c:
            r = c.post("/predict", json=EXAMPLE_FLIGHT)
            assert r.status_code == 503
            assert "no 'champion' version" in r.json()["detail"]
            ready = c.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["ready"] is False
    finally:
        tracking.configure(config.tracking_uri, str(tmp_path / "unused"))


def test_feature_store_down_is_a_503_not_a_traceback(config, tmp_path):
    broken = replace(config, feast_state_dir=tmp_path / "no-feast")
    with TestClient(create_app(broken)) as c:
        r = c.post("/predict", json=EXAMPLE_FLIGHT)
        assert r.status_code == 503
        assert r.json()["detail"].startswith("feature store unavailable")
        assert "Traceback" not in r.text


def test_unexpected_error_is_a_plain_500(config):
    app = create_app(config)
    with TestClient(app, raise_server_exceptions=False) as c:
        current = app.state.holder.current

        class Broken:
            def predict(self, _):
                raise RuntimeError("secret internals")

        app.state.holder.current = replace(current, model=Broken())
        r = c.post("/predict", json=EXAMPLE_FLIGHT)
        assert r.status_code == 500
        assert "secret internals" not in r.text
        assert "Traceback" not in r.text


def test_serving_imports_neither_dagster_nor_airflow():
    code = (
        "import sys, dagster_project.serving.app, dagster_project.serving.__main__\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'airflow'})\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
