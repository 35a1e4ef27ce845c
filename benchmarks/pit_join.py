"""Point-in-time join benchmark: the ASOF JOIN offline store against Feast's own DuckDB store
and the hand-written ``pandas.merge_asof`` floor, on 2013 shifted into later years (1x, 2x, 4x,
8x rows: copy *i* is the range moved on by *i* x 54 weeks for the full year, with its own tail
numbers and flight ids; :func:`benchmarks.common.replicate`), with peak memory beside time.
``python -m benchmarks.pit_join --json`` prints one object; progress goes to stderr.

Each size is built in turn, and its first call of the store and of the floor (their answers
are the ones compared, cell by cell; Feast's store is called on 1x only) is made before the next
size is built, so that Feast's store, which holds far more memory than the other two, runs
beside one size's tables and not all four. That first call gives the peak memory: resident
memory above the level at the call, the C heap and Arrow's pool trimmed first (freed memory that
the process keeps would otherwise serve the call without showing). Then the timed rounds go through all sizes and both prediction
times, the store and the floor one after the other, ``repeat`` times: load from other work on
the machine falls on the store and the floor, and on small and large sizes, alike (it drifts
over minutes; timing the sizes one after another would bend the growth exponent). The time
figures are medians of the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pyarrow as pa
import yaml

from benchmarks import common
from dagster_project.features import engineering
from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.platform.names import FEATURE_SERVICE
from dagster_project.platform.settings import feast_template

QUICK = {"start": "2013-01-01", "end": "2013-01-07", "scales": [1, 2], "repeat": 1}
FULL = {"start": "2013-01-01", "end": "2013-12-31", "scales": [1, 2, 4, 8], "repeat": 3}


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms (MiB)."""

    def __enter__(self) -> PeakRSS:
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self.peak = self._base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self._base) / 2**20


def _clients(root: Path, tables: dict[str, pd.DataFrame]) -> dict[str, FeatureStoreClient]:
    """Two stores over the same offline tables: ours (the tier's template) and Feast's."""
    ours_template = feast_template("local")
    cfg = yaml.safe_load(ours_template.read_text())
    cfg["offline_store"] = {"type": "duckdb"}
    root.mkdir(parents=True, exist_ok=True)
    feast_yaml = root / "feast_template.yaml"
    feast_yaml.write_text(yaml.safe_dump(cfg))
    features_url = str(root / "features")
    out = {}
    for name, template in (("asof", ours_template), ("feast", feast_yaml)):
        client = FeatureStoreClient(template, root / name, features_url)
        for table, df in tables.items():
            client.write_offline_table(table, df)
        client.apply()
        out[name] = client
    return out


