"""The spine on the `server` tier: Dagster runs stored in PostgreSQL; the landing zone, the lake
(IO manager, quarantine, Feast's offline parquet), GX Data Docs, monitoring's outputs and the
MLflow artifacts in S3 (a loopback S3 server); MLflow's registry, Feast's registry and the
prediction log in PostgreSQL; Feast's online store in Redis, which the endpoint reads. Nothing
the run produced is in the local state folder: steps share state only through the stores."""

from __future__ import annotations

from datetime import date

import dagster as dg
import psycopg2
import pytest
from fastapi.testclient import TestClient

from dagster_project.definitions import all_assets, build_definitions
from dagster_project.defs.run_config import training_run_config
from dagster_project.orchestration.partitions import range_tags
from dagster_project.platform import names, server, settings, storage
from dagster_project.replay import run_job
from dagster_project.serving import scoring
from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig
from dagster_project.serving.prediction_log import PostgresPredictionLog, open_log
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import tracking
from tests.conftest import free_port

pytestmark = pytest.mark.integration

DAYS = ("2013-01-01", "2013-01-14")


def _count(server_settings, store: str, sql: str) -> int:
    with psycopg2.connect(server_settings.pg_url(store)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


def _keys(server_settings, prefix: str) -> list[str]:
    client = server.s3_client(server_settings)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket="mlops-test", Prefix=f"{server_settings.namespace}/{prefix}"
    ):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def test_spine_runs_on_postgres_redis_and_s3(server_tier, monkeypatch):
    paths = settings.paths()
    assert paths.server == server_tier
    root = f"s3://mlops-test/{server_tier.namespace}/"
    for url in (paths.landing_url, paths.lake_url, paths.quarantine_url, paths.features_url):
        assert url.startswith(root), url
    assert paths.monitoring_url.startswith(root)
    assert str(paths.gx_docs_url).startswith(root)
    assert paths.prediction_log_url.endswith(f"/{server_tier.namespace}_serving")
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

    # The lake, the quarantine, the offline feature tables and the GX Data Docs are in S3.
    lake = _keys(server_tier, "lake/")
    assert sum(k.endswith(".parquet") and "/validated_flights/" in k for k in lake) == 14
    assert any("/lake/quarantine/flights/" in k for k in lake)
    for table in ("origin_weather", "carrier_delay_stats", "route_delay_stats", "plane_specs"):
        assert f"{server_tier.namespace}/lake/features/{table}.parquet" in lake, table
    assert any(k.endswith("/lake/training_set.parquet") for k in lake)
    docs = _keys(server_tier, "gx/")
    assert f"{server_tier.namespace}/gx/data_docs/index.html" in docs
    assert any("/gx/validations/" in k and k.endswith(".json") for k in docs)
    assert any("/gx/data_docs/validations/" in k and k.endswith(".html") for k in docs)
    assert any("/gx/data_docs/static/" in k for k in docs)  # uploaded once, then kept

    # The endpoint reads the champion from MLflow and the features from Redis; on this tier
    # it needs a bearer token (it refuses to start without one, see tests/reliability). Its
    # prediction log is a PostgreSQL table, not a file.
    monkeypatch.setenv("MLOPS_SERVING_TOKEN", "spine-token")
    day = date(2013, 1, 14)
    flights = scoring.scheduled_flights(day, limit=60)
    config = ServingConfig.from_env()
    assert config.prediction_log == paths.prediction_log_url
    with TestClient(create_app(config)) as client:
        # scored an hour before departure: 23:45 on the last materialized day, within the
        # weather's (3 h) and the traffic's (2 h) TTL of the online store's latest rows
        flight = EXAMPLE_FLIGHT | {"scheduled_departure": "2013-01-15T00:45:00"}
        assert client.post("/predict", json=flight).status_code == 401
        auth = {"Authorization": "Bearer spine-token"}
        r = client.post("/predict", json=flight, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == champion.version
        assert body["fallback"] is False, body["fallbacks"]
        assert 0.0 <= body["probability"] <= 1.0
        r = client.post("/predict/batch", json={"flights": flights}, headers=auth)
        assert r.status_code == 200, r.text
    log = open_log(paths.prediction_log_url)
    assert isinstance(log, PostgresPredictionLog)
    logged = log.read_day(str(day))
    assert {p["flight"]["flight_id"] for p in logged} == {f["flight_id"] for f in flights}
    assert [p["scheduled_date"] for p in log.read_day("2013-01-15")] == ["2013-01-15"]

    # Monitoring reads that log back (and the day's labels from the S3 lake); its plot, the
    # report and the retrain record the promotion gate wrote are in S3.
    quality = dg.materialize(
        all_assets,
        selection=["prediction_quality"],
        partition_key=str(day),
        resources=defs.resources,
        instance=instance,
    )
    assert quality.success
    (event,) = quality.asset_materializations_for_node("prediction_quality")
    assert event.metadata["labeled"].value > 0
    assert str(event.metadata["plot"].value).startswith(paths.monitoring_url)
    report = run_job(defs, "report_job", instance)
    assert report.success
    (event,) = report.asset_materializations_for_node("monitoring_report")
    assert event.metadata["retrains"].value == 1  # the gate's record, read back from S3
    monitoring = _keys(server_tier, "monitoring/")
    assert f"{server_tier.namespace}/monitoring/days/{day}.png" in monitoring
    assert f"{server_tier.namespace}/monitoring/report.html" in monitoring
    assert sum("/monitoring/retrains/" in k for k in monitoring) == 1

    # Nothing the runs produced was written to (or read from) the local state folder: what
    # is there is each process's own scratch (Dagster's instance config, Feast's resolved
    # feature_store.yaml), and none of the lake, GX, monitoring or prediction-log folders.
    for folder in ("lake", "gx", "monitoring", "serving", "landing", "stream"):
        assert not (paths.home / folder).exists(), folder
    assert sorted(p.name for p in paths.home.iterdir()) == ["dagster_home", "feast"]
    assert sorted(p.name for p in paths.feast_dir.iterdir()) == ["feature_store.yaml"]
