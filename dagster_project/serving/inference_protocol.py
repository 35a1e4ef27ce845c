"""Open Inference Protocol (KServe / Triton "v2") routes beside the endpoint's own API.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/flight_delay`` (metadata),
``/v2/models/flight_delay/ready`` and ``POST /v2/models/flight_delay/infer``. An inference
request carries one tensor per field of a flight (entity rows, column by column: ``carrier``,
``origin``, ``dest``, ``scheduled_departure``, ``distance``, optional ``tailnum`` and
``flight_id``), each of shape ``[n]``; the answer is the tensors ``probability`` (FP64),
``delayed`` (BOOL) and ``fallback`` (BOOL) of shape ``[n]``. Every row goes through the same
``Flight`` validation as ``/predict``, behind the same bearer auth, body limit and batch limit
(``MAX_BATCH`` rows). Protocol errors are ``{"error": "..."}`` with a 400 (bad tensor or row),
404 (another model) or 503 (not ready), as the protocol specifies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dagster_project.serving.predictor import Predictor
from dagster_project.serving.schemas import MAX_BATCH, Flight

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
NUMBER_TYPES = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"} | {
    "FP16",
    "FP32",
    "FP64",
}
# Input tensor -> (datatypes it may have, required)
INPUTS: dict[str, tuple[set[str], bool]] = {
    "carrier": ({"BYTES"}, True),
    "origin": ({"BYTES"}, True),
    "dest": ({"BYTES"}, True),
    "scheduled_departure": ({"BYTES"}, True),
    "distance": (NUMBER_TYPES, True),
    "tailnum": ({"BYTES"}, False),
    "flight_id": ({"BYTES"}, False),
}
OUTPUTS = {"probability": "FP64", "delayed": "BOOL", "fallback": "BOOL"}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(default_factory=dict)


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(max_length=MAX_BATCH)


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "id": "42",
                "inputs": [
                    {"name": "carrier", "shape": [1], "datatype": "BYTES", "data": ["UA"]},
                    {"name": "origin", "shape": [1], "datatype": "BYTES", "data": ["EWR"]},
                    {"name": "dest", "shape": [1], "datatype": "BYTES", "data": ["ORD"]},
                    {
                        "name": "scheduled_departure",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": ["2013-08-01T08:00:00"],
                    },
                    {"name": "distance", "shape": [1], "datatype": "FP64", "data": [719]},
                ],
            }
        },
    )

    id: str | None = Field(default=None, max_length=128)
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=len(INPUTS))
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    outputs: list[ResponseOutput]


class ProtocolError(ValueError):
    """A request the protocol answers with ``{"error": ...}`` and a 400."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def flights_from(request: InferenceRequest) -> list[Flight]:
    """The entity rows of an inference request, each validated as a ``Flight``."""
    tensors: dict[str, list[Any]] = {}
    for tensor in request.inputs:
        if tensor.name not in INPUTS:
            raise ProtocolError(f"unknown input {tensor.name!r}: the inputs are {sorted(INPUTS)}")
        if tensor.name in tensors:
            raise ProtocolError(f"input {tensor.name!r} appears twice")
        types, _ = INPUTS[tensor.name]
        if tensor.datatype not in types:
            raise ProtocolError(
                f"input {tensor.name!r} has datatype {tensor.datatype}: must be {sorted(types)}"
            )
        shape = tensor.shape
        if (len(shape) == 2 and shape[1] != 1) or any(d < 0 for d in shape):
            raise ProtocolError(f"input {tensor.name!r} has shape {shape}: must be [n] or [n, 1]")
        data = tensor.data
        if len(shape) == 2 and all(isinstance(v, list) and len(v) == 1 for v in data):
            data = [v[0] for v in data]  # the nested form of [n, 1]
        if len(data) != shape[0]:
            raise ProtocolError(f"input {tensor.name!r} has shape {shape} but {len(data)} values")
        tensors[tensor.name] = data
    missing = [n for n, (_, required) in INPUTS.items() if required and n not in tensors]
    if missing:
        raise ProtocolError(f"missing inputs {missing}")
    sizes = {len(v) for v in tensors.values()}
    if len(sizes) != 1:
        raise ProtocolError(f"inputs have different lengths {sorted(sizes)}: one value per row")
    n = sizes.pop()
    if not 1 <= n <= MAX_BATCH:
        raise ProtocolError(f"{n} rows: an inference request has 1 to {MAX_BATCH}")
    flights = []
    for i in range(n):
        row = {name: values[i] for name, values in tensors.items() if values[i] is not None}
        try:
            flights.append(Flight.model_validate(row))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ProtocolError(f"row {i}: {problems}") from None
    return flights


