"""The performance suite behind `make bench`: serving, batch scoring, the feature pipeline,
training and scaling, side by side in one run, written to ``report.md`` and ``report.json``.

    .venv/bin/python -m benchmarks.suite [--out benchmarks] [--quick]

Everything runs on this machine in a temporary state folder (the local tier: SQLite online
store, DuckDB offline joins, MLflow on SQLite); Redis materialization is measured too when the
server tier's Redis and PostgreSQL answer. Medians over repetitions after a warm-up; latency
percentiles over every request. ``--quick`` is the smoke size (three weeks of data, seconds of
load) that ``tests/test_benchmarks.py`` runs; its figures are not comparable to the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import common, loadgen
from dagster_project.defs.features import training_set
from dagster_project.defs.run_config import training_run_config
from dagster_project.features import engineering
from dagster_project.platform import names, settings

REPO = Path(__file__).resolve().parents[1]
SERVICE = names.FEATURE_SERVICE


@dataclass(frozen=True)
class Sizes:
    start: str = "2013-01-01"
    end: str = "2013-12-31"
    repeat: int = 3  # timed repetitions of the offline steps (after one warm-up)
    scales: tuple[int, ...] = (1, 2, 4)
    asof_scales: tuple[int, ...] = (1, 2, 4, 8)  # the ASOF store's growth, 1x..8x
    scale_repeat: int = 1
    inproc_requests: int = 2000
    rates: tuple[int, ...] = (50, 100)
    rate_s: float = 10.0
    sustained_rps: int = 200
    sustained_s: float = 60.0
    saturation_s: float = 15.0
    concurrency: int = 16
    batch_sizes: tuple[int, ...] = (1000, 10000)
    batch_repeat: int = 5
    holdout_days: int = 31
    validation_days: int = 14
    torch_epochs: int = 1
    warmup_requests: int = 300
    register: bool = True  # register the trial's model as champion (False: use the one there)
    redis: bool = True  # measure Redis materialization when the server tier's services answer


FULL = Sizes()
QUICK = Sizes(
    end="2013-01-21",
    repeat=1,
    scales=(1, 2),
    asof_scales=(1, 2),
    inproc_requests=50,
    rates=(20,),
    rate_s=1.0,
    sustained_rps=50,
    sustained_s=2.0,
    saturation_s=2.0,
    concurrency=4,
    batch_sizes=(100, 300),
    batch_repeat=2,
    holdout_days=5,
    validation_days=4,
    warmup_requests=20,
)
# What tests/test_benchmarks.py runs on the test session's spine (its champion, no Redis).
SMOKE = replace(QUICK, register=False, redis=False, scales=(1, 2), batch_sizes=(50, 200))

TARGETS = {
    "predict_p99_ms_at_200rps": 10.0,
    "service_over_floor_p50": 1.5,
    "throughput_over_mlflow": 2.0,
    "batch_1000_ms": 100.0,
    "full_year_build_s": 180.0,
    "join_over_merge_asof": 2.0,
    "growth_exponent": 1.15,
    "xgboost_fit_s": 30.0,
}


@dataclass
class Report:
    sizes: Sizes
    machine: dict[str, Any] = field(default_factory=common.machine)
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def add(
        self,
        section: str,
        name: str,
        value: float,
        unit: str,
        target: str = "",
        met: bool | None = None,
        note: str = "",
    ) -> None:
        row = {
            "name": name,
            "value": float(value),
            "unit": unit,
            "target": target,
            "met": met,
            "note": note,
            "load_1m": common.load_average()[0],
        }
        self.sections.setdefault(section, []).append(row)
        print(f"  [{section}] {name}: {_fmt(value)} {unit} {note}", flush=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "sizes": asdict(self.sizes),
            "machine": self.machine | {"load_average_at_end": common.load_average()},
            "targets": TARGETS,
            "sections": self.sections,
            "details": self.details,
        }

    def to_markdown(self) -> str:
        data = self.to_json()
        m = data["machine"]
        lines = [
            "# Performance report",
            "",
            f"Run {data['started']} .. {data['finished']} (UTC); sizes: "
            + ("full (`make bench`)" if self.sizes == FULL else "quick smoke (not comparable)"),
            "",
            f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs ({m['cpus_usable']} usable), "
            f"{m['memory_gib']} GiB, {m['platform']}, Python {m['python']}. Load average "
            f"(1/5/15 min) at start {m['load_average_1_5_15']}, at end "
            f"{m['load_average_at_end']}; each row carries the 1-minute load when it was taken "
            "(the machine is shared: a load above the CPU count means other work competed).",
            "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
            "",
        ]
        targets = [r for rows in self.sections.values() for r in rows if r["target"]]
        if targets:
            lines += [
                "## Targets",
                "",
                "| measure | value | unit | target | met | load |",
                "|---|---:|---|---|---|---:|",
            ]
            for r in targets:
                met = {True: "yes", False: "**no**", None: "n/a (quick sizes)"}[r["met"]]
                lines.append(
                    f"| {r['name']} | {_fmt(r['value'])} | {r['unit']} | {r['target']} | {met} "
                    f"| {r['load_1m']:.1f} |"
                )
            lines.append("")
        for section, rows in self.sections.items():
            lines += [
                f"## {section}",
                "",
                "| measure | value | unit | target | met | load | note |",
                "|---|---:|---|---|---|---:|---|",
            ]
            for r in rows:
                met = {True: "yes", False: "**no**", None: ""}[r["met"]]
                lines.append(
                    f"| {r['name']} | {_fmt(r['value'])} | {r['unit']} | {r['target']} | {met} "
                    f"| {r['load_1m']:.1f} | {r['note']} |"
                )
            lines.append("")
        return "\n".join(lines)


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"


def _le(value: float, target: float) -> bool:
    return bool(np.isfinite(value) and value <= target)


# --------------------------------------------------------------------------- state
@dataclass
class State:
    paths: settings.Paths
    sizes: Sizes
    _training_set: pd.DataFrame | None = None
    _flights: pd.DataFrame | None = None

    @property
    def training_set_file(self) -> Path:
        return self.paths.home / "bench_training_set.parquet"

    @property
    def training_set(self) -> pd.DataFrame:
        """The build's training set (read back, or joined again, when a section runs on a
        state folder built elsewhere)."""
        if self._training_set is None:
            if self.training_set_file.exists():
                self._training_set = pd.read_parquet(self.training_set_file)
            else:
                entities = engineering.training_entities(self.flights)
                df = _client(self.paths).historical_features(entities, SERVICE)
                self._training_set = df.sort_values(
                    ["event_timestamp", "flight_id"], kind="stable"
                ).reset_index(drop=True)
        return self._training_set

    @property
    def flights(self) -> pd.DataFrame:
        """Validated flights of the range."""
        if self._flights is None:
            self._flights = common.validated_tables(self.sizes.start, self.sizes.end)[0]
        return self._flights


def build(report: Report, state: State, sizes: Sizes) -> None:
    """The Dagster `ingest_features_job` over the range, then `training_set`, in-process."""
    import dagster as dg

    from dagster_project.definitions import build_definitions
    from dagster_project.orchestration.partitions import range_tags

    defs = build_definitions(state.paths, serving_port=_free_port())
    instance = dg.DagsterInstance.ephemeral()
    ingest_s, result = common.timed(
        lambda: defs.get_job_def("ingest_features_job").execute_in_process(
            tags=range_tags(sizes.start, sizes.end), instance=instance
        )
    )
    if not result.success:
        raise SystemExit("ingest_features_job failed")
    ts_config = training_run_config(sizes.start, sizes.end)
    ts_s, ts_result = common.timed(
        lambda: defs.get_job_def("training_job").execute_in_process(
            run_config=ts_config,
            instance=instance,
            asset_selection=[training_set.key],
        )
    )
    if not ts_result.success:
        raise SystemExit("training_set failed")
    state._training_set = ts_result.output_for_node("training_set")
    state.training_set.to_parquet(state.training_set_file)
    n = len(state.flights)
    total = ingest_s + ts_s
    report.details["build"] = {"flights": n, "training_rows": len(state.training_set)}
    sec = "Feature pipeline"
    report.add(
        sec,
        "ingest_features_job (land, GX gates, features, feast apply, online store)",
        ingest_s,
        "s",
        note=f"{n:,} flights, one run",
    )
    report.add(sec, "training_set asset (PIT join, ASOF store)", ts_s, "s", note="one run")
    report.add(
        sec,
        "full build: ingest + validate + features + training set",
        total,
        "s",
        f"<= {TARGETS['full_year_build_s']:.0f} s (full year)",
        _le(total, TARGETS["full_year_build_s"]) if sizes == FULL else None,
        f"{n / total:,.0f} flights/s",
    )


def _client(paths: settings.Paths, state_dir: Path | None = None, features_url: str | None = None):
    from dagster_project.features.feast_store import FeatureStoreClient

    return FeatureStoreClient(
        paths.feast_template,
        state_dir or paths.feast_dir,
        features_url or paths.features_url,
        paths.feast_overrides(),
    )


def pit_join(report: Report, state: State, sizes: Sizes) -> None:
    """Feast `get_historical_features` (the tier's offline store, the ASOF store on `local` and
    `server`) vs the hand-written merge_asof join, same entities."""
    client = _client(state.paths)
    entities = engineering.training_entities(state.flights)
    tables = {
        name: pd.read_parquet(f"{state.paths.features_url}/{name}.parquet")
        for name in common.service_views(SERVICE)
    }
    # the warm-up runs give the two results compared cell by cell
    joined = client.historical_features(entities, SERVICE)
    floor = common.merge_asof_join(entities, tables, SERVICE)
    feast_times = common.repeat(
        lambda: client.historical_features(entities, SERVICE), sizes.repeat, warmup=0
    )
    floor_times = common.repeat(
        lambda: common.merge_asof_join(entities, tables, SERVICE), sizes.repeat, warmup=0
    )
    cols = [c for c in floor.columns if c not in entities.columns]
    bad = common.mismatched_cells(joined, floor, cols)
    f, m = common.median(feast_times), common.median(floor_times)
    sec = "Feature pipeline"
    n = len(entities)
    report.add(
        sec,
        "PIT join, Feast get_historical_features (tier's store)",
        f,
        "s",
        note=f"{n:,} rows, {n / f:,.0f} rows/s",
    )
    report.add(sec, "PIT join, pandas merge_asof floor", m, "s", note=f"{n / m:,.0f} rows/s")
    report.add(
        sec,
        "PIT join get_historical_features / merge_asof",
        f / m,
        "x",
        f"<= {TARGETS['join_over_merge_asof']}",
        _le(f / m, TARGETS["join_over_merge_asof"]),
        f"{bad} of {n * len(cols):,} feature cells differ between the two joins",
    )
    report.details["pit_join"] = {
        "feast_s": feast_times,
        "merge_asof_s": floor_times,
        "mismatched_cells": bad,
    }


def materialization(report: Report, state: State, sizes: Sizes) -> None:
    """Online materialization of the range into a fresh SQLite store, and Redis if it answers."""
    start = datetime.fromisoformat(sizes.start).replace(tzinfo=UTC)
    end = datetime.fromisoformat(sizes.end).replace(tzinfo=UTC) + timedelta(days=1)
    sec = "Feature pipeline"
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = _client(state.paths, Path(tmp) / "feast")
        sqlite.apply()
        seconds, counts = common.timed(lambda: sqlite.materialize(start, end))
        rows = sum(counts.values())
        report.add(
            sec,
            "online materialization, SQLite",
            rows / seconds,
            "rows/s",
            note=f"{rows:,} offline rows in {seconds:.1f} s (the store keeps the latest per key)",
        )
    if not sizes.redis:
        return
    from dagster_project.platform import server

    tier = settings.ServerSettings(namespace=f"bench{uuid.uuid4().hex[:8]}")
    try:
        server.redis_client(tier).ping()
        server.ensure_databases(tier)
    except Exception as exc:
        report.add(
            sec,
            "online materialization, Redis",
            float("nan"),
            "rows/s",
            note=f"skipped: {type(exc).__name__}: {exc}"[:120],
        )
        return
    try:
        with tempfile.TemporaryDirectory() as tmp:
            server_paths = settings.Paths(state.paths.home, tier)
            from dagster_project.features.feast_store import FeatureStoreClient

            redis = FeatureStoreClient(
                server_paths.feast_template,
                Path(tmp) / "feast-redis",
                state.paths.features_url,
                server_paths.feast_overrides(),
            )
            redis.apply()
            seconds, counts = common.timed(lambda: redis.materialize(start, end))
            rows = sum(counts.values())
            report.add(
                sec,
                "online materialization, Redis",
                rows / seconds,
                "rows/s",
                note=f"{rows:,} offline rows in {seconds:.1f} s (the store keeps the latest per key)",
            )
    finally:
        server.drop_databases(tier)
        server.drop_redis_keys(tier)


def training(report: Report, state: State, sizes: Sizes) -> None:
    """XGBoost fit, one Optuna trial registered as champion (MLflow), one torch epoch."""
    from dagster_project.training import models, tracking
    from dagster_project.training import pipeline as tr

    df = state.training_set
    split = tr.time_split(df, sizes.holdout_days, sizes.validation_days)
    sec = "Training"
    params = {
        "max_depth": 6,
        "eta": 0.1,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 5.0,
        "lambda": 1.0,
        "num_boost_round": 400,
    }
    fit_s, model = common.timed(lambda: models.fit_xgboost(split.train, split.validation, params))
    report.add(
        sec,
        "XGBoost fit (hist, early stopping)",
        fit_s,
        "s",
        f"<= {TARGETS['xgboost_fit_s']:.0f} s (full year)",
        _le(fit_s, TARGETS["xgboost_fit_s"]) if sizes == FULL else None,
        f"{len(split.train):,} train rows, {model.params['best_num_boost_round']} trees",
    )
    options = tr.TrainingOptions(
        model_kinds=("xgboost",),
        n_trials=1,
        holdout_days=sizes.holdout_days,
        validation_days=sizes.validation_days,
    )
    lineage = tracking.Lineage("bench", f"{sizes.start}..{sizes.end}", SERVICE, "bench", "bench")
    if sizes.register:
        tracking.configure(state.paths.mlflow_tracking_uri, state.paths.mlflow_artifacts)
        registry = tracking.Registry(state.paths.mlflow_tracking_uri)
        trial_s, outcome = common.timed(
            lambda: tr.train_and_register(df, options, lineage, registry)
        )
        registry.set_alias(names.CHAMPION, outcome.version.version)
        note = (
            f"holdout AUC {outcome.holdout.roc_auc:.3f}; registered v{outcome.version.version} "
            "as champion"
        )
    else:  # the state folder's champion stays; the trial logs to a throwaway MLflow store
        with tempfile.TemporaryDirectory() as tmp:
            uri = f"sqlite:///{tmp}/mlflow.db"
            tracking.configure(uri, f"{tmp}/artifacts")
            try:
                trial_s, outcome = common.timed(
                    lambda: tr.train_and_register(df, options, lineage, tracking.Registry(uri))
                )
            finally:
                tracking.Registry(state.paths.mlflow_tracking_uri)
        note = f"holdout AUC {outcome.holdout.roc_auc:.3f}; not promoted (throwaway store)"
    report.add(sec, "one Optuna trial + MLflow logging + registration", trial_s, "s", note=note)
    torch_params = {
        "hidden": 64,
        "layers": 2,
        "dropout": 0.1,
        "lr": 3e-3,
        "weight_decay": 1e-5,
        "batch_size": 1024,
        "max_epochs": sizes.torch_epochs,
    }
    epoch_s, _ = common.timed(lambda: models.fit_torch(split.train, split.validation, torch_params))
    report.add(
        sec,
        "PyTorch MLP, one epoch (+ validation pass)",
        epoch_s / sizes.torch_epochs,
        "s",
        note=f"{len(split.train):,} rows, batch 1024, CPU",
    )


# --------------------------------------------------------------------------- serving
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _process(
    argv: list[str], env: dict[str, str], health: str, log: Path, timeout: float = 120
) -> Iterator[subprocess.Popen]:
    import httpx

    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.time() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{argv[:4]} exited with {proc.returncode}: {log.read_text()[-2000:]}"
                    )
                try:
                    if httpx.get(health, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError(
                        f"{health} did not answer in {timeout:.0f} s: {log.read_text()[-2000:]}"
                    )
                time.sleep(0.5)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _env(paths: settings.Paths) -> dict[str, str]:
    return os.environ | {
        "MLOPS_HOME": str(paths.home),
        "DAGSTER_HOME": str(paths.dagster_home),
        "MLOPS_PROFILE": "local",
        "MLOPS_SERVING_RELOAD_S": "0",
        "MLFLOW_TRACKING_URI": paths.mlflow_tracking_uri,
        "MLFLOW_REGISTRY_URI": paths.mlflow_tracking_uri,
        "GX_ANALYTICS_ENABLED": "false",
        # `mlflow models serve` starts `uvicorn` from the PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def request_payloads(flights: pd.DataFrame, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` endpoint requests for real flights of the range (sampled with a fixed seed)."""
    sample = flights.sample(n=n, replace=n > len(flights), random_state=seed)
    local = sample["sched_dep_ts"].dt.tz_convert(settings.TIMEZONE).dt.strftime("%Y-%m-%dT%H:%M:%S")
    out = []
    for f, ts in zip(sample.to_dict("records"), local, strict=True):
        out.append(
            {
                "flight_id": f["flight_id"],
                "carrier": f["carrier"],
                "origin": f["origin"],
                "dest": f["dest"],
                "tailnum": f["tailnum"] if isinstance(f["tailnum"], str) else None,
                "scheduled_departure": ts,
                "distance": float(f["distance"]),
            }
        )
    return out


