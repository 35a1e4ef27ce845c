"""Compute classes, resource metering and cost, and the serving-hardware rule.

The classes live in ``infra/compute/profiles.yaml`` (``MLOPS_COMPUTE_PROFILES`` names another
file): Kubernetes requests/limits, node selector, tolerations, GPU and hourly price of each class,
and which class each asset group runs on. A :class:`Meter` measures a piece of work (wall time,
CPU time, peak memory, GPU time where a GPU is visible) and prices it with its class. Nothing here
imports Dagster: ``dagster_project/compute.py`` turns classes into ``dagster-k8s/config`` tags and
attaches a :class:`Usage` to every materialization.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import yaml

from dagster_project.lib.settings import REPO_ROOT

PROFILES_FILE = REPO_ROOT / "infra" / "compute" / "profiles.yaml"
GPU_RESOURCE = "nvidia.com/gpu"
MIB = 1024**2
GIB = 1024**3

_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024.0,
    "Mi": float(MIB),
    "Gi": float(GIB),
    "Ti": 1024.0**4,
}


def parse_quantity(value: str | float) -> float:
    """A Kubernetes quantity (``"500m"``, ``"16Gi"``, ``"2"``) as a number (bytes, cores)."""
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


@dataclass(frozen=True)
class Gpu:
    model: str
    memory_gib: float


@dataclass(frozen=True)
class ComputeClass:
    """One compute class: the pod shape Kubernetes schedules and what an hour of it costs."""

    name: str
    description: str
    requests: dict[str, str]
    limits: dict[str, str]
    node_selector: dict[str, str]
    tolerations: tuple[dict[str, str], ...]
    price_per_hour: float
    gpu: Gpu | None = None

    @property
    def gpus(self) -> int:
        return int(parse_quantity(self.limits.get(GPU_RESOURCE, "0")))

    @property
    def memory_limit_bytes(self) -> int:
        return int(parse_quantity(self.limits["memory"]))

    def k8s_config(self) -> dict[str, Any]:
        """The class as dagster-k8s user config (``container_config`` / ``pod_spec_config``)."""
        pod_spec: dict[str, Any] = {"node_selector": dict(self.node_selector)}
        if self.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in self.tolerations]
        return {
            "container_config": {
                "resources": {"requests": dict(self.requests), "limits": dict(self.limits)}
            },
            "pod_spec_config": pod_spec,
        }

    def cost(self, seconds: float) -> float:
        """Estimated cost in USD of holding this class for ``seconds``."""
        return self.price_per_hour * seconds / 3600.0


@dataclass(frozen=True)
class Profiles:
    classes: dict[str, ComputeClass]
    groups: dict[str, str]
    serving_order: tuple[str, ...]
    headroom: float
    default: str = ""
    source: str = ""

    def for_group(self, group: str) -> ComputeClass:
        if group not in self.groups:
            raise ValueError(
                f"asset group {group!r} has no compute class in {self.source} "
                f"(groups: {', '.join(sorted(self.groups))})"
            )
        return self.classes[self.groups[group]]

    @property
    def default_class(self) -> ComputeClass:
        """The class of steps outside any group."""
        return self.classes[self.default]


def profiles_path() -> Path:
    return Path(os.environ.get("MLOPS_COMPUTE_PROFILES") or PROFILES_FILE)


def _class(name: str, raw: dict[str, Any], source: Path) -> ComputeClass:
    where = f"{source}: class {name!r}"
    try:
        resources = raw["resources"]
        requests = {str(k): str(v) for k, v in resources["requests"].items()}
        limits = {str(k): str(v) for k, v in resources["limits"].items()}
        price = float(raw["price_per_hour"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: needs resources.requests/limits and price_per_hour") from exc
    for key in ("cpu", "memory"):
        if key not in requests or key not in limits:
            raise ValueError(f"{where}: requests and limits must both set {key}")
        if parse_quantity(requests[key]) > parse_quantity(limits[key]):
            raise ValueError(f"{where}: {key} request is above its limit")
    gpu_raw = raw.get("gpu")
    gpu = Gpu(str(gpu_raw["model"]), float(gpu_raw["memory_gib"])) if gpu_raw else None
    if (gpu is None) != (GPU_RESOURCE not in limits):
        raise ValueError(f"{where}: declare both `gpu` and a {GPU_RESOURCE} limit, or neither")
    if gpu and requests.get(GPU_RESOURCE) != limits[GPU_RESOURCE]:
        raise ValueError(f"{where}: {GPU_RESOURCE} request and limit must be equal")
    if price < 0:
        raise ValueError(f"{where}: negative price")
    return ComputeClass(
        name=name,
        description=str(raw.get("description", "")),
        requests=requests,
        limits=limits,
        node_selector={str(k): str(v) for k, v in (raw.get("node_selector") or {}).items()},
        tolerations=tuple(
            {str(k): str(v) for k, v in t.items()} for t in raw.get("tolerations") or []
        ),
        price_per_hour=price,
        gpu=gpu,
    )


def load_profiles(path: Path | None = None) -> Profiles:
    """Read and check the compute profiles file (a message names the file and the problem)."""
    source = path or profiles_path()
    raw = yaml.safe_load(source.read_text())
    classes = {name: _class(name, spec, source) for name, spec in raw["classes"].items()}
    groups = {str(g): str(c) for g, c in raw["groups"].items()}
    unknown = sorted(set(groups.values()) - set(classes))
    if unknown:
        raise ValueError(f"{source}: groups map to unknown classes {unknown}")
    rule = raw.get("serving_rule") or {}
    order = tuple(rule.get("order", ()))
    headroom = float(rule.get("headroom", 0.8))
    if not order or set(order) - set(classes):
        raise ValueError(f"{source}: serving_rule.order must name known classes, got {order}")
    if order and classes[order[-1]].gpu is not None:
        raise ValueError(f"{source}: serving_rule.order must end with a CPU class")
    gpu_prices = [classes[n].price_per_hour for n in order if classes[n].gpu is not None]
    if gpu_prices != sorted(gpu_prices):
        raise ValueError(f"{source}: serving_rule.order must list GPU classes cheapest first")
    if not 0 < headroom <= 1:
        raise ValueError(f"{source}: serving_rule.headroom must be in (0, 1]")
    default = str(raw.get("default_class", ""))
    if default not in classes:
        raise ValueError(f"{source}: default_class must name a class, got {default!r}")
    return Profiles(classes, groups, order, headroom, default, str(source))


# ---- metering ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What one piece of work used, priced with its compute class."""

    compute_class: str
    price_per_hour: float
    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int
    gpu_seconds: float | None = None
    gpu_peak_memory_bytes: int | None = None

    @property
    def cost_usd(self) -> float:
        return self.price_per_hour * self.wall_seconds / 3600.0

    def figures(self) -> dict[str, float | str]:
        """Flat name -> value (GPU figures only where a GPU was used)."""
        out: dict[str, float | str] = {
            "compute_class": self.compute_class,
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_memory_mib": round(self.peak_memory_bytes / MIB, 1),
            "price_per_hour_usd": self.price_per_hour,
            "cost_usd": round(self.cost_usd, 6),
        }
        if self.gpu_seconds is not None:
            out["gpu_seconds"] = round(self.gpu_seconds, 3)
        if self.gpu_peak_memory_bytes is not None:
            out["gpu_peak_memory_mib"] = round(self.gpu_peak_memory_bytes / MIB, 1)
        return out

    def mlflow_metrics(self) -> dict[str, float]:
        return {
            f"compute_{k}": float(v) for k, v in self.figures().items() if not isinstance(v, str)
        }

    def mlflow_tags(self) -> dict[str, str]:
        return {
            "compute_class": self.compute_class,
            "compute_cost_usd": f"{self.cost_usd:.6f}",
            "compute_price_per_hour_usd": f"{self.price_per_hour}",
        }


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _max_rss() -> int | None:
    """The process's lifetime peak RSS in bytes (None where `resource` is missing)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _cuda() -> Any:
    """torch.cuda if torch is imported and this process has used a GPU (a CUDA context exists);
    torch is never imported here, and a GPU merely visible does not count."""
    torch = sys.modules.get("torch")
    try:
        return torch.cuda if torch is not None and torch.cuda.is_initialized() else None
    except Exception:  # a broken driver is "no GPU", not a failed step
        return None


@dataclass
class Meter:
    """Measures the work between :meth:`start` and :meth:`stop`.

    Peak memory is the highest resident set size sampled every ``interval`` seconds, raised to
    the process's lifetime peak when that peak was set during the measurement (so short spikes
    between samples are not missed). GPU time is the wall time of work in which torch used a GPU
    (the pod holds the card for the whole step); GPU peak memory is torch's allocator peak."""

    interval: float = 0.02
    _started: float = 0.0
    _cpu0: float = 0.0
    _max_rss0: int | None = None
    _peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> Meter:
        self._peak = _rss()
        self._max_rss0 = _max_rss()
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="meter", daemon=True)
        self._thread.start()
        self._cpu0 = _cpu_seconds()
        self._started = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss())

    def peak_bytes(self) -> int:
        """Peak so far (the meter keeps running)."""
        peak = max(self._peak, _rss())
        max_rss = _max_rss()
        if max_rss is not None and self._max_rss0 is not None and max_rss > self._max_rss0:
            peak = max(peak, max_rss)
        return peak

    def close(self) -> None:
        """Stop the sampler thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def stop(self, compute_class: ComputeClass) -> Usage:
        wall = time.perf_counter() - self._started
        cpu = _cpu_seconds() - self._cpu0
        self.close()
        cuda = _cuda()
        return Usage(
            compute_class=compute_class.name,
            price_per_hour=compute_class.price_per_hour,
            wall_seconds=wall,
            cpu_seconds=cpu,
            peak_memory_bytes=self.peak_bytes(),
            gpu_seconds=wall if cuda is not None else None,
            gpu_peak_memory_bytes=int(cuda.max_memory_allocated()) if cuda is not None else None,
        )


def cost_table(rows: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """Printable lines for steps' usage figures (as :meth:`Usage.figures` wrote them), plus a
    total. Rows without figures are skipped."""
    rows = [(name, f) for name, f in rows if f.get("compute_class")]
    if not rows:
        return []
    out = [
        (
            "step (compute class, $/h)",
            "   wall s    CPU s  peak MiB    GPU s   cost USD",
        )
    ]
    for name, f in rows:
        gpu = f.get("gpu_seconds")
        out.append(
            (
                f"{name} ({f['compute_class']}, {float(f['price_per_hour_usd']):.2f})",
                f"{float(f['wall_seconds']):>9.1f}{float(f['cpu_seconds']):>9.1f}"
                f"{float(f['peak_memory_mib']):>10.0f}"
                f"{(f'{float(gpu):.1f}' if gpu is not None else '-'):>9}"
                f"{float(f['cost_usd']):>11.5f}",
            )
        )
    out.append(
        (
            "total",
            f"{sum(float(f['wall_seconds']) for _, f in rows):>9.1f}"
            f"{sum(float(f['cpu_seconds']) for _, f in rows):>9.1f}{'':>19}"
            f"{sum(float(f['cost_usd']) for _, f in rows):>11.5f}",
        )
    )
    return out


# ---- serving hardware ----------------------------------------------------------------------------


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
