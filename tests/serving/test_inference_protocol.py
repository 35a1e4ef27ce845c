"""The Open Inference Protocol v2 routes on the session's trained spine (real MLflow registry
and Feast online store): health, metadata, inference equal to /predict, the same validation,
auth and limits; HTTPBearer in the OpenAPI document; no deprecated response class."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig
from dagster_project.serving.schemas import EXAMPLE_FLIGHT, MAX_BATCH
from dagster_project.training import tracking
from tests.paths import REPO_ROOT

INFER = "/v2/models/flight_delay/infer"
OTHER = EXAMPLE_FLIGHT | {"origin": "JFK", "dest": "LAX", "carrier": "AA", "tailnum": None}


@pytest.fixture(scope="module")
def config(spine, first_model) -> ServingConfig:
    return ServingConfig.for_paths(
        spine.paths,
        prediction_log=str(spine.paths.home / "test_oip_predictions"),
        reload_interval_s=0,
    )


@pytest.fixture(scope="module")
def client(config):
    with TestClient(create_app(config)) as c:
        yield c


def tensors(flights: list[dict]) -> list[dict]:
    """One v2 input tensor per flight field (entity rows, column by column)."""
    types = {"distance": "FP64"}
    names = ("carrier", "origin", "dest", "tailnum", "scheduled_departure", "distance")
    return [
        {
            "name": n,
            "shape": [len(flights)],
            "datatype": types.get(n, "BYTES"),
            "data": [f.get(n) for f in flights],
        }
        for n in names
    ]


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}
    assert client.get("/v2/models/flight_delay/ready").json() == {
        "name": "flight_delay",
        "ready": True,
    }
    assert client.get("/v2").json()["name"]


def test_model_metadata_names_inputs_outputs_and_the_served_version(client, config):
    r = client.get("/v2/models/flight_delay")
    assert r.status_code == 200, r.text
    body = r.json()
    champion = tracking.Registry(config.tracking_uri).by_alias("champion")
    assert body["name"] == "flight_delay"
    assert body["versions"] == [champion.version]
    assert {i["name"] for i in body["inputs"]} >= {"carrier", "origin", "dest", "distance"}
    assert {o["name"]: o["datatype"] for o in body["outputs"]} == {
        "probability": "FP64",
        "delayed": "BOOL",
        "fallback": "BOOL",
    }
    assert client.get("/v2/models/other").status_code == 404
    assert "not found" in client.get("/v2/models/other").json()["error"]


def test_infer_returns_what_predict_returns(client, config):
    request = {"id": "req-1", "inputs": tensors([EXAMPLE_FLIGHT, OTHER])}
    r = client.post(INFER, json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    champion = tracking.Registry(config.tracking_uri).by_alias("champion")
    assert body["model_name"] == "flight_delay"
    assert body["model_version"] == champion.version
    assert body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["probability"]["shape"] == [2]
    assert outputs["probability"]["datatype"] == "FP64"
    singles = [
        client.post("/predict", json={k: v for k, v in f.items() if v is not None}).json()
        for f in (EXAMPLE_FLIGHT, OTHER)
    ]
    assert outputs["probability"]["data"] == [p["probability"] for p in singles]
    assert outputs["delayed"]["data"] == [p["delayed"] for p in singles]
    assert outputs["fallback"]["data"] == [p["fallback"] for p in singles]
    # only the outputs asked for
    only = client.post(INFER, json=request | {"outputs": [{"name": "probability"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["probability"]
    # the [n, 1] nested form is the same tensor
    nested = [
        t | {"shape": [2, 1], "data": [[v] for v in t["data"]]}
        for t in tensors([EXAMPLE_FLIGHT, OTHER])
    ]
    again = client.post(INFER, json={"inputs": nested}).json()
    assert again["outputs"][0]["data"] == outputs["probability"]["data"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: [x | {"data": ["BOS", "JFK"]} if x["name"] == "origin" else x for x in t],
         "row 0: origin: Value error, unknown origin airport 'BOS'"),
        (lambda t: [x for x in t if x["name"] != "dest"], "missing inputs ['dest']"),
        (lambda t: [*t, {"name": "seats", "shape": [2], "datatype": "INT32", "data": [1, 2]}],
         "unknown input 'seats'"),
        (lambda t: [x | {"datatype": "BYTES"} if x["name"] == "distance" else x for x in t],
         "input 'distance' has datatype BYTES"),
        (lambda t: [x | {"shape": [3]} if x["name"] == "carrier" else x for x in t],
         "input 'carrier' has shape [3] but 2 values"),
        (lambda t: [x | {"data": [-5, 10]} if x["name"] == "distance" else x for x in t],
         "row 0: distance: Input should be greater than 0"),
    ],
)  # fmt: skip
def test_a_bad_tensor_or_row_is_a_400_naming_it(client, change, message):
    r = client.post(INFER, json={"inputs": change(tensors([EXAMPLE_FLIGHT, OTHER]))})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"], r.json()


def test_limits_and_unknown_model(client):
    assert (
        client.post(
            "/v2/models/other/infer", json={"inputs": tensors([EXAMPLE_FLIGHT])}
        ).status_code
        == 404
    )
    too_many = tensors([EXAMPLE_FLIGHT] * (MAX_BATCH + 1))
    assert client.post(INFER, json={"inputs": too_many}).status_code == 422
    huge = {"inputs": tensors([EXAMPLE_FLIGHT]), "id": "x" * (5 * 1_048_576)}
    assert client.post(INFER, json=huge).status_code == 413  # the body limit, before parsing
    bad_output = {"inputs": tensors([EXAMPLE_FLIGHT]), "outputs": [{"name": "nope"}]}
    assert "unknown outputs ['nope']" in client.post(INFER, json=bad_output).json()["error"]


def test_infer_is_behind_the_same_bearer_auth(config):
    with TestClient(create_app(replace(config, api_token="s3cret-tok"))) as c:
        body = {"inputs": tensors([EXAMPLE_FLIGHT])}
        assert c.post(INFER, json=body).status_code == 401
        assert c.post(INFER, json=body, headers={"Authorization": "Bearer no"}).status_code == 403
        ok = c.post(INFER, json=body, headers={"Authorization": "Bearer s3cret-tok"})
        assert ok.status_code == 200, ok.text
        assert c.get("/v2/health/ready").status_code == 200  # probes stay open
        assert c.get("/v2/models/flight_delay").status_code == 200


def test_openapi_declares_http_bearer_on_the_protected_routes(config, client):
    """With a token the protected routes declare the bearer scheme; without one (the local
    tier's default) they are open and the document says so (no security anywhere)."""
    with TestClient(create_app(replace(config, api_token="s3cret-tok"))) as c:
        doc = c.get("/openapi.json").json()
    open_doc = client.get("/openapi.json").json()
    assert "securitySchemes" not in open_doc.get("components", {})
    assert not [op for ops in open_doc["paths"].values() for op in ops.values() if "security" in op]
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }
    protected = {
        ("/predict", "post"),
        ("/predict/batch", "post"),
        ("/admin/reload", "post"),
        ("/v2/models/{model}/infer", "post"),
    }
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            declared = operation.get("security") == [{"HTTPBearer": []}]
            assert declared == ((path, method) in protected), (path, method)


def test_no_deprecated_response_class():
    """FastAPI 0.13x deprecates ORJSONResponse/UJSONResponse: the serving package uses none."""
    for module in (REPO_ROOT / "dagster_project" / "serving").glob("*.py"):
        text = module.read_text()
        assert "ORJSONResponse" not in text, module.name
        assert "UJSONResponse" not in text, module.name
