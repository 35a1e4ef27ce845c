"""A bounded, loopback-only load generator for the prediction endpoint, and the soak around it.

Open loop: request *i* is due at ``start + i / rate`` whatever happened to the others, so a
slow server shows up as latency and as missed sends, not as a politely lower rate. At most
``max_in_flight`` requests are outstanding; a request due while that many are open is counted
as ``dropped`` (the generator never queues without bound): dropped requests mean the endpoint
did not sustain the rate, failed ones that it answered with an error. The served process's resident
memory and open file descriptors are sampled from ``/proc`` every second.

``python -m benchmarks.soak`` (``make soak``) starts the endpoint on the current
state folder (after ``make demo``), soaks it for ``--seconds`` at ``--rate`` requests/s on
real flights of ``--day``, prints the figures, and exits non-zero when a bound is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import numpy as np

T = TypeVar("T")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def flight_requests(day: date, limit: int = 500) -> list[dict[str, Any]]:
    """Real scheduled flights of ``day`` as request bodies (what the replay sends)."""
    from dagster_project.ingestion import sources

    rows = sources.day_rows("flights", day).head(limit)
    out = []
    for r in rows.to_dict("records"):
        hhmm = int(r["sched_dep_time"])
        tailnum = r["tailnum"]
        out.append(
            {
                "carrier": str(r["carrier"]),
                "origin": str(r["origin"]),
                "dest": str(r["dest"]),
                "tailnum": tailnum if isinstance(tailnum, str) else None,
                "scheduled_departure": f"{day:%Y-%m-%d}T{hhmm // 100:02d}:{hhmm % 100:02d}:00",
                "distance": float(r["distance"]),
                "flight_id": f"{r['carrier']}{r['flight']}",
            }
        )
    return out


def proc_stats(pid: int) -> tuple[float, int]:
    """Resident memory (MiB) and open file descriptors of a process, from /proc."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class LoadResult:
    seconds: float
    target_rate: float
    sent: int = 0
    ok: int = 0
    dropped: int = 0  # due while max_in_flight requests were open
    statuses: dict[str, int] = field(default_factory=dict)  # non-200 answers by status
    errors: dict[str, int] = field(default_factory=dict)  # transport errors by kind
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

    def figures(self) -> dict[str, Any]:
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
                "rss_start_mib": round(rss[0], 1),
                "rss_end_mib": round(rss[-1], 1),
                "rss_max_mib": round(max(rss), 1),
                "fds_start": fds[0],
                "fds_end": fds[-1],
                "fds_max": max(fds),
            }
        return out


