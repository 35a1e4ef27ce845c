"""The asyncio client for the deferred wait: what Airflow's triggerer runs while a task is
deferred. It only reads (a run's status, its failure events); launching stays in the task, with
the blocking client, so the idempotent launch has one implementation.

Same transport rules as the blocking client: transport errors and 429/5xx answers are retried
``retries`` times with exponential backoff; everything else raises ``DagsterRequestError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from dagster_trigger.graphql import (
    LOGS_FOR_RUN,
    RUN_OR_ERROR,
    DagsterUnavailableError,
    RunInfo,
    backoff_seconds,
    parse_failure_reason,
    parse_run,
    response_data,
    unreachable,
)


class AsyncDagsterClient:
    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        retries: int = 4,
        backoff: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncDagsterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def graphql(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = f"{self.url}/graphql"
        for attempt in range(self.retries + 1):
            try:
                try:
                    response = await self._http.post(
                        endpoint, json={"query": query, "variables": dict(variables)}
                    )
                except httpx.TransportError as exc:
                    raise unreachable(endpoint, exc) from exc
                return response_data(response, endpoint)
            except DagsterUnavailableError:
                if attempt == self.retries:
                    raise
                await self._sleep(backoff_seconds(self.backoff, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_run(self, run_id: str) -> RunInfo:
        return parse_run(await self.graphql(RUN_OR_ERROR, {"runId": run_id}), run_id)

    async def failure_reason(self, run_id: str) -> str:
        return parse_failure_reason(await self.graphql(LOGS_FOR_RUN, {"runId": run_id}))
