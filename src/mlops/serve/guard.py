"""Who may call the API and how big a body may be: bearer tokens and the body limit (ASGI).

Tokens come from params `serve.auth` (a file, one a line, and an environment variable); they are
compared in constant time and never logged. Every route needs `Authorization: Bearer <token>`
except the probes in OPEN; without any token the API is open, which the server allows on
loopback only (`serve.auth.none: true` says otherwise on purpose). Every refusal here has the
API's one error shape (error_body); the Open Inference Protocol routes keep the protocol's own
{"error": "..."}.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops.config import Config
from mlops.errors import InputError

OPEN = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})
TOKEN = re.compile(r"^[\x21-\x7e]{16,512}$")  # visible ASCII, no whitespace, 16+ characters
FILE_ENV = "MLOPS_API_TOKENS_FILE"
PATHS = re.compile(r"(?:[^\s:'\"]*/)+([^\s/:'\"]+)")
CHALLENGE = [(b"www-authenticate", b"Bearer")]


def load_tokens(config: Config) -> tuple[bytes, ...]:
    """The accepted tokens: serve.auth.tokens_file (or $MLOPS_API_TOKENS_FILE) and tokens_env."""
    auth = config.serve.auth
    found: list[str] = []
    source = auth.tokens_file or os.environ.get(FILE_ENV) or None
    if source:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or type(exc).__name__
            raise InputError(f"serve.auth.tokens_file {path}: cannot read ({why})") from None
        lines = [line.strip() for line in text.splitlines()]
        found += [line for line in lines if line and not line.startswith("#")]
        where = f"serve.auth.tokens_file {path}"
    else:
        where = f"${auth.tokens_env}"
    found += os.environ.get(auth.tokens_env, "").replace(",", " ").split()
    for number, token in enumerate(found, 1):
        if not TOKEN.match(token):
            raise InputError(
                f"{where}: token {number} is not 16 to 512 visible ASCII characters without "
                "spaces (it is not shown)"
            )
    if auth.none and found:
        raise InputError("serve.auth.none is true but tokens are configured: choose one")
    return tuple(sorted({token.encode("ascii") for token in found}))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(config: Config, host: str, tokens: tuple[bytes, ...]) -> None:
    """Refuse to listen beyond loopback without tokens, unless serve.auth.none says so."""
    if not tokens and not is_loopback(host) and not config.serve.auth.none:
        raise InputError(
            f"--host {host}: refusing to serve beyond loopback without API tokens: set "
            f"${config.serve.auth.tokens_env} or serve.auth.tokens_file (or, on purpose, "
            "serve.auth.none: true)"
        )


def public(reason: str | None) -> str:
    """A reason fit for an answer: file paths reduced to their file names."""
    return PATHS.sub(r"\1", reason or "")


def error_body(path: str, field: str, reason: str, kind: str) -> bytes:
    """The one JSON error shape of the API (the /v2 routes: the protocol's {"error": ...})."""
    body: dict = {"error": reason}
    if not path.startswith("/v2/"):
        body = {"detail": [{"field": field, "reason": reason, "type": kind}]}
    return json.dumps(body, separators=(",", ":")).encode()  # as JSONResponse writes it


class TooLarge(Exception):
    """The body passed the limit while the app was reading it."""


def authorized(headers: list[tuple[bytes, bytes]], tokens: tuple[bytes, ...]) -> bool:
    """One `Authorization: Bearer <token>` header naming an accepted token (constant time)."""
    values = [value for key, value in headers if key == b"authorization"]
    if len(values) != 1:
        return False
    scheme, _, given = values[0].partition(b" ")
    if scheme.lower() != b"bearer" or not TOKEN.match(given.decode("latin-1")):
        return False
    matched = False
    for token in tokens:  # no early exit: the time does not tell which token nearly matched
        matched |= hmac.compare_digest(given, token)
    return matched


class Guard:
    """ASGI middleware: 401 without a valid token, 413 past the body limit, in one JSON shape."""

    def __init__(self, app: Any, tokens: tuple[bytes, ...], body_limit: int) -> None:
        self.app, self.tokens, self.body_limit = app, tokens, body_limit

    async def refuse(
        self, send: Callable, path: str, status: int, field: str, reason: str, kind: str
    ) -> None:
        headers = [(b"content-type", b"application/json")]
        if status == 401:
            headers += CHALLENGE
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": error_body(path, field, reason, kind)})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.tokens and path not in OPEN and not authorized(scope["headers"], self.tokens):
            reason = "missing or invalid bearer token (Authorization: Bearer <token>)"
            await self.refuse(send, path, 401, "authorization", reason, "unauthorized")
            return
        if scope["method"] != "POST" or path.startswith("/v2/"):  # OIP reads its own body
            await self.app(scope, receive, send)
            return
        limit = self.body_limit
        too_large = f"request body larger than {limit} bytes: send fewer rows per request"
        for key, value in scope["headers"]:
            if key == b"content-length" and (not value.isdigit() or int(value) > limit):
                await self.refuse(send, path, 413, "body", too_large, "too_large")
                return
        state = {"size": 0, "started": False}

        async def counted() -> dict:
            message = await receive()
            state["size"] += len(message.get("body", b""))
            if state["size"] > limit:
                raise TooLarge
            return message

        async def watched(message: dict) -> None:
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge:
            if not state["started"]:
                await self.refuse(send, path, 413, "body", too_large, "too_large")
