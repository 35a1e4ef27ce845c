"""The trigger client against a real dagster-webserver (see conftest): success, a real failed
run, unknown job and partition, duplicate suppression by tags, timeouts, transient errors."""

from __future__ import annotations

import uuid

import httpx
import pytest
from dagster_trigger.client import (
    REQUEST_TAG,
    DagsterClient,
    DagsterRequestError,
    DagsterRunFailedError,
    DagsterRunTimeoutError,
    DagsterUnavailableError,
    launch_and_wait,
)

from tests.airflow.conftest import TEST_LOCATION, DagsterServer, free_port
from tests.airflow.dagster_test_location import FAILURE_MESSAGE

FAST = {"location": TEST_LOCATION, "poll_interval": 0.3, "timeout": 120, "log": lambda _m: None}


@pytest.fixture
def client(dagster_server: DagsterServer):
    with DagsterClient(dagster_server.url, sleep=lambda _s: None) as c:
        yield c


def attempt_tags() -> dict[str, str]:
    """What an Airflow task passes as idempotency tags, unique per test."""
    return {"airflow/dag_id": "tests", "airflow/run_id": uuid.uuid4().hex, "airflow/task_id": "t"}


@pytest.fixture(scope="module")
def succeeded(dagster_server: DagsterServer):
    """A run launched by "try 1" of an Airflow task, and its tags."""
    tags = attempt_tags()
    with DagsterClient(dagster_server.url) as client:
        result = launch_and_wait(
            client, "quick_job", tags={"airflow/try_number": "1"}, idempotency_tags=tags, **FAST
        )
    return result, tags


def test_success_returns_the_run_with_its_tags(client: DagsterClient, succeeded):
    result, tags = succeeded
    assert result.status == "SUCCESS"
    assert not result.reused
    assert result.url == f"{client.url}/runs/{result.run_id}"
    run = client.get_run(result.run_id)
    assert {**tags, "airflow/try_number": "1"}.items() <= dict(run.tags).items()


def test_partition_key_reaches_dagster(client: DagsterClient, dagster_server: DagsterServer):
    result = launch_and_wait(client, "daily_marker_job", partition_key="2013-01-05", **FAST)
    data = dagster_server.graphql(
        """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
             assetMaterializations(partitions: ["2013-01-05"]) { partition runId } } } }""",
        {"key": {"path": ["daily_marker"]}},
    )
    materializations = data["assetOrError"]["assetMaterializations"]
    assert {"partition": "2013-01-05", "runId": result.run_id} in materializations


def test_partition_range_runs_once_over_the_range(
    client: DagsterClient, dagster_server: DagsterServer
):
    result = launch_and_wait(
        client, "daily_marker_job", partition_range=("2013-03-01", "2013-03-03"), **FAST
    )
    data = dagster_server.graphql(
        """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
             assetMaterializations(partitions: ["2013-03-01", "2013-03-02", "2013-03-03"]) {
               partition runId } } } }""",
        {"key": {"path": ["daily_marker"]}},
    )
    runs = {(m["partition"], m["runId"]) for m in data["assetOrError"]["assetMaterializations"]}
    assert runs == {(day, result.run_id) for day in ("2013-03-01", "2013-03-02", "2013-03-03")}
    with pytest.raises(DagsterRequestError, match="ends before it starts"):
        launch_and_wait(
            client, "daily_marker_job", partition_range=("2013-03-03", "2013-03-01"), **FAST
        )


@pytest.fixture(scope="module")
def failed(dagster_server: DagsterServer):
    tags = attempt_tags()
    with DagsterClient(dagster_server.url) as client, pytest.raises(DagsterRunFailedError) as err:
        launch_and_wait(client, "failing_job", idempotency_tags=tags, **FAST)
    return err.value, tags


def test_failed_run_raises_with_run_id_and_error_message(failed):
    error, _tags = failed
    assert error.run.status == "FAILURE"
    assert error.run.run_id in str(error)
    assert FAILURE_MESSAGE in str(error)
    assert "fail_deliberately" in str(error)  # the failed step
    assert error.url in str(error)


def test_unknown_job_is_a_clear_error_and_launches_nothing(client: DagsterClient):
    with pytest.raises(DagsterRequestError) as refused:
        launch_and_wait(client, "no_such_job", **FAST)
    message = str(refused.value)
    assert "no job 'no_such_job'" in message
    assert TEST_LOCATION in message
    assert "quick_job" in message  # says which jobs do exist
    assert client.find_runs("no_such_job", {}) == []


def test_unknown_code_location_lists_the_locations(client: DagsterClient):
    with pytest.raises(DagsterRequestError, match=r"Code locations in this Dagster:.*flight_mlops"):
        launch_and_wait(client, "quick_job", **{**FAST, "location": "nowhere"})


