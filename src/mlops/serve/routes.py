"""The API's own routes: /health, /ready, /metadata, /metrics and /predict (mlops.serve.oip has
the /v2 ones). Each endpoint takes the server's parts from deps.serving.

add_routes registers them on the app itself, not through an included APIRouter: FastAPI 0.16x
dispatches an included router's routes through extra layers, measurable on /predict's fast path.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from mlops.serve.deps import Serving, serving
from mlops.serve.guard import public
from mlops.serve.model import ModelSlot
from mlops.serve.schema import PredictResponse, ValidationErrorResponse, error_items

log = logging.getLogger("mlops.serve")
JSON_TYPE = "application/json"
Parts = Annotated[Serving, Depends(serving)]
NOT_READY: dict[int | str, dict[str, Any]] = {503: {"description": "no verified production model"}}


def failure(
    status: int, field: str, reason: str, kind: str, extra: dict | None = None
) -> JSONResponse:
    """Every error of the API: {"detail": [{"field", "reason", "type"}]} (as a 422)."""
    body = {**(extra or {}), "detail": [{"field": field, "reason": reason, "type": kind}]}
    return JSONResponse(body, status_code=status)


def unavailable(slot: ModelSlot) -> JSONResponse:
    """503: the reason without file paths (the server log has them)."""
    reason = public(slot.problem)
    extra = {"status": "not ready", "reason": reason}  # what probes and people read
    return failure(503, "model", reason, "not_ready", extra)


def bad_request(items: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"detail": items}, status_code=422)


async def health() -> dict:
    return {"status": "ok"}


async def ready(parts: Parts) -> Response:
    loaded = parts.slot.current
    if loaded is None:
        return unavailable(parts.slot)
    return JSONResponse({"status": "ready", "model_version": loaded.version})


async def metadata(parts: Parts) -> Response:
    loaded, config = parts.slot.current, parts.config
    if loaded is None:
        return unavailable(parts.slot)
    meta = loaded.metadata
    schema: list[dict[str, Any]] = [
        {"name": name, "type": "categorical", "allowed": list(values)}
        for name, values in config.categorical.items()
    ] + [
        {"name": name, "type": "numeric", "min": bounds.min, "max": bounds.max}
        for name, bounds in config.numeric.items()
    ]
    for feature in schema:
        feature["nullable"] = config.max_missing(feature["name"]) > 0
    classes = loaded.classes.tolist()
    labels: dict[str, Any] = {"classes": classes}
    if loaded.positive is not None:
        labels = {"negative": classes[1 - loaded.positive], "positive": classes[loaded.positive]}
    body = {
        "model_version": loaded.version,
        "model_sha256": meta.get("model_sha256"),
        "data_sha256": meta.get("data_sha256"),
        "estimator": meta.get("estimator"),
        "created_at": meta.get("created_at"),
        "metrics": meta.get("metrics", {}),
        "target": config.schema.target,
        "labels": labels,
        "max_batch": config.serve.max_batch,
        "features": schema,
    }
    return JSONResponse(body, headers={"x-model-version": loaded.version})


async def metrics(parts: Parts) -> Response:
    body, content_type = parts.monitor.exposition()
    return Response(body, media_type=content_type)


async def predict(request: Request) -> Response:
    """The body is parsed and validated in one pass by pydantic-core (the schema in /docs is the
    same model, added by document()): faster than FastAPI's own body handling. The answer is
    PredictResponse's JSON, written directly (pydantic would add a validation pass per request;
    tests/test_serve.py validates answers against the model).

    The fast path: the server's parts read from the app's state as deps.serving would give them,
    without FastAPI resolving a dependency per request (make bench ONLY=serving, from model.onnx:
    the concurrency-8 ratio to /health was 0.50-0.51 with it, 0.54-0.58 without)."""
    parts: Serving = request.app.state.serving
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != JSON_TYPE:
        reason = f'expected {{"instances": [...]}} as Content-Type: {JSON_TYPE}'
        return bad_request([{"field": "body", "reason": reason, "type": "content_type"}])
    body = await request.body()
    if not body.strip():
        reason = f'empty body: expected {{"instances": [...]}} as Content-Type: {JSON_TYPE}'
        return bad_request([{"field": "body", "reason": reason, "type": "missing"}])
    try:
        payload: Any = parts.payload_model.model_validate_json(body)
    except ValidationError as exc:
        return bad_request(error_items(exc.errors(include_input=False)))
    slot = parts.slot
    if slot.current is None:
        return unavailable(slot)
    x = np.array([parts.row_values(row) for row in payload.instances], dtype=np.float64)
    try:
        labels, probability, proba, version = await parts.batcher.predict(x)
    except Exception:  # a bug or a broken model, never the request: log it, answer JSON
        log.exception("prediction failed (model %s)", slot.version)
        return failure(500, "", "prediction failed; see the server log", "internal")
    parts.answered(x, labels, probability, proba, version, getattr(request.state, "request_id", ""))
    predictions = [
        {"label": label, "probability": p}
        for label, p in zip(labels.tolist(), probability.tolist(), strict=True)
    ]
    if proba.shape[1] > 2 and slot.current is not None:  # multiclass: every class's probability
        names = [str(label) for label in slot.current.classes.tolist()]
        for prediction, row in zip(predictions, proba.tolist(), strict=True):
            prediction["probabilities"] = dict(zip(names, row, strict=True))
    content = json.dumps(
        {"predictions": predictions, "model_version": version}, separators=(",", ":")
    )
    return Response(content, media_type=JSON_TYPE, headers={"x-model-version": version})


def add_routes(app: FastAPI) -> None:
    """The five routes, in the order /docs lists them."""
    app.add_api_route("/health", health, methods=["GET"], summary="The process is up")
    app.add_api_route(
        "/ready",
        ready,
        methods=["GET"],
        summary="A verified production model is loaded (503 otherwise)",
        responses=NOT_READY,
    )
    app.add_api_route(
        "/metadata",
        metadata,
        methods=["GET"],
        summary="Model version, metrics, training data hash and the feature schema",
        responses=NOT_READY,
    )
    app.add_api_route(
        "/metrics", metrics, methods=["GET"], summary="Prometheus metrics (text exposition format)"
    )
    app.add_api_route(
        "/predict",
        predict,
        methods=["POST"],
        summary="Predict labels and probabilities for 1 to max_batch rows",
        response_model=PredictResponse,
        responses={
            422: {"model": ValidationErrorResponse, "description": "bad request: field, reason"},
            **NOT_READY,
        },
    )


def document(app: FastAPI, payload_model: Any) -> dict[str, Any]:
    """FastAPI's schema, plus the generated request model as /predict's body (made once)."""
    spec = app.openapi_schema
    if spec is None:
        spec = FastAPI.openapi(app)  # cached in app.openapi_schema: completed here once
        request_schema = payload_model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(request_schema.pop("$defs", {}))
        schemas[payload_model.__name__] = request_schema
        reference = {"$ref": f"#/components/schemas/{payload_model.__name__}"}
        spec["paths"]["/predict"]["post"]["requestBody"] = {
            "required": True,
            "content": {JSON_TYPE: {"schema": reference}},
        }
    return spec
