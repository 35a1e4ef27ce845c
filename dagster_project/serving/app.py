"""The prediction endpoint: FastAPI over the `champion` model and Feast's online store.

No Dagster or Airflow import: this runs as its own process (``python -m dagster_project.serving``,
``make serve``) and learns about new champions from the MLflow registry (polling, or
``POST /admin/reload`` which the `deployed_endpoint` asset calls).
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)

from dagster_project.platform.names import FEATURE_SERVICE
from dagster_project.serving import inference_protocol
from dagster_project.serving.config import ServingConfig, redact
from dagster_project.serving.metrics import worker_exited
from dagster_project.serving.middleware import BodySizeLimit, ObserveMiddleware
from dagster_project.serving.predictor import Predictor, entity_row, settle_heap
from dagster_project.serving.responses import OrjsonResponse
from dagster_project.serving.schemas import (
    EXAMPLE_FLIGHT,
    BatchRequest,
    BatchResponse,
    Flight,
    Prediction,
)

log = logging.getLogger("flight_delay.serving")
# Bearer auth, declared in the OpenAPI document (a security scheme on every protected
# operation); the answer to missing or wrong credentials is ours (auto_error=False), in
# create_app's ``authorize``. Module level: the dependency's annotation must resolve here.
BEARER = HTTPBearer(
    auto_error=False,
    description="MLOPS_SERVING_TOKEN of the endpoint (required on the server and k8s tiers)",
)
# What a route taking a body may answer besides 200 and 422 (documented in the OpenAPI schema).
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body is not valid JSON"},
    401: {"description": "missing or malformed credentials (when a token is configured)"},
    403: {"description": "bearer token not accepted"},
    413: {"description": "the body is over the size limit"},
}


def create_app(config: ServingConfig | None = None) -> FastAPI:
    config = config or ServingConfig.from_env()
    predictor = Predictor(config)
    holder, metrics = predictor.holder, predictor.metrics
    feast, reload = predictor.feast, predictor.reload

    stop = threading.Event()

    def served() -> str:
        """The FeatureService requests read: the served model's (before one loads, a new
        model's default)."""
        return holder.current.service if holder.current else FEATURE_SERVICE

    def poll() -> None:
        while not stop.wait(config.reload_interval_s):
            reload()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reload()
        try:  # open the online store before the first request (retried lazily if down)
            predictor.feast().online_lookup([entity_row(Flight(**EXAMPLE_FLIGHT))], served())
        except Exception:
            log.exception("feature store not available at startup")
        settle_heap()
        poller = None
        if config.reload_interval_s > 0:
            poller = threading.Thread(target=poll, name="model-reload", daemon=True)
            poller.start()
        yield
        stop.set()
        worker_exited(os.getpid())

    app = FastAPI(
        title="flight_delay prediction endpoint",
        description="Probability that a NYC departure leaves more than 15 minutes late.",
        version="1",
        lifespan=lifespan,
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

    async def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> None:
        """Bearer auth: no or malformed credentials are a 401 (with ``WWW-Authenticate``), a
        well-formed but wrong token a 403; tokens are compared in constant time."""
        if not config.api_token:
            return
        token = credentials.credentials.strip() if credentials else ""
        if not token:
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

    # The OpenAPI document says what the endpoint enforces: the bearer scheme is declared on
    # the protected routes only when a token is configured (without one they are open)
    protected: list[Any] = [Security(authorize)] if config.api_token else []

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    def ready_problems() -> list[str]:
        """Why the endpoint cannot serve (empty: ready): no model, or no feature store."""
        problems = []
        if holder.current is None:
            problems.append(holder.error or "model not loaded")
        try:
            feast().online_features([entity_row(Flight(**EXAMPLE_FLIGHT))], served())
        except Exception as exc:
            problems.append(redact(f"feature store: {type(exc).__name__}: {exc}")[:300])
        return problems

    @app.get("/ready", tags=["ops"], responses={503: {"description": "not ready"}})
    def ready() -> JSONResponse:
        """Readiness: a model is loaded and the feature store answers an online lookup."""
        problems = ready_problems()
        current = holder.current
        body = {
            "ready": not problems,
            "model_version": current.info.version if current else None,
            "problems": problems,
        }
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    def prometheus() -> Response:
        """Prometheus text format (all workers' values in multiprocess mode)."""
        return Response(generate_latest(metrics.exposition), media_type=CONTENT_TYPE_LATEST)

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
            "threshold_policy": current.info.threshold_policy,
            "alias": config.alias,
            "run_id": current.info.run_id,
        }

    @app.post("/admin/reload", tags=["ops"], dependencies=protected, responses=BODY_ERRORS)
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
        "/predict",
        response_model=Prediction,
        tags=["predict"],
        dependencies=protected,
        responses=BODY_ERRORS,
    )
    async def predict_one(flight: Flight) -> Prediction:
        """Delay probability and decision for one flight."""
        # On the event loop: about a millisecond of CPU, less than a hop to the thread pool.
        return predictor.predict([flight])[0]

    @app.post(
        "/predict/batch",
        response_model=BatchResponse,
        tags=["predict"],
        dependencies=protected,
        responses=BODY_ERRORS,
    )
    def predict_batch(body: BatchRequest) -> Response:
        """The same for up to 10,000 flights in one call."""
        return OrjsonResponse({"predictions": predictor.predict_records(body.flights)})

    app.include_router(inference_protocol.router(predictor, protected, ready_problems))
    return app