def test_partition_outside_the_job_is_refused_before_launch(client: DagsterClient):
    with pytest.raises(DagsterRequestError, match="'2014-02-01' is not a partition"):
        launch_and_wait(client, "daily_marker_job", partition_key="2014-02-01", **FAST)
    with pytest.raises(DagsterRequestError, match="is partitioned"):
        launch_and_wait(client, "daily_marker_job", **FAST)
    with pytest.raises(DagsterRequestError, match="not partitioned"):
        launch_and_wait(client, "quick_job", partition_key="2013-01-01", **FAST)


def test_retry_follows_the_running_run_instead_of_launching_a_duplicate(client: DagsterClient):
    tags = attempt_tags()
    # Try 1 launched the run and then died (worker lost, task timed out...).
    first = client.launch_run(
        "slow_job",
        location=TEST_LOCATION,
        tags={**tags, "airflow/try_number": "1"},
        run_config={"ops": {"sleep_a_while": {"config": {"seconds": 3.0}}}},
    )
    assert not first.finished
    # Try 2 with the same dag/run/task tags follows it to the end.
    result = launch_and_wait(
        client, "slow_job", tags={"airflow/try_number": "2"}, idempotency_tags=tags, **FAST
    )
    assert result.reused
    assert result.run_id == first.run_id
    assert result.status == "SUCCESS"
    assert [r.run_id for r in client.find_runs("slow_job", tags)] == [first.run_id]


def test_retry_after_success_does_not_relaunch(client: DagsterClient, succeeded):
    first, tags = succeeded
    again = launch_and_wait(client, "quick_job", idempotency_tags=tags, **FAST)
    assert again.reused
    assert again.run_id == first.run_id
    assert len(client.find_runs("quick_job", tags)) == 1


def test_retry_after_failure_launches_a_new_run(client: DagsterClient, failed):
    first, tags = failed
    with pytest.raises(DagsterRunFailedError) as failed_again:
        launch_and_wait(client, "failing_job", idempotency_tags=tags, **FAST)
    assert failed_again.value.run.run_id != first.run.run_id
    assert len(client.find_runs("failing_job", tags)) == 2


def test_timeout_stops_waiting_and_terminates_the_run(client: DagsterClient):
    with pytest.raises(DagsterRunTimeoutError) as timed_out:
        launch_and_wait(
            client,
            "slow_job",
            run_config={"ops": {"sleep_a_while": {"config": {"seconds": 60.0}}}},
            **{**FAST, "timeout": 1.0},
        )
    error = timed_out.value
    assert error.terminated
    assert error.run.run_id in str(error)
    final = client.wait_for_run(error.run.run_id, timeout=60, poll_interval=0.3)
    assert final.status == "CANCELED"


class FlakyTransport(httpx.BaseTransport):
    """Passes requests to the real server, but answers the first ``fail`` of them with a 503;
    with ``lose_launch``, forwards the first launchRun and then drops its answer."""

    def __init__(self, fail: int = 0, lose_launch: bool = False) -> None:
        self.real = httpx.HTTPTransport()
        self.fail = fail
        self.lose_launch = lose_launch
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.fail:
            self.fail -= 1
            return httpx.Response(503, text="warming up")
        response = self.real.handle_request(request)
        if self.lose_launch and b"launchRun" in request.content:
            self.lose_launch = False
            response.read()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def test_transient_http_errors_are_retried(dagster_server: DagsterServer):
    transport = FlakyTransport(fail=3)
    with DagsterClient(dagster_server.url, transport=transport, sleep=lambda _s: None) as client:
        result = launch_and_wait(client, "quick_job", **FAST)
    assert result.status == "SUCCESS"
    assert transport.requests > 3


def test_lost_launch_answer_does_not_launch_twice(dagster_server: DagsterServer):
    transport = FlakyTransport(lose_launch=True)
    with DagsterClient(dagster_server.url, transport=transport, sleep=lambda _s: None) as client:
        result = launch_and_wait(client, "quick_job", **FAST)
        request_id = client.get_run(result.run_id).tags[REQUEST_TAG]
        assert len(client.find_runs("quick_job", {REQUEST_TAG: request_id})) == 1


def test_unreachable_dagster_gives_up_after_retries():
    slept: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"
    with (
        DagsterClient(url, retries=2, sleep=slept.append) as c,
        pytest.raises(DagsterUnavailableError, match="cannot reach Dagster"),
    ):
        launch_and_wait(c, "quick_job", **FAST)
    assert slept == [1.0, 2.0]  # exponential backoff
