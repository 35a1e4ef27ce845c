"""The endpoint under faults, with requests flowing: the online store's Redis stopped and
restarted, the model registry unreachable at startup, a promotion in the middle of the load."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from benchmarks import loadgen
from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.platform import names
from dagster_project.platform.settings import feast_template
from dagster_project.serving.app import create_app
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import tracking
from tests.reliability.conftest import serve, spine_flights

pytestmark = pytest.mark.timeout(600)


def test_promotion_during_load_fails_no_request(served_config, tmp_path):
    served = serve(served_config, tmp_path / "serving")
    try:
        registry = tracking.Registry(served_config.tracking_uri)
        old = registry.by_alias(names.CHAMPION)
        assert old is not None
        source = registry.client.get_model_version(old.name, old.version).source
        box: dict = {}
        worker = threading.Thread(
            target=lambda: box.setdefault(
                "result",
                loadgen.open_loop(
                    f"{served.url}/predict",
                    spine_flights(),
                    rate=20,
                    duration_s=14,
                    max_in_flight=64,
                ),
            )
        )
        worker.start()
        time.sleep(4)
        new = registry.register(source, old.run_id, old.tags)  # the challenger, fully registered
        registry.set_alias(names.CHAMPION, new.version)
        reload = httpx.post(f"{served.url}/admin/reload", timeout=120).json()
        worker.join()
        result = box["result"]
    finally:
        served.stop()
    assert reload["reloaded"] is True
    assert reload["model_version"] == new.version
    assert result.failed == 0, result.figures()
    assert result.sustained, result.figures()  # 20/s is well within this machine's capacity
    assert result.ok == result.sent
    # both versions answered: the swap happened while requests were flowing
    assert set(result.versions) == {old.version, new.version}, result.versions


def _redis_store(spine, redis_port: int, state: Path) -> dict[str, str]:
    """The spine's features in a private Redis (a server tier's online store), with Feast's SQL
    registry in SQLite; returns the Feast overrides the endpoint uses."""
    overrides = {
        "project": "flight_mlops_rel",
        "registry": f"sqlite:///{state / 'feast_registry.db'}",
        "online_store": f"127.0.0.1:{redis_port},db=0",
    }
    client = FeatureStoreClient(
        feast_template("server"),
        state,
        spine.paths.features_url,
        overrides,
    )
    client.apply()
    client.materialize(datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 1, 23, tzinfo=UTC))
    return overrides


def _timeline(url: str, stop: threading.Event, out: list) -> None:
    """One request after another (a steady trickle), recording when and what came back."""
    bodies = spine_flights(50)
    with httpx.Client(timeout=30) as client:
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                r = client.post(f"{url}/predict", json=bodies[i % len(bodies)])
                out.append((started, time.monotonic() - started, r.status_code, r.json()))
            except httpx.HTTPError as exc:
                out.append((started, time.monotonic() - started, -1, {"detail": repr(exc)}))
            i += 1
            time.sleep(0.02)


def test_redis_stopped_and_restarted_gives_503s_then_recovers_without_restart(
    spine, served_config, private_redis, tmp_path
):
    overrides = _redis_store(spine, private_redis.port, tmp_path / "feast")
    config = replace(
        served_config,
        feast_config_template=feast_template("server"),
        feast_state_dir=tmp_path / "feast-serving",
        feast_overrides=overrides,
    )
    served = serve(config, tmp_path / "serving")
    events: list = []
    stop = threading.Event()
    load = threading.Thread(target=_timeline, args=(served.url, stop, events))
    try:
        load.start()
        time.sleep(3)
        t_stop = time.monotonic()
        private_redis.stop()
        t_down = time.monotonic()  # the server process has exited
        time.sleep(4)
        ready_down = httpx.get(f"{served.url}/ready", timeout=30)
        t_up = time.monotonic()
        private_redis.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            recent = [e for e in events if e[0] > t_up]
            if sum(1 for e in recent if e[2] == 200) >= 20:
                break
            time.sleep(0.2)
        ready_up = httpx.get(f"{served.url}/ready", timeout=30)
        pid_alive = served.proc.poll() is None
    finally:
        stop.set()
        load.join()
        served.stop()

    before = [e for e in events if e[0] + e[1] < t_stop]
    during = [e for e in events if t_down < e[0] and e[0] + e[1] < t_up]
    after = [e for e in events if e[0] > t_up]
    assert before, "no request before the fault"
    # answered from Redis: the origin's weather (there for every flight) was found
    assert all(e[2] == 200 and e[3]["features"]["temp"] is not None for e in before), before[-3:]
    timeline = [(round(e[0] - t_down, 2), round(e[1], 2), e[2]) for e in events]
    assert during, ("no request while Redis was down", round(t_up - t_down, 2), timeline[-40:])
    assert {e[2] for e in during} == {503}, [
        (round(e[0] - t_down, 2), round(t_up - t_down, 2), e[1], e[2], e[3])
        for e in during
        if e[2] != 503
    ]
    assert all(e[3]["detail"].startswith("feature store unavailable") for e in during)
    assert max(e[1] for e in during) < 5, "a request hung while Redis was down"
    assert ready_down.status_code == 503
    assert any("feature store" in p for p in ready_down.json()["problems"])
    assert pid_alive, "the endpoint died"
    # recovered on its own: 200s with the real (persisted) features, no restart
    ok_after = [e for e in after if e[2] == 200]
    assert len(ok_after) >= 20, {e[2] for e in after}
    assert all(e[3]["features"]["temp"] is not None for e in ok_after[-10:])
    first_ok = min(e[0] for e in ok_after) - t_up
    assert first_ok < 10
    assert ready_up.status_code == 200, ready_up.text
    print(
        f"\nredis fault: {len(before)} x 200 before; {len(during)} x 503 while down (slowest "
        f"{max(e[1] for e in during) * 1000:.0f} ms); first 200 {first_ok:.2f} s after the "
        f"restart began; {len(ok_after)} x 200 after"
    )
    assert not [e for e in events if e[2] not in (200, 503)], "an answer other than 200 or 503"


def test_registry_unreachable_at_startup_refuses_readiness_with_the_reason(served_config):
    dead = replace(
        served_config, tracking_uri="postgresql+psycopg2://postgres:pw-x9@127.0.0.1:1/mlops_mlflow"
    )
    started = time.monotonic()
    with TestClient(create_app(dead)) as c:
        assert time.monotonic() - started < 30  # no 100-second MLflow retry loop
        assert c.get("/health").status_code == 200
        ready = c.get("/ready")
        assert ready.status_code == 503
        reason = " ".join(ready.json()["problems"])
        assert (
            "registry postgresql+psycopg2://postgres:***@127.0.0.1:1/mlops_mlflow unreachable"
            in reason
        )
        assert "pw-x9" not in ready.text
        r = c.post("/predict", json=EXAMPLE_FLIGHT)
        assert r.status_code == 503
        assert "no model to serve" in r.json()["detail"]


def test_registry_back_after_startup_is_picked_up_without_restart(served_config, tmp_path):
    missing = tmp_path / "later" / "mlflow.db"
    config = replace(served_config, tracking_uri=f"sqlite:///{missing}", reload_interval_s=0.5)
    with TestClient(create_app(config)) as c:
        ready = c.get("/ready").json()
        assert ready["ready"] is False
        assert f"registry database {missing} does not exist" in " ".join(ready["problems"])
        missing.parent.mkdir()
        shutil.copy(served_config.tracking_uri.removeprefix("sqlite:///"), missing)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not c.get("/ready").json()["ready"]:
            time.sleep(0.3)
        assert c.get("/ready").json()["ready"] is True
        body = c.post("/predict", json=spine_flights(1)[0]).json()
        assert (
            body["model_version"]
            == tracking.Registry(config.tracking_uri).by_alias("champion").version
        )
