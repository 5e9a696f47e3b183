"""`make serve`: the production model behind a strict, fast HTTP API (FastAPI + uvicorn).

The request model is generated from the feature schema in params.yaml, so a new dataset needs no
API code. Only a model whose sha256 matches models/registry.json is served; the server notices a
new production model (registry.json changes, polled every second, or SIGHUP), verifies it in a
thread and swaps it in between requests. A bad new model is refused and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from threadpoolctl import threadpool_limits

from mlops.config import Config
from mlops.errors import InputError
from mlops.serve import onnx_model
from mlops.serve.guard import Guard, check_binding, load_tokens, public
from mlops.serve.inference_log import InferenceLog
from mlops.serve.logs import AccessLog, log_config
from mlops.serve.metrics import Metrics
from mlops.serve.model import Batcher, ModelSlot
from mlops.serve.oip import add_oip_routes
from mlops.serve.schema import (
    PredictResponse,
    ValidationErrorResponse,
    error_items,
    request_model,
)

log = logging.getLogger("mlops.serve")
JSON_TYPE = "application/json"


def create_app(
    config: Config,
    models_dir: Path = Path("models"),
    *,
    poll_seconds: float = 1.0,
    own_process: bool = False,
    tokens: tuple[bytes, ...] | None = None,
) -> FastAPI:
    """The API: /health, /ready, /metadata, /predict, /metrics and the /v2 (OIP) routes for the
    production model in models_dir.

    own_process (the server, not tests): SIGHUP reloads, and the garbage collector is tuned.
    serve.inference_log.enabled: an unwritable log destination is an InputError here.
    tokens: the bearer tokens every route but the probes needs (default: serve.auth's).
    """
    tokens = load_tokens(config) if tokens is None else tokens
    slot = ModelSlot(config, models_dir)
    slot.threads = onnx_model.serving_threads()
    batcher = Batcher(slot)
    # --- monitoring: GET /metrics and the inference log. Every scoring route calls answered().
    inference = InferenceLog(config) if config.serve.inference_log.enabled else None
    if inference is not None:
        inference.check()
    monitor = Metrics(slot, inference)

    def answered(
        x: np.ndarray,
        labels: np.ndarray,
        probability: np.ndarray,
        proba: np.ndarray,
        version: str,
        request_id: str,
    ) -> None:
        """One scored request: x as the Batcher took it, its answer, the X-Request-ID."""
        monitor.scored(labels)
        if inference is not None:
            classes = slot.current.classes if slot.current is not None else ()
            inference.record(x, labels, probability, proba, classes, version, request_id)

    # --- end of monitoring set-up
    payload_model = request_model(config)
    names = [f"f{i}" for i in range(len(config.features))]
    row_values = attrgetter(*names) if len(names) > 1 else lambda row: (getattr(row, names[0]),)
    # Generous: a max_batch request with long numbers or the longest category is far below this.
    longest = max((len(str(v)) for vs in config.categorical.values() for v in vs), default=0)
    field_bytes = 64 + longest + max((len(name) for name in config.features), default=0)
    body_limit = 64 * 1024 + config.serve.max_batch * field_bytes * (len(names) + 1)

    async def watch(wake: asyncio.Event) -> None:
        """Re-check the registry every poll_seconds, or at once when woken (SIGHUP)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_seconds)
            force = wake.is_set()
            wake.clear()
            try:
                swapped = await asyncio.to_thread(slot.refresh, force)
            except Exception:  # a bug: keep serving and keep watching
                log.exception("checking the registry failed")
                continue
            if swapped:
                monitor.reloads.inc()
            if swapped and own_process:
                gc.freeze()  # the new model's objects: out of the collector's way, as below

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        slot.refresh(force=True)
        # The model runs in this thread (the event loop's): one OpenMP/BLAS thread, set here
        # because such limits are per thread and bind only libraries loaded by now (sklearn is,
        # by the config). With more threads, the busy-waiting OpenMP team of a tiny prediction
        # fights the event loop and any other process for the cores: seconds-long stalls.
        limits = threadpool_limits(limits=1)
        # Everything loaded so far (libraries, model) lives as long as the process: keep it out
        # of the cyclic garbage collector, whose full passes over it cost 100+ ms pauses.
        if own_process:
            gc.collect()
            gc.freeze()
        if slot.current is None:
            log.warning("not ready: %s", slot.problem)
        loop = asyncio.get_running_loop()
        app.state.wake = wake = asyncio.Event()  # set() it to reload now (SIGHUP does)
        on_signal = own_process and threading.current_thread() is threading.main_thread()
        if on_signal:
            loop.add_signal_handler(signal.SIGHUP, wake.set)
        watcher = asyncio.create_task(watch(wake))
        if inference is not None:
            inference.start()
        try:
            yield
        finally:
            if inference is not None:  # SIGTERM: every queued row is written before exit
                await asyncio.to_thread(inference.stop)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            per_call = round(batcher.rows / batcher.calls, 2) if batcher.calls else None
            log.info(
                "scored %d row(s) in %d model call(s)",
                batcher.rows,
                batcher.calls,
                extra={"fields": {"rows_per_call": per_call}},
            )
            if on_signal:
                loop.remove_signal_handler(signal.SIGHUP)
            limits.restore_original_limits()

    app = FastAPI(
        title="mlops model server",
        summary=f"Predicts {config.schema.target} from {len(names)} features.",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if config.serve.docs else None,
        redoc_url=None,
    )
    app.state.slot, app.state.batcher, app.state.tokens = slot, batcher, bool(tokens)
    app.state.answered, app.state.metrics, app.state.inference_log = answered, monitor, inference
    # Guard inside AccessLog: a refused request is logged (without its headers) and counted too.
    app.add_middleware(Guard, tokens=tokens, body_limit=body_limit)
    app.add_middleware(AccessLog, slot=slot, observe=monitor.observe)

    def failure(
        status: int, field: str, reason: str, kind: str, extra: dict | None = None
    ) -> JSONResponse:
        """Every error of the API: {"detail": [{"field", "reason", "type"}]} (as a 422)."""
        body = {**(extra or {}), "detail": [{"field": field, "reason": reason, "type": kind}]}
        return JSONResponse(body, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/v2/"):
            return JSONResponse({"error": str(exc.detail)}, exc.status_code, exc.headers)
        kinds = {404: "not_found", 405: "method_not_allowed"}
        kind = kinds.get(exc.status_code, "http")
        answer = failure(exc.status_code, "path", str(exc.detail), kind)
        answer.headers.update(exc.headers or {})
        return answer

    def unavailable() -> JSONResponse:
        """503: the reason without file paths (the server log has them)."""
        reason = public(slot.problem)
        extra = {"status": "not ready", "reason": reason}  # what probes and people read
        return failure(503, "model", reason, "not_ready", extra)

    @app.get("/health", summary="The process is up")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get(
        "/ready",
        summary="A verified production model is loaded (503 otherwise)",
        responses={503: {"description": "no verified production model"}},
    )
    async def ready() -> Response:
        if slot.current is None:
            return unavailable()
        return JSONResponse({"status": "ready", "model_version": slot.current.version})

    @app.get(
        "/metadata",
        summary="Model version, metrics, training data hash and the feature schema",
        responses={503: {"description": "no verified production model"}},
    )
    async def metadata() -> Response:
        loaded = slot.current
        if loaded is None:
            return unavailable()
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
            labels = {
                "negative": classes[1 - loaded.positive],
                "positive": classes[loaded.positive],
            }
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

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)")
    async def metrics() -> Response:
        body, content_type = monitor.exposition()
        return Response(body, media_type=content_type)

    def bad_request(items: list[dict[str, str]]) -> JSONResponse:
        return JSONResponse({"detail": items}, status_code=422)

    @app.post(
        "/predict",
        summary="Predict labels and probabilities for 1 to max_batch rows",
        response_model=PredictResponse,
        responses={
            422: {"model": ValidationErrorResponse, "description": "bad request: field, reason"},
            503: {"description": "no verified production model"},
        },
    )
    async def predict(request: Request) -> Response:
        # The body is parsed and validated in one pass by pydantic-core (the schema in /docs is
        # the same model, added by openapi() below): faster than FastAPI's own body handling.
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != JSON_TYPE:
            reason = f'expected {{"instances": [...]}} as Content-Type: {JSON_TYPE}'
            return bad_request([{"field": "body", "reason": reason, "type": "content_type"}])
        body = await request.body()
        if not body.strip():
            reason = f'empty body: expected {{"instances": [...]}} as Content-Type: {JSON_TYPE}'
            return bad_request([{"field": "body", "reason": reason, "type": "missing"}])
        try:
            payload: Any = payload_model.model_validate_json(body)
        except ValidationError as exc:
            return bad_request(error_items(exc.errors(include_input=False)))
        if slot.current is None:
            return unavailable()
        x = np.array([row_values(row) for row in payload.instances], dtype=np.float64)
        try:
            labels, probability, proba, version = await batcher.predict(x)
        except Exception:  # a bug or a broken model, never the request: log it, answer JSON
            log.exception("prediction failed (model %s)", slot.version)
            return failure(500, "", "prediction failed; see the server log", "internal")
        answered(x, labels, probability, proba, version, getattr(request.state, "request_id", ""))
        predictions = [
            {"label": label, "probability": p}
            for label, p in zip(labels.tolist(), probability.tolist(), strict=True)
        ]
        if proba.shape[1] > 2:  # multiclass: every class's probability too
            names = [str(label) for label in slot.current.classes.tolist()]
            for prediction, row in zip(predictions, proba.tolist(), strict=True):
                prediction["probabilities"] = dict(zip(names, row, strict=True))
        content = json.dumps(
            {"predictions": predictions, "model_version": version}, separators=(",", ":")
        )
        return Response(content, media_type=JSON_TYPE, headers={"x-model-version": version})

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, plus the generated request model as /predict's body."""
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

    app.openapi = openapi  # type: ignore[method-assign]
    # The Open Inference Protocol (V2) routes: the same rules, coding and batching as /predict.
    add_oip_routes(app, config, slot, batcher, body_limit)
    return app


