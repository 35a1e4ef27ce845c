"""Resource metering and cost: a :class:`Meter` measures a piece of work (wall time, CPU time,
peak memory, GPU time where a GPU is visible) and prices it with its compute class.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from dagster_project.platform.compute_classes import MIB, ComputeClass


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
