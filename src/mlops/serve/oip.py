"""The Open Inference Protocol (V2 REST, as KServe, MLServer and Triton speak it) beside /predict.

One input tensor per feature (columnar, as MLServer's pandas codec sends a frame), shape [n] or
[n, 1]; the rows go through the same generated request model as /predict (same types, allowed
values, ranges and nulls) and the same Batcher. Outputs: `label`, `probability` and, multiclass,
`probabilities` [n, classes]. Every error is {"error": "..."}: 400 bad request, 404 unknown model
or version, 413 body too large, 415 binary or compressed body, 503 no model loaded.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Annotated, Any, NotRequired

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from mlops import __version__
from mlops.config import Config
from mlops.serve.model import Batcher, ModelSlot

log = logging.getLogger("mlops.serve")
JSON_TYPE = "application/json"
INTEGER = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
FLOAT = frozenset({"FP16", "FP32", "FP64"})
NUMBER = INTEGER | FLOAT
DATATYPES = NUMBER | {"BOOL", "BYTES"}
MAX_REASONS = 5  # validation errors named in one 400
LABEL_DATATYPES = {"b": "BOOL", "i": "INT64", "u": "INT64", "f": "FP64"}  # numpy kind: else BYTES


class OipError(Exception):
    """A request the protocol answers with {"error": message} and this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# The request envelope (TypedDicts: parsed and checked in one pass, cheaper than models).
class RequestInput(TypedDict):
    __pydantic_config__ = ConfigDict(strict=True, extra="ignore")  # type: ignore[misc]
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str
    data: list[Any]
    parameters: NotRequired[dict[str, Any] | None]


class RequestOutput(TypedDict):
    __pydantic_config__ = ConfigDict(strict=True, extra="ignore")  # type: ignore[misc]
    name: str
    parameters: NotRequired[dict[str, Any] | None]


class InferenceRequest(TypedDict):
    __pydantic_config__ = ConfigDict(strict=True, extra="ignore")  # type: ignore[misc]
    id: NotRequired[str | None]
    parameters: NotRequired[dict[str, Any] | None]
    inputs: Annotated[list[RequestInput], Field(min_length=1)]
    outputs: NotRequired[list[RequestOutput] | None]


ENVELOPE = TypeAdapter(InferenceRequest)


def declared_datatype(values: list[Any] | None) -> tuple[str, frozenset[str]]:
    """A feature's OIP datatype, and the datatypes accepted for it (as /predict's JSON types)."""
    if values is None:  # numeric: any number type (an integer column is INT64 in pandas)
        return "FP64", NUMBER
    kinds = {type(value) for value in values}
    if kinds == {str}:
        return "BYTES", frozenset({"BYTES"})
    if kinds == {bool}:
        return "BOOL", frozenset({"BOOL"})
    if kinds == {int}:
        return "INT64", INTEGER
    if kinds <= {int, float}:
        return "FP64", NUMBER
    return "BYTES", DATATYPES  # mixed types: each element is checked as /predict checks it


def _element_types(datatype: str) -> frozenset[type]:
    """The JSON element types of a tensor datatype (null: left to the schema's nulls)."""
    if datatype == "BYTES":
        return frozenset({str, type(None)})
    if datatype == "BOOL":
        return frozenset({bool, type(None)})
    if datatype in INTEGER:
        return frozenset({int, type(None)})
    return frozenset({int, float, type(None)})


ELEMENT_TYPES = {datatype: _element_types(datatype) for datatype in DATATYPES}


def _flat(data: list[Any]) -> list[Any]:
    """Row-major nested data ([[1], [2]] for shape [2, 1]) as one flat list."""
    if not any(type(value) is list for value in data):
        return data
    flat: list[Any] = []
    for value in data:
        flat.extend(_flat(value) if type(value) is list else [value])
    return flat


def _where(loc: tuple | list) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _envelope_errors(errors: list[dict[str, Any]]) -> str:
    """Pydantic errors on the request envelope as one line (no input echoed)."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "malformed JSON: " + str(first.get("msg", "")).removeprefix("Invalid JSON: ")
    if not first.get("loc"):
        return 'not a JSON object: expected an inference request {"inputs": [...]}'
    reasons = [f"{_where(e['loc'])}: {e['msg']}" for e in errors[:MAX_REASONS]]
    more = len(errors) - MAX_REASONS
    return "; ".join(reasons) + (f"; {more} more error(s)" if more > 0 else "")


def _row_errors(errors: list[dict[str, Any]], max_batch: int) -> str:
    """The request model's errors on the rows as one line: input name, row, reason."""
    reasons = []
    for error in errors[:MAX_REASONS]:
        loc = list(error.get("loc", ()))
        if len(loc) >= 3:
            reasons.append(f"input {loc[2]}, row {loc[1]}: {error['msg']}")
        elif error.get("type") == "too_long":
            reasons.append(f"more than serve.max_batch = {max_batch} rows")
        else:
            reasons.append(f"{_where(loc) or 'inputs'}: {error['msg']}")
    more = len(errors) - MAX_REASONS
    return "; ".join(reasons) + (f"; {more} more error(s)" if more > 0 else "")


