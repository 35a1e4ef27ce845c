"""Compute classes, metering, cost and the serving-hardware rule (no Dagster)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dagster_project.platform import compute_classes, metering
from dagster_project.platform.compute_classes import GIB, MIB
from dagster_project.serving import footprint as sizing
from dagster_project.serving.footprint import Footprint


@pytest.fixture(scope="module")
def profiles() -> compute_classes.Profiles:
    return compute_classes.load_profiles()


def test_three_classes_with_the_seeds_hardware(profiles):
    assert set(profiles.classes) == {"data-processing", "training", "serving"}
    cpu, train, serve = (profiles.classes[n] for n in ("data-processing", "training", "serving"))
    assert cpu.gpu is None
    assert cpu.gpus == 0
    assert train.gpus == 1
    assert train.gpu is not None
    assert "A30" in train.gpu.model
    assert serve.gpus == 1
    assert serve.gpu is not None
    assert "A2" in serve.gpu.model
    assert serve.gpu.memory_gib < train.gpu.memory_gib
    assert serve.price_per_hour < train.price_per_hour
    for cls in (train, serve):
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
            cls.tolerations
        )
        assert cls.node_selector["nvidia.com/gpu.product"].startswith("NVIDIA-A")
    assert profiles.for_group("training") is train
    assert profiles.for_group("features") is cpu
    assert profiles.for_group("serving") is serve


def test_unknown_group_names_the_file(profiles):
    with pytest.raises(ValueError, match=r"'nope' has no compute class in .*profiles.yaml"):
        profiles.for_group("nope")


def test_k8s_config_is_dagster_k8s_user_config(profiles):
    config = profiles.classes["training"].k8s_config()
    assert config["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert config["pod_spec_config"]["node_selector"]["flight-mlops/pool"] == "gpu-training"
    assert "tolerations" not in profiles.classes["data-processing"].k8s_config()["pod_spec_config"]


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("500m", 0.5), ("2", 2.0), ("16Gi", 16 * GIB), ("512Mi", 512 * MIB), ("1G", 1e9)],
)
def test_parse_quantity(quantity, value):
    assert compute_classes.parse_quantity(quantity) == value


def test_parse_quantity_rejects_garbage():
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        compute_classes.parse_quantity("16 GB")


def _write(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(compute_classes.PROFILES_FILE.read_text())
    edit(raw)
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["groups"].update(training="gpu-xl"), "unknown classes"),
        (lambda r: r.update(default_class="gpu-xl"), "default_class must name a class"),
        (lambda r: r["serving_rule"].update(order=["training", "serving"]), "end with a CPU"),
        (
            lambda r: r["serving_rule"].update(order=["training", "serving", "data-processing"]),
            "cheapest first",
        ),
        (lambda r: r["classes"]["serving"].pop("gpu"), "both `gpu` and a nvidia.com/gpu limit"),
        (
            lambda r: r["classes"]["data-processing"]["resources"]["requests"].update(cpu="16"),
            "cpu request is above its limit",
        ),
    ],
)
def test_bad_profiles_are_refused_with_the_reason(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        compute_classes.load_profiles(_write(tmp_path, edit))


def test_meter_measures_cpu_memory_and_prices_the_wall_time(profiles):
    cls = profiles.classes["training"]
    with metering.Meter() as meter:
        started = time.process_time()
        while time.process_time() - started < 0.3:  # busy CPU
            pass
        block = bytearray(300 * MIB)  # touched: resident
        usage = meter.stop(cls)
    del block
    assert usage.cpu_seconds >= 0.25
    assert usage.wall_seconds >= usage.cpu_seconds * 0.5
    assert usage.peak_memory_bytes >= 300 * MIB
    assert usage.cost_usd == pytest.approx(cls.price_per_hour * usage.wall_seconds / 3600)
    assert usage.gpu_seconds is None  # no GPU used
    figures = usage.figures()
    assert figures["compute_class"] == "training"
    assert "gpu_seconds" not in figures
    assert usage.mlflow_metrics()["compute_cost_usd"] == figures["cost_usd"]
    assert usage.mlflow_tags()["compute_class"] == "training"


def test_cost_table_lists_each_step_and_the_total():
    usage = [
        ("training_set", metering.Usage("data-processing", 0.5, 36.0, 30.0, 900 * MIB).figures()),
        ("flight_delay_model", metering.Usage("training", 1.12, 360.0, 600.0, 2 * GIB).figures()),
        ("something_else", {"n": 1}),  # no usage recorded: skipped
    ]
    table = metering.cost_table(usage)
    assert [name for name, _ in table][1:] == [
        "training_set (data-processing, 0.50)",
        "flight_delay_model (training, 1.12)",
        "total",
    ]
    assert table[2][1].split()[-1] == "0.11200"  # 1.12 $/h for 6 minutes
    assert table[-1][1].split()[-1] == "0.11700"  # + 0.50 $/h for 36 s
    assert metering.cost_table([("x", {})]) == []


def fp(model_mib: float, batch_mib: float) -> Footprint:
    return Footprint(int(model_mib * MIB), 0, 1024, int(batch_mib * MIB))


@pytest.mark.parametrize(
    ("footprint", "chosen"),
    [
        (fp(40, 20), "serving"),  # a small model: the A2
        (fp(11 * 1024, 1024), "serving"),  # 12 GiB: just under 80% of the A2's 16 GiB
        (fp(14 * 1024, 1024), "training"),  # 15 GiB: the A30's 24 GiB
        (fp(30 * 1024, 2048), "data-processing"),  # 32 GiB: no GPU holds it, CPU with 64 GiB
    ],
)
def test_serving_rule_picks_the_first_class_that_holds_model_and_batch(profiles, footprint, chosen):
    choice = sizing.recommend_serving(profiles, footprint)
    assert choice.compute_class.name == chosen
    order = list(profiles.serving_order)
    assert list(choice.checked) == order[: order.index(chosen) + 1]
    assert [c["fits"] for c in choice.checked.values()][-1] is True
    assert not any(c["fits"] for c in list(choice.checked.values())[:-1])


def test_serving_rule_refuses_a_model_nothing_holds(profiles):
    with pytest.raises(ValueError, match="more than any serving class holds"):
        sizing.recommend_serving(profiles, fp(80 * 1024, 1024))


FOOTPRINT_SCRIPT = """
import json, sys, time
from pathlib import Path
import pandas as pd
from dagster_project.platform.compute_classes import MIB
from dagster_project.serving import footprint

