"""The serving container of the container tier (`make up PROFILE=k8s-docker`) as the deployment
target (``-m slow``): two weeks ingested and trained on the tier's stores (PostgreSQL, Redis, S3),
``deployed_endpoint`` materializing only once the serving container answers with the new
champion (no uvicorn started by the step), the container answering `/predict` for a real flight
from Redis, and a second version promoted while a load generator keeps sending requests: no
request fails and the answers switch from the old version to the new one.

The runs execute in this process against the tier's stores (the container step test covers
runs and steps in containers); what is under test here is the deployment path to a serving
container that runs on its own."""

from __future__ import annotations

import threading
import time
from datetime import date

import dagster as dg
import httpx
import pytest

from benchmarks import loadgen
from dagster_project.definitions import build_definitions
from dagster_project.defs.run_config import training_run_config
from dagster_project.orchestration.partitions import range_tags
from dagster_project.platform import names, settings
from dagster_project.replay import run_job
from dagster_project.serving import scoring
from dagster_project.serving.deploy import ServiceEndpoint
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import tracking
from tests.containers.conftest import UpTier

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = ("2013-01-01", "2013-01-14")
# an hour before departure on the last day's evening: within every view's TTL of the latest rows
FLIGHT = EXAMPLE_FLIGHT | {"scheduled_departure": "2013-01-15T00:45:00"}


def test_training_deploys_to_the_serving_container_and_a_promotion_under_load_fails_nothing(
    k8s_docker_up: UpTier,
):
    env = k8s_docker_up.env
    url, token = env["MLOPS_SERVING_URL"], env["MLOPS_SERVING_TOKEN"]
    auth = {"Authorization": f"Bearer {token}"}
    paths = settings.paths()
    instance = dg.DagsterInstance.from_config(str(k8s_docker_up.dagster_home))
    defs = build_definitions(paths)
    assert run_job(defs, "ingest_features_job", instance, tags=range_tags(*DAYS)).success

    # The training run deploys to the container: the step asks it to reload and waits for it
    # to serve the new version; it starts nothing itself.
    train = run_job(
        defs,
        "training_job",
        instance,
        run_config=training_run_config(
            *DAYS,
            model={"model_kinds": ["xgboost"], "n_trials": 1, "holdout_days": 3,
                   "validation_days": 3},
            promotion={"min_auc": 0.5, "max_calibration_error": 0.5},
        ),
    )  # fmt: skip
    assert train.success
    registry = tracking.Registry(paths.mlflow_tracking_uri)
    old = registry.by_alias(names.CHAMPION)
    assert old is not None
    (deployed,) = train.asset_materializations_for_node("deployed_endpoint")
    assert str(deployed.metadata["url"].value).rstrip("/") == url.rstrip("/")
    assert str(deployed.metadata["model_version"].value) == old.version
    assert not (paths.home / "run" / f"serving-{url.rsplit(':', 1)[1]}.pid").exists()

    # The container answers for a real flight with that champion, its features from Redis.
    assert httpx.post(f"{url}/predict", json=FLIGHT, timeout=30).status_code == 401
    answer = httpx.post(f"{url}/predict", json=FLIGHT, headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == old.version
    assert answer.json()["fallback"] is False, answer.json()["fallbacks"]

    # A promotion while requests flow: the new version registered whole, the alias moved,
    # the rollout call waits until the container serves it.
    flights = [  # real flights' keys, asked at the probe time
        f | {"scheduled_departure": FLIGHT["scheduled_departure"]}
        for f in scoring.scheduled_flights(date(2013, 1, 14), limit=40)
    ]
    box: dict = {}
    load = threading.Thread(
        target=lambda: box.setdefault(
            "result",
            loadgen.open_loop(f"{url}/predict", flights, rate=20, duration_s=20, token=token),
        )
    )
    load.start()
    time.sleep(5)
    source = registry.client.get_model_version(old.name, old.version).source
    new = registry.register(source, old.run_id, old.tags)
    registry.set_alias(names.CHAMPION, new.version)
    rollout = ServiceEndpoint(url, token=token).rollout(new.version, FLIGHT)
    load.join()
    result = box["result"]
    assert rollout.version == new.version
    assert result.failed == 0, result.figures()
    assert result.ok == result.sent, result.figures()
    assert set(result.versions) == {old.version, new.version}, result.versions
    print(
        f"\npromotion under load: rollout {rollout.seconds:.1f} s, "
        f"{result.versions} answers, p99 {result.figures()['p99_ms']} ms"
    )
