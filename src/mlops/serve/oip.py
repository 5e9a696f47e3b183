"""The Open Inference Protocol (V2 REST, as KServe, MLServer and Triton speak it) beside /predict.

One input tensor per feature (columnar, as MLServer's pandas codec sends a frame), shape [n] or
[n, 1]. Each element is checked and coded by the same per-feature types as /predict's rows
(mlops.serve.schema.feature_fields: JSON type, allowed values, ranges, nulls) and the rows are
scored by the same Batcher. Outputs: `label`, `probability` and, multiclass, `probabilities`
[n, classes]. Every error is {"error": "..."}: 400 bad request, 404 unknown model or version,
413 body too large, 415 binary or compressed body, 503 no model loaded.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired, Union, get_args

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic.fields import FieldInfo
from typing_extensions import TypedDict

from mlops import __version__
from mlops.config import Config
from mlops.serve.guard import public
from mlops.serve.model import Batcher, Loaded, ModelSlot
from mlops.serve.schema import feature_fields

log = logging.getLogger("mlops.serve")
JSON_TYPE = "application/json"
INTEGER = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
FLOAT = frozenset({"FP16", "FP32", "FP64"})
NUMBER = INTEGER | FLOAT
DATATYPES = NUMBER | {"BOOL", "BYTES"}
MAX_REASONS = 5  # validation errors named in one 400
LABEL_DATATYPES = {"b": "BOOL", "i": "INT64", "u": "INT64", "f": "FP64"}  # numpy kind: else BYTES
STRICT = ConfigDict(strict=True, extra="ignore")
TAG = "Open Inference Protocol (V2)"
# The request's TypedDicts are made at run time from the schema: no static type to check.
typed_dict: Any = TypedDict


class OipError(Exception):
    """A request the protocol answers with {"error": message} and this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


def _flat(data: Any) -> Any:
    """Row-major nested data ([[1], [2]] for shape [2, 1]) as one flat list."""
    if type(data) is not list:
        return data
    flat: list[Any] = []
    for value in data:
        flat.extend(_flat(value) if type(value) is list else [value])
    return flat


def flattened(body: bytes) -> dict | None:
    """The request with every input's nested data flat, or None when none was nested."""
    try:
        request = json.loads(body)
        inputs = request["inputs"]
        nested = [t for t in inputs if any(type(value) is list for value in t["data"])]
    except (ValueError, TypeError, KeyError):
        return None
    for tensor in nested:
        tensor["data"] = _flat(tensor["data"])
    return request if nested else None


def _nan_missing(value: Any) -> Any:
    """NaN, numpy's missing value (what a float column with gaps sends), as null."""
    return None if type(value) is float and math.isnan(value) else value


def request_adapter(config: Config) -> TypeAdapter:
    """The inference request, checked in one pass: one tensor type per feature (told apart by
    `name`) whose datatype is one accepted for it and whose elements are /predict's field type
    for that feature, so a valid tensor's data holds the model's codes (NaN for null)."""
    tensors: list[Any] = []
    fields = feature_fields(config).values()
    for name, (annotated, _) in zip(config.features, fields, strict=True):
        base, *metadata = get_args(annotated) or (annotated,)  # without the field's alias, docs
        kept = [m for m in metadata if not (isinstance(m, FieldInfo) and m.alias == name)]
        element = Annotated[(base, *kept)] if kept else base
        if config.max_missing(name) > 0:
            element = Annotated[element, BeforeValidator(_nan_missing)]
        accepted = tuple(sorted(declared_datatype(config.categorical.get(name))[1]))
        data = list[element]  # type: ignore[valid-type]
        tensor = typed_dict(
            f"Input{len(tensors)}",
            {
                "name": Literal[name],
                "shape": list[Annotated[int, Field(ge=0)]],
                "datatype": Literal[accepted],
                "data": data,
                "parameters": NotRequired[dict[str, Any] | None],
            },
        )
        tensors.append(with_config(STRICT)(tensor))
    if len(tensors) == 1:
        tensor_type: Any = tensors[0]
    else:
        tensor_type = Annotated[Union[tuple(tensors)], Field(discriminator="name")]  # noqa: UP007
    inputs = Annotated[list[tensor_type], Field(min_length=1)]

    output = typed_dict(
        "RequestOutput", {"name": str, "parameters": NotRequired[dict[str, Any] | None]}
    )
    strict_output = with_config(STRICT)(output)
    request = typed_dict(
        "InferenceRequest",
        {
            "id": NotRequired[str | None],
            "parameters": NotRequired[dict[str, Any] | None],
            "inputs": inputs,
            "outputs": NotRequired[list[strict_output] | None],  # type: ignore[valid-type]
        },
    )
    return TypeAdapter(with_config(STRICT)(request))


