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
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from operator import attrgetter
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from threadpoolctl import threadpool_limits

from mlops.config import Config
from mlops.errors import InputError
from mlops.serve import onnx_model, routes
from mlops.serve.deps import Serving
from mlops.serve.guard import Guard, check_binding, load_tokens
from mlops.serve.inference_log import InferenceLog
from mlops.serve.logs import AccessLog, log_config
from mlops.serve.metrics import Metrics
from mlops.serve.model import Batcher, ModelSlot
from mlops.serve.oip import add_oip_routes
from mlops.serve.routes import failure
from mlops.serve.schema import request_model

log = logging.getLogger("mlops.serve")


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
    # Monitoring: GET /metrics and the inference log (Serving.answered, for every scoring route).
    inference = InferenceLog(config) if config.serve.inference_log.enabled else None
    if inference is not None:
        inference.check()
    monitor = Metrics(slot, inference)
    names = [f"f{i}" for i in range(len(config.features))]
    row_values = attrgetter(*names) if len(names) > 1 else lambda row: (getattr(row, names[0]),)
    parts = Serving(config, slot, batcher, monitor, inference, request_model(config), row_values)
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
    app.state.serving, app.state.tokens = parts, bool(tokens)  # deps.serving gives it to routes
    app.state.slot, app.state.batcher, app.state.inference_log = slot, batcher, inference
    # Guard inside AccessLog: a refused request is logged (without its headers) and counted too.
    app.add_middleware(Guard, tokens=tokens, body_limit=body_limit)
    app.add_middleware(AccessLog, slot=slot, observe=monitor.observe)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/v2/"):
            return JSONResponse({"error": str(exc.detail)}, exc.status_code, exc.headers)
        kinds = {404: "not_found", 405: "method_not_allowed"}
        kind = kinds.get(exc.status_code, "http")
        answer = failure(exc.status_code, "path", str(exc.detail), kind)
        answer.headers.update(exc.headers or {})
        return answer

    routes.add_routes(app)

    def openapi() -> dict[str, Any]:
        return routes.document(app, parts.payload_model)

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
