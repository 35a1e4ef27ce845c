"""The soak: the prediction endpoint under :func:`benchmarks.loadgen.open_loop` for minutes, with
its resident memory and open file descriptors sampled every second, judged by :class:`SoakBounds`.

``python -m benchmarks.soak`` (``make soak``) starts the endpoint on the current
state folder (after ``make demo``), soaks it for ``--seconds`` at ``--rate`` requests/s on
real flights of ``--day``, prints the figures, and exits non-zero when a bound is broken.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import loadgen

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


@dataclass(frozen=True)
class SoakBounds:
    """What a soak must show: no failed request, memory and descriptors flat after warm-up."""

    max_failed: int = 0
    max_rss_growth_mib: float = 64.0
    max_fd_growth: int = 8

    def problems(self, result: loadgen.LoadResult) -> list[str]:
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


LATENCY_METRIC = "flight_delay_http_request_duration_seconds"


def server_buckets(url: str, token: str | None) -> dict[float, float]:
    """The endpoint's own latency histogram for ``/predict`` (bucket bound in s -> cumulative
    count), read from its ``/metrics``; empty when that does not answer."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    base = url.rsplit("/predict", 1)[0]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        text = httpx.get(f"{base}/metrics", headers=headers, timeout=10).text
    except httpx.HTTPError:
        return {}
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != LATENCY_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("path") == "/predict":
                le = float(sample.labels["le"])
                out[le] = out.get(le, 0.0) + sample.value
    return out


def server_quantile_ms(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The bound (ms) of the histogram bucket holding the ``q`` quantile of the requests counted
    between the two readings: the server's own view of its latency, from arrival to the last
    byte, without the client's or the kernel's queueing. NaN when nothing was counted."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * counts[-1]:
            return bound * 1000
    return float("inf")


def _soak(
    url: str, bodies: list[Any], args: argparse.Namespace, token: str | None, pid: int | None
) -> tuple[loadgen.LoadResult, dict[str, float]] | None:
    def say(line: str) -> None:
        if not args.json:  # --json: stdout is the one JSON object
            print(line, flush=True)

    say(f"endpoint pid {pid} on {url}; warm-up {args.warmup:.0f} s")
    warm = loadgen.open_loop(url, bodies, args.rate, args.warmup, token, pid, max_in_flight=64)
    if warm.ok == 0:
        print(f"no successful request during warm-up: {warm.figures()}", file=sys.stderr)
        return None
    say(f"soak: {args.seconds:.0f} s at {args.rate:.0f} req/s")
    before = server_buckets(url, token)
    result = loadgen.open_loop(url, bodies, args.rate, args.seconds, token, pid, max_in_flight=64)
    after = server_buckets(url, token)
    server = {
        f"server_p{q}_ms_le": server_quantile_ms(before, after, q / 100) for q in (50, 99)
    }  # the endpoint's histogram: a bucket bound, "at most"
    return result, server


def main(argv: list[str] | None = None) -> int:
    from dagster_project.platform import settings
    from dagster_project.serving.deploy import LocalEndpoint

    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--warmup", type=float, default=15, help="seconds of load not counted")
    parser.add_argument("--day", default="2013-08-01", help="whose flights to send")
    parser.add_argument("--port", type=int, default=0, help="0: a free loopback port")
    parser.add_argument(
        "--url", help="soak this running endpoint's /predict instead of starting one"
    )
    parser.add_argument("--pid", type=int, help="with --url: the endpoint's process (RSS, fds)")
    parser.add_argument("--bodies", help="a JSON file of request bodies instead of --day's flights")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object: figures, problems, met"
    )
    args = parser.parse_args(argv)
    token = os.environ.get("MLOPS_SERVING_TOKEN") or None
    bodies = (
        json.loads(Path(args.bodies).read_text())
        if args.bodies
        else flight_requests(date.fromisoformat(args.day))
    )
    if args.url:
        soaked = _soak(args.url.rstrip("/") + "/predict", bodies, args, token, args.pid)
    else:
        port = args.port
        if not port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
        home = settings.mlops_home()
        endpoint = LocalEndpoint(
            "127.0.0.1",
            port,
            home / "run",
            env={"MLOPS_SERVING_RELOAD_S": "0", "MLOPS_HOME": str(home)},
            token=token,
        )
        pid = endpoint.start()
        try:
            soaked = _soak(f"{endpoint.url}/predict", bodies, args, token, pid)
        finally:
            endpoint.stop()
    if soaked is None:
        return 2
    result, server = soaked
    figures = result.figures() | server
    problems = SoakBounds().problems(result)
    met = result.sustained and figures["p99_ms"] <= 10 and not problems
    if args.json:
        print(json.dumps({"figures": figures, "problems": problems, "target_met": met}))
        return 1 if problems else 0
    for key, value in figures.items():
        print(f"  {key:15} {value}")
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
