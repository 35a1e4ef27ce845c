"""The deferred wait: an Airflow trigger that polls a Dagster run from the triggerer (asyncio,
no worker slot held) and fires one event when the run ends, fails to be read, or runs too long.

Event payloads (``DagsterRunTrigger.run``), all with ``run_id``, ``job_name``, ``url`` and
``reused`` (the run was an earlier try's):

* ``{"status": "SUCCESS"}``
* ``{"status": "FAILURE" | "CANCELED", "reason": "step 'x' failed: ..."}``
* ``{"status": "TIMEOUT", "last_status": "STARTED"}`` once ``deadline`` (epoch seconds) passes
* ``{"status": "ERROR", "error": "..."}`` when Dagster cannot be read after every retry

The triggerer imports this by its classpath, so the DAGs folder must be on its ``PYTHONPATH``
(``make up`` sets it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dagster_trigger.async_client import AsyncDagsterClient
from dagster_trigger.graphql import SUCCESS, DagsterTriggerError


class DagsterRunTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        run_id: str,
        job_name: str,
        url: str,
        deadline: float,
        poll_interval: float = 5.0,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | list[str] | None = None,
        request_timeout: float = 30.0,
        verify: bool = True,
        retries: int = 4,
        reused: bool = False,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.job_name = job_name
        self.url = url.rstrip("/")
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.headers = dict(headers or {})
        self.auth = tuple(auth) if auth else None
        self.request_timeout = float(request_timeout)
        self.verify = verify
        self.retries = int(retries)
        self.reused = bool(reused)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "job_name": self.job_name,
                "url": self.url,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "headers": self.headers,
                "auth": list(self.auth) if self.auth else None,
                "request_timeout": self.request_timeout,
                "verify": self.verify,
                "retries": self.retries,
                "reused": self.reused,
            },
        )

    def _event(self, status: str, **extra: Any) -> TriggerEvent:
        run_url = f"{self.url}/runs/{self.run_id}"
        payload = {"status": status, "run_id": self.run_id, "job_name": self.job_name}
        payload["reused"] = self.reused
        return TriggerEvent({**payload, "url": run_url, **extra})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = AsyncDagsterClient(
            self.url,
            headers=self.headers,
            auth=self.auth,  # type: ignore[arg-type]
            timeout=self.request_timeout,
            verify=self.verify,
            retries=self.retries,
        )
        last_status = None
        try:
            while True:
                run = await client.get_run(self.run_id)
                if run.status != last_status:
                    self.log.info("Dagster run %s: %s", self.run_id, run.status)
                    last_status = run.status
                if run.finished:
                    if run.status == SUCCESS:
                        yield self._event(SUCCESS)
                    else:
                        reason = await client.failure_reason(self.run_id)
                        yield self._event(run.status, reason=reason)
                    return
                remaining = self.deadline - time.time()
                if remaining <= 0:
                    yield self._event("TIMEOUT", last_status=run.status)
                    return
                await asyncio.sleep(min(self.poll_interval, remaining))
        except DagsterTriggerError as exc:
            yield self._event("ERROR", error=str(exc))
        finally:
            await client.aclose()