def _where(loc: tuple | list) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(errors: Sequence[Mapping[str, Any]], config: Config) -> str:
    """Pydantic's errors on a request as one line: input, row and reason (no value echoed but
    a wrong datatype's name or an unknown input's)."""
    first = errors[0]
    if first["type"] == "json_invalid":
        return "malformed JSON: " + str(first["msg"]).removeprefix("Invalid JSON: ")
    if not first["loc"]:
        return 'not a JSON object: expected an inference request {"inputs": [...]}'
    reasons = []
    for error in errors[:MAX_REASONS]:
        loc, kind = list(error["loc"]), error["type"]
        name = loc[2] if len(loc) > 3 and loc[0] == "inputs" else None  # inputs, i, name, key
        if kind == "union_tag_invalid":
            known = ", ".join(config.features)
            reasons.append(f"unknown input {error['ctx']['tag']!r}: the model takes {known}")
        elif kind == "union_tag_not_found":
            reasons.append(f"{_where(loc)}.name: Field required")
        elif name is not None and loc[3] == "datatype" and kind == "literal_error":
            given = error.get("input")
            shown = given if isinstance(given, str) else json.dumps(given)
            expected = declared_datatype(config.categorical.get(name))[0]
            reasons.append(f"input {name}: datatype {shown}, expected {expected}")
        elif name is not None and loc[3] == "data" and len(loc) == 5:
            reasons.append(f"input {name}, row {loc[4]}: {error['msg']}")
        else:
            reasons.append(f"{_where(loc)}: {error['msg']}")
    more = len(errors) - MAX_REASONS
    return "; ".join(reasons) + (f"; {more} more error(s)" if more > 0 else "")


