"""Deploying on the container tiers: the deployer starts no process; it waits until the serving
Service (several replicas behind one URL, each polling the `champion` alias) serves the new
version, and says clearly when it does not within its bound."""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.orchestration.resources import Deployer
from dagster_project.platform import settings
from dagster_project.serving import deploy
from dagster_project.serving.schemas import EXAMPLE_FLIGHT


class Replicas:
    """What a Service in front of replicas answers: each request goes to the next replica
    (round robin); replica ``i`` serves ``new`` once it has answered ``switch_after[i]``
    requests (its alias poll), ``old`` before."""

    def __init__(self, old: str, new: str, switch_after: list[int], token: str = "t0k"):
        self.old, self.new, self.token = old, new, token
        self.switch_after = switch_after
        self.served = [0] * len(switch_after)
        self.turn = itertools.cycle(range(len(switch_after)))
        self.lock = threading.Lock()
        self.reloads = 0
        self.predict_auth: list[str | None] = []

    def version(self) -> str:
        with self.lock:
            i = next(self.turn)
            self.served[i] += 1
            return self.new if self.served[i] > self.switch_after[i] else self.old


@pytest.fixture
def service() -> Iterator[tuple[str, Replicas]]:
    replicas = Replicas("1", "2", [0, 0])

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/ready":
                version = replicas.version()
                self._send(200, {"ready": True, "model_version": version, "problems": []})
            else:
                self._send(404, {})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/admin/reload":
                replicas.reloads += 1
                self._send(200, {"reloaded": False})
            elif self.path == "/predict":
                replicas.predict_auth.append(self.headers.get("authorization"))
                self._send(200, {"model_version": replicas.version(), "probability": 0.3})
            else:
                self._send(404, {})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", replicas
    server.shutdown()
    server.server_close()


def test_the_rollout_waits_until_every_replica_the_service_answers_from_serves_it(service):
    url, replicas = service
    replicas.switch_after = [0, 6]  # the second replica picks v2 up on a later poll
    endpoint = deploy.ServiceEndpoint(url, token="t0k", poll_s=0.01, settle_reads=4)
    done = deploy.deploy(endpoint, "2", EXAMPLE_FLIGHT)
    assert done.version == "2"
    assert done.started is False
    assert done.smoke["model_version"] == "2"
    assert done.url == url
    assert replicas.served[1] > 6  # it did not stop at the first replica that had v2
    assert replicas.reloads == 1  # one explicit rollout call, then polling
    assert replicas.predict_auth == ["Bearer t0k"]
    assert endpoint.stop() is False  # the Service is not the deployer's to stop


def test_a_rollout_that_never_arrives_fails_within_its_bound_and_says_why(service):
    url, replicas = service
    replicas.switch_after = [10**9, 10**9]
    endpoint = deploy.ServiceEndpoint(url, timeout_s=0.5, poll_s=0.05)
    with pytest.raises(deploy.DeployError) as err:
        deploy.deploy(endpoint, "2", EXAMPLE_FLIGHT)
    message = str(err.value)
    assert url in message
    assert re.search(r"did not serve v2 within \d+s", message), message
    assert "version=1" in message  # what it answered last
    assert "MLOPS_SERVING_RELOAD_S" in message


def test_a_service_that_does_not_answer_fails_with_the_url():
    endpoint = deploy.ServiceEndpoint("http://127.0.0.1:9", timeout_s=0.3, poll_s=0.05)
    with pytest.raises(deploy.DeployError, match=r"http://127\.0\.0\.1:9 did not serve v3"):
        endpoint.rollout("3", EXAMPLE_FLIGHT)


def test_the_deployer_resource_waits_on_the_service_and_starts_nothing(service, tmp_path):
    url, _ = service
    deployer = Deployer(mlops_home=str(tmp_path), serving_url=url, rollout_timeout_s=30)
    endpoint = deployer.endpoint()
    assert isinstance(endpoint, deploy.ServiceEndpoint)
    assert endpoint.url == url
    done = deployer.deploy("2", EXAMPLE_FLIGHT)
    assert done.version == "2"
    assert not (tmp_path / "run").exists()  # no pid file, no log: no process was started
    with pytest.raises(dg.Failure, match="deployment of v9 failed"):
        Deployer(mlops_home=str(tmp_path), serving_url=url, rollout_timeout_s=0.2).deploy(
            "9", EXAMPLE_FLIGHT
        )


def test_the_serving_url_setting_per_tier(monkeypatch):
    monkeypatch.delenv("MLOPS_SERVING_URL", raising=False)
    for tier, expected in (("local", None), ("server", None), ("k8s", "http://serving")):
        monkeypatch.setenv("MLOPS_PROFILE", tier)
        assert settings.serving_url() == expected, tier
    monkeypatch.setenv("MLOPS_SERVING_URL", "http://serving.flight-mlops.svc:80/")
    assert settings.serving_url() == "http://serving.flight-mlops.svc:80"
    monkeypatch.setenv("MLOPS_PROFILE", "local")
    assert settings.serving_url() == "http://serving.flight-mlops.svc:80"


def test_stopping_an_endpoint_this_process_started_does_not_wait_out_the_timeout(tmp_path):
    """An exited child stays a zombie until waited for, and a zombie still answers
    ``killpg(pid, 0)``: stop() reaps it, so it returns once the process has exited (it used
    to wait the whole 15 s and then SIGKILL an already finished process)."""
    import subprocess
    import time

    from dagster_project.serving.deploy import LocalEndpoint

    endpoint = LocalEndpoint("127.0.0.1", 1, tmp_path)
    # The child restores SIGTERM's default itself: a disposition of "ignored" and a blocked
    # mask survive exec, and in the full suite this process was seen passing SIGTERM on ignored
    # or blocked (`sleep` then outlived the 15 s); an endpoint (uvicorn) sets its own handler.
    child = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_DFL); "
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM]); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    inherited = {
        k: v
        for k, v in (
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        if k in ("SigIgn", "SigBlk")
    }
    endpoint.pid_file.write_text(str(proc.pid))
    started = time.monotonic()
    assert endpoint.stop(timeout_s=15)
    assert time.monotonic() - started < 5, f"this process's signal masks: {inherited}"
    assert proc.poll() is not None  # already reaped: poll() sees it has ended
    assert not endpoint.pid_file.exists()
