"""The endpoint's online lookup gives exactly what Feast's `get_online_features` gives for the
`flight_delay_v1` service (same store, same rows), on the session's spine."""

import math

import pytest

from dagster_project.features.feast_store import FeatureStoreClient


@pytest.fixture(scope="module")
def client(spine) -> FeatureStoreClient:
    p = spine.paths
    return FeatureStoreClient(p.feast_template, p.feast_dir, p.features_url)


def _rows(n: int) -> list[dict]:
    base = [
        ("EWR", "UA", "EWR-ORD", "N24211", 1375358400, 719.0),
        ("JFK", "AA", "JFK-LAX", "N338AA", 1375380000, 2475.0),
        ("LGA", "DL", "LGA-ATL", "UNKNOWN", 1363500000, 762.0),  # around the March DST change
        ("EWR", "ZZ", "EWR-XXX", "N0NE", 1357016400, 100.0),  # unknown carrier, route, plane
        ("JFK", "B6", "JFK-BOS", "N0NE", 1383454800, 187.0),  # around the November DST change
    ]
    keys = ("origin", "carrier", "route", "tailnum", "sched_dep_epoch_s", "distance")
    return [dict(zip(keys, base[i % len(base)], strict=True)) for i in range(n)]


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("n", [1, 5, 70])  # one request, a small batch, past the row path
def test_online_lookup_equals_feast_get_online_features(client, n):
    rows = _rows(n)
    ours = client.online_lookup(rows, "flight_delay_v1")
    feast = client.online_features(rows, "flight_delay_v1")
    assert sorted(ours) == sorted(feast)
    for name in feast:
        bad = [
            (i, x, y)
            for i, (x, y) in enumerate(zip(ours[name], feast[name], strict=True))
            if not _same(x, y)
        ]
        assert not bad, (name, bad[:3])
    assert any(v is not None for v in ours["carrier_departures_7d"])  # real values were read
