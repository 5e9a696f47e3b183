"""A real S3-compatible server for tests: moto's standalone `moto_server` on loopback.

conftest.py's `s3_server` (one per session and worker) starts it; `s3` gives a test an empty
bucket of its own, with the standard AWS variables (AWS_ENDPOINT_URL and dummy credentials) set
for this process and every process it starts (make, python -m mlops).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def moto_server(log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`moto_server` on 127.0.0.1 until the block ends; yields its endpoint URL. env: moto's
    settings, e.g. INITIAL_NO_AUTH_ACTION_COUNT=0 to check every request's credentials."""
    program = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if program is None:
        raise RuntimeError("moto_server not found: install the dev lock (make venv)")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [program, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


def new_bucket(endpoint: str) -> str:
    """An empty bucket on the server; its s3:// URL."""
    from pyarrow import fs

    name = f"test-{uuid.uuid4().hex[:12]}"
    system = fs.S3FileSystem(
        endpoint_override=endpoint,
        access_key=ENV["AWS_ACCESS_KEY_ID"],
        secret_key=ENV["AWS_SECRET_ACCESS_KEY"],
        region=ENV["AWS_DEFAULT_REGION"],
        allow_bucket_creation=True,
    )
    system.create_dir(name)
    return f"s3://{name}"


def environment(endpoint: str) -> dict[str, str]:
    """The variables a client (pyarrow, boto3, the AWS CLI) needs to reach the server."""
    return {**ENV, "AWS_ENDPOINT_URL": endpoint}


def is_running(endpoint: str) -> bool:
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
        return True
    return False
