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
import re
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, create_model
from pydantic.functional_validators import AfterValidator
from pydantic_core import PydanticCustomError
from threadpoolctl import threadpool_limits

from mlops.config import Config
from mlops.errors import InputError

log = logging.getLogger("mlops.serve")
access_log = logging.getLogger("mlops.serve.access")
REGISTRY_FILE = "registry.json"
MAX_ERRORS = 50  # validation errors listed in one 422 response
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
JSON_TYPE = "application/json"
# Passes of the event loop a batch stays open: tasks created from bytes read in one pass only run
# in the next, so two passes let requests that arrived while the batch formed join it.
FLUSH_PASSES = 2


# ---------------------------------------------------------------- request and response models


def _allowed(codes: list[int]) -> Callable[[int], int]:
    allowed, text = frozenset(codes), ", ".join(str(code) for code in codes)

    def check(value: int) -> int:
        if value not in allowed:
            raise PydanticCustomError(
                "category_code", "Input should be an allowed code: {allowed}", {"allowed": text}
            )
        return value

    return check


def feature_fields(config: Config) -> dict[str, Any]:
    """One pydantic field per feature, in config.features order, named f0, f1, ... (aliases)."""
    fields: dict[str, Any] = {}
    for name, codes in config.categorical.items():
        kind = Annotated[
            StrictInt,
            AfterValidator(_allowed(codes)),
            Field(
                alias=name,
                title=name,
                description=f"categorical code, one of {codes}",
                json_schema_extra={"enum": list(codes)},
            ),
        ]
        fields[f"f{len(fields)}"] = (kind, ...)
    for name, bounds in config.numeric.items():
        kind = Annotated[
            float,
            Field(
                alias=name,
                title=name,
                strict=True,
                allow_inf_nan=False,
                ge=bounds.min,
                le=bounds.max,
                description=f"number from {bounds.min:g} to {bounds.max:g}",
            ),
        ]
        fields[f"f{len(fields)}"] = (kind, ...)
    return fields


def example_instance(config: Config) -> dict[str, Any]:
    """A valid row for the docs: each feature's first allowed code, or the middle of its range."""
    row: dict[str, Any] = {name: codes[0] for name, codes in config.categorical.items()}
    for name, bounds in config.numeric.items():
        middle = (bounds.min + bounds.max) / 2
        row[name] = int(middle) if middle.is_integer() else middle
    return row


def request_model(config: Config) -> type[BaseModel]:
    """The /predict body, generated from the schema: strict types, no extra or missing field."""
    instance = create_model(
        "Instance",
        __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True),
        **feature_fields(config),
    )
    rows = Annotated[list[instance], Field(min_length=1, max_length=config.serve.max_batch)]
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(
            extra="forbid",
            strict=True,
            json_schema_extra={"examples": [{"instances": [example_instance(config)]}]},
        ),
        instances=(rows, Field(description=f"1 to {config.serve.max_batch} rows")),
    )


class Prediction(BaseModel):
    label: int = Field(description="predicted label (argmax of the class probabilities)")
    probability: float = Field(description="probability of the positive label")


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model_version: str


class ErrorItem(BaseModel):
    field: str
    reason: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ErrorItem]


