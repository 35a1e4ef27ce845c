"""/metrics by Prometheus' conventions (checked by promtool when installed, always by
prometheus_client's parser), the Grafana dashboard against the names the app exports, the
scrape annotations, and multiprocess mode (several workers, one sum)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from dagster_project.platform.names import FEATURE_SERVICE
from dagster_project.serving import metrics as serving_metrics
from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig
from dagster_project.serving.metrics import MULTIPROC_ENV, PROMETHEUS_ENV
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import tracking
from tests.paths import REPO_ROOT

DASHBOARD = REPO_ROOT / "infra" / "grafana" / "flight-delay-serving.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_created")


@pytest.fixture(scope="module")
def config(spine, first_model) -> ServingConfig:
    return ServingConfig.for_paths(
        spine.paths,
        prediction_log=str(spine.paths.home / "test_metrics_predictions"),
        reload_interval_s=0,
    )


@pytest.fixture(scope="module")
def scraped(config) -> str:
    """/metrics after some traffic: predictions, a fallback, a 422, a 404 and an OIP call."""
    with TestClient(create_app(config)) as c:
        for _ in range(20):
            assert c.post("/predict", json=EXAMPLE_FLIGHT).status_code == 200
        assert c.post("/predict", json=EXAMPLE_FLIGHT | {"carrier": "ZZ"}).status_code == 200
        assert c.post("/predict", json=EXAMPLE_FLIGHT | {"origin": "BOS"}).status_code == 422
        assert c.get("/no-such-route").status_code == 404
        r = c.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=")
        return r.text


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def exported_names(text: str) -> set[str]:
    """Every sample name in an exposition (counters with their _total)."""
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_promtool_check_metrics_passes(scraped):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (`make setup` installs Debian's prometheus package)")
    out = subprocess.run(
        [promtool, "check", "metrics"], input=scraped, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_names_labels_and_buckets_follow_the_conventions(scraped, config):
    families = _families(scraped)
    names = exported_names(scraped)
    assert set(serving_metrics.METRIC_NAMES) <= names | set(families), sorted(names)
    assert "flight_delay_http_request_seconds_bucket" not in names  # the old name is gone
    assert "flight_delay_model_version" not in names

    requests = families["flight_delay_http_requests"]
    assert requests.type == "counter"
    by_labels = {
        (s.labels["method"], s.labels["path"], s.labels["status"]): s.value
        for s in requests.samples
        if s.name.endswith("_total")
    }
    assert by_labels[("POST", "/predict", "200")] == 21
    assert by_labels[("POST", "/predict", "422")] == 1
    assert by_labels[("GET", "unmatched", "404")] == 1

    latency = families["flight_delay_http_request_duration_seconds"]
    assert latency.type == "histogram"
    buckets = {
        float(s.labels["le"]): s.value
        for s in latency.samples
        if s.name.endswith("_bucket")
        and s.labels["path"] == "/predict"
        and s.labels["method"] == "POST"
    }
    bounds = sorted(buckets)
    assert bounds[0] <= 0.0005
    assert bounds[-2] >= 5
    assert buckets[float("inf")] == 22
    # the histogram resolves the latency: the requests do not all land in one bucket
    assert len({buckets[b] for b in bounds}) > 2, buckets

    lookups = families["flight_delay_feature_store_lookup_duration_seconds"]
    count = next(s.value for s in lookups.samples if s.name.endswith("_count"))
    assert count >= 21  # one per served prediction (plus the warm-up lookup)

    fallbacks = families["flight_delay_feature_fallbacks"]
    assert next(s.value for s in fallbacks.samples if s.name.endswith("_total")) >= 1

    info = families["flight_delay_model_info"]
    champion = tracking.Registry(config.tracking_uri).by_alias("champion")
    assert [(s.labels, s.value) for s in info.samples] == [
        (
            {
                "version": champion.version,
                "kind": info.samples[0].labels["kind"],
                "feature_service": FEATURE_SERVICE,
            },
            1.0,
        )
    ]
    assert info.samples[0].labels["kind"]

    for standard in serving_metrics.STANDARD_NAMES:  # process and GC collectors
        assert standard in names, standard
    rss = families["process_resident_memory_bytes"].samples[0].value
    assert rss > 50 * 1024 * 1024


def _dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def _metric_names_in(expr: str) -> set[str]:
    names = set(re.findall(r"\b((?:flight_delay|process|python)_[a-z0-9_]+)\b", expr))
    return {n for n in names if n != FEATURE_SERVICE}


def test_dashboard_queries_only_metrics_the_app_exports(scraped):
    exported = exported_names(scraped)
    exported |= {n.removesuffix(s) for n in exported for s in SUFFIXES if n.endswith(s)}
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"]
    assert board["title"]
    exprs = _dashboard_exprs()
    used: set[str] = set()
    for title, expr in exprs:
        names = _metric_names_in(expr)
        assert names, f"{DASHBOARD.name}: panel {title!r} queries no metric of the app: {expr}"
        unknown = names - exported
        assert not unknown, f"{DASHBOARD.name}: panel {title!r} queries {sorted(unknown)}"
        used |= names
    # what the issue asks the dashboard to show
    text = " ".join(e for _, e in exprs)
    assert "flight_delay_http_requests_total" in used  # request rate
    assert "histogram_quantile(0.99" in text
    assert "request_duration_seconds_bucket" in text
    assert 'status=~"5..' in text  # errors
    assert "flight_delay_feature_fallbacks_total" in used
    assert "flight_delay_model_info" in used
    assert "flight_delay_feature_store_lookup_duration_seconds_bucket" in used


def test_dashboard_queries_are_valid_promql(tmp_path):
    """Every query as a recording rule through `promtool check rules` (its PromQL parser)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (`make setup` installs Debian's prometheus package)")
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(_dashboard_exprs())
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_serving_pods_carry_the_prometheus_scrape_annotations():
    from tests.infra.manifests import INFRA, OVERLAYS, render

    for overlay in OVERLAYS:
        docs = render(INFRA / "k8s" / "overlays" / overlay)
        deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
        template = deployments["serving"]["spec"]["template"]
        notes = template["metadata"]["annotations"]
        ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert notes["prometheus.io/scrape"] == "true", overlay
        assert notes["prometheus.io/path"] == "/metrics", overlay
        assert int(notes["prometheus.io/port"]) == ports["http"], overlay


WORKER = textwrap.dedent(
    """
    import sys
    from dagster_project.serving.metrics import Metrics
    m = Metrics()
    import feast.metrics  # sets PROMETHEUS_MULTIPROC_DIR only where unset: ours stays
    n = int(sys.argv[1])
    for _ in range(n):
        m.requests.labels("POST", "/predict", "200").inc()
        m.latency.labels("POST", "/predict").observe(0.002)
    m.set_model(sys.argv[2], "lightgbm", "flight_delay_v1")
    print(m.multiprocess)
    """
)
SCRAPE = textwrap.dedent(
    """
    from prometheus_client import generate_latest
    from dagster_project.serving.metrics import Metrics
    print(generate_latest(Metrics().exposition).decode())
    """
)


def test_multiprocess_mode_sums_the_workers(tmp_path):
    """Two worker processes write under the metrics folder; a third (any worker
    answering /metrics) renders their sum; a worker that reloaded drops its old version."""
    folder = tmp_path / "prom"
    serving_metrics.prepare_multiprocess_dir(folder)
    env = {name: str(folder) for name in (MULTIPROC_ENV, *PROMETHEUS_ENV)}
    env["PYTHONPATH"] = str(REPO_ROOT)
    for n, version in ((3, "7"), (4, "7")):
        out = subprocess.run(
            [sys.executable, "-c", WORKER, str(n), version],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == "True"
    text = subprocess.run(
        [sys.executable, "-c", SCRAPE], env=env, capture_output=True, text=True, check=True
    ).stdout
    families = _families(text)
    total = [
        s.value for s in families["flight_delay_http_requests"].samples if s.name.endswith("_total")
    ]
    assert total == [7.0]
    count = [
        s.value
        for s in families["flight_delay_http_request_duration_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert count == [7.0]
    assert "process_resident_memory_bytes" not in text  # per-process: not in this mode
    # the workers have exited: their live gauges (the model info) are dropped when marked dead
    for pid_file in folder.glob("gauge_livemax_*.db"):
        pid = int(pid_file.stem.rsplit("_", 1)[1])
        serving_metrics.multiprocess.mark_process_dead(pid, str(folder))
    again = subprocess.run(
        [sys.executable, "-c", SCRAPE], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "flight_delay_model_info{" not in again
    assert (
        'flight_delay_http_requests_total{method="POST",path="/predict",status="200"} 7.0' in again
    )


def test_a_single_process_is_not_multiprocess_even_after_feast_sets_the_variable(monkeypatch):
    """feast.metrics sets PROMETHEUS_MULTIPROC_DIR on import: one process still answers its
    own values and the process/GC collectors."""
    import feast.metrics  # noqa: F401

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/not-ours")
    m = serving_metrics.Metrics()
    m.requests.labels("GET", "/health", "200").inc()
    from prometheus_client import generate_latest

    text = generate_latest(m.exposition).decode()
    assert not m.multiprocess
    assert "process_resident_memory_bytes" in text
    assert 'flight_delay_http_requests_total{method="GET",path="/health",status="200"} 1.0' in text


def test_stale_multiprocess_files_are_removed(tmp_path: Path):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    serving_metrics.prepare_multiprocess_dir(tmp_path)
    assert not list(tmp_path.glob("*.db"))
