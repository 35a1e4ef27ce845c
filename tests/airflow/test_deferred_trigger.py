"""The deferred wait: ``DagsterRunTrigger``'s events against a real dagster-webserver (see
conftest), the asyncio client's retries on 5xx, and the trigger's round trip through
``serialize()`` as the triggerer rebuilds it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster_trigger.async_client import AsyncDagsterClient
from dagster_trigger.client import DagsterClient
from dagster_trigger.graphql import DagsterUnavailableError

from tests.airflow.conftest import TEST_LOCATION, DagsterServer, free_port
from tests.airflow.dagster_test_location import FAILURE_MESSAGE


@pytest.fixture(scope="module")
def trigger_class(airflow_home: Path) -> Any:
    """The trigger class; importing it imports Airflow, so only after AIRFLOW_HOME is set."""
    from dagster_trigger.trigger import DagsterRunTrigger

    return DagsterRunTrigger


def _events(trigger: Any) -> list[dict]:
    async def collect() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def _launch(url: str, job: str, seconds: float | None = None) -> str:
    config = {"ops": {"sleep_a_while": {"config": {"seconds": seconds}}}} if seconds else {}
    with DagsterClient(url) as client:
        return client.launch_run(job, location=TEST_LOCATION, run_config=config).run_id


def _rebuilt(trigger_class: Any, **kwargs: Any) -> Any:
    """As the triggerer does: import the serialized classpath and construct from the kwargs."""
    from airflow.sdk.module_loading import import_string

    classpath, stored = trigger_class(**kwargs).serialize()
    assert classpath == "dagster_trigger.trigger.DagsterRunTrigger"
    return import_string(classpath)(**stored)


def test_success_event_when_the_run_ends(dagster_server: DagsterServer, trigger_class: Any):
    run_id = _launch(dagster_server.url, "slow_job", seconds=2.0)
    trigger = _rebuilt(
        trigger_class,
        run_id=run_id,
        job_name="slow_job",
        url=dagster_server.url,
        deadline=time.time() + 120,
        poll_interval=0.3,
        reused=True,
    )
    started = time.monotonic()
    [event] = _events(trigger)
    assert event == {
        "status": "SUCCESS",
        "run_id": run_id,
        "job_name": "slow_job",
        "reused": True,
        "url": f"{dagster_server.url}/runs/{run_id}",
    }
    assert time.monotonic() - started >= 1.5  # it waited for the 2 s step, not returned early


def test_failure_event_carries_the_failed_step_and_message(
    dagster_server: DagsterServer, trigger_class: Any
):
    run_id = _launch(dagster_server.url, "failing_job")
    trigger = trigger_class(
        run_id=run_id,
        job_name="failing_job",
        url=dagster_server.url,
        deadline=time.time() + 120,
        poll_interval=0.3,
    )
    [event] = _events(trigger)
    assert event["status"] == "FAILURE"
    assert "step 'fail_deliberately' failed" in event["reason"]
    assert FAILURE_MESSAGE in event["reason"]


def test_timeout_event_once_the_deadline_passes(dagster_server: DagsterServer, trigger_class: Any):
    run_id = _launch(dagster_server.url, "slow_job", seconds=30.0)
    trigger = trigger_class(
        run_id=run_id,
        job_name="slow_job",
        url=dagster_server.url,
        deadline=time.time() + 1.0,
        poll_interval=0.3,
    )
    [event] = _events(trigger)
    assert event["status"] == "TIMEOUT"
    assert event["last_status"] in {"QUEUED", "STARTING", "STARTED"}
    with DagsterClient(dagster_server.url) as client:
        assert client.terminate_run(run_id)


def test_unknown_run_and_unreachable_webserver_are_error_events(
    dagster_server: DagsterServer, trigger_class: Any
):
    trigger = trigger_class(
        run_id="00000000-0000-0000-0000-000000000000",
        job_name="quick_job",
        url=dagster_server.url,
        deadline=time.time() + 30,
    )
    [event] = _events(trigger)
    assert event["status"] == "ERROR"
    assert "RunNotFoundError" in event["error"]
    gone = trigger_class(
        run_id="x",
        job_name="quick_job",
        url=f"http://127.0.0.1:{free_port()}",
        deadline=time.time() + 30,
        retries=0,
    )
    [event] = _events(gone)
    assert event["status"] == "ERROR"
    assert "cannot reach Dagster" in event["error"]


class Flaky503(httpx.AsyncBaseTransport):
    """The real server behind a proxy that answers the first ``fail`` requests with a 503."""

    def __init__(self, fail: int) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.fail = fail
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.fail:
            self.fail -= 1
            return httpx.Response(503, text="restarting")
        return await self.real.handle_async_request(request)


def test_async_client_retries_5xx_then_gives_up(dagster_server: DagsterServer):
    run_id = _launch(dagster_server.url, "quick_job")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def read(fail: int, retries: int) -> str:
        transport = Flaky503(fail)
        async with AsyncDagsterClient(
            dagster_server.url, transport=transport, retries=retries, sleep=sleep
        ) as client:
            return (await client.get_run(run_id)).run_id

    assert asyncio.run(read(fail=2, retries=3)) == run_id
    assert slept == [1.0, 2.0]
    with pytest.raises(DagsterUnavailableError, match="HTTP 503"):
        asyncio.run(read(fail=5, retries=1))