def error_items(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors as {field, reason, type}, field like instances[0].AGEP; no input echoed."""
    items = []
    for error in errors[:MAX_ERRORS]:
        loc = list(error.get("loc", ()))
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else part)
        reason = error.get("msg", "invalid")
        if error.get("type") == "json_invalid":
            field = "body"
            reason = "malformed JSON: " + str(error.get("msg", "")).removeprefix("Invalid JSON: ")
        elif not loc:  # the body as a whole is not an object
            reason = 'not a JSON object: expected {"instances": [...]}'
        items.append({"field": field or "body", "reason": reason, "type": error.get("type", "")})
    if len(errors) > MAX_ERRORS:
        more = len(errors) - MAX_ERRORS
        items.append({"field": "", "reason": f"{more} more error(s) not shown", "type": "more"})
    return items


# ---------------------------------------------------------------- the served model


@dataclass(frozen=True)
class Loaded:
    """A verified production model and what the API needs to answer with it."""

    model: Any
    metadata: dict
    version: str
    classes: np.ndarray
    positive: int  # column of predict_proba holding the positive label


def check_model(model: Any, metadata: dict, config: Config) -> Loaded:
    """Refuse a model that cannot serve this schema; one trial prediction must succeed."""
    version = str(metadata.get("version") or "unknown")
    trained_on = metadata.get("features")
    if trained_on is not None and list(trained_on) != config.features:
        raise InputError(
            f"model {version} was trained on features {trained_on}, "
            f"params.yaml declares {config.features}"
        )
    classes = np.asarray(getattr(model, "classes_", []))
    positive_label = config.schema.labels[1]
    if not hasattr(model, "predict_proba") or positive_label not in classes.tolist():
        raise InputError(f"model {version} has no probability for label {positive_label}")
    row = np.array([list(example_instance(config).values())], dtype=np.float64)
    with threadpool_limits(limits=1):  # this may run in a worker thread (a reload)
        proba = model.predict_proba(row)
    if proba.shape != (1, len(classes)) or not np.all(np.isfinite(proba)):
        raise InputError(f"model {version}: trial prediction returned {proba!r}")
    return Loaded(model, metadata, version, classes, classes.tolist().index(positive_label))


class ModelSlot:
    """Holds the served model; refresh() swaps in a new production model once it is verified."""

    def __init__(self, config: Config, models_dir: Path) -> None:
        self.config = config
        self.models_dir = Path(models_dir)
        self.current: Loaded | None = None
        self.problem = "no production model yet (promote one: make promote)"
        self._seen: tuple | None = None

    @property
    def version(self) -> str | None:
        return self.current.version if self.current else None

    def _signature(self) -> tuple | None:
        try:
            info = os.stat(self.models_dir / REGISTRY_FILE)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def refresh(self, force: bool = False) -> bool:
        """Load production if registry.json changed (or force); True when the model was swapped."""
        from mlops import registry

        signature = self._signature()
        if signature == self._seen and not force:
            return False
        self._seen = signature
        try:
            version = registry.production_version(self.models_dir)
            if version is None:
                if self.current is None:
                    self.problem = "no production model yet (promote one: make promote)"
                else:
                    log.warning("registry has no production model; still serving %s", self.version)
                return False
            if self.current is not None and version == self.current.version and not force:
                return False
            found = registry.load_production(self.models_dir)
            if found is None:
                return False
            loaded = check_model(*found, self.config)
        except Exception as exc:  # any bad model is refused; the old one keeps serving
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.problem = f"production model refused: {reason}"
            log.error("%s; serving %s", self.problem, self.version or "nothing")
            return False
        previous, self.current = self.version, loaded
        log.info("serving model %s (was %s)", loaded.version, previous or "nothing")
        return True


class Batcher:
    """Rows of requests that arrive together are scored in one model call (dynamic batching).

    Nothing waits on a timer: the first pending request schedules the model call FLUSH_PASSES
    event-loop passes later (microseconds), so a lone request is scored at once, while requests
    whose bytes arrived meanwhile (concurrent clients) join it and share the model's fixed
    per-call cost, which dominates for a few rows (HistGradientBoosting: one call per tree).
    """

    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot
        self.pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self.calls = 0
        self.rows = 0

    async def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """(labels, positive-label probabilities, model version) for the rows of x."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((x, future))
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_soon(self.flush, FLUSH_PASSES)
        return await future

    def flush(self, passes: int = 0) -> None:
        if passes > 0:
            asyncio.get_running_loop().call_soon(self.flush, passes - 1)
            return
        pending, self.pending = self.pending, []
        loaded = self.slot.current
        try:
            if loaded is None:
                raise RuntimeError("no model loaded")
            x = pending[0][0] if len(pending) == 1 else np.concatenate([p[0] for p in pending])
            proba = loaded.model.predict_proba(x)
        except Exception as exc:
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        self.calls += 1
        self.rows += len(x)
        labels = loaded.classes[proba.argmax(axis=1)]
        positive = proba[:, loaded.positive]
        start = 0
        for rows, future in pending:
            end = start + len(rows)
            if not future.done():
                future.set_result((labels[start:end], positive[start:end], loaded.version))
            start = end


# ---------------------------------------------------------------- logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `fields` extra."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's and our loggers as JSON lines on stdout (uvicorn's own access log is off)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    quiet = {"handlers": ["json"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": {"uvicorn": quiet, "uvicorn.error": {"level": level}, "mlops.serve": quiet},
    }


class AccessLog:
    """ASGI middleware: a request id (X-Request-ID in and out) and one JSON log line per request.

    Logged: request id, method, path, status, latency, model version, client. Never the body.
    """

    def __init__(self, app: Any, slot: ModelSlot) -> None:
        self.app = app
        self.slot = slot

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                text = value.decode("latin-1")
                request_id = text if REQUEST_ID.fullmatch(text) else ""
        request_id = request_id or uuid.uuid4().hex
        seen: dict[str, Any] = {"status": 500, "version": None}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = list(message.get("headers", ()))
                for key, value in headers:
                    if key == b"x-model-version":
                        seen["version"] = value.decode("latin-1")
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            fields = {
                "event": "access",
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": seen["status"],
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                "model_version": seen["version"] or self.slot.version,
                "client": f"{client[0]}:{client[1]}" if client else None,
            }
            access_log.info("request", extra={"fields": fields})


# ---------------------------------------------------------------- the app