batch = footprint.example_batch(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), 100_000)

# written, not just allocated: zeroed pages are not resident until touched
def load():
    return bytearray(b"\\x01") * (64 * MIB)

def predict(model, frame):
    scratch = bytearray(b"\\x01") * (128 * MIB)  # activations of the batch
    time.sleep(0.2)  # a batch takes a while: long enough for the sampler
    return len(scratch) + len(frame)

fp = footprint.measure_footprint(Path(sys.argv[1]), load, predict, batch)
print(json.dumps({**fp.__dict__, "model_bytes": fp.model_bytes}))
"""


def test_measure_footprint_counts_the_load_and_the_batch(tmp_path):
    """In a fresh process, as in a step pod: inside the test session other threads allocate and
    free memory at the same time, which makes a resident-set delta meaningless."""
    (tmp_path / "weights.bin").write_bytes(b"\0" * (2 * MIB))
    assert len(sizing.example_batch(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), 100_000)) == 100_000
    done = subprocess.run(
        [sys.executable, "-c", FOOTPRINT_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    footprint = json.loads(done.stdout.strip().splitlines()[-1])
    assert footprint["serialized_bytes"] == 2 * MIB
    assert footprint["load_bytes"] >= 60 * MIB
    assert footprint["model_bytes"] == footprint["load_bytes"]
    assert footprint["batch_bytes"] >= 120 * MIB
    assert footprint["batch_rows"] == 100_000


class _FakeCuda:
    """torch.cuda of a process that has used a GPU (no GPU on this machine)."""

    def __init__(self) -> None:
        self.resets = 0

    def is_initialized(self) -> bool:
        return True

    def reset_peak_memory_stats(self) -> None:
        self.resets += 1

    def max_memory_allocated(self) -> int:
        return 3 * GIB


def test_meter_records_gpu_time_and_memory_when_torch_used_a_gpu(monkeypatch, profiles):
    import types

    cuda = _FakeCuda()
    monkeypatch.setitem(__import__("sys").modules, "torch", types.SimpleNamespace(cuda=cuda))
    with metering.Meter() as meter:
        time.sleep(0.05)
        usage = meter.stop(profiles.classes["training"])
    assert cuda.resets == 1  # the peak is the step's, not the process's
    assert usage.gpu_seconds == usage.wall_seconds
    assert usage.gpu_peak_memory_bytes == 3 * GIB
    assert usage.figures()["gpu_peak_memory_mib"] == 3072.0
    assert "compute_gpu_seconds" in usage.mlflow_metrics()
