"""Serving speed: a real uvicorn (1 worker, loopback) driven by a load generator in another process.

Phases (about 10 s in all): sequential single-row /predict for p50/p99, then alternating rounds of
/predict and the no-model baseline (/health of the same app) at concurrency 8; ratio = predict
requests/s divided by baseline requests/s. Uses the production model in ./models, or trains and
promotes one in a temporary project copy when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlops.config import Config

log = logging.getLogger(__name__)
BASELINE = "/health"
CONCURRENCY = 8
GOAL = {"sequential_p99_ms_below": 15.0, "ratio_at_least": 0.45}
STAGES = ("data", "validate", "train", "evaluate", "promote")


# ---------------------------------------------------------------- load generator (client side)


def http_request(path: str, body: bytes | None = None) -> bytes:
    """Raw HTTP/1.1 keep-alive request bytes: GET without a body, else a JSON POST."""
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _status_and_length(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(lines[0].split(b" ", 2)[1]), length


def summary(latencies: list[float], errors: int, seconds: float) -> dict:
    """Request count, errors, requests/s and latency percentiles (ms) of one phase."""
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(seconds, 3),
        "rps": round(len(latencies) / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def sequential(port: int, requests: list[bytes], seconds: float) -> dict:
    """One connection, one request at a time (blocking socket: no client-side event loop cost)."""
    latencies: list[float] = []
    errors = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb")
        started = time.perf_counter()
        end = started + seconds
        i = 0
        while (now := time.perf_counter()) < end:
            conn.sendall(requests[i % len(requests)])
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                if not line:
                    raise ConnectionError("server closed the connection")
                head += line
            status, length = _status_and_length(head)
            reader.read(length)
            latencies.append(time.perf_counter() - now)
            errors += status != 200
            i += 1
        elapsed = time.perf_counter() - started
    return summary(latencies, errors, elapsed)


async def _concurrent(port: int, requests: list[bytes], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0

    async def client(offset: int, end: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        try:
            while (now := time.perf_counter()) < end:
                writer.write(requests[i % len(requests)])
                status, length = _status_and_length(await reader.readuntil(b"\r\n\r\n"))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - now)
                errors += status != 200
                i += 1
        finally:
            writer.close()

    started = time.perf_counter()
    end = started + seconds
    await asyncio.gather(*(client(k * 7, end) for k in range(concurrency)))
    return summary(latencies, errors, time.perf_counter() - started)


def concurrent(port: int, requests: list[bytes], concurrency: int, seconds: float) -> dict:
    """`concurrency` keep-alive connections, each sending its next request on each answer."""
    return asyncio.run(_concurrent(port, requests, concurrency, seconds))


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_server_cpu(pid: int | None, run: Callable[..., dict], *args: Any) -> dict:
    """run(*args), plus the server's CPU ms per request meanwhile (robust to other load)."""
    before = cpu_seconds(pid)
    result = run(*args)
    after = cpu_seconds(pid)
    if before is not None and after is not None and result["requests"]:
        result["server_cpu_ms_per_request"] = round((after - before) * 1000 / result["requests"], 4)
        result["server_cpu_seconds"] = round(after - before, 3)
    return result


def merge(phases: list[dict]) -> dict:
    """Totals of several rounds of one kind (percentiles: worst round)."""
    requests = sum(p["requests"] for p in phases)
    seconds = sum(p["seconds"] for p in phases)
    merged = {
        "requests": requests,
        "errors": sum(p["errors"] for p in phases),
        "seconds": round(seconds, 3),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": max(p["p50_ms"] for p in phases),
        "p99_ms": max(p["p99_ms"] for p in phases),
    }
    if requests and all("server_cpu_seconds" in p for p in phases):
        cpu = sum(p["server_cpu_seconds"] for p in phases)
        merged["server_cpu_ms_per_request"] = round(cpu * 1000 / requests, 4)
    return merged


def drive(plan: dict) -> dict:
    """The whole load: warm-up, sequential single rows, then rounds of predict vs baseline."""
    port, seconds = plan["port"], plan["seconds"]
    predict = [http_request("/predict", body.encode()) for body in plan["bodies"]]
    baseline = [http_request(BASELINE)]
    concurrent(port, predict, CONCURRENCY, 0.05 * seconds)  # warm-up
    concurrent(port, baseline, CONCURRENCY, 0.05 * seconds)
    pid = plan.get("server_pid")
    result = {"sequential": with_server_cpu(pid, sequential, port, predict, 0.3 * seconds)}
    rounds = plan["rounds"]
    model, plain = [], []
    share = 0.3 * seconds / rounds
    for _ in range(rounds):  # alternate, so background load hits both alike
        plain.append(with_server_cpu(pid, concurrent, port, baseline, CONCURRENCY, share))
        model.append(with_server_cpu(pid, concurrent, port, predict, CONCURRENCY, share))
    result["concurrent_predict"] = merge(model)
    result["concurrent_baseline"] = merge(plain)
    return result


def client_main() -> None:
    """Second process: read the plan (JSON) on stdin, print the measurements (JSON)."""
    print(json.dumps(drive(json.loads(sys.stdin.read()))))


