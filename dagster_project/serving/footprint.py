"""The serving-hardware rule: how much memory a model needs to serve a batch, and the smallest
compute class that holds it with headroom.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dagster_project.platform.compute_classes import GIB, MIB, ComputeClass, Profiles
from dagster_project.platform.metering import Meter, _rss


@dataclass(frozen=True)
class Footprint:
    """Memory a model needs to serve a batch."""

    serialized_bytes: int  # the model's files
    load_bytes: int  # resident memory added by loading it
    batch_rows: int
    batch_bytes: int  # extra peak memory of scoring one batch (at least the batch itself)

    @property
    def model_bytes(self) -> int:
        return max(self.serialized_bytes, self.load_bytes)

    @property
    def required_bytes(self) -> int:
        return self.model_bytes + self.batch_bytes


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure_footprint(
    model_dir: Path,
    load: Callable[[], Any],
    predict: Callable[[Any, pd.DataFrame], Any],
    batch: pd.DataFrame,
) -> Footprint:
    """Serialized size of ``model_dir``, resident memory added by ``load()``, and the peak memory
    of ``predict(model, batch)`` above the loaded model. In a fresh process (a step pod) the load
    figure includes the model libraries; in a warm one they may already be resident, which is
    why the model counts at least its serialized size."""
    gc.collect()
    before = _rss()
    model = load()
    gc.collect()
    loaded = _rss()
    meter = Meter().start()
    try:
        predict(model, batch)
        peak = meter.peak_bytes()
    finally:
        meter.close()
    input_bytes = int(batch.memory_usage(deep=True).sum())
    return Footprint(
        serialized_bytes=folder_size(model_dir),
        load_bytes=max(loaded - before, 0),
        batch_rows=len(batch),
        batch_bytes=max(peak - loaded, input_bytes),
    )


@dataclass(frozen=True)
class ServingChoice:
    compute_class: ComputeClass
    footprint: Footprint
    checked: dict[str, dict[str, Any]]  # class -> capacity, fits
    reason: str


def serving_capacity_bytes(cls: ComputeClass, headroom: float) -> int:
    """What a model and batch may take on ``cls``: the GPU's memory on a GPU class (and the
    pod's memory, where the model is loaded first), else the pod's memory limit."""
    host = cls.memory_limit_bytes * headroom
    if cls.gpu is None:
        return int(host)
    return int(min(cls.gpu.memory_gib * GIB * headroom, host))


def recommend_serving(profiles: Profiles, footprint: Footprint) -> ServingChoice:
    """The serving rule: the first class of ``serving_rule.order`` (the small inference GPU, then
    the training GPU, then CPU; GPU classes cheapest first) whose capacity holds the model and
    one batch."""
    checked: dict[str, dict[str, Any]] = {}
    need = footprint.required_bytes
    for name in profiles.serving_order:
        cls = profiles.classes[name]
        capacity = serving_capacity_bytes(cls, profiles.headroom)
        checked[name] = {
            "capacity_mib": round(capacity / MIB, 1),
            "fits": need <= capacity,
            "price_per_hour_usd": cls.price_per_hour,
            "gpu": cls.gpu.model if cls.gpu else None,
        }
        if need <= capacity:
            where = f"{cls.gpu.model} ({cls.gpu.memory_gib:g} GiB)" if cls.gpu else "CPU"
            return ServingChoice(
                cls,
                footprint,
                checked,
                f"model {footprint.model_bytes / MIB:.1f} MiB + batch of {footprint.batch_rows} "
                f"{footprint.batch_bytes / MIB:.1f} MiB fits {name} on {where} "
                f"(capacity {capacity / MIB:.0f} MiB at {profiles.headroom:.0%} headroom)",
            )
    raise ValueError(
        f"model + batch need {need / MIB:.0f} MiB, more than any serving class holds: {checked}"
    )


def example_batch(example: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """A batch of ``rows`` request rows drawn (with replacement) from a model's input example."""
    if example.empty or rows < 1:
        raise ValueError("need a non-empty input example and at least one row")
    return example.sample(rows, replace=True, random_state=seed).reset_index(drop=True)


def model_footprint(model_uri: str, batch_rows: int) -> Footprint:
    """:func:`measure_footprint` of an MLflow model: downloaded, loaded as ``pyfunc``, scoring a
    batch of ``batch_rows`` rows drawn from its logged input example."""
    import tempfile

    import mlflow.artifacts
    import mlflow.pyfunc
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        example = Model.load(str(local)).load_input_example(str(local))
        if not isinstance(example, pd.DataFrame):
            raise ValueError(f"{model_uri} has no tabular input example to build a batch from")
        return measure_footprint(
            local,
            lambda: mlflow.pyfunc.load_model(str(local)),
            lambda model, batch: model.predict(batch),
            example_batch(example, batch_rows),
        )
