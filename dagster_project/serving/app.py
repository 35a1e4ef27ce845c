"""The prediction endpoint: FastAPI over the `champion` model and Feast's online store.

No Dagster or Airflow import: this runs as its own process (``python -m dagster_project.serving``,
``make serve``) and learns about new champions from the MLflow registry (polling, or
``POST /admin/reload`` which the `deployed_endpoint` asset calls).
"""

from __future__ import annotations

import gc
import hmac
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, ORJSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagster_project.lib import settings, tracking
from dagster_project.lib.feast_store import FeatureStoreClient
from dagster_project.lib.preprocess import CATEGORICAL, FEATURES, NUMERIC, UNKNOWN, input_frame
from dagster_project.serving.schemas import (
    EXAMPLE_FLIGHT,
    BatchRequest,
    BatchResponse,
    Flight,
    Prediction,
)

log = logging.getLogger("flight_delay.serving")
FEATURE_SERVICE = "flight_delay_v1"
AUTH_TIERS = ("server", "k8s")  # tiers where the endpoint refuses to run without a token
MAX_BODY_BYTES = 4 * 1_048_576  # 4 MiB: a full batch of 10,000 flights is about 1.6 MB
# Environment variables whose values are secrets: never logged, never sent to a client.
SECRET_ENV = (
    "MLOPS_SERVING_TOKEN",
    "MLOPS_PG_PASSWORD",
    "MLOPS_REDIS_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


class ServingConfigError(ValueError):
    """The endpoint is configured in a way it must not run with (e.g. no token on `server`)."""


def redact(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """``text`` with every secret value (from ``SECRET_ENV`` or ``secrets``) replaced by ***."""
    values = secrets if secrets is not None else tuple(os.environ.get(v, "") for v in SECRET_ENV)
    for value in values:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that removes secret values from a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # render the traceback now, redacted, so the handler does not format it again
            formatted = logging.Formatter().formatException(record.exc_info)
            clean += "\n" + redact(formatted)
            record.exc_info, record.exc_text = None, None
        if clean != message:
            record.msg, record.args = clean, None
        return True


@dataclass(frozen=True)
class ServingConfig:
    tracking_uri: str
    feast_repo: Path
    feast_config_template: Path
    feast_state_dir: Path
    features_url: str
    prediction_log_dir: Path
    feast_overrides: dict[str, str] = field(default_factory=dict)
    model_name: str = tracking.MODEL_NAME
    alias: str = tracking.CHAMPION
    api_token: str | None = None
    reload_interval_s: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES
    # Model artifacts are only loaded from under these roots (the tier's MLflow artifact
    # store); a registry version pointing anywhere else is refused. Empty: no restriction.
    artifact_roots: tuple[str, ...] = ()

    @classmethod
    def for_paths(cls, paths: settings.Paths, **overrides: Any) -> ServingConfig:
        """Locations from a tier's state folder (any field can be overridden)."""
        values: dict[str, Any] = {
            "tracking_uri": paths.mlflow_tracking_uri,
            "feast_repo": settings.FEATURE_REPO,
            "feast_config_template": paths.feast_template,
            "feast_state_dir": paths.feast_dir,
            "feast_overrides": paths.feast_overrides(),
            "features_url": paths.features_url,
            "prediction_log_dir": paths.prediction_log_dir,
            "artifact_roots": (paths.mlflow_artifacts,),
        }
        return cls(**(values | overrides))

    @classmethod
    def from_env(cls) -> ServingConfig:
        """The state folder named by ``MLOPS_HOME``; ``MLOPS_SERVING_TOKEN`` turns on bearer
        auth; ``MLOPS_SERVING_RELOAD_S`` sets how often the registry is polled (0: never);
        ``MLOPS_SERVING_MAX_BODY_BYTES`` caps a request body (default 1 MiB).

        Auth is required on the `server` and `k8s` tiers: without ``MLOPS_SERVING_TOKEN`` the
        endpoint refuses to start unless ``MLOPS_SERVING_AUTH=off`` says so explicitly
        (``MLOPS_SERVING_AUTH=on`` requires a token on `local` too)."""
        token = check_auth_setting(
            settings.profile(),
            os.environ.get("MLOPS_SERVING_TOKEN") or None,
            os.environ.get("MLOPS_SERVING_AUTH", ""),
        )
        return cls.for_paths(
            settings.paths(),
            api_token=token,
            reload_interval_s=float(os.environ.get("MLOPS_SERVING_RELOAD_S", "30")),
            max_body_bytes=int(os.environ.get("MLOPS_SERVING_MAX_BODY_BYTES", MAX_BODY_BYTES)),
        )


def check_auth_setting(profile: str, token: str | None, auth: str) -> str | None:
    """The token to enforce (None: no auth). Refuses a configuration that would serve without
    auth where auth is the default; ``off`` turns auth off even with a token set."""
    mode = auth.strip().lower() or ("on" if profile in AUTH_TIERS else "optional")
    if mode not in ("on", "off", "optional"):
        raise ServingConfigError(f"MLOPS_SERVING_AUTH={auth!r}: use 'on' or 'off'")
    if mode == "on" and not token:
        raise ServingConfigError(
            f"bearer auth is required on the '{profile}' tier but MLOPS_SERVING_TOKEN is not "
            "set: set it (from a secret store), or set MLOPS_SERVING_AUTH=off to serve "
            "without auth on purpose"
        )
    if mode == "off":
        if token:
            log.warning("MLOPS_SERVING_AUTH=off: MLOPS_SERVING_TOKEN is ignored, no auth")
        return None
    return token


def under_roots(uri: str, roots: tuple[str, ...]) -> bool:
    """Whether an artifact URI lies under one of ``roots`` (paths or URLs)."""

    def norm(value: str) -> str:
        if value.startswith("file://"):
            value = value.removeprefix("file://")
        if "://" not in value:
            value = str(Path(value).resolve())
        return value.rstrip("/") + "/"

    target = norm(uri)
    return any(target.startswith(norm(r)) for r in roots)


class DirectModel:
    """The champion's ``pyfunc``, called past MLflow's per-call input validation.

    The endpoint builds the inputs itself, in the signature's columns and dtypes (checked once
    here, at load), so the per-request schema enforcement (over a millisecond for one row)
    would only re-check that. ``predict`` takes the input columns (name -> values), or a frame;
    a signature that does not match the platform's inputs keeps MLflow's own path."""

    def __init__(self, pyfunc: Any):
        self.pyfunc = pyfunc
        inner = getattr(pyfunc.unwrap_python_model(), "model", None)
        schema = pyfunc.metadata.get_input_schema()
        names = tuple(schema.input_names()) if schema is not None else ()
        self.inner = inner if names == FEATURES and hasattr(inner, "predict_proba") else None

    def unwrap_python_model(self) -> Any:
        return self.pyfunc.unwrap_python_model()

    def predict(self, inputs: Any) -> np.ndarray:
        if self.inner is not None:
            return np.asarray(self.inner.predict_proba(inputs))
        frame = inputs if isinstance(inputs, pd.DataFrame) else pd.DataFrame(dict(inputs))
        return np.asarray(self.pyfunc.predict(frame[list(FEATURES)]))


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    info: tracking.VersionInfo
    known: dict[str, frozenset[str]]  # categories seen in training, per categorical input

    @property
    def kind(self) -> str:
        return self.info.tags.get("model_kind", "unknown")


class ModelHolder:
    """The current champion. A reload swaps one reference, so requests never see a half-loaded
    model and in-flight requests finish on the model they started with."""

    def __init__(self, config: ServingConfig):
        self.config = config
        self.current: LoadedModel | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def reload(self) -> bool:
        """Load the version the alias points at, if it changed. True when a new one is live."""
        with self._lock:
            tracking.probe(self.config.tracking_uri)
            registry = tracking.Registry(self.config.tracking_uri, self.config.model_name)
            info = registry.by_alias(self.config.alias)
            if info is None:
                self.error = f"no '{self.config.alias}' version of '{self.config.model_name}' yet"
                return False
            if self.current and self.current.info.version == info.version:
                return False
            if info.status != "READY":
                raise ServingConfigError(
                    f"{info.name} v{info.version} is not fully registered (status {info.status})"
                )
            if self.config.artifact_roots:
                where = registry.download_uri(info.version)
                if not under_roots(where, self.config.artifact_roots):
                    raise ServingConfigError(
                        f"{info.name} v{info.version} is stored at {where}, outside the "
                        f"configured artifact store ({', '.join(self.config.artifact_roots)}): "
                        "refusing to load it"
                    )
            model = DirectModel(registry.load(info.version))
            # One prediction before the swap: it configures the model (XGBoost configures a
            # loaded booster lazily, and concurrent first predictions race on it) and the first
            # real request does not pay for it.
            model.predict(input_frame(pd.DataFrame([dict.fromkeys(FEATURES)])))
            pre = model.unwrap_python_model().model.preprocessor
            known = {c: frozenset(pre.categories.get(c, [])) for c in CATEGORICAL}
            self.current, self.error = LoadedModel(model, info, known), None
            log.info("serving %s v%s (%s)", info.name, info.version, self.current.kind)
            return True


class PredictionLog:
    """Append-only JSON lines, one file per scheduled departure date (what monitoring reads).

    Crash safety: each append is one ``write`` of whole lines on an ``O_APPEND`` descriptor, so
    a reader sees complete records only, plus at worst one torn last line if the process dies
    mid-write. Before a process first appends to a file it ends a torn tail with a newline, so
    the fragment stays a line of its own (readers skip it, see ``loop.read_prediction_log``)
    and never glues onto the next record."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._checked: set[Path] = set()

    def _torn_tail(self, fd: int) -> bool:
        size = os.fstat(fd).st_size
        return size > 0 and os.pread(fd, 1, size - 1) != b"\n"

    def append(self, records: list[dict[str, Any]]) -> None:
        by_day: dict[str, list[bytes]] = {}
        for r in records:
            by_day.setdefault(r["scheduled_date"], []).append(orjson.dumps(r, default=str))
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            for day, lines in by_day.items():
                path = self.folder / f"{day}.jsonl"
                data = b"\n".join(lines) + b"\n"
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    if path not in self._checked:
                        if self._torn_tail(fd):
                            data = b"\n" + data
                        self._checked.add(path)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flight_delay_http_requests",
            "HTTP requests by path and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flight_delay_http_request_seconds",
            "HTTP request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.predictions = Counter(
            "flight_delay_predictions",
            "Predictions by model version and decision",
            ["model_version", "delayed"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "flight_delay_feature_fallbacks",
            "Predictions that used imputed values for unknown entities",
            registry=self.registry,
        )
        self.reloads = Counter(
            "flight_delay_model_reloads", "Model reloads", ["result"], registry=self.registry
        )
        self.version = Gauge(
            "flight_delay_model_version", "Version of the served model", registry=self.registry
        )


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413, whether it declares its
    length or streams it in chunks (counted as it arrives, never buffered beyond the limit)."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(send)
            return
        state = {"seen": 0, "too_large": False, "answered": False}

        async def limited() -> Any:
            message = await receive()
            if message["type"] == "http.request" and not state["too_large"]:
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_bytes:
                    state["too_large"] = True  # the app sees a disconnect and stops reading
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Any) -> None:
            if state["too_large"]:
                return  # whatever the app answers to the cut-off body, the client gets the 413
            state["answered"] = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not state["too_large"]:
                raise
        if state["too_large"] and not state["answered"]:
            await self._reject(send)

    async def _reject(self, send: Any) -> None:
        body = orjson.dumps({"detail": f"request body larger than {self.max_bytes} bytes"})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def settle_heap() -> None:
    """Move everything loaded so far (Feast, MLflow, the model: millions of objects) out of the
    garbage collector's view. Otherwise every full collection walks them all, a pause of tens
    of milliseconds that lands on whichever request triggers it (the p99 at 200 req/s)."""
    gc.collect()
    gc.freeze()


def epoch_seconds(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=ZoneInfo(settings.TIMEZONE))
    return int(ts.timestamp())


def entity_row(f: Flight) -> dict[str, Any]:
    """Entity keys and request data of the `flight_delay_v1` feature service for one flight."""
    return {
        "origin": f.origin,
        "carrier": f.carrier,
        "route": f"{f.origin}-{f.dest}",
        "tailnum": f.tailnum or "UNKNOWN",
        "sched_dep_epoch_s": epoch_seconds(f.scheduled_departure),
        "distance": float(f.distance),
    }


def _json_value(v: Any) -> Any:
    if v is None or v != v:  # None or NaN
        return None
    return v.item() if isinstance(v, np.generic) else v


class Predictor:
    """Everything a prediction needs, callable without HTTP: the champion (loaded once, swapped
    on reload), the online feature lookup, the model inputs, the prediction log and metrics."""

    def __init__(self, config: ServingConfig, metrics: Metrics | None = None):
        self.config = config
        self.holder = ModelHolder(config)
        self.log = PredictionLog(config.prediction_log_dir)
        self.metrics = metrics or Metrics()
        self._feast: FeatureStoreClient | None = None
        self._feast_lock = threading.Lock()
        self._view_columns: dict[str, tuple[str, list[str]]] | None = None

    def feast(self) -> FeatureStoreClient:
        if self._feast is None:
            with self._feast_lock:
                if self._feast is None:
                    client = FeatureStoreClient(
                        self.config.feast_repo,
                        self.config.feast_config_template,
                        self.config.feast_state_dir,
                        self.config.features_url,
                        self.config.feast_overrides,
                    )
                    client.fail_fast()  # Redis down: a quick 503, not a 7-second hang
                    self._feast = client
        return self._feast

    def view_columns(self) -> dict[str, tuple[str, list[str]]]:
        """Feature view of the model's FeatureService -> (entity join key, its features), for
        the unknown-entity fallback."""
        if self._view_columns is None:
            objs = self.feast().objects()
            keys = {e.name: e.join_key for e in objs.entities}
            service = next(s for s in objs.services if s.name == FEATURE_SERVICE)
            used = {p.name for p in service.feature_view_projections}
            self._view_columns = {
                v.name: (keys[v.entities[0]], [f.name for f in v.features])
                for v in objs.views
                if v.entities and v.name in used
            }
        return self._view_columns

    def reload(self) -> bool:
        try:
            changed = self.holder.reload()
        except Exception as exc:  # keep serving the old model; say why on /ready and the log
            self.holder.error = redact(f"reload failed: {type(exc).__name__}: {exc}")[:500]
            self.metrics.reloads.labels("error").inc()
            log.exception("model reload failed")
            return False
        if changed and self.holder.current:
            self.metrics.reloads.labels("loaded").inc()
            self.metrics.version.set(float(self.holder.current.info.version))
            settle_heap()
        return changed

    def predict(self, flights: list[Flight]) -> list[Prediction]:
        """The predictions as response models (see :meth:`predict_records`)."""
        return [Prediction.model_construct(**r) for r in self.predict_records(flights)]

    def predict_records(self, flights: list[Flight]) -> list[dict[str, Any]]:
        """One `Prediction`-shaped dict per flight, logged and counted; plain dicts, so a
        1,000-flight batch is not validated twice on the way out."""
        current = self.holder.current
        if current is None:
            raise HTTPException(503, f"no model to serve: {self.holder.error}")
        rows = [entity_row(f) for f in flights]
        try:
            online = self.feast().online_lookup(rows, FEATURE_SERVICE)
        except Exception as exc:
            log.exception("online feature lookup failed")
            raise HTTPException(503, f"feature store unavailable: {type(exc).__name__}") from exc
        n = len(rows)
        # The model's inputs as columns (what preprocess.input_frame holds: categories as
        # strings, numbers as float64 with NaN for missing), without a per-request DataFrame.
        columns: dict[str, Any] = {
            c: [r[c] if isinstance(r[c], str) else UNKNOWN for r in rows] for c in CATEGORICAL
        }
        numeric: dict[str, list[Any]] = {}
        for c in NUMERIC:
            found = online.get(c) or [None] * n
            numeric[c] = [_json_value(v) for v in found]
            columns[c] = np.array([np.nan if v is None else v for v in numeric[c]], dtype="float64")
        probs = np.asarray(current.model.predict(columns), dtype="float64").reshape(-1)
        threshold = current.info.threshold
        out, records = [], []
        logged_at = datetime.now(UTC).isoformat()
        view_columns = self.view_columns()
        ids = os.urandom(16 * n)
        decisions = {True: 0, False: 0}
        n_fallbacks = 0
        for i, f in enumerate(flights):
            values = {c: rows[i][c] for c in CATEGORICAL} | {c: numeric[c][i] for c in NUMERIC}
            missing = [c for c in NUMERIC if values[c] is None]
            fallbacks = [
                f"{view}: no online values for {key} {rows[i].get(key)!r}"
                for view, (key, cols) in view_columns.items()
                if all(values.get(c) is None for c in cols)
            ] + [
                f"{c} {values[c]!r} was not seen in training"
                for c in CATEGORICAL
                if values[c] not in current.known[c]
            ]
            p = float(probs[i])
            delayed = p >= threshold
            pred = {
                "flight_id": f.flight_id,
                "probability": p,
                "delayed": delayed,
                "threshold": threshold,
                "model_name": current.info.name,
                "model_version": current.info.version,
                "model_kind": current.kind,
                "features": values,
                "fallback": bool(fallbacks),
                "fallbacks": fallbacks,
                "missing_features": missing,
            }
            out.append(pred)
            decisions[delayed] += 1
            n_fallbacks += bool(fallbacks)
            local = f.scheduled_departure
            if local.tzinfo is not None:
                local = local.astimezone(ZoneInfo(settings.TIMEZONE))
            records.append(
                {
                    "request_id": str(uuid.UUID(bytes=ids[16 * i : 16 * i + 16], version=4)),
                    "logged_at": logged_at,
                    "scheduled_date": local.date().isoformat(),
                    "flight": f.model_dump(mode="json"),
                    **{k: v for k, v in pred.items() if k != "flight_id"},
                }
            )
        for delayed, count in decisions.items():
            if count:
                self.metrics.predictions.labels(current.info.version, str(delayed).lower()).inc(
                    count
                )
        if n_fallbacks:
            self.metrics.fallbacks.inc(n_fallbacks)
        self.log.append(records)
        return out


class ObserveMiddleware:
    """Request counts and latency per route; an unhandled error becomes a plain 500 (details in
    the log). Plain ASGI: Starlette's ``BaseHTTPMiddleware`` costs a task group and a stream
    per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            log.exception("unhandled error on %s", scope.get("path"))
            if status["sent"]:
                raise
            error = JSONResponse({"detail": "internal error; see the server log"}, 500)
            await error(scope, receive, observed_send)
        route = scope.get("route")
        path = route.path if route is not None else "unmatched"
        self.metrics.requests.labels(path, str(status["code"])).inc()
        self.metrics.latency.labels(path).observe(time.perf_counter() - started)


def create_app(config: ServingConfig | None = None) -> FastAPI:
    config = config or ServingConfig.from_env()
    predictor = Predictor(config)
    holder, metrics = predictor.holder, predictor.metrics
    feast, reload = predictor.feast, predictor.reload

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(config.reload_interval_s):
            reload()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reload()
        try:  # open the online store before the first request (retried lazily if down)
            predictor.feast().online_lookup([entity_row(Flight(**EXAMPLE_FLIGHT))], FEATURE_SERVICE)
        except Exception:
            log.exception("feature store not available at startup")
        settle_heap()
        poller = None
        if config.reload_interval_s > 0:
            poller = threading.Thread(target=poll, name="model-reload", daemon=True)
            poller.start()
        yield
        stop.set()

    app = FastAPI(
        title="flight_delay prediction endpoint",
        description="Probability that a NYC departure leaves more than 15 minutes late.",
        version="1",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    app.state.holder, app.state.metrics, app.state.config = holder, metrics, config
    app.state.predictor = predictor

    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(ObserveMiddleware, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A 422 naming each bad field; the offending input is not echoed back in full."""
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    async def authorize(request: Request) -> None:
        """Bearer auth: no or malformed credentials are a 401 (with ``WWW-Authenticate``), a
        well-formed but wrong token a 403; tokens are compared in constant time."""
        if not config.api_token:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                401,
                "missing or malformed credentials: send 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": 'Bearer realm="flight_delay"'},
            )
        if not hmac.compare_digest(token.encode(), config.api_token.encode()):
            raise HTTPException(
                403,
                "bearer token not accepted",
                {"WWW-Authenticate": 'Bearer realm="flight_delay", error="invalid_token"'},
            )

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    def ready() -> JSONResponse:
        """Readiness: a model is loaded and the feature store answers an online lookup."""
        problems = []
        current = holder.current
        if current is None:
            problems.append(holder.error or "model not loaded")
        try:
            feast().online_features([entity_row(Flight(**EXAMPLE_FLIGHT))], FEATURE_SERVICE)
        except Exception as exc:
            problems.append(redact(f"feature store: {type(exc).__name__}: {exc}")[:300])
        body = {
            "ready": not problems,
            "model_version": current.info.version if current else None,
            "problems": problems,
        }
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics", tags=["ops"])
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/model", tags=["ops"])
    def model_info() -> dict[str, Any]:
        """Which model is live."""
        current = holder.current
        if current is None:
            raise HTTPException(503, f"no model to serve: {holder.error}")
        return {
            "name": current.info.name,
            "version": current.info.version,
            "kind": current.kind,
            "threshold": current.info.threshold,
            "alias": config.alias,
            "run_id": current.info.run_id,
        }

    @app.post("/admin/reload", tags=["ops"], dependencies=[Depends(authorize)])
    def admin_reload() -> dict[str, Any]:
        """Load the version the alias now points at (the deployer calls this after promotion)."""
        changed = reload()
        current = holder.current
        return {
            "reloaded": changed,
            "model_version": current.info.version if current else None,
            "error": holder.error,
        }

    @app.post(
        "/predict", response_model=Prediction, tags=["predict"], dependencies=[Depends(authorize)]
    )
    async def predict_one(flight: Flight) -> Prediction:
        """Delay probability and decision for one flight."""
        # On the event loop: about a millisecond of CPU, less than a hop to the thread pool.
        return predictor.predict([flight])[0]

    @app.post(
        "/predict/batch",
        response_model=BatchResponse,
        tags=["predict"],
        dependencies=[Depends(authorize)],
    )
    def predict_batch(body: BatchRequest) -> Response:
        """The same for up to 10,000 flights in one call."""
        return ORJSONResponse({"predictions": predictor.predict_records(body.flights)})

    return app