def in_process(
    report: Report, state: State, sizes: Sizes, payloads: list[dict[str, Any]]
) -> dict[str, float]:
    """The floor: one Feast `get_online_features` + one model predict per flight, no HTTP;
    and our endpoint's own path (lookup, assembly, predict, logging) without HTTP."""
    import mlflow.pyfunc

    from dagster_project.serving.config import ServingConfig
    from dagster_project.serving.predictor import Predictor, entity_row
    from dagster_project.serving.schemas import Flight
    from dagster_project.training.preprocess import NUMERIC, input_frame

    client = _client(state.paths)
    model = mlflow.pyfunc.load_model("models:/flight_delay@champion")
    flights = [Flight(**p) for p in payloads]

    def floor_one(f: Flight) -> None:
        row = entity_row(f)
        online = client.online_features([row], SERVICE)
        frame = pd.DataFrame([row]).drop(columns=["sched_dep_epoch_s", "distance"])
        for c in NUMERIC:
            frame[c] = online.get(c, np.nan)
        model.predict(input_frame(frame))

    config = ServingConfig.for_paths(
        state.paths, prediction_log=str(state.paths.home / "bench_predictions"), reload_interval_s=0
    )
    predictor = Predictor(config)
    predictor.reload()

    def timings(fn: Callable[[Flight], Any]) -> list[float]:
        for f in flights[: sizes.warmup_requests]:
            fn(f)
        out = []
        for f in flights:
            t = time.perf_counter()
            fn(f)
            out.append((time.perf_counter() - t) * 1000)
        return out

    floor = common.percentiles(timings(floor_one))
    ours = common.percentiles(timings(lambda f: predictor.predict([f])))
    sec = "Online prediction (single flight)"
    report.add(
        sec,
        "in-process floor: Feast get_online_features + predict, p50",
        floor["p50_ms"],
        "ms",
        note=f"p99 {floor['p99_ms']:.2f} ms, {len(flights)} calls",
    )
    report.add(
        sec,
        "in-process, our serving path (lookup + assembly + predict + log), p50",
        ours["p50_ms"],
        "ms",
        note=f"p99 {ours['p99_ms']:.2f} ms",
    )
    report.details["in_process"] = {"floor": floor, "ours": ours}
    return {"floor_p50": floor["p50_ms"], "ours_p50": ours["p50_ms"]}


