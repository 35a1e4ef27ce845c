"""Browser fixtures: Debian's Chromium driven by Playwright, and live UIs on loopback ports.

* ``chromium``: the system Chromium. Missing on Debian/Ubuntu, it is installed with apt-get
  (``chromium`` and ``chromium-driver``); on other systems the tests skip with the reason, except
  in CI (``CI=true``), where a missing browser fails the run.
* ``page``: a fresh headless page per test (Playwright's bundled browsers are never downloaded:
  the launch names ``/usr/bin/chromium``).
* ``shot``: saves a full-page screenshot under ``test-artifacts/browser/``.
* ``dagster_ui``: ``dagster-webserver`` on a free port over a temp DAGSTER_HOME / MLOPS_HOME in
  which one day was ingested and featurized (so metadata, plots and lineage are there to see);
  runs launch at once in subprocesses (default run coordinator, no daemon needed).
* ``mlflow_ui``: ``mlflow server`` over a temp tracking store holding a registered
  ``flight_delay`` version with the ``champion`` alias.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DAGSTER_YAML = """\
run_coordinator:  # launch at once: the tests run no daemon (`dagster dev` has one)
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""
INGESTED_DAY = "2013-01-02"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _debian_like() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    ids = {fields.get("ID", "").strip('"'), *fields.get("ID_LIKE", "").strip('"').split()}
    return bool(ids & {"debian", "ubuntu"})


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _apt_install() -> str:
    """apt-get install chromium chromium-driver (as root, or through passwordless sudo)."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return "not root and no sudo"
        prefix = ["sudo", "-n"]
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
    ):
        done = subprocess.run(
            prefix + cmd, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-800:]}"
    return ""


def locate_chromium(
    find: Callable[[], str | None] = _find_chromium,
    debian: Callable[[], bool] = _debian_like,
    install: Callable[[], str] = _apt_install,
) -> tuple[str | None, str]:
    """The Chromium executable, installing it with apt-get on Debian/Ubuntu when missing;
    else ``None`` and why."""
    found = find()
    if found is not None:
        return found, ""
    if not debian():
        return None, "Chromium is not installed and this is not Debian/Ubuntu"
    error = install()
    found = find()
    if found is not None:
        return found, ""
    return None, (
        f"Chromium is not installed and installing it failed: {error}"
        if error
        else "apt-get installed chromium, but no `chromium` is on the PATH"
    )


def require_browser(path: str | None, why: str, ci: bool) -> str:
    """Skip (on a developer's machine) or fail (in CI) when there is no browser."""
    if path is not None:
        return path
    reason = f"{why}; install `chromium` (Debian: apt-get install chromium chromium-driver)"
    if ci:
        pytest.fail(f"browser tests need Chromium in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_browser(*locate_chromium(), ci=_in_ci())


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(60_000)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def shot(page) -> Callable[[str], Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return save


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_"))}
    return env | {"GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "1"} | extra


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, ok: Callable) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if ok(url):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """TERM the service's process group, then KILL what is left of it (MLflow's job consumers
    outlive a TERM of the server)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@dataclass(frozen=True)
class LiveUI:
    url: str
    home: Path
    log_path: Path


def _dagster_loaded(url: str) -> bool:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    if httpx.get(f"{url}/server_info", timeout=2).status_code != 200:
        return False
    data = httpx.post(f"{url}/graphql", json={"query": query}, timeout=10).json()
    entries = data["data"]["workspaceOrError"]["locationEntries"]
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


@pytest.fixture(scope="session")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveUI]:
    import dagster as dg

    from dagster_project.definitions import build_definitions
    from dagster_project.platform.settings import Paths

    root = tmp_path_factory.mktemp("dagster_ui")
    home, mlops = root / "dagster_home", root / "mlops"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    # One day through ingestion, validation and the feature tables, recorded in this instance:
    # the catalog then has materializations with previews, plots and column lineage.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = (
            build_definitions(Paths(mlops))
            .get_job_def("ingest_features_job")
            .execute_in_process(instance=instance, partition_key=INGESTED_DAY)
        )
        assert result.success
    port = free_port()
    log_path = root / "webserver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                *("-w", str(REPO / "workspace.yaml")),
                *("-h", "127.0.0.1", "-p", str(port)),
            ],
            cwd=REPO,
            env=_clean_env(DAGSTER_HOME=str(home), MLOPS_HOME=str(mlops), MLOPS_PROFILE="local"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: runs and code servers die with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, proc, log_path, 180, _dagster_loaded)
        # The "join the community" dialog a new instance shows on loopback would cover the page.
        httpx.post(f"{url}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=10)
        yield LiveUI(url, mlops, log_path)
    finally:
        _stop(proc)


def _register_champion(tracking_uri: str, artifacts: Path) -> str:
    """A `flight_delay` version with the `champion` alias, registered as training does (through
    the project's tracking module), with a tiny artifact instead of a trained model."""
    import mlflow

    from dagster_project.platform import names
    from dagster_project.training import tracking

    tracking.configure(tracking_uri, str(artifacts))
    with mlflow.start_run(run_name="browser-test") as run:
        mlflow.log_metric("holdout_roc_auc", 0.71)
        mlflow.log_text("placeholder for the browser test", "model/README.txt")
    registry = tracking.Registry(tracking_uri)
    version = registry.register(
        f"{run.info.artifact_uri}/model",
        run.info.run_id,
        {"model_kind": "xgboost", "holdout_roc_auc": "0.710000"},
    )
    registry.set_alias(names.CHAMPION, version.version)
    return version.version


@pytest.fixture(scope="session")
def mlflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveUI]:
    root = tmp_path_factory.mktemp("mlflow_ui")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    # In a subprocess: the MLflow client's process-wide tracking URI stays untouched here.
    code = (
        "import sys; from pathlib import Path; from tests.browser.conftest import _register_champion;"
        "print(_register_champion(sys.argv[1], Path(sys.argv[2])))"
    )
    subprocess.run(
        [sys.executable, "-c", code, tracking_uri, str(root / "artifacts")],
        cwd=REPO,
        env=_clean_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    port = free_port()
    log_path = root / "mlflow.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                tracking_uri,
                "--default-artifact-root",
                str(root / "artifacts"),
                *("-h", "127.0.0.1", "-p", str(port), "--workers", "1"),
            ],
            cwd=root,
            env=_clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(
            url, proc, log_path, 120, lambda u: httpx.get(f"{u}/health", timeout=2).is_success
        )
        yield LiveUI(url, root, log_path)
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def feast_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveUI]:
    """`feast ui` as `make up` starts it, after `make feast-registry` on an empty state folder."""
    mlops = tmp_path_factory.mktemp("feast_ui") / "mlops"
    env = _clean_env(MLOPS_HOME=str(mlops))
    done = subprocess.run(
        ["make", "--no-print-directory", "feast-registry"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    log_path = mlops / "feast-ui.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "feast"),
                *("-c", "feature_repo", "-f", str(mlops / "feast/feature_store.yaml")),
                *("ui", "-h", "127.0.0.1", "-p", str(port)),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(
            url, proc, log_path, 120, lambda u: httpx.get(f"{u}/projects-list.json").is_success
        )
        yield LiveUI(url, mlops, log_path)
    finally:
        _stop(proc)
