"""Fixtures for the Airflow -> Dagster trigger tests.

* ``dagster_server``: a real ``dagster-webserver`` on a free loopback port, with a temp
  DAGSTER_HOME and MLOPS_HOME, serving the project's code location (``flight_mlops``) and a
  small test-only one (``airflow_trigger_tests``: jobs that succeed, fail or take a while).
  Runs are launched at once by the default run coordinator (no daemon), in subprocesses.
* ``airflow_env``: a temp AIRFLOW_HOME migrated with ``airflow db migrate``, the DAGs folder
  (plus a test-only bundle) configured, and ``AIRFLOW_CONN_DAGSTER_DEFAULT`` pointing at the
  webserver. Airflow reads its config when first imported, so tests import it lazily.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "airflow_dags"
TEST_DAGS_FOLDER = Path(__file__).resolve().parent / "dags"
TEST_LOCATION_FILE = Path(__file__).resolve().parent / "dagster_test_location.py"
TEST_LOCATION = "airflow_trigger_tests"
BIN = Path(sys.executable).parent

# The DAG files import the trigger as Airflow does: with the DAGs folder on sys.path.
if str(DAGS_FOLDER) not in sys.path:
    sys.path.insert(0, str(DAGS_FOLDER))

DAGSTER_YAML = """\
run_coordinator:  # launch at once: the tests run no daemon (`dagster dev` has one)
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


@dataclass(frozen=True)
class DagsterServer:
    url: str
    port: int
    mlops_home: Path
    log_path: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_loaded(url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"dagster-webserver exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                data = httpx.post(f"{url}/graphql", json={"query": query}, timeout=10).json()
                entries = data["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(
        f"dagster-webserver not ready in {timeout}s:\n{log_path.read_text()[-3000:]}"
    )


@pytest.fixture(scope="session")
def dagster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterServer]:
    root = tmp_path_factory.mktemp("dagster")
    home, mlops = root / "dagster_home", root / "mlops"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    workspace = root / "workspace.yaml"
    workspace.write_text(
        json.dumps(  # JSON is YAML
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "dagster_project.definitions",
                            "working_directory": str(REPO),
                            "location_name": "flight_mlops",
                        }
                    },
                    {
                        "python_file": {
                            "relative_path": str(TEST_LOCATION_FILE),
                            "location_name": TEST_LOCATION,
                        }
                    },
                ]
            }
        )
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_", "AIRFLOW"))
    }
    env.update(
        DAGSTER_HOME=str(home),
        MLOPS_HOME=str(mlops),
        MLOPS_PROFILE="local",
        GX_ANALYTICS_ENABLED="false",
        DAGSTER_DISABLE_TELEMETRY="1",
    )
    port = free_port()
    log_path = root / "webserver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                "-w",
                str(workspace),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: runs and code servers die with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_loaded(url, proc, log_path, timeout=180)
        yield DagsterServer(url=url, port=port, mlops_home=mlops, log_path=log_path)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@dataclass(frozen=True)
class AirflowEnv:
    home: Path
    dagster: DagsterServer


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A migrated Airflow metadata DB in a temp AIRFLOW_HOME; the DAGs folder configured."""
    home = tmp_path_factory.mktemp("airflow_home")
    bundles = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(DAGS_FOLDER)},
        },
        {
            "name": "trigger-tests",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(TEST_DAGS_FOLDER)},
        },
    ]
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in settings.items():
            mp.setenv(key, value)
        if "airflow.settings" in sys.modules:
            pytest.fail("airflow was imported before the test AIRFLOW_HOME was set")
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"],
            check=True,
            capture_output=True,
            env=os.environ.copy(),
            timeout=300,
        )
        yield home


@pytest.fixture(scope="session")
def airflow_env(airflow_home: Path, dagster_server: DagsterServer) -> Iterator[AirflowEnv]:
    """Airflow with the ``dagster_default`` connection pointing at the live webserver."""
    connection = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": dagster_server.port,
        "extra": {"poll_interval": 0.5, "timeout": 600},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_DAGSTER_DEFAULT", json.dumps(connection))
        yield AirflowEnv(home=airflow_home, dagster=dagster_server)
