"""Compute classes: Kubernetes requests/limits, node selector, tolerations, GPU and hourly price
of each class, and which class each asset group runs on.

The classes ship with the package (``profiles.yaml`` beside this module);
``MLOPS_COMPUTE_PROFILES`` names another file. Nothing here imports Dagster:
``dagster_project/orchestration/compute_asset.py`` turns a class into the op tags of an asset.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROFILES_FILE = Path(__file__).with_name("profiles.yaml")  # package data
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

    def docker_limits(
        self, host_cpus: float | None = None, host_memory: int | None = None, gpus: bool = False
    ) -> dict[str, Any]:
        """The class as Docker container limits (docker-py ``containers.create`` arguments), for
        the ``docker`` executor: the CPU limit becomes ``nano_cpus``, the CPU request relative
        ``cpu_shares`` (1024 a core), the memory limit ``mem_limit`` and the request
        ``mem_reservation``; a GPU limit becomes a device request when the engine has GPUs
        (``gpus``). Docker refuses more CPUs than the host has, so limits are capped at
        ``host_cpus`` / ``host_memory`` where given (a laptop is smaller than a node pool)."""
        cpu_limit = parse_quantity(self.limits["cpu"])
        cpu_request = parse_quantity(self.requests["cpu"])
        memory_limit = int(parse_quantity(self.limits["memory"]))
        memory_request = int(parse_quantity(self.requests["memory"]))
        if host_cpus:
            cpu_limit = min(cpu_limit, host_cpus)
            cpu_request = min(cpu_request, cpu_limit)
        if host_memory:
            memory_limit = min(memory_limit, host_memory)
            memory_request = min(memory_request, memory_limit)
        out: dict[str, Any] = {
            "nano_cpus": round(cpu_limit * 1e9),
            "cpu_shares": max(2, round(cpu_request * 1024)),
            "mem_limit": memory_limit,
            "mem_reservation": memory_request,
            "labels": {"flight-mlops/compute-class": self.name},
        }
        if gpus and self.gpus:
            out["device_requests"] = [{"count": self.gpus, "capabilities": [["gpu"]]}]
        return out

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
