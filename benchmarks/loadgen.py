"""A small HTTP load generator on loopback (asyncio + aiohttp on uvloop).

* :func:`open_loop`: requests *scheduled* at a fixed rate, whatever the server does; latency is
  measured from the scheduled send time, so a stalled server shows up in the tail instead of
  slowing the generator down (no coordinated omission).
* :func:`closed_loop`: ``concurrency`` clients, each sending its next request when the last one
  answered; the completed requests per second are the throughput at saturation.

Errors are non-200 answers, timeouts and connection failures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchmarks.common import percentiles
from benchmarks.soak import run_sync


@dataclass
class LoadResult:
    mode: str
    target_rps: float | None
    concurrency: int | None
    duration_s: float
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ok = len(self.latencies_ms)
        return {
            "mode": self.mode,
            "target_rps": self.target_rps,
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 2),
            "requests": self.requests,
            "errors": self.errors,
            "achieved_rps": ok / self.duration_s if self.duration_s > 0 else float("nan"),
            **percentiles(self.latencies_ms),
            "error_samples": self.error_samples[:3],
        }


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is pinned
        return run_sync(coro)
    return run_sync(coro, uvloop.run)


async def _send(
    session: Any, url: str, body: bytes, started: float, result: LoadResult, timeout: float
) -> None:
    import aiohttp

    try:
        async with session.post(
            url,
            data=body,
            headers={"content-type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as r:
            await r.read()
            if r.status == 200:
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                result.errors += 1
                if len(result.error_samples) < 3:
                    result.error_samples.append(f"HTTP {r.status}: {(await r.text())[:200]}")
    except Exception as exc:
        result.errors += 1
        if len(result.error_samples) < 3:
            result.error_samples.append(f"{type(exc).__name__}: {exc}"[:200])


def _bodies(payloads: Sequence[Any]) -> list[bytes]:
    return [orjson.dumps(p) for p in payloads]


def open_loop(
    url: str, payloads: Sequence[Any], rate: float, duration_s: float, timeout: float = 10.0
) -> LoadResult:
    """``rate`` requests per second for ``duration_s`` seconds, cycling through ``payloads``."""
    bodies = _bodies(payloads)
    result = LoadResult("open", rate, None, duration_s)

    async def main() -> None:
        import aiohttp

        n = max(1, int(rate * duration_s))
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = []
            t0 = time.perf_counter()
            for i in range(n):
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(
                    asyncio.create_task(
                        _send(session, url, bodies[i % len(bodies)], due, result, timeout)
                    )
                )
                result.requests += 1
            await asyncio.gather(*tasks)
            result.duration_s = max(time.perf_counter() - t0, duration_s)

    _run(main())
    return result


def closed_loop(
    url: str, payloads: Sequence[Any], concurrency: int, duration_s: float, timeout: float = 30.0
) -> LoadResult:
    """``concurrency`` back-to-back clients for ``duration_s`` seconds."""
    bodies = _bodies(payloads)
    result = LoadResult("closed", None, concurrency, duration_s)

    async def client(session: Any, offset: int, stop_at: float) -> None:
        i = offset
        while time.perf_counter() < stop_at:
            result.requests += 1
            await _send(session, url, bodies[i % len(bodies)], time.perf_counter(), result, timeout)
            i += concurrency

    async def main() -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            t0 = time.perf_counter()
            stop_at = t0 + duration_s
            await asyncio.gather(*(client(session, k, stop_at) for k in range(concurrency)))
            result.duration_s = time.perf_counter() - t0

    _run(main())
    return result


def post_json(url: str, payload: Any, timeout: float = 120.0) -> tuple[int, float, bytes]:
    """One blocking POST: status, seconds, body (for the batch sizes)."""
    import httpx

    body = orjson.dumps(payload)
    t = time.perf_counter()
    r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=timeout)
    return r.status_code, time.perf_counter() - t, r.content