def create_app(
    config: Config,
    models_dir: Path = Path("models"),
    *,
    poll_seconds: float = 1.0,
    own_process: bool = False,
) -> FastAPI:
    """The API: /health, /ready, /metadata and /predict for the production model in models_dir.

    own_process (the server, not tests): SIGHUP reloads, and the garbage collector is tuned.
    """
    slot = ModelSlot(config, models_dir)
    batcher = Batcher(slot)
    payload_model = request_model(config)
    names = [f"f{i}" for i in range(len(config.features))]
    row_values = attrgetter(*names) if len(names) > 1 else lambda row: (getattr(row, names[0]),)
    # Generous: a max_batch request with long numbers is far below this.
    body_limit = 64 * 1024 + config.serve.max_batch * 64 * (len(names) + 1)

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
        try:
            yield
        finally:
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
    )
    app.state.slot, app.state.batcher = slot, batcher
    app.add_middleware(AccessLog, slot=slot)

    def unavailable() -> JSONResponse:
        return JSONResponse({"status": "not ready", "reason": slot.problem}, status_code=503)

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
        schema = [
            {"name": name, "type": "categorical", "allowed": list(codes)}
            for name, codes in config.categorical.items()
        ] + [
            {"name": name, "type": "numeric", "min": bounds.min, "max": bounds.max}
            for name, bounds in config.numeric.items()
        ]
        body = {
            "model_version": loaded.version,
            "model_sha256": meta.get("model_sha256"),
            "data_sha256": meta.get("data_sha256"),
            "estimator": meta.get("estimator"),
            "created_at": meta.get("created_at"),
            "metrics": meta.get("metrics", {}),
            "target": config.schema.target,
            "labels": {"negative": config.schema.labels[0], "positive": config.schema.labels[1]},
            "max_batch": config.serve.max_batch,
            "features": schema,
        }
        return JSONResponse(body, headers={"x-model-version": loaded.version})

    def bad_request(items: list[dict[str, str]]) -> JSONResponse:
        return JSONResponse({"detail": items}, status_code=422)

    @app.post(
        "/predict",
        summary="Predict labels and positive-label probabilities for 1 to max_batch rows",
        response_model=PredictResponse,
        responses={
            422: {"model": ValidationErrorResponse, "description": "bad request: field, reason"},
            503: {"description": "no verified production model"},
        },
        max_body_size=body_limit,
    )
    async def predict(request: Request) -> Response:
        # The body is parsed and validated in one pass by pydantic-core (the schema in /docs is
        # the same model, added by openapi() below): faster than FastAPI's own body handling.
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(JSON_TYPE) and "+json" not in content_type:
            reason = f'expected {{"instances": [...]}} as Content-Type: {JSON_TYPE}'
            return bad_request([{"field": "body", "reason": reason, "type": "content_type"}])
        body = await request.body()
        if not body.strip():
            reason = f'empty body: expected {{"instances": [...]}} as Content-Type: {JSON_TYPE}'
            return bad_request([{"field": "body", "reason": reason, "type": "missing"}])
        try:
            payload = payload_model.model_validate_json(body)
        except ValidationError as exc:
            return bad_request(error_items(exc.errors(include_input=False)))
        if slot.current is None:
            return unavailable()
        x = np.array([row_values(row) for row in payload.instances], dtype=np.float64)
        try:
            labels, probability, version = await batcher.predict(x)
        except Exception:  # a bug or a broken model, never the request: log it, answer JSON
            log.exception("prediction failed (model %s)", slot.version)
            return JSONResponse({"detail": "prediction failed; see the server log"}, 500)
        predictions = [
            {"label": label, "probability": p}
            for label, p in zip(labels.tolist(), probability.tolist(), strict=True)
        ]
        content = json.dumps(
            {"predictions": predictions, "model_version": version}, separators=(",", ":")
        )
        return Response(content, media_type=JSON_TYPE, headers={"x-model-version": version})

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, plus the generated request model as /predict's body."""
        if app.openapi_schema is None:
            spec = FastAPI.openapi(app)
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
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def make_server(config: Config, host: str | None = None, port: int | None = None) -> Any:
    """A uvicorn server (1 worker, JSON logs on stdout, no uvicorn access log) for the app."""
    import uvicorn

    host = host or config.serve.host
    port = config.serve.port if port is None else port
    if not 1 <= port <= 65_535:
        raise InputError(f"--port {port}: must be between 1 and 65535")
    settings = uvicorn.Config(
        create_app(config, own_process=True),
        host=host,
        port=port,
        workers=1,
        access_log=False,
        log_config=log_config(),
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(settings)


def serve_command(config: Config, host: str | None = None, port: int | None = None) -> None:
    """CLI: serve the production model until SIGTERM/SIGINT (graceful); SIGHUP reloads it."""
    server = make_server(config, host, port)
    log.info("serving on http://%s:%d (API docs at /docs)", server.config.host, server.config.port)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: uvicorn re-raises it once shut down
        server.run()
