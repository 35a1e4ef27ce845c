"""The spine on the `server` tier: Dagster runs stored in PostgreSQL, the landing zone and MLflow
artifacts in S3 (a loopback S3 server), MLflow's registry in PostgreSQL, Feast's registry in
PostgreSQL and its online store in Redis, which the endpoint reads."""

from __future__ import annotations

import dagster as dg
import psycopg2
import pytest
from fastapi.testclient import TestClient

from dagster_project.definitions import build_definitions
from dagster_project.defs.run_config import training_run_config
from dagster_project.orchestration.partitions import range_tags
from dagster_project.platform import names, server, settings, storage
from dagster_project.replay import run_job
from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import tracking
from tests.conftest import free_port

pytestmark = pytest.mark.integration

DAYS = ("2013-01-01", "2013-01-14")


def _count(server_settings, store: str, sql: str) -> int:
    with psycopg2.connect(server_settings.pg_url(store)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


def test_spine_runs_on_postgres_redis_and_s3(server_tier, monkeypatch):
    paths = settings.paths()
    assert paths.server == server_tier
    assert paths.landing_url.startswith(f"s3://mlops-test/{server_tier.namespace}/")
    instance = dg.DagsterInstance.from_config(str(paths.dagster_home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    defs = build_definitions(paths, serving_port=free_port())

    # A partition range materialized: landed in S3, runs and events stored in PostgreSQL.
    ingest = run_job(defs, "ingest_features_job", instance, tags=range_tags(*DAYS))
    assert ingest.success
    landed = storage.list_files(f"{paths.landing_url}/flights", ".csv")
    assert len(landed) == 14
    assert landed[0].startswith("s3://")
    assert _count(server_tier, "dagster", "SELECT count(*) FROM runs") >= 1

    # A model registered in the PostgreSQL-backed MLflow, its artifacts in S3.
    train = run_job(
        defs,
        "training_job",
        instance,
        run_config=training_run_config(
            *DAYS,
            model={
                "model_kinds": ["xgboost"],
                "n_trials": 1,
                "holdout_days": 3,
                "validation_days": 3,
            },
            # two weeks of January make a weak model: the gate's quality bar is not the
            # point here, where the model lands is
            promotion={"min_auc": 0.5, "max_calibration_error": 0.5},
        ),
        skip=("deployed_endpoint",),  # served in-process below
    )
    assert train.success
    registry = tracking.Registry(paths.mlflow_tracking_uri)
    champion = registry.by_alias(names.CHAMPION)
    assert champion is not None
    assert _count(server_tier, "mlflow", "SELECT count(*) FROM model_versions") == 1
    run = registry.client.get_run(champion.run_id)
    assert run.info.artifact_uri.startswith(f"s3://mlops-test/{server_tier.namespace}/mlflow")
    objects = server.s3_client(server_tier).list_objects_v2(
        Bucket="mlops-test", Prefix=f"{server_tier.namespace}/mlflow/"
    )
    assert any(o["Key"].endswith("MLmodel") for o in objects.get("Contents", []))

    # Feast's registry is in PostgreSQL, its online rows in Redis.
    assert _count(server_tier, "feast", "SELECT count(*) FROM feature_views") >= 5
    redis = server.redis_client(server_tier)
    project = server_tier.feast_project.encode()
    assert any(k.endswith(project) for k in redis.scan_iter(count=1000))

    # The endpoint reads the champion from MLflow and the features from Redis; on this tier
    # it needs a bearer token (it refuses to start without one, see tests/reliability).
    monkeypatch.setenv("MLOPS_SERVING_TOKEN", "spine-token")
    with TestClient(create_app(ServingConfig.from_env())) as client:
        flight = EXAMPLE_FLIGHT | {"scheduled_departure": "2013-01-15T09:30:00"}
        assert client.post("/predict", json=flight).status_code == 401
        r = client.post("/predict", json=flight, headers={"Authorization": "Bearer spine-token"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == champion.version
        assert body["fallback"] is False, body["fallbacks"]
        assert 0.0 <= body["probability"] <= 1.0
