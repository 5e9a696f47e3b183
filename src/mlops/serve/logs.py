"""JSON log lines, and the access-log middleware that tags every response."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mlops.serve.model import ModelSlot

access_log = logging.getLogger("mlops.serve.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


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

    def __init__(
        self, app: Any, slot: ModelSlot, observe: Callable[[dict, int, float], None] | None = None
    ) -> None:
        self.app = app
        self.slot = slot
        self.observe = observe  # (scope, status, seconds) of every request: the metrics

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
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        seen: dict[str, Any] = {"status": 500, "version": None}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = list(message.get("headers", ()))
                for key, value in headers:
                    if key == b"x-model-version":
                        seen["version"] = value.decode("latin-1")
                version = self.slot.version
                if seen["version"] is None and version is not None:
                    seen["version"] = version  # every answer says which model is loaded
                    headers.append((b"x-model-version", version.encode("latin-1")))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self.observe is not None:
                self.observe(scope, seen["status"], seconds)
            client = scope.get("client")
            fields = {
                "event": "access",
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": seen["status"],
                "latency_ms": round(seconds * 1000, 3),
                "model_version": seen["version"] or self.slot.version,
                "client": f"{client[0]}:{client[1]}" if client else None,
            }
            access_log.info("request", extra={"fields": fields})