def with_inference_log(config: Config, destination: str | None) -> Config:
    """--inference-log (or $MLOPS_INFERENCE_LOG): a folder or URL turns the log on there, `off`
    turns it off; empty or None keeps params.yaml's serve.inference_log."""
    if not destination:
        return config
    settings = config.serve.inference_log
    if destination.lower() in ("off", "false", "no", "0"):
        settings = settings.model_copy(update={"enabled": False})
    else:
        settings = settings.model_copy(update={"enabled": True, "dir": destination})
    serve = config.serve.model_copy(update={"inference_log": settings})
    return config.model_copy(update={"serve": serve})


def make_server(
    config: Config,
    host: str | None = None,
    port: int | None = None,
    inference_log: str | None = None,
) -> Any:
    """A uvicorn server (1 worker, JSON logs on stdout, no uvicorn access log) for the app."""
    import uvicorn

    config = with_inference_log(config, inference_log)
    if os.environ.get("MLOPS_DOCS", "").lower() in ("off", "false", "no", "0"):
        serve = config.serve.model_copy(update={"docs": False})
        config = config.model_copy(update={"serve": serve})

    host = host or config.serve.host
    port = config.serve.port if port is None else port
    if not 1 <= port <= 65_535:
        raise InputError(f"--port {port}: must be between 1 and 65535")
    tokens = load_tokens(config)
    check_binding(config, host, tokens)
    settings = uvicorn.Config(
        create_app(config, own_process=True, tokens=tokens),
        host=host,
        port=port,
        workers=1,
        access_log=False,
        log_config=log_config(),
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* never rewrite the client address that is logged
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(settings)


def serve_command(
    config: Config,
    host: str | None = None,
    port: int | None = None,
    inference_log: str | None = None,
) -> None:
    """CLI: serve the production model until SIGTERM/SIGINT (graceful); SIGHUP reloads it."""
    onnx_model.preflight(config)  # a bad model.onnx: refuse to start (exit 2), naming it
    server = make_server(config, host, port, inference_log)
    app = server.config.app
    docs = " (API docs at /docs)" if app.docs_url else ""
    auth = "bearer tokens required" if app.state.tokens else "no tokens: open on loopback"
    log.info("serving on http://%s:%d%s; %s", server.config.host, server.config.port, docs, auth)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: uvicorn re-raises it once shut down
        server.run()