def add_oip_routes(
    app: FastAPI, config: Config, slot: ModelSlot, batcher: Batcher, body_limit: int
) -> None:
    """GET /v2, /v2/health/{live,ready}, /v2/models/{name}[/versions/{v}][/ready], POST .../infer
    (the one model, named serve.model_name; its version: the production version being served).

    Added to the app itself, not as an included APIRouter: FastAPI dispatches an included
    router's routes through extra layers, which cost more than the whole OIP conversion.
    """

    def route(method: str, path: str, summary: str) -> Callable[[Callable], Callable]:
        def register(endpoint: Callable) -> Callable:
            app.add_api_route(f"/v2{path}", endpoint, methods=[method], summary=summary, tags=[TAG])
            return endpoint

        return register

    model_name = config.serve.model_name
    features = config.features
    declared = {name: declared_datatype(config.categorical.get(name))[0] for name in features}
    nullable = {name for name in features if config.max_missing(name) > 0}
    adapter = request_adapter(config)
    max_batch = config.serve.max_batch

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def version_not_found(version: str, served: str) -> str:
        return f"model {model_name!r} version {version!r} not found: serving {served}"

    def check_model(name: str, version: str | None) -> Loaded:
        """The loaded model; 404 for another model name or a version not served; 503 while
        nothing is loaded."""
        if name != model_name:
            raise OipError(404, f"model {name!r} not found: this server serves {model_name!r}")
        loaded = slot.current
        if loaded is None:
            raise OipError(503, f"model {model_name!r} not ready: {public(slot.problem)}")
        if version is not None and version != loaded.version:
            raise OipError(404, version_not_found(version, loaded.version))
        return loaded

    def label_datatype(loaded: Loaded) -> str:
        return LABEL_DATATYPES.get(loaded.classes.dtype.kind, "BYTES")

    async def read_body(request: Request) -> bytes:
        """The body, refused (413) as soon as it passes body_limit; 415 for binary or gzip."""
        too_large = f"request body larger than {body_limit} bytes: send fewer rows per request"
        for key, value in request.scope["headers"]:  # raw: cheaper than request.headers
            if key == b"inference-header-content-length":
                raise OipError(
                    415,
                    "binary tensor data is not supported: send the tensors as JSON "
                    "(tritonclient: binary_data=False)",
                )
            if key == b"content-encoding" and value.strip().lower() not in (b"identity", b""):
                encoding = value.decode("latin-1").strip()
                raise OipError(415, f"Content-Encoding {encoding} is not supported: send JSON")
            if key == b"content-length" and value.isdigit() and int(value) > body_limit:
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
        """The validated tensors (already coded) as the model's matrix: row per element."""
        columns: dict[str, list[float]] = {}
        rows = None
        for tensor in request["inputs"]:
            name, shape, data = tensor["name"], tensor["shape"], tensor["data"]
            if name in columns:
                raise OipError(400, f"input {name} given twice")
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise OipError(400, f"input {name}: shape {shape}, expected [n] or [n, 1]")
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
            columns[name] = data
        if len(columns) < len(features):
            missing = ", ".join(name for name in features if name not in columns)
            raise OipError(400, f"missing input(s): {missing}")
        if not rows:
            raise OipError(400, "no rows: each input needs at least 1 element")
        if rows > max_batch:
            raise OipError(400, f"{rows} rows: at most serve.max_batch = {max_batch} per request")
        matrix = np.array([columns[name] for name in features], dtype=np.float64)
        return np.ascontiguousarray(matrix.T)

    async def infer(request: Request, name: str, version: str | None) -> Response:
        try:
            if name != model_name:
                check_model(name, version)
            body = await read_body(request)
            try:
                parsed = adapter.validate_json(body)
            except ValidationError as exc:
                # Nested data ([[1], [2]]: rare) is flattened only here, off the common path.
                request_flat = flattened(body)
                if request_flat is None:
                    raise OipError(400, describe(exc.errors(), config)) from None
                try:
                    parsed = adapter.validate_python(request_flat)
                except ValidationError as again:
                    raise OipError(400, describe(again.errors(), config)) from None
            x = coded_rows(parsed)  # as /predict: a bad request is a 400 even with no model
            loaded = check_model(name, version)
            multiclass = loaded.positive is None
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
        request_id = getattr(request.state, "request_id", "")
        request.app.state.serving.answered(x, labels, probability, proba, served, request_id)
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

    # First: routes are matched in order, and infer is the one that is busy.
    @route("POST", "/models/{name}/infer", summary="Predict: one input tensor per feature")
    async def model_infer(request: Request) -> Response:
        return await infer(request, request.path_params["name"], None)

    @route("POST", "/models/{name}/versions/{version}/infer", summary="Predict with that version")
    async def version_infer(request: Request) -> Response:
        params = request.path_params
        return await infer(request, params["name"], params["version"])

    @route("GET", "", summary="Server metadata")
    async def server_metadata() -> dict:
        return {"name": "mlops", "version": __version__, "extensions": []}

    @route("GET", "/health/live", summary="The process is up")
    async def live() -> dict:
        return {"live": True}

    @route("GET", "/health/ready", summary="A verified model is loaded (503 otherwise)")
    async def server_ready() -> Response:
        if slot.current is None:
            return error(503, f"not ready: {public(slot.problem)}")
        return JSONResponse({"ready": True})

    def metadata(name: str, version: str | None) -> Response:
        try:
            loaded = check_model(name, version)
        except OipError as exc:
            return error(exc.status, str(exc))
        inputs = []
        for feature in features:
            values = config.categorical.get(feature)
            bounds = config.numeric.get(feature)
            parameters: dict[str, Any]
            if values is not None:
                parameters = {"allowed": list(values)}
            else:
                assert bounds is not None  # a feature is categorical or numeric
                parameters = {"min": bounds.min, "max": bounds.max}
            parameters["nullable"] = feature in nullable
            tensor = {"name": feature, "datatype": declared[feature], "shape": [-1]}
            inputs.append({**tensor, "parameters": parameters})
        outputs: list[dict[str, Any]] = [
            {"name": "label", "datatype": label_datatype(loaded), "shape": [-1]},
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
        body: dict[str, Any] = {
            "name": model_name,
            "versions": [loaded.version],
            "platform": "scikit-learn",
            "inputs": inputs,
            "outputs": outputs,
        }
        return JSONResponse(body, headers={"x-model-version": loaded.version})

    @route("GET", "/models/{name}", summary="Model metadata: inputs, outputs, versions")
    async def model_metadata(name: str) -> Response:
        return metadata(name, None)

    @route("GET", "/models/{name}/versions/{version}", summary="Model metadata of one version")
    async def version_metadata(name: str, version: str) -> Response:
        return metadata(name, version)

    def ready(name: str, version: str | None) -> Response:
        try:
            check_model(name, version)
        except OipError as exc:
            return error(exc.status, str(exc))
        return JSONResponse({"name": model_name, "ready": True})

    @route("GET", "/models/{name}/ready", summary="The model is loaded (503 otherwise)")
    async def model_ready(name: str) -> Response:
        return ready(name, None)

    @route("GET", "/models/{name}/versions/{version}/ready", summary="That version is loaded")
    async def version_ready(name: str, version: str) -> Response:
        return ready(name, version)
