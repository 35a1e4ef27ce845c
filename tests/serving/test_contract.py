"""The HTTP contract: schemathesis with every check against the real app's /openapi.json.

Seeded (``derandomize``) and bounded: up to 80 positive and 80 negative examples per operation (a
few hundred requests) against the app on the session's trained spine (real MLflow registry,
real Feast online store)."""

import pytest
from fastapi.testclient import TestClient

from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig
from tests.serving.contract import run_contract


@pytest.fixture(scope="module")
def contract_app(spine, first_model):
    config = ServingConfig.for_paths(
        spine.paths,
        prediction_log=str(spine.paths.home / "test_contract_predictions"),
        reload_interval_s=0,
    )
    app = create_app(config)
    with TestClient(app):  # runs the lifespan: model loaded, online store opened
        yield app


def test_the_app_keeps_its_published_contract(contract_app):
    report = run_contract(contract_app, examples_per_operation=80)
    assert report["operations"] >= 6
    assert report["cases"] >= 250
    assert report["failures"] == [], "\n\n".join(report["failures"])


def test_the_schema_states_what_the_endpoint_enforces(contract_app):
    doc = contract_app.openapi()
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    flight = doc["components"]["schemas"]["Flight"]["properties"]
    assert flight["origin"]["enum"] == ["EWR", "JFK", "LGA"]
    assert "ORD" in flight["dest"]["enum"]
    assert flight["carrier"]["pattern"] == "^[A-Z0-9]{2}$"


def test_the_one_exception_is_the_oip_infer_route():
    """schemathesis.toml widens "schema-valid is accepted" for one route only (the protocol's
    400 for tensor errors JSON Schema cannot state), and only by that status."""
    import tomllib

    default = {"2xx", "3xx", "401", "403", "404", "409", "429", "5xx"}  # schemathesis' own
    from tests.paths import REPO_ROOT

    config = tomllib.loads((REPO_ROOT / "schemathesis.toml").read_text())
    assert set(config) == {"operations"}
    [only] = config["operations"]
    assert only["include-path"] == "/v2/models/{model}/infer"
    widened = only["checks"]["positive_data_acceptance"]["expected-statuses"]
    assert set(widened) - default == {"400"}