async def _load(
    url: str,
    bodies: list[dict[str, Any]],
    rate: float,
    seconds: float,
    headers: dict[str, str],
    pid: int | None,
    max_in_flight: int,
    timeout_s: float,
) -> LoadResult:
    import httpx

    result = LoadResult(seconds=seconds, target_rate=rate)
    # Idle connections are dropped well before the server's keep-alive timeout: reusing one
    # the server is closing at that instant is a ReadError that says nothing about the server.
    limits = httpx.Limits(
        max_connections=max_in_flight, max_keepalive_connections=max_in_flight, keepalive_expiry=2
    )
    in_flight = 0

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        nonlocal in_flight
        started = time.perf_counter()
        try:
            r = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
        else:
            if r.status_code == 200:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                version = str(r.json().get("model_version"))
                result.versions[version] = result.versions.get(version, 0) + 1
            else:
                key = str(r.status_code)
                result.statuses[key] = result.statuses.get(key, 0) + 1
        finally:
            in_flight -= 1

    async def sample(stop: asyncio.Event, start: float) -> None:
        while pid is not None and not stop.is_set():
            rss, fds = proc_stats(pid)
            result.samples.append((time.perf_counter() - start, rss, fds))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        stop = asyncio.Event()
        start = time.perf_counter()
        sampler = asyncio.create_task(sample(stop, start))
        tasks: set[asyncio.Task[None]] = set()
        total = int(rate * seconds)
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            result.sent += 1
            if in_flight >= max_in_flight:
                result.dropped += 1
                continue
            in_flight += 1
            task = asyncio.create_task(one(client, bodies[i % len(bodies)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - start
        stop.set()
        await sampler
    if pid is not None:  # a last sample once our connections are closed (they hold server fds)
        await asyncio.sleep(1.0)
        rss, fds = proc_stats(pid)
        result.samples.append((time.perf_counter() - start, rss, fds))
    return result


def run_load(
    url: str,
    bodies: list[dict[str, Any]],
    rate: float,
    seconds: float,
    token: str | None = None,
    pid: int | None = None,
    max_in_flight: int = 64,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Send ``rate`` requests/s for ``seconds`` to ``url`` (loopback only)."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return run_sync(_load(url, bodies, rate, seconds, headers, pid, max_in_flight, timeout_s))


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


@dataclass(frozen=True)
class SoakBounds:
    """What a soak must show: no failed request, memory and descriptors flat after warm-up."""

    max_failed: int = 0
    max_rss_growth_mib: float = 64.0
    max_fd_growth: int = 8

    def problems(self, result: LoadResult) -> list[str]:
        figures = result.figures()
        out = []
        if result.failed > self.max_failed:
            out.append(
                f"{result.failed} failed requests (statuses {result.statuses}, errors "
                f"{result.errors})"
            )
        if result.samples:
            growth = figures["rss_end_mib"] - figures["rss_start_mib"]
            if growth > self.max_rss_growth_mib:
                out.append(f"RSS grew {growth:.1f} MiB (bound {self.max_rss_growth_mib})")
            fd_growth = figures["fds_end"] - figures["fds_start"]
            if fd_growth > self.max_fd_growth:
                out.append(f"open fds grew by {fd_growth} (bound {self.max_fd_growth})")
        return out


def main(argv: list[str] | None = None) -> int:
    from dagster_project.platform import settings
    from dagster_project.serving.deploy import LocalEndpoint

    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--warmup", type=float, default=15, help="seconds of load not counted")
    parser.add_argument("--day", default="2013-08-01", help="whose flights to send")
    parser.add_argument("--port", type=int, default=0, help="0: a free loopback port")
    args = parser.parse_args(argv)

    import socket

    port = args.port
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    home = settings.mlops_home()
    token = os.environ.get("MLOPS_SERVING_TOKEN") or None
    endpoint = LocalEndpoint(
        "127.0.0.1",
        port,
        home / "run",
        env={"MLOPS_SERVING_RELOAD_S": "0", "MLOPS_HOME": str(home)},
        token=token,
    )
    bodies = flight_requests(date.fromisoformat(args.day))
    pid = endpoint.start()
    try:
        url = f"{endpoint.url}/predict"
        print(f"endpoint pid {pid} on {endpoint.url}; warm-up {args.warmup:.0f} s", flush=True)
        warm = run_load(url, bodies, args.rate, args.warmup, token, pid)
        if warm.ok == 0:
            print(f"no successful request during warm-up: {warm.figures()}", file=sys.stderr)
            return 2
        print(f"soak: {args.seconds:.0f} s at {args.rate:.0f} req/s", flush=True)
        result = run_load(url, bodies, args.rate, args.seconds, token, pid)
    finally:
        endpoint.stop()
    figures = result.figures()
    for key, value in figures.items():
        print(f"  {key:15} {value}")
    problems = SoakBounds().problems(result)
    met = result.sustained and figures["p99_ms"] <= 10 and not problems
    print(
        f"target ({args.rate:.0f} req/s sustained, p99 <= 10 ms, no errors): "
        + ("met" if met else "NOT met")
    )
    for p in problems:
        print(f"  BOUND BROKEN: {p}")
    print(asdict(SoakBounds()))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