def router(
    predictor: Predictor,
    protected: list[Any],
    ready_problems: Callable[[], list[str]],
) -> APIRouter:
    """The v2 routes over ``predictor``; ``protected`` is the endpoint's bearer dependency
    (empty when no token is configured)."""
    name = predictor.config.model_name
    holder = predictor.holder
    api = APIRouter(prefix="/v2", tags=["open inference protocol"])

    def unknown(model: str) -> JSONResponse:
        return _error(404, f"model {model!r} not found: this server serves {name!r}")

    # The one model this server has, stated in the OpenAPI document; another name is a 404
    # (a default, not an Annotated alias: this module's annotations are strings)
    model_param = PathParam(
        description="the served model's name", json_schema_extra={"enum": [name]}
    )

    @api.get("")
    def server_metadata() -> dict[str, Any]:
        """Server metadata."""
        return {"name": "flight_delay-serving", "version": "1", "extensions": []}

    @api.get("/health/live")
    def live() -> dict[str, bool]:
        """Liveness: the process answers."""
        return {"live": True}

    @api.get("/health/ready", responses={503: {}})
    def ready() -> JSONResponse:
        """Readiness: a model is loaded and the feature store answers (else a 503)."""
        ok = not ready_problems()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @api.get("/models/{model}/ready", responses={404: {}, 503: {}})
    def model_ready(model: str = model_param) -> JSONResponse:
        """Whether this model can serve (404 for a model this server does not have)."""
        if model != name:
            return unknown(model)
        ok = not ready_problems()
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @api.get("/models/{model}", response_model=ModelMetadata, responses={404: {}, 503: {}})
    def model_metadata(model: str = model_param) -> Any:
        """The model's inputs and outputs, and the version served now."""
        if model != name:
            return unknown(model)
        current = holder.current
        if current is None:
            return _error(503, f"no model to serve: {holder.error}")
        return ModelMetadata(
            name=name,
            versions=[current.info.version],
            platform="mlflow_pyfunc",
            inputs=[
                TensorMetadata(
                    name=n, datatype=sorted(types)[0] if len(types) == 1 else "FP64", shape=[-1]
                )
                for n, (types, _) in INPUTS.items()
            ],
            outputs=[TensorMetadata(name=n, datatype=t, shape=[-1]) for n, t in OUTPUTS.items()],
            parameters={
                "kind": current.kind,
                "threshold": current.info.threshold,
                "threshold_policy": current.info.threshold_policy,
                "alias": predictor.config.alias,
                "required_inputs": [n for n, (_, req) in INPUTS.items() if req],
            },
        )

    @api.post(
        "/models/{model}/infer",
        response_model=InferenceResponse,
        responses={400: {}, 404: {}, 503: {}},
        dependencies=protected,
    )
    def infer(request: InferenceRequest, model: str = model_param) -> Any:
        """Entity rows in (one tensor per flight field), probabilities and decisions out."""
        if model != name:
            return unknown(model)
        wanted = [o.name for o in request.outputs] if request.outputs else list(OUTPUTS)
        bad = [o for o in wanted if o not in OUTPUTS]
        if bad:
            return _error(400, f"unknown outputs {bad}: the outputs are {list(OUTPUTS)}")
        try:
            flights = flights_from(request)
        except ProtocolError as exc:
            return _error(400, str(exc))
        records = predictor.predict_records(flights)
        columns = {o: [r[o] for r in records] for o in OUTPUTS}
        first = records[0]
        return InferenceResponse(
            model_name=name,
            model_version=first["model_version"],
            id=request.id,
            parameters={
                "threshold": first["threshold"],
                "threshold_policy": first["threshold_policy"],
                "model_kind": first["model_kind"],
            },
            outputs=[
                ResponseOutput(name=o, shape=[len(records)], datatype=OUTPUTS[o], data=columns[o])
                for o in wanted
            ],
        )

    return api
