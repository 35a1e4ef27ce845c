"""Soak: the endpoint at the performance issue's target rate (200 single-flight requests/s) on
loopback, for 20 s in the default suite and 60 s with ``-m slow`` (``make soak``: 10 minutes
on the demo's state). Bounds: no failed request, resident memory and open file descriptors
flat after warm-up. Latency is measured and printed, not asserted (the 10 ms p99 target is
the performance issue's; on a shared 2-core machine the figures are what they are)."""

from __future__ import annotations

import json

import pytest

from benchmarks import loadgen, soak
from tests.reliability.conftest import serve, spine_flights

RATE = 200


def _soak(served_config, tmp_path, seconds: float) -> loadgen.LoadResult:
    served = serve(served_config, tmp_path / "serving")
    try:
        url = f"{served.url}/predict"
        bodies = spine_flights(300)
        loadgen.open_loop(
            url, bodies, RATE, 5, pid=served.proc.pid, max_in_flight=64
        )  # warm-up, not counted
        result = loadgen.open_loop(
            url, bodies, RATE, seconds, pid=served.proc.pid, max_in_flight=64
        )
        assert served.proc.poll() is None
    finally:
        served.stop()
    figures = result.figures()
    print("\nsoak figures:", json.dumps(figures))
    (tmp_path / "soak.json").write_text(json.dumps(figures, indent=1))
    return result


def _check(result: loadgen.LoadResult) -> None:
    """No request answered with an error, memory and descriptors flat. Whether the rate was
    sustained (``sustained``, ``dropped``, ``achieved_rate``) and the latency are reported:
    on this 2-core machine the endpoint does not reach 200 req/s (see README)."""
    problems = soak.SoakBounds().problems(result)
    assert not problems, (problems, result.figures())
    assert result.ok > 0
    assert len(result.samples) >= 5


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