# ---------------------------------------------------------------- server side


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(port: int, process: subprocess.Popen, timeout: float = 60.0) -> dict:
    """Poll /ready until it answers 200 (bounded); the server's answer."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            last = exc.read().decode("utf-8", "replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"server on port {port} not ready after {timeout:.0f}s: {last}")


@contextlib.contextmanager
def running_server(
    root: Path, params: Path, port: int, log_file: Path, timeout: float = 60.0
) -> Iterator[tuple[dict, int]]:
    """`python -m mlops serve` in root on 127.0.0.1:port until the block ends.

    Yields the /ready answer and the server's process id.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mlops", "--params", str(params), "serve"]
    with open(log_file, "wb") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield wait_until_ready(port, process, timeout), process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sample_bodies(config: Config, count: int = 256) -> list[str]:
    """Valid single-row /predict bodies drawn (seeded) from the schema's codes and ranges."""
    rng = np.random.default_rng(config.seed)
    bodies = []
    for _ in range(count):
        row: dict = {name: int(rng.choice(codes)) for name, codes in config.categorical.items()}
        for name, bounds in config.numeric.items():
            low, high = max(bounds.min, -1e6), min(bounds.max, 1e6)
            row[name] = round(float(rng.uniform(low, high)), 3)
        bodies.append(json.dumps({"instances": [row]}))
    return bodies


def production_project(config: Config, params: Path, tmp: Path) -> Path:
    """The current directory when it has a production model, else a temp copy with one."""
    from mlops import registry

    if registry.production_version(Path("models")) is not None:
        return Path.cwd()
    log.info("no production model here: training and promoting one in a temporary copy")
    root = tmp / "project"
    root.mkdir()
    raw = config.data.raw_dir
    if raw.is_dir():
        shutil.copytree(raw, root / raw)
    for stage in STAGES:
        subprocess.run(
            [sys.executable, "-m", "mlops", "--params", str(params), stage],
            cwd=root,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return root


def measure(config: Config, seconds: float = 10.0, rounds: int = 3) -> dict:
    """p50/p99 of sequential single rows, requests/s at concurrency 8 and the no-model ratio."""
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as name:
        tmp = Path(name)
        params = tmp / "params.yaml"
        dumped = config.model_dump(mode="json", by_alias=True)
        params.write_text(yaml.safe_dump(dumped, sort_keys=False))  # keeps the feature order
        root = production_project(config, params, tmp)
        port = free_port()
        plan = {"port": port, "seconds": seconds, "rounds": rounds}
        plan["bodies"] = sample_bodies(config)
        with running_server(root, params, port, tmp / "server.log") as (ready, pid):
            plan["server_pid"] = pid
            client = subprocess.run(
                [sys.executable, "-m", "mlops.bench.serving"],
                input=json.dumps(plan),
                capture_output=True,
                text=True,
                check=True,
                timeout=seconds * 3 + 60,
            )
        server_log = (tmp / "server.log").read_text(encoding="utf-8").splitlines()
    access_lines = sum('"event": "access"' in line for line in server_log)
    scored = [json.loads(line) for line in server_log if '"scored ' in line]
    result = json.loads(client.stdout)
    predict, baseline = result["concurrent_predict"], result["concurrent_baseline"]
    ratio = round(predict["rps"] / baseline["rps"], 3) if baseline["rps"] else 0.0
    sequential_p99 = result["sequential"]["p99_ms"]
    cpu_predict = predict.get("server_cpu_ms_per_request")
    cpu_baseline = baseline.get("server_cpu_ms_per_request")
    report = {
        "model_version": ready.get("model_version"),
        "setup": f"uvicorn, 1 worker, loopback; load from a second process for {seconds:g}s",
        "concurrency": CONCURRENCY,
        "baseline_endpoint": BASELINE,
        "sequential_p50_ms": result["sequential"]["p50_ms"],
        "sequential_p99_ms": sequential_p99,
        "sequential_rps": result["sequential"]["rps"],
        "concurrent_rps": predict["rps"],
        "concurrent_p50_ms": predict["p50_ms"],
        "concurrent_p99_ms": predict["p99_ms"],
        "baseline_rps": baseline["rps"],
        "ratio": ratio,
        # Server CPU per request: less sensitive than requests/s to other load on the machine.
        "server_cpu_ms_per_request": {
            "sequential": result["sequential"].get("server_cpu_ms_per_request"),
            "concurrent_predict": cpu_predict,
            "concurrent_baseline": cpu_baseline,
        },
        "cpu_ratio": round(cpu_baseline / cpu_predict, 3) if cpu_predict and cpu_baseline else None,
        "goal": GOAL,
        "meets_goal": bool(
            sequential_p99 < GOAL["sequential_p99_ms_below"] and ratio >= GOAL["ratio_at_least"]
        ),
        "errors": sum(phase["errors"] for phase in result.values()),
        "rows_per_model_call": scored[-1]["rows_per_call"] if scored else None,
        "access_log_lines": access_lines,
        "phases": result,
    }
    log.info(
        "serving: sequential p50 %.2f ms, p99 %.2f ms; %.0f req/s at concurrency %d = %.0f%% of "
        "%s (%.0f req/s)",
        report["sequential_p50_ms"],
        sequential_p99,
        predict["rps"],
        CONCURRENCY,
        ratio * 100,
        BASELINE,
        baseline["rps"],
    )
    return report


if __name__ == "__main__":
    client_main()
