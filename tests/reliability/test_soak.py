"""Soak: the endpoint at the performance issue's target rate (200 single-flight requests/s) on
loopback, for 20 s in the default suite and 60 s with ``-m slow`` (``make soak``: 10 minutes
on the demo's state). Bounds: no failed request, resident memory and open file descriptors
flat after warm-up. Latency is measured and printed, not asserted (the 10 ms p99 target is
the performance issue's; on a shared 2-core machine the figures are what they are)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import loadgen
from tests.paths import REPO_ROOT
from tests.reliability.conftest import serve, spine_flights

RATE = 200


def _soak(served_config, tmp_path, seconds: float) -> dict:
    """``python -m benchmarks.soak`` (what ``make soak`` runs) against the endpoint in its own
    process: the load generator gets a fresh interpreter, as a client would, rather than the
    test process with everything earlier tests left in it (whose pauses it would measure)."""
    served = serve(served_config, tmp_path / "serving")
    bodies = tmp_path / "bodies.json"
    bodies.write_text(json.dumps(spine_flights(300)))
    try:
        out = subprocess.run(
            [
                sys.executable, "-m", "benchmarks.soak", "--url", served.url,
                "--pid", str(served.proc.pid), "--bodies", str(bodies), "--rate", str(RATE),
                "--seconds", str(seconds), "--warmup", "5", "--json",
            ],
            capture_output=True, text=True, timeout=seconds + 120, cwd=REPO_ROOT,
            env=os.environ | {"PYTHONPATH": str(REPO_ROOT)},
        )  # fmt: skip
        assert served.proc.poll() is None
    finally:
        served.stop()
    assert out.stdout.strip(), out.stderr
    report = json.loads(out.stdout)
    print("\nsoak figures:", json.dumps(report["figures"]))
    (tmp_path / "soak.json").write_text(json.dumps(report, indent=1))
    assert out.returncode == (1 if report["problems"] else 0), out.stderr
    return report


def _check(report: dict) -> None:
    """No request answered with an error, memory and descriptors flat (``SoakBounds``).
    Whether the rate was sustained (``sustained``, ``dropped``, ``achieved_rate``) and the
    latency are reported: on a busy 2-core machine 200 req/s is not always reached."""
    figures = report["figures"]
    assert not report["problems"], report
    assert figures["ok"] > 0
    assert figures["samples"] >= 5  # the endpoint's RSS and fds, every second


@pytest.mark.timeout(300)
def test_soak_20_seconds_at_the_target_rate(served_config, tmp_path):
    _check(_soak(served_config, tmp_path, 20))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_60_seconds_at_the_target_rate(served_config, tmp_path):
    _check(_soak(served_config, tmp_path, 60))


def test_load_generator_refuses_non_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        loadgen.open_loop("http://10.0.0.1:8000/predict", [{}], 1, 1)
