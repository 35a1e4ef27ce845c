"""ASGI middlewares: the request body limit and the request observer (latency, status)."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagster_project.serving.config import MAX_BODY_BYTES
from dagster_project.serving.metrics import Metrics

log = logging.getLogger("flight_delay.serving")


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


class ObserveMiddleware:
    """Request counts and latency per method and route template; an unhandled error becomes a plain 500 (details in
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
        method = scope.get("method", "")
        self.metrics.requests.labels(method, path, str(status["code"])).inc()
        self.metrics.latency.labels(method, path).observe(time.perf_counter() - started)
