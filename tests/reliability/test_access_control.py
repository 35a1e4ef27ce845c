"""Access control and hygiene of the endpoint: bearer auth (default on for `server`/`k8s`),
401 vs 403, body and batch limits, no tracebacks, secrets never logged, loopback-only UIs,
models only from the configured artifact store, and the dependency audit's honesty."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmarks import audit
from dagster_project.platform import names, settings
from dagster_project.platform.settings import Paths
from dagster_project.serving import config as serving
from dagster_project.serving.app import create_app
from dagster_project.serving.config import ServingConfig, ServingConfigError
from dagster_project.serving.schemas import EXAMPLE_FLIGHT, MAX_BATCH
from dagster_project.training import tracking
from tests.paths import REPO_ROOT

TOKEN = "tok-9f2c5e1d7a"


@pytest.fixture(scope="module")
def empty_config(tmp_path_factory) -> ServingConfig:
    """An endpoint on an empty registry (no champion): auth and limits run before the model."""
    paths = Paths(tmp_path_factory.mktemp("acl") / "mlops")
    tracking.configure(paths.mlflow_tracking_uri, paths.mlflow_artifacts)
    return ServingConfig.for_paths(paths, reload_interval_s=0, api_token=TOKEN)


@pytest.fixture(scope="module")
def client(empty_config):
    with TestClient(create_app(empty_config), raise_server_exceptions=False) as c:
        yield c


def test_missing_or_malformed_credentials_are_401_with_a_challenge(client):
    for headers in (
        {},
        {"Authorization": TOKEN},
        {"Authorization": "Basic dTpw"},
        {"Authorization": "Bearer "},
    ):
        r = client.post("/predict", json=EXAMPLE_FLIGHT, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in r.json()["detail"]


def test_wrong_token_is_403_and_the_right_one_passes_auth(client):
    r = client.post("/predict", json=EXAMPLE_FLIGHT, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert client.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 403
    ok = client.post("/predict", json=EXAMPLE_FLIGHT, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 503  # past auth: no champion in this registry
    assert "no 'champion' version" in ok.json()["detail"]
    for path in ("/health", "/ready", "/metrics"):  # ops routes stay open
        assert client.get(path).status_code in (200, 503)


def test_token_comparison_is_constant_time():
    """The comparison is hmac.compare_digest on bytes (no early exit on the first differing
    character): checked on the source, since timing on a shared 2-core machine is noise."""
    import inspect

    source = inspect.getsource(create_app)
    assert "hmac.compare_digest(token.encode(), config.api_token.encode())" in source
    assert "== config.api_token" not in source


@pytest.mark.parametrize(
    ("profile", "token", "auth", "ok"),
    [
        ("local", None, "", True),  # local: optional
        ("server", None, "", False),  # server/k8s: required by default
        ("k8s", None, "", False),
        ("server", "t0ken", "", True),
        ("server", None, "off", True),  # explicitly disabled
        ("local", None, "on", False),  # required on local on request
        ("local", None, "maybe", False),
    ],
)
def test_auth_is_required_by_default_on_server_tiers(profile, token, auth, ok):
    if ok:
        assert serving.check_auth_setting(profile, token, auth) == token
    else:
        with pytest.raises(ServingConfigError, match="MLOPS_SERVING_AUTH"):
            serving.check_auth_setting(profile, token, auth)


def test_auth_off_means_off_even_with_a_token():
    assert serving.check_auth_setting("server", "t0ken", "off") is None
    assert serving.check_auth_setting("local", "t0ken", "") == "t0ken"


def test_server_tier_endpoint_refuses_to_start_without_a_token(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "MLOPS_PROFILE": "server",
        "MLOPS_HOME": str(tmp_path),
        "GX_ANALYTICS_ENABLED": "false",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "dagster_project.serving", "--port", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "refusing to start the endpoint" in proc.stderr
    assert "MLOPS_SERVING_TOKEN is not set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_body_size_limit_is_413_declared_or_streamed(empty_config):
    small = replace(empty_config, max_body_bytes=4096, api_token=None)
    with TestClient(create_app(small), raise_server_exceptions=False) as c:
        big = {"flights": [EXAMPLE_FLIGHT] * 100}  # about 15 KB
        r = c.post("/predict/batch", json=big)
        assert r.status_code == 413
        assert "larger than 4096 bytes" in r.json()["detail"]

        def chunks():  # no content-length: counted as it streams
            data = json.dumps(big).encode()
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        r = c.post("/predict/batch", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        # under the limit it goes through to the (model-less) handler
        assert c.post("/predict", json=EXAMPLE_FLIGHT).status_code == 503


def test_batch_size_limit_and_garbage_bodies_are_clean_4xx(client):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    too_many = {"flights": [EXAMPLE_FLIGHT] * (MAX_BATCH + 1)}
    r = client.post("/predict/batch", json=too_many, headers=auth)
    assert r.status_code == 422
    assert f"at most {MAX_BATCH}" in r.text
    for body in (b"{not json", b"\xff\xfe\x00", b"[]", b"null", b'{"flights": "x"}'):
        r = client.post(
            "/predict/batch", content=body, headers=auth | {"content-type": "application/json"}
        )
        assert r.status_code in (400, 422), body  # undecodable bytes: 400, wrong shape: 422
        assert "Traceback" not in r.text
        detail = r.json()["detail"]
        if r.status_code == 422:
            assert "input" not in detail[0]  # the body is not echoed back
        else:
            assert detail == "There was an error parsing the body"


def test_secrets_are_redacted_from_logs_and_client_messages(empty_config, monkeypatch, caplog):
    password = "pg-Secr3t-value"
    monkeypatch.setenv("MLOPS_PG_PASSWORD", password)
    # a registry URL that carries the password and cannot be reached
    dead = replace(
        empty_config,
        tracking_uri=f"postgresql+psycopg2://postgres:{password}@127.0.0.1:1/nodb",
        artifact_roots=(),
    )
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_MAX_RETRIES", "0")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(serving.RedactingFilter())
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with TestClient(create_app(dead), raise_server_exceptions=False) as c:
            ready = c.get("/ready")
            wrong = c.post("/predict", json=EXAMPLE_FLIGHT, headers={"Authorization": "Bearer x"})
            right = c.post(
                "/predict", json=EXAMPLE_FLIGHT, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            logging.getLogger("flight_delay.serving").error("connecting with %s", password)
    finally:
        root.removeHandler(handler)
    assert ready.status_code == 503
    reasons = " ".join(ready.json()["problems"])
    assert "reload failed" in reasons
    for text in (ready.text, wrong.text, right.text, stream.getvalue()):
        assert password not in text
        assert TOKEN not in text
    assert "connecting with ***" in stream.getvalue()
    assert "Traceback" not in ready.text + right.text


def test_models_load_only_from_the_configured_artifact_store(empty_config, tmp_path):
    """A registry version whose artifacts live outside the tier's artifact store (someone
    registered a model from an arbitrary path) is refused: pyfunc models are pickles."""
    registry = tracking.Registry(empty_config.tracking_uri)
    outside = tmp_path / "elsewhere" / "model"
    outside.mkdir(parents=True)
    (outside / "MLmodel").write_text("flavors: {}\n")
    registry.client.create_registered_model(names.MODEL_NAME)
    mv = registry.client.create_model_version(names.MODEL_NAME, outside.as_uri())
    registry.set_alias(names.CHAMPION, str(mv.version))
    config = replace(empty_config, api_token=None)
    try:
        with TestClient(create_app(config)) as c:
            ready = c.get("/ready").json()
            assert ready["ready"] is False
            reason = " ".join(ready["problems"])
            assert "outside the configured artifact store" in reason
            assert "refusing to load it" in reason
            assert c.post("/predict", json=EXAMPLE_FLIGHT).status_code == 503
    finally:
        registry.client.delete_registered_model(names.MODEL_NAME)


def test_under_roots():
    roots = ("/srv/mlflow/artifacts", "s3://bucket/ns/mlflow")
    assert serving.under_roots("file:///srv/mlflow/artifacts/1/models/m-1/artifacts", roots)
    assert serving.under_roots("s3://bucket/ns/mlflow/1/m/artifacts", roots)
    assert not serving.under_roots("/srv/mlflow/artifacts-evil/x", roots)
    assert not serving.under_roots("/srv/mlflow/artifacts/../../etc", roots)
    assert not serving.under_roots("s3://bucket/other/mlflow/x", roots)
    assert not serving.under_roots("https://example.com/model", roots)


def test_uis_and_services_bind_to_loopback_by_default():
    makefile = (REPO_ROOT / "Makefile").read_text()
    starts = [line for line in makefile.splitlines() if "$(SERVICES) start" in line]
    commands = {
        "mlflow": r"mlflow ui .* -h 127\.0\.0\.1",
        "dagster": r"dagster dev .* -h 127\.0\.0\.1",
        "serving": r"--host 127\.0\.0\.1",
        "s3": r"moto_server -H 127\.0\.0\.1",
    }
    joined = "\n".join(makefile.replace("\\\n", " ").splitlines())
    for name, pattern in commands.items():
        assert re.search(rf"start {name} .*{pattern}", joined), f"{name} not bound to 127.0.0.1"
    assert "AIRFLOW__API__HOST=127.0.0.1" in makefile
    assert len(starts) >= 5
    assert "0.0.0.0" not in makefile
    from dagster_project.serving.__main__ import main  # default --host

    assert "127.0.0.1" in Path(sys.modules[main.__module__].__file__ or "").read_text()


def test_secrets_only_from_the_environment(monkeypatch):
    """Generated configs reference secrets, never hold them; tracked files hold none."""
    tracked = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(r"(?i)(password|secret|token)\s*[:=]\s*['\"][A-Za-z0-9/+_\-]{12,}['\"]")
    hits = []
    for name in tracked:
        if name.startswith("tests/"):  # fixtures hold made-up values on purpose
            continue
        path = REPO_ROOT / name
        if (
            path.suffix in {".py", ".yaml", ".yml", ".toml", ".cfg", ".env", ".json"}
            and path.is_file()
        ):
            found = pattern.finditer(path.read_text(errors="ignore"))
            # the names of environment variables (PASSWORD = "MLOPS_PG_PASSWORD") are fine
            hits += [f"{name}: {m[0]}" for m in found if not re.search(r"['\"][A-Z_]+['\"]$", m[0])]
    assert not hits, hits
    monkeypatch.setenv("MLOPS_PG_PASSWORD", "pw-from-env-123")
    monkeypatch.setenv("MLOPS_REDIS_PASSWORD", "redis-pw-456")
    server = settings.ServerSettings()
    overrides = Paths(REPO_ROOT / ".unused", server).feast_overrides()
    assert "${MLOPS_PG_PASSWORD}" in overrides["registry"]
    assert "${MLOPS_REDIS_PASSWORD}" in overrides["online_store"]
    assert "pw-from-env-123" not in json.dumps(overrides)
    assert "redis-pw-456" not in json.dumps(overrides)
    from dagster_project.platform import server as server_lib

    assert server_lib.dagster_yaml(server)["storage"]["postgres"]["postgres_db"]["password"] == {
        "env": "MLOPS_PG_PASSWORD"
    }


def test_audit_verdict_tells_unreachable_from_clean():
    skipped = {"name": "x", "version": "1", "skip_reason": "Dependency not found on PyPI"}
    clean = {"name": "y", "version": "1", "vulns": []}
    bad = {"name": "z", "version": "1", "vulns": [{"id": "PYSEC-1", "fix_versions": ["2"]}]}
    assert audit.verdict({"dependencies": [skipped] * 10}).status == audit.NOT_AUDITED
    assert "NOT AUDITED" in audit.verdict({"dependencies": [skipped] * 10}).summary
    assert audit.verdict({"dependencies": []}).status == audit.NOT_AUDITED
    assert audit.verdict({"dependencies": [clean] * 40 + [skipped]}).status == audit.CLEAN
    found = audit.verdict({"dependencies": [clean, bad]})
    assert found.status == audit.VULNERABLE
    assert found.vulnerable == ["z==1: PYSEC-1 (fixed in 2)"]


def test_audit_of_a_known_vulnerable_pin_never_reports_clean(tmp_path):
    """requests 2.19.0 has published advisories (e.g. CVE-2018-18074): the audit must either
    find them or say it could not audit; 'clean' would be a lie."""
    lock = tmp_path / "requirements.lock"
    lock.write_text("requests==2.19.0\n")
    result = audit.run(lock, timeout_s=120)
    assert result.status in (audit.VULNERABLE, audit.NOT_AUDITED), result.summary
    if result.status == audit.NOT_AUDITED:
        assert result.summary.startswith("NOT AUDITED")
    else:
        assert any(line.startswith("requests==2.19.0") for line in result.vulnerable)