def serving(report: Report, state: State, sizes: Sizes) -> None:
    from dagster_project.training import tracking

    tracking.Registry(state.paths.mlflow_tracking_uri)  # models:/ URIs resolve in this store
    payloads = request_payloads(state.flights, max(sizes.inproc_requests, 1000))
    floors = in_process(report, state, sizes, payloads[: sizes.inproc_requests])
    env = _env(state.paths)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_dir = state.paths.home / "bench_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    sec = "Online prediction (single flight)"
    argv = [
        sys.executable,
        "-m",
        "dagster_project.serving",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    details: dict[str, Any] = {"endpoint_argv": argv[1:]}
    with _process(argv, env, f"{base}/ready", log_dir / "serving.log"):
        url = f"{base}/predict"
        loadgen.open_loop(url, payloads, 50, max(1.0, sizes.warmup_requests / 50))  # warm-up
        low = None
        for rate in sizes.rates:
            r = loadgen.open_loop(url, payloads, rate, sizes.rate_s).summary()
            details[f"open_{rate}"] = r
            low = low or r
            report.add(
                sec,
                f"/predict at {rate} req/s for {sizes.rate_s:.0f} s: p50 / p95 / p99",
                r["p50_ms"],
                "ms (p50)",
                note=f"p95 {r['p95_ms']:.2f}, p99 {r['p99_ms']:.2f} ms, {r['errors']} errors of {r['requests']}",
            )
        r = loadgen.open_loop(url, payloads, sizes.sustained_rps, sizes.sustained_s).summary()
        details["sustained"] = r
        low = low or r
        ok = r["p99_ms"] <= TARGETS["predict_p99_ms_at_200rps"] and r["errors"] == 0
        report.add(
            sec,
            f"/predict at {sizes.sustained_rps} req/s sustained {sizes.sustained_s:.0f} s: p99",
            r["p99_ms"],
            "ms",
            f"<= {TARGETS['predict_p99_ms_at_200rps']:.0f} ms, 0 errors at 200 req/s for 60 s",
            ok if sizes == FULL else None,
            f"p50 {r['p50_ms']:.2f}, p95 {r['p95_ms']:.2f} ms; {r['errors']} errors of {r['requests']}; achieved {r['achieved_rps']:.0f} req/s",
        )
        ratio = low["p50_ms"] / floors["floor_p50"]
        report.add(
            sec,
            "HTTP service p50 (lowest rate) / in-process floor p50",
            ratio,
            "x",
            f"<= {TARGETS['service_over_floor_p50']}",
            _le(ratio, TARGETS["service_over_floor_p50"]),
            f"over our own in-process path: {low['p50_ms'] / floors['ours_p50']:.2f}x",
        )
        sat = loadgen.closed_loop(url, payloads, sizes.concurrency, sizes.saturation_s).summary()
        details["saturation"] = sat
        report.add(
            sec,
            f"/predict saturation throughput ({sizes.concurrency} closed-loop clients)",
            sat["achieved_rps"],
            "req/s",
            note=f"p50 {sat['p50_ms']:.1f}, p99 {sat['p99_ms']:.1f} ms, {sat['errors']} errors",
        )
        batch_scoring(report, state, sizes, base)
    mlflow_tps = mlflow_serve(report, state, sizes, payloads, log_dir)
    ratio = sat["achieved_rps"] / mlflow_tps
    report.add(
        sec,
        "saturation throughput: our endpoint / mlflow models serve",
        ratio,
        "x",
        f">= {TARGETS['throughput_over_mlflow']}",
        bool(np.isfinite(ratio) and ratio >= TARGETS["throughput_over_mlflow"]),
    )
    report.details["serving"] = details


def mlflow_serve(
    report: Report, state: State, sizes: Sizes, payloads: list[dict[str, Any]], log_dir: Path
) -> float:
    """`mlflow models serve` of the same champion, features passed in the request."""
    import mlflow.pyfunc

    from dagster_project.serving.predictor import entity_row
    from dagster_project.serving.schemas import Flight
    from dagster_project.training.preprocess import FEATURES, NUMERIC, input_frame

    client = _client(state.paths)
    rows = [entity_row(Flight(**p)) for p in payloads[:500]]
    online = pd.DataFrame(client.online_features(rows, SERVICE))
    frame = pd.DataFrame(rows).drop(columns=["sched_dep_epoch_s", "distance"])
    for c in NUMERIC:
        frame[c] = online.get(c, np.nan)
    inputs = input_frame(frame)
    bodies = []
    for row in inputs.itertuples(index=False):
        values = [v.item() if isinstance(v, np.generic) else v for v in row]
        data = [[None if isinstance(v, float) and math.isnan(v) else v for v in values]]
        bodies.append({"dataframe_split": {"columns": list(FEATURES), "data": data}})
    del mlflow
    port = _free_port()
    argv = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/flight_delay@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    sec = "Online prediction (single flight)"
    with _process(
        argv,
        _env(state.paths),
        f"http://127.0.0.1:{port}/ping",
        log_dir / "mlflow_serve.log",
        timeout=180,
    ):
        url = f"http://127.0.0.1:{port}/invocations"
        loadgen.open_loop(url, bodies, 50, max(1.0, sizes.warmup_requests / 50))
        low = loadgen.open_loop(url, bodies, sizes.rates[0], sizes.rate_s).summary()
        report.add(
            sec,
            f"mlflow models serve at {sizes.rates[0]} req/s: p50",
            low["p50_ms"],
            "ms",
            note=f"p99 {low['p99_ms']:.2f} ms, {low['errors']} errors (features in the request)",
        )
        sat = loadgen.closed_loop(url, bodies, sizes.concurrency, sizes.saturation_s).summary()
        report.add(
            sec,
            f"mlflow models serve saturation throughput ({sizes.concurrency} clients)",
            sat["achieved_rps"],
            "req/s",
            note=f"p50 {sat['p50_ms']:.1f}, p99 {sat['p99_ms']:.1f} ms, {sat['errors']} errors; 1 worker",
        )
    report.details["mlflow_serve"] = {"argv": argv[1:], "low": low, "saturation": sat}
    return float(sat["achieved_rps"])


def batch_scoring(report: Report, state: State, sizes: Sizes, base: str) -> None:
    """`/predict/batch` with N flights per request, and offline scoring of the training set."""
    import httpx
    import mlflow.pyfunc

    sec = "Batch scoring"
    with httpx.Client(base_url=base, timeout=300) as http:
        for n in sizes.batch_sizes:
            body = {"flights": request_payloads(state.flights, n, seed=n)}
            times = []
            for i in range(sizes.batch_repeat + 1):
                t = time.perf_counter()
                r = http.post("/predict/batch", json=body)
                if r.status_code != 200:
                    raise RuntimeError(
                        f"/predict/batch with {n} flights: {r.status_code} {r.text[:300]}"
                    )
                if i:
                    times.append(time.perf_counter() - t)
            s = common.median(times)
            target, met = "", None
            if n == 1000:
                target, met = (
                    f"<= {TARGETS['batch_1000_ms']:.0f} ms",
                    _le(s * 1000, TARGETS["batch_1000_ms"]),
                )
            report.add(
                sec,
                f"/predict/batch, {n:,} flights per request",
                s * 1000,
                "ms",
                target,
                met,
                f"{n / s:,.0f} flights/s, median of {len(times)}",
            )
    from dagster_project.training.preprocess import input_frame

    model = mlflow.pyfunc.load_model("models:/flight_delay@champion")
    df = state.training_set
    times = common.repeat(lambda: model.predict(input_frame(df)), sizes.repeat)
    s = common.median(times)
    report.add(
        sec,
        "offline scoring of the training set (pyfunc, in-process)",
        len(df) / s,
        "rows/s",
        note=f"{len(df):,} rows in {s:.2f} s",
    )


# --------------------------------------------------------------------------- scaling
def scaling(report: Report, state: State, sizes: Sizes) -> None:
    """Feature build and get_historical_features (the tier's store) at 1x, 2x, 4x the data; the
    growth exponents."""
    flights, weather, planes = common.validated_tables(sizes.start, sizes.end)
    sec = "Scaling"
    rows, build_s, join_s, floor_s = [], [], [], []
    for k in sizes.scales:
        f, w, p = common.replicate(flights, weather, planes, k)
        b = common.median(
            common.repeat(
                functools.partial(common.feature_tables, f, w, p), sizes.scale_repeat, warmup=0
            )
        )
        tables = common.feature_tables(f, w, p)
        entities = engineering.training_entities(f)
        with tempfile.TemporaryDirectory() as tmp:
            client = _client(state.paths, Path(tmp) / "feast", f"{tmp}/features")
            for name, table in tables.items():
                client.write_offline_table(name, table)
            client.apply()
            j = common.median(
                common.repeat(  # no warm-up: the 1x join is warm from pit_join, 4x is long
                    functools.partial(client.historical_features, entities, SERVICE),
                    sizes.scale_repeat,
                    warmup=0,
                )
            )
        m = common.median(
            common.repeat(
                functools.partial(common.merge_asof_join, entities, tables, SERVICE),
                sizes.scale_repeat,
                warmup=0,
            )
        )
        rows.append(len(f))
        build_s.append(b)
        join_s.append(j)
        floor_s.append(m)
        report.add(
            sec,
            f"{k}x: feature build / get_historical_features / merge_asof",
            b,
            "s (build)",
            note=f"{len(f):,} flights; join {j:.2f} s, merge_asof {m:.2f} s",
        )
    for name, secs in (
        ("feature build", build_s),
        ("get_historical_features", join_s),
        ("merge_asof join", floor_s),
    ):
        e = common.growth_exponent(rows, secs)
        report.add(
            sec,
            f"growth exponent, {name}",
            e,
            "",
            f"<= {TARGETS['growth_exponent']}",
            _le(e, TARGETS["growth_exponent"]) if name != "merge_asof join" else None,
            "slope of log(time) vs log(size)",
        )
    report.details["scaling"] = {
        "flights": rows,
        "build_s": build_s,
        "join_s": join_s,
        "merge_asof_s": floor_s,
    }


def asof_join(report: Report, state: State, sizes: Sizes) -> None:
    """The ASOF JOIN offline store vs Feast's DuckDB store and the merge_asof floor
    (benchmarks/pit_join.py), on the run's range at 1x..8x (issue 19's targets)."""
    from benchmarks import pit_join as bench

    r = bench.run(sizes.start, sizes.end, list(sizes.asof_scales), max(1, sizes.repeat))
    sec = "Feature pipeline"
    report.add(sec, "PIT join, ASOF store", r["seconds"], "s", note=f"{r['rows']:,} rows")
    report.add(
        sec,
        "PIT join ASOF store / merge_asof",
        r["ratio_to_floor"],
        "x",
        "<= 1.5",
        _le(r["ratio_to_floor"], 1.5),
        f"{r['cells_differing']} of {r['cells_compared']:,} cells differ",
    )
    report.add(
        sec,
        "PIT join ASOF store, peak memory / merge_asof's",
        r["peak_ratio_to_floor"],
        "x",
        "<= 2.0",
        _le(r["peak_ratio_to_floor"], 2.0),
        f"{r['peak_mib']:.0f} MiB vs {r['floor_peak_mib']:.0f} MiB",
    )
    scales = "..".join(f"{k}x" for k in (r["scales"][0], r["scales"][-1]))
    report.add(
        sec,
        f"PIT join ASOF store, growth exponent {scales}",
        r["growth_exponent"],
        "",
        "<= 1.1",
        _le(r["growth_exponent"], 1.1) if len(r["scales"]) >= 4 else None,
        f"merge_asof {r['floor_growth_exponent']:.2f}; slope of log(time) vs log(rows)",
    )
    report.details["asof_join"] = r


# --------------------------------------------------------------------------- main
SECTIONS: dict[str, Callable[[Report, State, Sizes], None]] = {
    "build": build,
    "pit_join": pit_join,
    "asof_join": asof_join,
    "materialization": materialization,
    "training": training,
    "serving": serving,
    "scaling": scaling,
}


def write(report: Report, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "report.json", out / "report.md"
    js.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    md.write_text(report.to_markdown() + "\n")
    return md, js


def run(
    sizes: Sizes, out: Path, home: Path | None = None, sections: tuple[str, ...] = tuple(SECTIONS)
) -> Report:
    """Run the sections in a temporary (or the given) state folder and write the report."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    report = Report(sizes)
    tmp = Path(tempfile.mkdtemp(prefix="bench-")) if home is None else None
    state = State(settings.Paths(home or (tmp / "mlops")), sizes)  # type: ignore[operator]
    old = {k: os.environ.get(k) for k in ("MLOPS_HOME", "DAGSTER_HOME")}
    os.environ["MLOPS_HOME"] = str(state.paths.home)
    os.environ["DAGSTER_HOME"] = str(state.paths.dagster_home)
    try:
        for name in sections:
            print(f"== {name} (load {common.load_average()})", flush=True)
            t = time.perf_counter()
            SECTIONS[name](report, state, sizes)
            report.details.setdefault("section_seconds", {})[name] = round(
                time.perf_counter() - t, 1
            )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        write(report, out)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks")
    parser.add_argument(
        "--quick", action="store_true", help="smoke sizes (seconds, not comparable)"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=list(SECTIONS),
        help="run these sections (build always runs first)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    sections = tuple(SECTIONS)
    if args.only:
        sections = ("build", *[s for s in SECTIONS if s in args.only and s != "build"])
        if "serving" in sections and "training" not in sections:
            sections = tuple(s for s in SECTIONS if s in {*sections, "training"})
    started = time.perf_counter()
    run(sizes, args.out, sections=sections)
    print(f"report in {args.out}/report.md ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
