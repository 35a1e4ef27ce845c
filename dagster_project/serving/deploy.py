"""Deploying the champion. On one machine (`local`, `server`): a uvicorn process on loopback,
started once and told to reload on promotion (:class:`LocalEndpoint`). On a cluster (`k8s`):
the serving Service runs on its own and its replicas poll the `champion` alias; deploying
starts nothing and waits until the Service serves the new version (:class:`ServiceEndpoint`).
Either way a deployment counts only once a smoke request answers with the expected version."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dagster_project.serving.metrics import MULTIPROC_ENV, PROMETHEUS_ENV


class DeployError(RuntimeError):
    pass


@dataclass
class LocalEndpoint:
    host: str
    port: int
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"serving-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"serving-{self.port}.log"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def is_up(self) -> bool:
        try:
            r = httpx.get(f"{self.url}/health", timeout=2)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and r.json().get("status") == "ok"

    def _log_tail(self, lines: int = 25) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout_s: float = 90) -> int:
        """Spawn ``python -m dagster_project.serving`` in its own session; wait for /health."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = os.environ | self.env
        if MULTIPROC_ENV not in env:
            # Feast's import points these at a temporary folder of *this* process (removed
            # when it exits); one endpoint process keeps its metrics in memory instead
            for name in PROMETHEUS_ENV:
                env.pop(name, None)
        if self.token:
            env["MLOPS_SERVING_TOKEN"] = self.token
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dagster_project.serving",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                ],
                cwd=self.run_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DeployError(
                    f"serving process exited with {proc.returncode}; log {self.log_file}:\n"
                    + self._log_tail()
                )
            if self.is_up():
                return proc.pid
            time.sleep(0.5)
        self.stop()
        raise DeployError(
            f"serving did not answer /health in {timeout_s:.0f}s; log {self.log_file}"
        )

    def reload(self) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/admin/reload", headers=self._headers(), timeout=120)
        if r.status_code != 200:
            raise DeployError(f"reload answered {r.status_code}: {r.text[:500]}")
        return dict(r.json())

    def smoke(self, flight: dict[str, Any], expected_version: str, timeout_s: float = 60) -> dict:
        """POST one flight until the answer comes from ``expected_version``."""
        deadline, last = time.monotonic() + timeout_s, "no answer"
        while time.monotonic() < deadline:
            try:
                r = httpx.post(
                    f"{self.url}/predict", json=flight, headers=self._headers(), timeout=30
                )
                if r.status_code == 200 and r.json()["model_version"] == expected_version:
                    return dict(r.json())
                last = f"{r.status_code}: {r.text[:300]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise DeployError(
            f"smoke request never returned version {expected_version} in {timeout_s:.0f}s; last "
            f"answer {last}; log {self.log_file}"
        )

    def stop(self, timeout_s: float = 15) -> bool:
        """Stop the process named by the pid file (TERM, then KILL). True if one was running."""
        if not self.pid_file.exists():
            return False
        pid = int(self.pid_file.read_text().strip() or 0)
        self.pid_file.unlink(missing_ok=True)
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _reap(pid)
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _reap(pid)
        return True


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if this process started it: an exited child stays a
    zombie (still signalable, so "still running" to ``killpg(pid, 0)``) until it is waited for."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class ServiceEndpoint:
    """A serving Service that runs on its own (``MLOPS_SERVING_URL``): several replicas behind
    one URL, each loading the `champion` alias when it polls the registry.

    :meth:`rollout` asks once for a reload (the replica that answers loads the new version at
    once; the others on their next poll), then waits until ``settle_reads`` consecutive
    ``/ready`` answers, from whichever replicas the Service picks, report the version, and a
    smoke ``/predict`` answers with it. Bounded by ``timeout_s``; the error says what the
    Service answered last."""

    base_url: str
    token: str | None = None
    timeout_s: float = 300.0
    settle_reads: int = 3
    poll_s: float = 2.0

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def is_up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> bool:
        """Nothing to stop: the Service is not this process's to end."""
        return False

    def _nudge(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # polling picks the version up anyway
            httpx.post(f"{self.url}/admin/reload", headers=self._headers(), timeout=120)

    def rollout(self, version: str, smoke_flight: dict[str, Any]) -> Deployment:
        started_at = time.perf_counter()
        deadline = time.monotonic() + self.timeout_s
        self._nudge()
        streak, last = 0, "no answer"
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.url}/ready", timeout=10)
                body = (
                    r.json()
                    if r.headers.get("content-type", "").startswith("application/json")
                    else {}
                )
                served = str(body.get("model_version"))
                last = f"/ready {r.status_code}: ready={body.get('ready')} version={served}"
                streak = streak + 1 if r.status_code == 200 and served == version else 0
            except (httpx.HTTPError, ValueError) as exc:
                streak, last = 0, f"/ready: {type(exc).__name__}: {exc}"
            if streak >= self.settle_reads:
                try:
                    r = httpx.post(
                        f"{self.url}/predict",
                        json=smoke_flight,
                        headers=self._headers(),
                        timeout=30,
                    )
                    if r.status_code == 200 and r.json().get("model_version") == version:
                        seconds = time.perf_counter() - started_at
                        return Deployment(self.url, version, False, seconds, dict(r.json()))
                    last = f"/predict {r.status_code}: {r.text[:300]}"
                except (httpx.HTTPError, ValueError) as exc:
                    last = f"/predict: {type(exc).__name__}: {exc}"
                streak = 0
            time.sleep(self.poll_s)
        raise DeployError(
            f"the serving Service at {self.url} did not serve v{version} within "
            f"{self.timeout_s:.0f}s (last answer: {last}); its replicas load a new champion "
            "when they poll the registry (MLOPS_SERVING_RELOAD_S): check that they run, reach "
            "MLflow and are not failing their readiness probe"
        )


@dataclass
class Deployment:
    url: str
    version: str
    started: bool
    seconds: float
    smoke: dict[str, Any]


def deploy(
    endpoint: LocalEndpoint | ServiceEndpoint, version: str, smoke_flight: dict[str, Any]
) -> Deployment:
    """A Service: wait for its rollout. A local endpoint: start it if it is not up, else ask it
    to reload; then smoke-test the version."""
    if isinstance(endpoint, ServiceEndpoint):
        return endpoint.rollout(version, smoke_flight)
    started_at = time.perf_counter()
    started = False
    if endpoint.is_up():
        endpoint.reload()
    else:
        endpoint.start()
        started = True
    answer = endpoint.smoke(smoke_flight, version)
    return Deployment(endpoint.url, version, started, time.perf_counter() - started_at, answer)
