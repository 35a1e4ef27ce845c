"""The spine on the `server` tier, run as a user runs it: `make demo PROFILE=server` through the
CLI to its end (ingest, train, gate, deploy, and the next day's flights scored over HTTP with the
bearer token the tier requires; it used to die on a 401 there). Dagster runs stored in
PostgreSQL; the landing zone, the lake (IO manager, quarantine, Feast's offline parquet), GX
Data Docs, monitoring's outputs and the MLflow artifacts in S3 (a loopback S3 server); MLflow's
registry, Feast's registry and the prediction log in PostgreSQL; Feast's online store in Redis,
which the endpoint reads. Nothing the runs produced is in the local state folder: steps share
state only through the stores."""

from __future__ import annotations

from datetime import date

import dagster as dg
import psycopg2
import pytest
from fastapi.testclient import TestClient

from dagster_project import cli
from dagster_project.definitions import all_assets, build_definitions
from dagster_project.platform import names, server, settings, storage
from dagster_project.replay import run_job
from dagster_project.serving import scoring
from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig
from dagster_project.serving.prediction_log import PostgresPredictionLog, open_log
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import tracking
from tests.conftest import check_demo_output, free_port

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


def test_spine_runs_on_postgres_redis_and_s3_through_the_demo(server_tier, monkeypatch, capsys):
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
    # the endpoint the demo starts needs a bearer token on this tier (it refuses to start
    # without one, see tests/reliability); the demo's scoring requests must send it
    monkeypatch.setenv("MLOPS_SERVING_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_SERVING_TOKEN", "spine-token")

    # `make demo PROFILE=server` (a short window): to its end, every next-day flight answered
    args = ["--start", DAYS[0], "--end", DAYS[1], "--holdout-days", "3", "--validation-days"]
    args += ["3", "--trials", "1", "--requests", "5"]
    assert cli.main(["demo", *args]) == 0
    captured = capsys.readouterr()
    assert "tier=server" in captured.out
    check_demo_output(captured.out, captured.err, next_day="2013-01-15")
    assert f"Great Expectations Data Docs: {paths.gx_docs_url}/data_docs/index.html" in captured.out
    defs = build_definitions(paths, serving_port=free_port())

    # A partition range materialized: landed in S3, runs and events stored in PostgreSQL.
    landed = storage.list_files(f"{paths.landing_url}/flights", ".csv")
    assert len(landed) == 14
    assert landed[0].startswith("s3://")
    assert _count(server_tier, "dagster", "SELECT count(*) FROM runs") >= 2

    # A model registered in the PostgreSQL-backed MLflow, its artifacts in S3.
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

    # The endpoint reads the champion from MLflow and the features from Redis, with the
    # tier's token. Its prediction log is a PostgreSQL table, not a file: the demo's endpoint
    # process logged its next-day requests there, this one adds the last day's flights.
    log = open_log(paths.prediction_log_url)
    assert isinstance(log, PostgresPredictionLog)
    by_demo = log.read_day("2013-01-15")
    assert len(by_demo) == 5
    assert {r["model_version"] for r in by_demo} == {champion.version}
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
    logged = log.read_day(str(day))
    assert {p["flight"]["flight_id"] for p in logged} == {f["flight_id"] for f in flights}
    assert len(log.read_day("2013-01-15")) == len(by_demo) + 1

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
    # feature_store.yaml, the pid file and log of the endpoint the demo started and stopped),
    # and none of the lake, GX, monitoring or prediction-log folders.
    for folder in ("lake", "gx", "monitoring", "serving", "landing", "stream"):
        assert not (paths.home / folder).exists(), folder
    assert sorted(p.name for p in paths.home.iterdir()) == ["dagster_home", "feast", "run"]
    assert sorted(p.name for p in paths.feast_dir.iterdir()) == ["feature_store.yaml"]