def oip_router(
    config: Config,
    slot: ModelSlot,
    batcher: Batcher,
    payload_model: type[BaseModel],
    row_values: Callable[[Any], tuple],
    body_limit: int,
) -> APIRouter:
    """GET /v2, /v2/health/{live,ready}, /v2/models/{name}[/versions/{v}][/ready], POST .../infer.

    payload_model and row_values are /predict's: rows are checked and coded exactly as there.
    """
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (V2)"])
    model_name = config.serve.model_name
    features = config.features
    declared = {name: declared_datatype(config.categorical.get(name)) for name in features}
    nullable = {name for name in features if config.max_missing(name) > 0}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def version_not_found(version: str, served: str) -> str:
        return f"model {model_name!r} version {version!r} not found: serving {served}"

    def check_model(name: str, version: str | None) -> None:
        """404 for another model name or a version not served; 503 while nothing is loaded."""
        if name != model_name:
            raise OipError(404, f"model {name!r} not found: this server serves {model_name!r}")
        loaded = slot.current
        if loaded is None:
            raise OipError(503, f"model {model_name!r} not ready: {slot.problem}")
        if version is not None and version != loaded.version:
            raise OipError(404, version_not_found(version, loaded.version))

    def label_datatype() -> str:
        return LABEL_DATATYPES.get(slot.current.classes.dtype.kind, "BYTES")

    @router.get("", summary="Server metadata")
    async def server_metadata() -> dict:
        return {"name": "mlops", "version": __version__, "extensions": []}

    @router.get("/health/live", summary="The process is up")
    async def live() -> dict:
        return {"live": True}

    @router.get("/health/ready", summary="A verified model is loaded (503 otherwise)")
    async def server_ready() -> Response:
        if slot.current is None:
            return error(503, f"not ready: {slot.problem}")
        return JSONResponse({"ready": True})

    def metadata(name: str, version: str | None) -> Response:
        try:
            check_model(name, version)
        except OipError as exc:
            return error(exc.status, str(exc))
        loaded = slot.current
        inputs = []
        for feature in features:
            values = config.categorical.get(feature)
            bounds = config.numeric.get(feature)
            parameters: dict[str, Any] = (
                {"allowed": list(values)}
                if values is not None
                else {"min": bounds.min, "max": bounds.max}
            )
            parameters["nullable"] = feature in nullable
            tensor = {"name": feature, "datatype": declared[feature][0], "shape": [-1]}
            inputs.append({**tensor, "parameters": parameters})
        outputs = [
            {"name": "label", "datatype": label_datatype(), "shape": [-1]},
            {"name": "probability", "datatype": "FP64", "shape": [-1]},
        ]
        classes = loaded.classes.tolist()
        if loaded.positive is None:
            outputs.append(
                {
                    "name": "probabilities",
                    "datatype": "FP64",
                    "shape": [-1, len(classes)],
                    "parameters": {"classes": classes},
                }
            )
        body = {
            "name": model_name,
            "versions": [loaded.version],
            "platform": "scikit-learn",
            "inputs": inputs,
            "outputs": outputs,
        }
        return JSONResponse(body, headers={"x-model-version": loaded.version})

    @router.get("/models/{name}", summary="Model metadata: inputs, outputs, versions")
    async def model_metadata(name: str) -> Response:
        return metadata(name, None)

    @router.get("/models/{name}/versions/{version}", summary="Model metadata of one version")
    async def version_metadata(name: str, version: str) -> Response:
        return metadata(name, version)

    def ready(name: str, version: str | None) -> Response:
        try:
            check_model(name, version)
        except OipError as exc:
            return error(exc.status, str(exc))
        return JSONResponse({"name": model_name, "ready": True})

    @router.get("/models/{name}/ready", summary="The model is loaded (503 otherwise)")
    async def model_ready(name: str) -> Response:
        return ready(name, None)

    @router.get("/models/{name}/versions/{version}/ready", summary="That version is loaded")
    async def version_ready(name: str, version: str) -> Response:
        return ready(name, version)

    async def read_body(request: Request) -> bytes:
        """The body, refused (413) as soon as it passes body_limit; 415 for binary or gzip."""
        headers = request.headers
        if "inference-header-content-length" in headers:
            raise OipError(
                415,
                "binary tensor data is not supported: send the tensors as JSON "
                "(tritonclient: binary_data=False)",
            )
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", ""):
            raise OipError(415, f"Content-Encoding {encoding} is not supported: send plain JSON")
        too_large = f"request body larger than {body_limit} bytes: send fewer rows per request"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > body_limit:
            raise OipError(413, too_large)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > body_limit:
                raise OipError(413, too_large)
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            raise OipError(400, 'empty body: expected an inference request {"inputs": [...]}')
        return body

    def coded_rows(request: dict[str, Any]) -> np.ndarray:
        """The input tensors as /predict's validated rows, coded for the model (400 if bad)."""
        columns: dict[str, list[Any]] = {}
        rows = None
        for tensor in request["inputs"]:
            name, given = tensor["name"], tensor["datatype"]
            if name in columns:
                raise OipError(400, f"input {name!r} given twice")
            if name not in declared:
                known = ", ".join(features)
                raise OipError(400, f"unknown input {name!r}: the model takes {known}")
            datatype, accepted = declared[name]
            if given not in DATATYPES:
                raise OipError(400, f"input {name}: unknown datatype {given!r}")
            if given not in accepted:
                raise OipError(400, f"input {name}: datatype {given}, expected {datatype}")
            shape = tensor["shape"]
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise OipError(400, f"input {name}: shape {shape}, expected [n] or [n, 1]")
            data = _flat(tensor["data"])
            if len(data) != shape[0]:
                raise OipError(
                    400,
                    f"input {name}: shape {shape} holds {shape[0]} element(s), data has "
                    f"{len(data)}",
                )
            if rows is None:
                rows = shape[0]
            elif shape[0] != rows:
                raise OipError(400, f"inputs of different lengths: {rows} and {name} {shape[0]}")
            allowed = ELEMENT_TYPES[given]
            if not {type(value) for value in data} <= allowed:
                position = next(i for i, value in enumerate(data) if type(value) not in allowed)
                raise OipError(400, f"input {name}, row {position}: not of datatype {given}")
            if name in nullable and given in FLOAT:  # NaN: numpy's missing value
                data = [None if type(v) is float and math.isnan(v) else v for v in data]
            columns[name] = data
        missing = [name for name in features if name not in columns]
        if missing:
            raise OipError(400, f"missing input(s): {', '.join(missing)}")
        if not rows:
            raise OipError(400, "no rows: inputs need at least 1 element")
        ordered = [columns[name] for name in features]
        instances = [dict(zip(features, row, strict=True)) for row in zip(*ordered, strict=True)]
        try:
            payload = payload_model.model_validate({"instances": instances})
        except ValidationError as exc:
            errors = exc.errors(include_input=False)
            raise OipError(400, _row_errors(errors, config.serve.max_batch)) from None
        return np.array([row_values(row) for row in payload.instances], dtype=np.float64)

    async def infer(request: Request, name: str, version: str | None) -> Response:
        try:
            if name != model_name:
                check_model(name, version)
            body = await read_body(request)
            try:
                parsed = ENVELOPE.validate_json(body)
            except ValidationError as exc:
                raise OipError(400, _envelope_errors(exc.errors(include_input=False))) from None
            x = coded_rows(parsed)  # as /predict: a bad request is a 400 even with no model
            check_model(name, version)
            multiclass = slot.current.positive is None
            available = ["label", "probability", *(["probabilities"] if multiclass else [])]
            wanted = [output["name"] for output in parsed.get("outputs") or ()] or available
            unknown = [output for output in wanted if output not in available]
            if unknown:
                raise OipError(
                    400, f"unknown output {unknown[0]!r}: this model gives {', '.join(available)}"
                )
        except OipError as exc:
            return error(exc.status, str(exc))
        try:
            labels, probability, proba, served = await batcher.predict(x)
        except Exception:  # a bug or a broken model, never the request: log it, answer JSON
            log.exception("prediction failed (model %s)", slot.version)
            return error(500, "prediction failed; see the server log")
        if version is not None and served != version:  # production changed meanwhile
            return error(404, version_not_found(version, served))
        rows = len(x)
        tensors = {
            "label": {
                "name": "label",
                "datatype": LABEL_DATATYPES.get(labels.dtype.kind, "BYTES"),
                "shape": [rows],
                "data": labels.tolist(),
            },
            "probability": {
                "name": "probability",
                "datatype": "FP64",
                "shape": [rows],
                "data": probability.tolist(),
            },
        }
        if proba.shape[1] > 2:
            tensors["probabilities"] = {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": list(proba.shape),
                "data": proba.ravel().tolist(),
            }
        answer: dict[str, Any] = {"model_name": model_name, "model_version": served}
        if parsed.get("id") is not None:
            answer["id"] = parsed["id"]
        answer["outputs"] = [tensors[output] for output in wanted if output in tensors]
        content = json.dumps(answer, separators=(",", ":"))
        return Response(content, media_type=JSON_TYPE, headers={"x-model-version": served})

    @router.post("/models/{name}/infer", summary="Predict: one input tensor per feature")
    async def model_infer(request: Request) -> Response:
        return await infer(request, request.path_params["name"], None)

    @router.post("/models/{name}/versions/{version}/infer", summary="Predict with that version")
    async def version_infer(request: Request) -> Response:
        params = request.path_params
        return await infer(request, params["name"], params["version"])

    return router
