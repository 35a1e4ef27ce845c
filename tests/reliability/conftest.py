"""Fixtures for the fault and soak tests: the session's trained spine copied into a state of
their own (registry database and online store), the endpoint in its own uvicorn process on a
free loopback port, and a private redis-server that a test may stop and restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx
import pytest

from dagster_project.serving.config import ServingConfig
from tests.conftest import free_port
from tests.paths import REPO_ROOT

LAUNCHER = """
import json, sys
from pathlib import Path
import uvicorn
from dagster_project.serving.app import ServingConfig, create_app
raw = json.loads(Path(sys.argv[1]).read_text())
for key in ("feast_config_template", "feast_state_dir"):
    raw[key] = Path(raw[key])
raw["artifact_roots"] = tuple(raw["artifact_roots"])
uvicorn.run(create_app(ServingConfig(**raw)), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


@dataclass
class Served:
    """An endpoint process serving ``config`` on ``port``."""

    config: ServingConfig
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve(config: ServingConfig, folder: Path, timeout_s: float = 120) -> Served:
    """Start the endpoint in its own process; wait until /health answers."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    cfg = folder / "serving.json"
    cfg.write_text(json.dumps(raw))
    port = free_port()
    log = folder / "serving.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(cfg), str(port)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | {"GX_ANALYTICS_ENABLED": "false"},
        )
    served = Served(config, port, proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"endpoint exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{served.url}/health", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    served.stop()
    raise RuntimeError(f"endpoint did not answer in {timeout_s}s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def served_config(spine, first_model, tmp_path_factory) -> ServingConfig:
    """The spine's champion and online store, copied: promotions here touch nothing else.
    Artifacts stay where the spine logged them (the configured artifact root)."""
    home = tmp_path_factory.mktemp("served")
    shutil.copy(spine.paths.mlflow_dir / "mlflow.db", home / "mlflow.db")
    shutil.copytree(spine.paths.feast_dir, home / "feast")
    return ServingConfig.for_paths(
        spine.paths,
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        feast_state_dir=home / "feast",
        prediction_log=str(home / "predictions"),
        reload_interval_s=0,
    )


def spine_flights(n: int = 200) -> list[dict]:
    """Flights the spine has fresh features for: its last day (the spine is 2013-01-01..21),
    so each flight's prediction time (an hour before departure) is within every view's TTL of
    the online store's latest rows."""
    from datetime import date

    from benchmarks.soak import flight_requests

    return flight_requests(date(2013, 1, 21), limit=n)


@dataclass
class RedisServer:
    port: int
    folder: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",  # survives its own restart, like a real deployment
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free port (the machine's 6379 is shared)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (the server tier needs it)", pytrace=False)
    server = RedisServer(free_port(), tmp_path / "redis")
    server.folder.mkdir()
    server.start()
    yield server
    server.stop()


__all__ = ["RedisServer", "Served", "replace", "serve", "spine_flights"]