def _trim_heap() -> None:
    """Give the free memory the process keeps back to the system, so that a call's peak
    shows: the C heap's (glibc: numpy, pandas) and Arrow's memory pool's."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    pa.default_memory_pool().release_unused()


def _timed(fn: Any) -> tuple[float, float, Any]:
    """Seconds and CPU seconds (the process's, all threads: DuckDB runs on both cores, pandas
    on one) of one call, and its result."""
    t, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - cpu, out


def _peak(fn: Any) -> tuple[float, Any]:
    """Peak MiB above the level at the call (heap trimmed first) of one call, and its result."""
    gc.collect()
    _trim_heap()
    with PeakRSS() as mem:
        out = fn()
    return mem.mib, out


def _log(msg: str) -> None:
    print(f"pit_join: {msg} (load {common.load_average()[0]})", file=sys.stderr, flush=True)


def _first_calls(
    case: dict[str, Any],
    entities: pd.DataFrame,
    feast_store: FeatureStoreClient | None,
    compared: int,
    differing: int,
) -> tuple[int, int]:
    """A case's first calls: peak memory of the store and of the floor, their answers compared
    cell by cell (and with Feast's store's, where given: its time too). Returns the running
    ``(compared, differing)`` counts."""
    row, (ours_fn, floor_fn) = case["row"], case["fns"]
    _log(f"{row['scale']}x {row['prediction_time']}: {row['rows']:,} rows, first calls")
    row["peak_mib"], ours = _peak(ours_fn)
    row["floor_peak_mib"], floor = _peak(floor_fn)
    row["peak_ratio_to_floor"] = row["peak_mib"] / row["floor_peak_mib"]
    cols = [c for c in floor.columns if c not in entities.columns]
    differing += common.mismatched_cells(ours, floor, cols)
    compared += len(entities) * len(cols)
    del floor
    if feast_store is not None:
        t0 = time.perf_counter()
        theirs = feast_store.historical_features(entities, FEATURE_SERVICE)
        row["feast_seconds"] = time.perf_counter() - t0
        differing += common.mismatched_cells(ours, theirs, cols)
        compared += len(entities) * len(cols)
    return compared, differing


def run(start: str, end: str, scales: list[int], repeat: int, feast: bool = True) -> dict:
    flights, weather, planes = common.validated_tables(start, end)
    compared = differing = 0
    with tempfile.TemporaryDirectory(prefix="pit_join_") as tmp:
        cases: list[dict[str, Any]] = []
        for scale in scales:
            f, w, p = common.replicate(flights, weather, planes, scale)
            tables = common.feature_tables(f, w, p)
            clients = _clients(Path(tmp) / f"{scale}x", tables)
            for when in ("day_start", "lead"):
                entities = engineering.training_entities(f, when)
                times = entities[engineering.TS]
                case: dict[str, Any] = {
                    "row": {
                        "scale": scale,
                        "prediction_time": when,
                        "rows": len(entities),
                        "first_time": str(times.min()),
                        "last_time": str(times.max()),
                    },
                    "fns": (
                        lambda c=clients, e=entities: c["asof"].historical_features(
                            e, FEATURE_SERVICE
                        ),
                        lambda e=entities, t=tables: common.merge_asof_join(e, t, FEATURE_SERVICE),
                    ),
                    "samples": [],
                }
                feast_store = clients["feast"] if feast and scale == 1 else None
                compared, differing = _first_calls(case, entities, feast_store, compared, differing)
                cases.append(case)
            del f, w, p
        for i in range(repeat):
            _log(f"timed round {i + 1} of {repeat}")
            for case in cases:
                ours_fn, floor_fn = case["fns"]
                ours_t = _timed(ours_fn)[:2]
                floor_t = _timed(floor_fn)[:2]
                case["samples"].append((ours_t, floor_t, common.load_average()))
    per_scale = []
    for case in cases:
        row, samples = case["row"], case["samples"]
        ours_s, floor_s = [a for a, _, _ in samples], [b for _, b, _ in samples]
        s, fs = (common.median([x[0] for x in v]) for v in (ours_s, floor_s))
        row.update(
            seconds=s,
            floor_seconds=fs,
            cpu_seconds=common.median([x[1] for x in ours_s]),
            floor_cpu_seconds=common.median([x[1] for x in floor_s]),
            ratio_to_floor=s / fs,
            load_1m=[load[0] for _, _, load in samples],
        )
        per_scale.append(row)
    day = [r for r in per_scale if r["prediction_time"] == "day_start"]
    lead = [r for r in per_scale if r["prediction_time"] == "lead"]
    base = day[0]

    def exponent(runs: list[dict], key: str) -> float:
        if len(runs) < 2:
            return float("nan")
        return common.growth_exponent([r["rows"] for r in runs], [r[key] for r in runs])

    return {
        "rows": base["rows"],
        "seconds": base["seconds"],
        "floor_seconds": base["floor_seconds"],
        "ratio_to_floor": base["seconds"] / base["floor_seconds"],
        "feast_seconds": base.get("feast_seconds"),
        "scales": [r["scale"] for r in day],
        # slope of log(seconds) against log(rows), fitted over every scale (day_start)
        "growth_exponent": exponent(day, "seconds"),
        "floor_growth_exponent": exponent(day, "floor_seconds"),
        "growth_exponent_lead": exponent(lead, "seconds"),
        "cpu_growth_exponent": exponent(day, "cpu_seconds"),
        "floor_cpu_growth_exponent": exponent(day, "floor_cpu_seconds"),
        "peak_mib": base["peak_mib"],
        "floor_peak_mib": base["floor_peak_mib"],
        "peak_ratio_to_floor": base["peak_mib"] / base["floor_peak_mib"],
        "cells_compared": compared,
        "cells_differing": differing,
        "range": [start, end],
        "repeat": repeat,
        "load_average": common.load_average(),
        "runs": per_scale,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one week, 1x and 2x (smoke test)")
    ap.add_argument("--start")
    ap.add_argument("--end")
    ap.add_argument("--scales", help="comma-separated multiples of the rows, e.g. 1,2,4,8")
    ap.add_argument("--repeat", type=int)
    ap.add_argument("--no-feast", action="store_true", help="skip Feast's own store")
    ap.add_argument("--json", action="store_true", help="print the JSON object only")
    a = ap.parse_args(argv)
    size: dict[str, Any] = dict(QUICK if a.quick else FULL)
    for k in ("start", "end", "repeat"):
        if getattr(a, k) is not None:
            size[k] = getattr(a, k)
    if a.scales:
        size["scales"] = [int(s) for s in a.scales.split(",")]
    out = run(size["start"], size["end"], size["scales"], size["repeat"], not a.no_feast)
    print(json.dumps(out, indent=None if a.json else 2, default=str))


if __name__ == "__main__":
    main()
