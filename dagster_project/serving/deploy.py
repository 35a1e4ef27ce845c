"""Deploying the champion on the ``local`` tier: a uvicorn process on loopback, started once and
told to reload on promotion. A deployment counts only once a smoke request answers with the
expected model version."""

from __future__ import annotations

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
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
        return True


@dataclass
class Deployment:
    url: str
    version: str
    started: bool
    seconds: float
    smoke: dict[str, Any]


def deploy(endpoint: LocalEndpoint, version: str, smoke_flight: dict[str, Any]) -> Deployment:
    """Start the endpoint if it is not up, else ask it to reload; then smoke-test the version."""
    started_at = time.perf_counter()
    started = False
    if endpoint.is_up():
        endpoint.reload()
    else:
        endpoint.start()
        started = True
    answer = endpoint.smoke(smoke_flight, version)
    return Deployment(endpoint.url, version, started, time.perf_counter() - started_at, answer)
