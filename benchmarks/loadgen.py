"""The one HTTP load generator of the project, loopback only (asyncio + aiohttp on uvloop).

Used by the soak (``make soak``), the benchmarks (``make bench``) and the tests.

* :func:`open_loop`: request *i* is due at ``start + i / rate`` whatever happened to the others,
  and its latency is measured from that scheduled send time, so a stalled server shows up in the
  tail instead of slowing the generator down (no coordinated omission: the convention behind
  every p99 this project quotes). At most ``max_in_flight`` requests are outstanding; a request
  due while that many are open is counted as ``dropped`` (the generator never queues without
  bound): dropped requests mean the endpoint did not sustain the rate, failed ones that it
  answered with an error. With ``pid`` the served process's resident memory and open file
  descriptors are sampled every second.
* :func:`closed_loop`: ``concurrency`` clients, each sending its next request when the last one
  answered; the completed requests per second are the throughput at saturation.

Failed requests are non-200 answers (by status) and transport errors (by kind).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import numpy as np
import orjson

T = TypeVar("T")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Idle connections are dropped well before the server's keep-alive timeout: reusing one the
# server is closing at that instant is an error that says nothing about the server.
KEEPALIVE_S = 2.0


@dataclass
class LoadResult:
    mode: str  # "open" or "closed"
    seconds: float
    target_rate: float | None = None
    concurrency: int | None = None
    sent: int = 0
    ok: int = 0
    dropped: int = 0  # due while max_in_flight requests were open (open loop)
    statuses: dict[str, int] = field(default_factory=dict)  # non-200 answers by status
    errors: dict[str, int] = field(default_factory=dict)  # transport errors by kind
    error_samples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    versions: dict[str, int] = field(default_factory=dict)  # answers per model version
    samples: list[tuple[float, float, int]] = field(default_factory=list, repr=False)

    @property
    def failed(self) -> int:
        """Requests that got an error (a non-200 answer or a transport error)."""
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def sustained(self) -> bool:
        """Whether the endpoint kept up with the offered rate (nothing dropped, 98 % served)."""
        return self.dropped == 0 and self.ok >= 0.98 * self.sent

    @property
    def achieved_rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def _error(self, key: str, sample: str, status: bool) -> None:
        counts = self.statuses if status else self.errors
        counts[key] = counts.get(key, 0) + 1
        if len(self.error_samples) < 3:
            self.error_samples.append(sample[:200])

    def figures(self) -> dict[str, Any]:
        """The soak's figures: rates, outcomes, latency quantiles, memory and descriptors."""
        out: dict[str, Any] = {
            "seconds": round(self.seconds, 1),
            "target_rate": self.target_rate,
            "achieved_rate": round(self.achieved_rate, 1),
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "dropped": self.dropped,
            "sustained": self.sustained,
            "statuses": self.statuses,
            "errors": self.errors,
            "versions": self.versions,
            "p50_ms": round(self.percentile(50), 2),
            "p90_ms": round(self.percentile(90), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
        }
        if self.samples:
            rss = [s[1] for s in self.samples]
            fds = [s[2] for s in self.samples]
            out |= {
                "samples": len(self.samples),
                "rss_start_mib": round(rss[0], 1),
                "rss_end_mib": round(rss[-1], 1),
                "rss_max_mib": round(max(rss), 1),
                "fds_start": fds[0],
                "fds_end": fds[-1],
                "fds_max": max(fds),
            }
        return out

    def summary(self) -> dict[str, Any]:
        """The benchmark report's row: requests, errors (failed + dropped), rate, quantiles."""
        from benchmarks.common import percentiles

        return {
            "mode": self.mode,
            "target_rps": self.target_rate,
            "concurrency": self.concurrency,
            "duration_s": round(self.seconds, 2),
            "requests": self.sent,
            "errors": self.failed + self.dropped,
            "achieved_rps": self.achieved_rate if self.seconds > 0 else float("nan"),
            **percentiles(self.latencies_ms),
            "error_samples": self.error_samples[:3],
        }


def proc_stats(pid: int) -> tuple[float, int]:
    """Resident memory (MiB) and open file descriptors of a process, from /proc."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def run_sync(coro: Coroutine[Any, Any, T], runner: Callable[..., Any] = asyncio.run) -> T:
    """Run ``coro`` to the end with ``runner`` (``asyncio.run``, ``uvloop.run``), also from a
    thread that already runs an event loop (Playwright's sync API does, for a whole test
    session): then on a thread of its own with a fresh loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return cast(T, runner(coro))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = runner(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="run-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return cast(T, box["result"])


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run the load on uvloop with the client's heap so far frozen out of the garbage
    collector: latencies count from each request's scheduled send time, so a full collection
    over everything the caller had loaded (pandas, the project; tens of milliseconds) would be
    measured as the server's latency."""
    import gc

    gc.collect()
    gc.freeze()
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is pinned
            return run_sync(coro)
        return run_sync(coro, uvloop.run)
    finally:
        gc.unfreeze()


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")


def _headers(token: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def _send(
    session: Any, url: str, body: bytes, started: float, result: LoadResult, timeout: float
) -> None:
    """One POST; its latency counts from ``started`` (the scheduled send time, open loop)."""
    import aiohttp

    try:
        async with session.post(
            url, data=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as answer:
            payload = await answer.read()
            if answer.status == 200:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                with contextlib.suppress(ValueError, AttributeError):
                    version = str(orjson.loads(payload).get("model_version"))
                    result.versions[version] = result.versions.get(version, 0) + 1
            else:
                text = payload.decode("utf-8", "replace")
                result._error(str(answer.status), f"HTTP {answer.status}: {text}", status=True)
    except Exception as exc:
        result._error(type(exc).__name__, f"{type(exc).__name__}: {exc}", status=False)


def _session(token: str | None, limit: int) -> Any:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=limit, keepalive_timeout=KEEPALIVE_S)
    return aiohttp.ClientSession(connector=connector, headers=_headers(token))


def open_loop(
    url: str,
    payloads: Sequence[Any],
    rate: float,
    duration_s: float,
    token: str | None = None,
    pid: int | None = None,
    max_in_flight: int = 256,
    timeout: float = 10.0,
    until: threading.Event | None = None,
) -> LoadResult:
    """``rate`` requests per second for ``duration_s`` seconds, cycling through ``payloads``;
    with ``until``, sending stops early once that event is set (``duration_s`` is the most)."""
    _check_loopback(url)
    bodies = [orjson.dumps(p) for p in payloads]
    result = LoadResult("open", duration_s, target_rate=rate)

    async def sample(stop: asyncio.Event, start: float) -> None:
        while pid is not None and not stop.is_set():
            rss, fds = proc_stats(pid)
            result.samples.append((time.perf_counter() - start, rss, fds))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def main() -> None:
        in_flight = 0

        async def one(session: Any, body: bytes, due: float) -> None:
            nonlocal in_flight
            try:
                await _send(session, url, body, due, result, timeout)
            finally:
                in_flight -= 1

        async with _session(token, max_in_flight) as session:
            stop = asyncio.Event()
            start = time.perf_counter()
            sampler = asyncio.create_task(sample(stop, start))
            tasks: set[asyncio.Task[None]] = set()
            for i in range(max(1, int(rate * duration_s))):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if until is not None and until.is_set():
                    break
                result.sent += 1
                if in_flight >= max_in_flight:
                    result.dropped += 1
                    continue
                in_flight += 1
                task = asyncio.create_task(one(session, bodies[i % len(bodies)], due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
            stopped = until is not None and until.is_set()
            result.seconds = max(time.perf_counter() - start, 0.0 if stopped else duration_s)
            stop.set()
            await sampler
        if pid is not None:  # a last sample once our connections are closed (they hold fds)
            await asyncio.sleep(1.0)
            rss, fds = proc_stats(pid)
            result.samples.append((time.perf_counter() - start, rss, fds))

    _run(main())
    return result


def closed_loop(
    url: str,
    payloads: Sequence[Any],
    concurrency: int,
    duration_s: float,
    token: str | None = None,
    timeout: float = 30.0,
) -> LoadResult:
    """``concurrency`` back-to-back clients for ``duration_s`` seconds."""
    _check_loopback(url)
    bodies = [orjson.dumps(p) for p in payloads]
    result = LoadResult("closed", duration_s, concurrency=concurrency)

    async def client(session: Any, offset: int, stop_at: float) -> None:
        i = offset
        while time.perf_counter() < stop_at:
            result.sent += 1
            await _send(session, url, bodies[i % len(bodies)], time.perf_counter(), result, timeout)
            i += concurrency

    async def main() -> None:
        async with _session(token, 0) as session:
            t0 = time.perf_counter()
            stop_at = t0 + duration_s
            await asyncio.gather(*(client(session, k, stop_at) for k in range(concurrency)))
            result.seconds = time.perf_counter() - t0

    _run(main())
    return result


def post_json(url: str, payload: Any, timeout: float = 120.0) -> tuple[int, float, bytes]:
    """One blocking POST: status, seconds, body (for the batch sizes)."""
    import httpx

    body = orjson.dumps(payload)
    t = time.perf_counter()
    r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=timeout)
    return r.status_code, time.perf_counter() - t, r.content
