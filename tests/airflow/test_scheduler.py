"""`make up`'s Airflow on a fresh home: the real ``airflow standalone`` (api-server, scheduler,
dag-processor, triggerer) in the environment ``make airflow-env`` prints, on an empty
AIRFLOW_HOME, with the clock's default (no ``MLOPS_CLOCK_OFFSET_DAYS``). The scheduler creates
the latest scheduled run of each DAG that has a schedule; every run must end without a failed
run or task instance, and a run whose logical date lies outside the data must be a skipped task
whose log gives the reason.

No Dagster webserver runs: with the default clock today's runs skip before they call Dagster.
The connection points at a port where nothing listens, so a run that did call it would fail
(and this test with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from tests.airflow.conftest import BIN, DAGS_FOLDER, REPO, free_port

DATA_FIRST, DATA_LAST = date(2013, 1, 1), date(2013, 12, 31)
START_TIMEOUT_S = 240  # the API answers and the DAGs are parsed
RUNS_TIMEOUT_S = 240  # the scheduled runs are created and finished
DONE = {"success", "failed"}
TI_DONE = {"success", "skipped", "failed", "upstream_failed", "removed"}
TI_BAD = {"failed", "upstream_failed", "up_for_retry"}  # no point waiting for retries


def make_up_environment(mlops_home: Path, airflow_port: int, dagster_port: int) -> dict[str, str]:
    """The environment `make up` starts ``airflow standalone`` in, for a user who has set nothing
    of the project's own (the settings live in the Makefile's AIRFLOW_ENV: read, not copied)."""
    own = ("MLOPS_", "DAGSTER_", "AIRFLOW", "MAKE", "MFLAGS")
    outside = {k: v for k, v in os.environ.items() if not k.startswith(own) and "\n" not in v}
    printed = subprocess.run(
        [
            *("make", "-s", "--no-print-directory", "-C", str(REPO), "airflow-env"),
            *("PROFILE=local", f"MLOPS_HOME={mlops_home}"),
            *(f"AIRFLOW_PORT={airflow_port}", f"DAGSTER_PORT={dagster_port}"),
        ],
        env=outside,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in printed.splitlines())
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS_FOLDER)
    assert "MLOPS_CLOCK_OFFSET_DAYS" not in env  # the clock's default, as right after `make up`
    # This interpreter's environment instead of the checkout's .venv (a worktree may have none).
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    # The component log servers' fixed ports (8793, 8794) would collide with a running `make up`.
    env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
    env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
    return env


@dataclass(frozen=True)
class Standalone:
    url: str
    home: Path
    log_path: Path
    proc: subprocess.Popen

    def get(self, path: str, **params) -> dict:
        response = httpx.get(f"{self.url}/api/v2{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(
                f"airflow standalone exited with {self.proc.returncode}:\n{self.log_tail()}"
            )


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole process group (components and task runners), then SIGKILL to what
    is left of it after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    mlops = tmp_path_factory.mktemp("fresh_make_up") / "mlops"
    port = free_port()
    env = make_up_environment(mlops, airflow_port=port, dagster_port=free_port())
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True)  # what `make up` creates: an empty AIRFLOW_HOME
    log_path = mlops / "airflow.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # one process group: `_stop` ends all of it
        )
    try:
        server = Standalone(url=f"http://127.0.0.1:{port}", home=home, log_path=log_path, proc=proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        expected = {p.stem for p in DAGS_FOLDER.glob("*.py")}
        while True:
            server.check_alive()
            try:
                parsed = {d["dag_id"] for d in server.get("/dags", limit=100)["dags"]}
                if parsed >= expected:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Airflow did not serve the DAGs {sorted(expected)} within "
                    f"{START_TIMEOUT_S}s on a fresh home:\n{server.log_tail()}"
                )
            time.sleep(1)
        yield server
    finally:
        _stop(proc)


@dataclass(frozen=True)
class Snapshot:
    dags: dict[str, dict]
    scheduled: set[str]
    runs: list[dict]
    task_instances: list[dict]

    def describe(self) -> str:
        runs = [(r["dag_id"], r["dag_run_id"], r["state"]) for r in self.runs]
        tis = [
            (t["dag_id"], t["task_id"], t["state"], t["try_number"]) for t in self.task_instances
        ]
        return f"runs {runs}; task instances {tis}"


def _snapshot(server: Standalone) -> Snapshot:
    dags = {d["dag_id"]: d for d in server.get("/dags", limit=100)["dags"]}
    scheduled = {dag_id for dag_id, d in dags.items() if d["timetable_summary"] is not None}
    runs = server.get("/dags/~/dagRuns", limit=100)["dag_runs"]
    tis = server.get("/dags/~/dagRuns/~/taskInstances", limit=100)["task_instances"]
    return Snapshot(dags, scheduled, runs, tis)


def _finished(snap: Snapshot) -> bool:
    with_runs = {r["dag_id"] for r in snap.runs}
    return (
        snap.scheduled <= with_runs
        and all(r["state"] in DONE for r in snap.runs)
        and all(t["state"] in TI_DONE for t in snap.task_instances)
    )


@pytest.fixture(scope="module")
def finished(standalone: Standalone) -> Snapshot:
    """The metadata once each scheduled DAG has a run and every run has ended (or something
    failed: then there is no point in waiting for retries)."""
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    while True:
        standalone.check_alive()
        snap = _snapshot(standalone)
        if _finished(snap) or any(t["state"] in TI_BAD for t in snap.task_instances):
            return snap
        if time.monotonic() > deadline:
            pytest.fail(
                f"the scheduler did not create and finish the scheduled runs of "
                f"{sorted(snap.scheduled)} within {RUNS_TIMEOUT_S}s: {snap.describe()}\n"
                f"{standalone.log_tail()}"
            )
        time.sleep(1)


def test_the_dags_parse_and_are_unpaused(standalone: Standalone, finished: Snapshot):
    assert standalone.get("/importErrors")["import_errors"] == []
    assert set(finished.dags) == {p.stem for p in DAGS_FOLDER.glob("*.py")}
    assert [d for d, meta in finished.dags.items() if meta["is_paused"]] == []
    assert finished.scheduled == {"flights__daily_ingest", "models__weekly_retrain"}


def _task_log(server: Standalone, ti: dict) -> list[dict]:
    path = (
        f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}"
        f"/logs/{ti['try_number']}"
    )
    return server.get(path)["content"]


def _errors(server: Standalone, ti: dict) -> str:
    """The error events of a task instance's log (the exception's type and message)."""
    lines = []
    for event in _task_log(server, ti):
        if event.get("level") in ("error", "critical"):
            details = [f"{d['exc_type']}: {d['exc_value']}" for d in event.get("error_detail", [])]
            lines.append(" ".join([event.get("event", ""), *details]))
    return f"{ti['dag_id']}.{ti['task_id']} ({ti['state']}): " + ("; ".join(lines) or "no error")


def test_no_scheduled_run_or_task_fails_on_a_fresh_home(standalone: Standalone, finished: Snapshot):
    bad = [t for t in finished.task_instances if t["state"] not in ("success", "skipped")]
    if bad:  # a task that failed before it ran has nothing in its own log: the executor's says why
        pytest.fail(
            "\n".join(
                [finished.describe(), *(_errors(standalone, t) for t in bad), standalone.log_tail()]
            )
        )
    assert [r for r in finished.runs if r["state"] != "success"] == [], finished.describe()
    assert {r["dag_id"] for r in finished.runs} == finished.scheduled, finished.describe()
    assert {r["run_type"] for r in finished.runs} == {"scheduled"}
    # catchup=False: the latest tick only (a second one if a tick passed during the test), not
    # every day since the DAGs' start date in 2013.
    week_ago = date.today() - timedelta(days=8)
    old = [r for r in finished.runs if date.fromisoformat(r["logical_date"][:10]) < week_ago]
    assert old == [], finished.describe()
    assert len(finished.task_instances) == len(finished.runs), finished.describe()  # one task each
    assert all(t["try_number"] == 1 for t in finished.task_instances), finished.describe()


def _why_outside(dag_id: str, logical: date) -> str | None:
    """The skip reason the clock must give (offset 0: simulated day = logical date's day)."""
    if dag_id == "flights__daily_ingest":
        first = last = logical
    else:  # @weekly trains on the seven days before the logical date
        first, last = logical - timedelta(days=7), logical - timedelta(days=1)
    if first >= DATA_FIRST and last <= DATA_LAST:
        return None
    span = f"{first}" if first == last else f"{first} .. {last}"
    return f"logical date {logical}: simulated {span} is outside the data"


def test_runs_outside_the_data_are_skipped_with_the_reason_in_the_task_log(
    standalone: Standalone, finished: Snapshot
):
    outside = 0
    for ti in finished.task_instances:
        logical = date.fromisoformat(ti["logical_date"][:10])  # UTC, as the operator reads it
        why = _why_outside(ti["dag_id"], logical)
        if why is None:
            continue
        outside += 1
        assert ti["state"] == "skipped", (ti, finished.describe())
        events = _task_log(standalone, ti)
        reasons = [e.get("reason", "") for e in events if e.get("event") == "Skipping task."]
        assert len(reasons) == 1, (ti["dag_id"], events)
        assert reasons[0].startswith(why), (why, reasons)
        assert "MLOPS_CLOCK_OFFSET_DAYS=0" in reasons[0]
    # With the default clock, any real date since 2014 is outside the data: every run skips.
    assert outside == len(finished.task_instances), finished.describe()
