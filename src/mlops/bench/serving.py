"""Serving speed: a real uvicorn (1 worker, loopback) driven by a load generator in another process.

Phases (about 20 s in all): sequential single-row /predict for p50/p99, then alternating rounds at
concurrency 8 of /predict, the no-model baseline (/health of the same app), the same rows through
the Open Inference Protocol (POST /v2/models/{name}/infer) and through a naive server (a plain
FastAPI route calling the pipeline on a pandas DataFrame per request, in its own process).
ratio = predict / baseline, v2_ratio = OIP / predict, naive_ratio = predict / naive (requests/s).
Uses the production model in ./models, or trains and promotes one in a temporary project copy
when there is none.

The inference log (`inference_log_ratio`): two servers side by side, the log off and on (its
defaults), driven in alternating rounds at concurrency 8; then the memory of the logging server
(RSS) after 10,000 and after 100,000 logged requests, and the writer's own rows/s.

API tokens (`auth_ratio`): two servers side by side, without tokens and with them (every request
carrying its bearer token), one connection to each, the same row sent to both in turn: p50 and p99
of each.
Model loading (`load_seconds`): the production model from skops bytes (with the trusted-type
check) vs the same model from joblib bytes, best of several loads each.
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
GOAL = {
    "sequential_p99_ms_below": 15.0,
    "ratio_at_least": 0.45,
    "v2_ratio_at_least": 0.9,
    "naive_ratio_at_least": 5.0,
}
ONNX_GOAL = {"sequential_p99_ms_below": 2.0, "ratio_at_least": 0.7}  # serving.onnx (#28)
LOG_GOAL = {"ratio_at_least": 0.9, "p99_within": 0.10, "rss_growth_mib_below": 50.0}
AUTH_GOAL = {"p50_within": 0.05, "p99_within": 0.05}
BENCH_TOKEN = "bench-token-0123456789abcdef"  # a loopback-only server of the bench's own
MEMORY_REQUESTS = (10_000, 100_000)
STAGES = ("data", "validate", "train", "evaluate", "promote")


# ---------------------------------------------------------------- load generator (client side)


def http_request(path: str, body: bytes | None = None, token: str | None = None) -> bytes:
    """Raw HTTP/1.1 keep-alive request bytes: GET without a body, else a JSON POST."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(body)}\r\n\r\n"
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


class Connection:
    """One kept-alive loopback connection: send a request, read the whole answer."""

    def __init__(self, port: int) -> None:
        self.conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.conn.makefile("rb")

    def ask(self, request: bytes) -> int:
        """The status of one answer (its body read and dropped)."""
        self.conn.sendall(request)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            head += line
        status, length = _status_and_length(head)
        self.reader.read(length)
        return status

    def close(self) -> None:
        self.reader.close()
        self.conn.close()


def sequential(port: int, requests: list[bytes], seconds: float) -> dict:
    """One connection, one request at a time (blocking socket: no client-side event loop cost)."""
    latencies: list[float] = []
    errors = 0
    connection = Connection(port)
    try:
        started = time.perf_counter()
        end = started + seconds
        i = 0
        while (now := time.perf_counter()) < end:
            errors += connection.ask(requests[i % len(requests)]) != 200
            latencies.append(time.perf_counter() - now)
            i += 1
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
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
    """The whole load: warm-up, sequential single rows, then rounds of predict vs baseline, and
    vs OIP infer (plan["v2_bodies"]) and the naive server (plan["naive_port"]) when given."""
    port, seconds = plan["port"], plan["seconds"]
    predict = [http_request("/predict", body.encode()) for body in plan["bodies"]]
    pid = plan.get("server_pid")
    # (name, port, requests, server pid) of each kind measured at concurrency 8
    kinds = [("baseline", port, [http_request(BASELINE)], pid), ("predict", port, predict, pid)]
    if plan.get("v2_bodies"):
        path = f"/v2/models/{plan['model_name']}/infer"
        v2 = [http_request(path, body.encode()) for body in plan["v2_bodies"]]
        kinds.append(("v2", port, v2, pid))
    if plan.get("naive_port"):
        kinds.append(("naive", plan["naive_port"], predict, plan.get("naive_pid")))
    for _, kind_port, requests, _ in kinds:  # warm-up
        concurrent(kind_port, requests, CONCURRENCY, 0.05 * seconds)
    result = {"sequential": with_server_cpu(pid, sequential, port, predict, 0.3 * seconds)}
    rounds = plan["rounds"]
    measured: dict[str, list[dict]] = {name: [] for name, *_ in kinds}
    share = 0.3 * seconds / rounds
    for _ in range(rounds):  # alternate, so background load hits all alike
        for name, kind_port, requests, kind_pid in kinds:
            phase = with_server_cpu(kind_pid, concurrent, kind_port, requests, CONCURRENCY, share)
            measured[name].append(phase)
    for name, phases in measured.items():
        result[f"concurrent_{name}"] = merge(phases)
    return result


def rss_mib(pid: int | None) -> float | None:
    """A process's resident memory now (Linux /proc; None elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return None
    return round(int(status.split("VmRSS:")[1].split()[0]) / 1024, 1)


def drive_pair(plan: dict) -> dict:
    """The log off and on, side by side: warm-up, then alternating rounds at concurrency 8."""
    seconds, rounds = plan["seconds"], plan["rounds"]
    predict = [http_request("/predict", body.encode()) for body in plan["bodies"]]
    ports = {"off": plan["ports"][0], "on": plan["ports"][1]}
    pids = {"off": plan["pids"][0], "on": plan["pids"][1]}
    for port in ports.values():
        concurrent(port, predict, CONCURRENCY, 0.05 * seconds)
    phases: dict[str, list[dict]] = {"off": [], "on": []}
    share = 0.5 * seconds / rounds
    for number in range(rounds):  # alternate which goes first, too
        for side in ("off", "on") if number % 2 == 0 else ("on", "off"):
            phases[side].append(
                with_server_cpu(pids[side], concurrent, ports[side], predict, CONCURRENCY, share)
            )
    return {side: merge(found) for side, found in phases.items()}


def drive_auth(plan: dict) -> dict:
    """Tokens off and on, side by side request by request: one connection to each server, the
    same row sent to both in turn (which goes first alternates), so both see the same machine."""
    seconds = plan["seconds"]
    requests = {
        "off": [http_request("/predict", body.encode()) for body in plan["bodies"]],
        "on": [http_request("/predict", body.encode(), plan["token"]) for body in plan["bodies"]],
    }
    connections = {"off": Connection(plan["ports"][0]), "on": Connection(plan["ports"][1])}
    latencies: dict[str, list[float]] = {"off": [], "on": []}
    errors = {"off": 0, "on": 0}
    try:
        warm_up = time.perf_counter() + 0.05 * seconds
        i = 0
        started = time.perf_counter()
        end = started + seconds
        while (now := time.perf_counter()) < end:
            for side in ("off", "on") if i % 2 == 0 else ("on", "off"):
                asked = time.perf_counter()
                status = connections[side].ask(requests[side][i % len(requests[side])])
                if now >= warm_up:
                    latencies[side].append(time.perf_counter() - asked)
                    errors[side] += status != 200
            i += 1
        elapsed = time.perf_counter() - started
    finally:
        for connection in connections.values():
            connection.close()
    return {side: summary(latencies[side], errors[side], elapsed) for side in latencies}


def drive_memory(plan: dict) -> dict:
    """RSS of the logging server after each count of requests (concurrency 8, requests/s too)."""
    predict = [http_request("/predict", body.encode()) for body in plan["bodies"]]
    done, found = 0, {}
    for count in plan["counts"]:
        found[str(count)] = _requests(plan["port"], predict, count - done)
        done = count
        found[str(count)]["rss_mib"] = rss_mib(plan["pid"])
    return found


def _requests(port: int, requests: list[bytes], count: int) -> dict:
    """Exactly `count` requests over CONCURRENCY connections."""

    async def run() -> dict:
        left = count
        errors = 0

        async def client(offset: int) -> None:
            nonlocal left, errors
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            i = offset
            try:
                while left > 0:
                    left -= 1
                    writer.write(requests[i % len(requests)])
                    status, length = _status_and_length(await reader.readuntil(b"\r\n\r\n"))
                    await reader.readexactly(length)
                    errors += status != 200
                    i += 1
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(client(k * 7) for k in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        return {"requests": count, "errors": errors, "seconds": round(elapsed, 3)}

    return asyncio.run(run())


def client_main() -> None:
    """Second process: read the plan (JSON) on stdin, print the measurements (JSON)."""
    plan = json.loads(sys.stdin.read())
    mode = plan.get("mode", "serving")
    work = {"serving": drive, "pair": drive_pair, "memory": drive_memory, "auth": drive_auth}[mode]
    print(json.dumps(work(plan)))


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
    root: Path,
    params: Path,
    port: int,
    log_file: Path,
    timeout: float = 60.0,
    *,
    naive: bool = False,
    inference_log: Path | str | None = None,
    tokens: str = "",
) -> Iterator[tuple[dict, int]]:
    """`python -m mlops serve` (naive: the naive server) in root on 127.0.0.1:port until the
    block ends (SIGTERM: the inference log, when one is given, is flushed by then).

    Yields the /ready answer and the server's process id.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_API_TOKENS")}
    env.update(OMP_NUM_THREADS="1", MLOPS_INFERENCE_LOG=str(inference_log or "off"))
    if tokens:
        env["MLOPS_API_TOKENS"] = tokens
    command = [sys.executable, "-m", "mlops", "--params", str(params), "serve"]
    if naive:
        command = [sys.executable, "-m", "mlops.bench.serving", "naive", str(params)]
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
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sample_rows(config: Config, count: int = 256) -> list[dict]:
    """Valid rows drawn (seeded) from the schema's allowed values and ranges."""
    rng = np.random.default_rng(config.seed)
    rows = []
    for _ in range(count):
        row: dict = {
            name: values[int(rng.integers(len(values)))]
            for name, values in config.categorical.items()
        }
        for name, bounds in config.numeric.items():
            low, high = max(bounds.min, -1e6), min(bounds.max, 1e6)
            row[name] = round(float(rng.uniform(low, high)), 3)
        rows.append(row)
    return rows


def sample_bodies(config: Config, count: int = 256) -> list[str]:
    """Valid single-row /predict bodies (sample_rows)."""
    return [json.dumps({"instances": [row]}) for row in sample_rows(config, count)]


def v2_bodies(config: Config, count: int = 256) -> list[str]:
    """The same rows as single-row OIP infer bodies: one tensor per feature, as clients send."""
    from mlops.serve.oip import declared_datatype

    bodies = []
    for row in sample_rows(config, count):
        inputs = [
            {
                "name": name,
                "shape": [1],
                "datatype": declared_datatype(config.categorical.get(name))[0],
                "data": [row[name]],
            }
            for name in config.features
        ]
        bodies.append(json.dumps({"inputs": inputs}))
    return bodies


def naive_app(config: Config, models_dir: Path = Path("models")) -> Any:
    """The naive way to serve the same model, for comparison: a plain FastAPI route that builds a
    pandas DataFrame of each request and calls the pipeline on it (no batching, no tuning)."""
    import pandas as pd
    from fastapi import FastAPI

    from mlops import registry

    found = registry.load_production(models_dir)
    if found is None:
        raise RuntimeError(f"no production model in {models_dir}")
    model, metadata = found
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ready", "model_version": metadata.get("version")}

    @app.post("/predict")
    def predict(body: dict) -> dict:
        # The model file takes raw rows by column name: what any other server would call.
        proba = model.predict_proba(pd.DataFrame(body["instances"]))
        labels = model.classes_[proba.argmax(axis=1)]
        return {
            "predictions": [
                {"label": label, "probability": max(row)}
                for label, row in zip(labels.tolist(), proba.tolist(), strict=True)
            ]
        }

    return app


def naive_main(argv: list[str]) -> None:
    """`python -m mlops.bench.serving naive PARAMS --host H --port P`: the naive server."""
    import uvicorn

    from mlops.config import load_config

    params, host, port = argv[0], argv[2], int(argv[4])
    app = naive_app(load_config(Path(params)))
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


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


def cpu_ratio(numerator_cpu: float | None, denominator_cpu: float | None) -> float | None:
    """A requests/s ratio as CPU per request gives it: the denominator kind's CPU over the
    numerator's (None when either is unknown)."""
    if not numerator_cpu or not denominator_cpu:
        return None
    return round(denominator_cpu / numerator_cpu, 3)


def client(plan: dict, timeout: float) -> dict:
    """The load generator in a second process, on this plan."""
    done = subprocess.run(
        [sys.executable, "-m", "mlops.bench.serving"],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    return json.loads(done.stdout)


def parquet_rows(root: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(path).num_rows for path in root.rglob("*.parquet"))


def writer_rows_per_second(config: Config, rows: int = 100_000) -> float:
    """The log writer alone: rows/s of building and writing one file of single-row requests."""
    from mlops.encoding import codes
    from mlops.serve.inference_log import InferenceLog

    first = [next(iter(codes(values).values())) for values in config.categorical.values()]
    x = np.array([first + [0.0] * len(config.numeric)])
    with tempfile.TemporaryDirectory(prefix="bench-log-") as name:
        settings = config.serve.inference_log.model_copy(
            update={"enabled": True, "dir": name, "queue_rows": rows}
        )
        logged = config.model_copy(
            update={"serve": config.serve.model_copy(update={"inference_log": settings})}
        )
        writer = InferenceLog(logged)
        labels, probability = np.zeros(1, dtype=np.int64), np.full(1, 0.5)
        for i in range(rows):
            writer.record(x, labels, probability, None, (), "v1", f"r{i}")
        started = time.perf_counter()
        writer.flush()
        elapsed = time.perf_counter() - started
    return round(rows / elapsed) if elapsed > 0 else 0.0


def inference_log(
    config: Config,
    root: Path,
    params: Path,
    tmp: Path,
    bodies: list[str],
    *,
    seconds: float,
    rounds: int,
    memory_requests: tuple[int, ...] = MEMORY_REQUESTS,
) -> dict:
    """The log off vs on side by side, the logging server's memory, the writer's rows/s."""
    folder = tmp / "inference-log"
    ports = (free_port(), free_port())
    with contextlib.ExitStack() as servers:
        off = servers.enter_context(running_server(root, params, ports[0], tmp / "off.log"))
        on = servers.enter_context(
            running_server(root, params, ports[1], tmp / "on.log", inference_log=folder)
        )
        plan: dict[str, Any] = {
            "mode": "pair",
            "ports": ports,
            "pids": (off[1], on[1]),
            "bodies": bodies,
        }
        pair = client({**plan, "seconds": seconds, "rounds": rounds}, seconds * 3 + 60)
    logged_rows = parquet_rows(folder)
    memory_folder = tmp / "memory-log"
    port = free_port()
    with running_server(root, params, port, tmp / "mem.log", inference_log=memory_folder) as (
        _,
        pid,
    ):
        plan = {"mode": "memory", "port": port, "pid": pid, "bodies": bodies}
        memory = client({**plan, "counts": list(memory_requests)}, 3600)
    first, last = (memory[str(count)] for count in (memory_requests[0], memory_requests[-1]))
    growth = (
        round(last["rss_mib"] - first["rss_mib"], 1)
        if first.get("rss_mib") is not None and last.get("rss_mib") is not None
        else None
    )
    off_phase, on_phase = pair["off"], pair["on"]
    ratio = round(on_phase["rps"] / off_phase["rps"], 3) if off_phase["rps"] else 0.0
    p99_ratio = round(on_phase["p99_ms"] / off_phase["p99_ms"], 3) if off_phase["p99_ms"] else None
    cpu_off, cpu_on = (p.get("server_cpu_ms_per_request") for p in (off_phase, on_phase))
    return {
        "ratio": ratio,
        # Server CPU per request, off / on: less sensitive than requests/s to other load.
        "cpu_ratio": round(cpu_off / cpu_on, 3) if cpu_off and cpu_on else None,
        "log_off": off_phase,
        "log_on": on_phase,
        "p99_ratio": p99_ratio,
        "rows_logged_during_load": logged_rows,
        "rows_per_second_written": on_phase["rps"],  # single-row requests: one row each
        "writer_rows_per_second": writer_rows_per_second(config),
        "memory": {
            "requests": memory,
            "rss_mib_after": {
                str(count): memory[str(count)].get("rss_mib") for count in memory_requests
            },
            "rss_growth_mib": growth,
            "rows_logged": parquet_rows(memory_folder),
        },
        "bytes_per_million_rows": _bytes_per_million(memory_folder),
        "goal": LOG_GOAL,
        "meets_goal": bool(
            ratio >= LOG_GOAL["ratio_at_least"]
            and p99_ratio is not None
            and p99_ratio <= 1 + LOG_GOAL["p99_within"]
            and growth is not None
            and growth < LOG_GOAL["rss_growth_mib_below"]
        ),
    }


def load_ms(lines: list[str]) -> float | None:
    """The server's model load time, from its "serving model ... loaded in N ms" log line."""
    for line in lines:
        if "loaded in" in line and "serving model" in line:
            message = json.loads(line).get("message", "")
            return float(message.rpartition("loaded in ")[2].split()[0])
    return None


def runtimes(
    config: Config, root: Path, tmp: Path, bodies: list[str], seconds: float, rounds: int
) -> dict:
    """`serving.onnx` and `serving.sklearn`: the same production version served from its
    model.onnx (serve.runtime onnx) and from its model file (sklearn), one after the other on
    the same rows: sequential p50/p99, concurrency-8 requests/s and its ratio to /health, and
    the model's load time at start. Empty when production has no ONNX file."""
    from mlops import registry

    version = registry.production_version(root / "models")
    entry = registry.read_registry(root / "models")["versions"].get(version) or {}
    if not entry.get("onnx_sha256"):
        log.warning("production %s has no model.onnx: serving.onnx not measured", version)
        return {}
    found = {}
    for runtime in ("onnx", "sklearn"):
        dumped = config.model_dump(mode="json", by_alias=True)
        dumped["serve"]["runtime"] = runtime
        params = tmp / f"params-{runtime}.yaml"
        params.write_text(yaml.safe_dump(dumped, sort_keys=False))
        server_log = tmp / f"server-{runtime}.log"
        port = free_port()
        with running_server(root, params, port, server_log) as (_, pid):
            plan = {"port": port, "seconds": seconds, "rounds": rounds, "bodies": bodies}
            plan["server_pid"] = pid
            result = client(plan, seconds * 3 + 60)
        predict, baseline = result["concurrent_predict"], result["concurrent_baseline"]
        ratio = round(predict["rps"] / baseline["rps"], 3) if baseline["rps"] else 0.0
        found[runtime] = {
            "sequential_p50_ms": result["sequential"]["p50_ms"],
            "sequential_p99_ms": result["sequential"]["p99_ms"],
            "sequential_rps": result["sequential"]["rps"],
            "concurrent_rps": predict["rps"],
            "concurrent_p99_ms": predict["p99_ms"],
            "baseline_rps": baseline["rps"],
            "ratio": ratio,
            "cpu_ratio": cpu_ratio(
                predict.get("server_cpu_ms_per_request"),
                baseline.get("server_cpu_ms_per_request"),
            ),
            "server_cpu_ms_per_request": predict.get("server_cpu_ms_per_request"),
            "load_ms": load_ms(server_log.read_text(encoding="utf-8").splitlines()),
            "errors": sum(phase["errors"] for phase in result.values()),
        }
    onnx = found["onnx"]
    onnx["goal"] = ONNX_GOAL
    onnx["meets_goal"] = bool(
        onnx["sequential_p99_ms"] < ONNX_GOAL["sequential_p99_ms_below"]
        and onnx["ratio"] >= ONNX_GOAL["ratio_at_least"]
    )
    log.info(
        "serving from model.onnx: p50 %.2f ms, p99 %.2f ms, %.0f req/s at concurrency %d "
        "(ratio %.2f), load %s ms; from the model file: p50 %.2f ms, p99 %.2f ms, %.0f req/s "
        "(ratio %.2f), load %s ms",
        onnx["sequential_p50_ms"],
        onnx["sequential_p99_ms"],
        onnx["concurrent_rps"],
        CONCURRENCY,
        onnx["ratio"],
        onnx["load_ms"],
        found["sklearn"]["sequential_p50_ms"],
        found["sklearn"]["sequential_p99_ms"],
        found["sklearn"]["concurrent_rps"],
        found["sklearn"]["ratio"],
        found["sklearn"]["load_ms"],
    )
    return found


def auth(root: Path, params: Path, tmp: Path, bodies: list[str], *, seconds: float):
    """Tokens off vs on, side by side: p50/p99 of each and on/off (goal: within 5%)."""
    ports = (free_port(), free_port())
    with contextlib.ExitStack() as servers:
        servers.enter_context(running_server(root, params, ports[0], tmp / "auth-off.log"))
        servers.enter_context(
            running_server(root, params, ports[1], tmp / "auth-on.log", tokens=BENCH_TOKEN)
        )
        plan = {"mode": "auth", "ports": ports, "bodies": bodies, "token": BENCH_TOKEN}
        pair = client({**plan, "seconds": seconds}, seconds * 3 + 60)
    off, on = pair["off"], pair["on"]
    p50 = round(on["p50_ms"] / off["p50_ms"], 3) if off["p50_ms"] else None
    p99 = round(on["p99_ms"] / off["p99_ms"], 3) if off["p99_ms"] else None
    return {
        "p50_ratio": p50,
        "p99_ratio": p99,
        "tokens_off": off,
        "tokens_on": on,
        "goal": AUTH_GOAL,
        "meets_goal": bool(
            p50 is not None
            and p99 is not None
            and p50 <= 1 + AUTH_GOAL["p50_within"]
            and p99 <= 1 + AUTH_GOAL["p99_within"]
        ),
    }


def load_seconds(root: Path, repeats: int = 5) -> dict:
    """The production model loaded from skops bytes (trusted-type check included) vs the same
    model from joblib bytes: the best of `repeats` loads each, and the file sizes."""
    import io

    import joblib

    from mlops import model_file, registry

    found = registry.load_production(root / "models")
    assert found is not None  # production_project promoted one
    model, _ = found
    skops_bytes = model_file.dumps(model)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    joblib_bytes = buffer.getvalue()

    def best(load: Callable[[], Any]) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            load()
            times.append(time.perf_counter() - started)
        return min(times)

    skops = best(lambda: model_file.loads(skops_bytes, "bench"))
    pickled = best(lambda: joblib.load(io.BytesIO(joblib_bytes)))
    return {
        "skops": round(skops, 4),
        "joblib": round(pickled, 4),
        "skops_over_joblib": round(skops / pickled, 2) if pickled else None,
        "bytes": {"skops": len(skops_bytes), "joblib": len(joblib_bytes)},
    }


def _bytes_per_million(folder: Path) -> int | None:
    rows = parquet_rows(folder)
    size = sum(path.stat().st_size for path in folder.rglob("*.parquet"))
    return round(size * 1_000_000 / rows) if rows else None


def measure(
    config: Config,
    seconds: float = 10.0,
    rounds: int = 6,
    memory_requests: tuple[int, ...] = MEMORY_REQUESTS,
) -> dict:
    """p50/p99 of sequential single rows, requests/s at concurrency 8 and the no-model ratio;
    the inference log's cost (off vs on) and memory."""
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as name:
        tmp = Path(name)
        params = tmp / "params.yaml"
        dumped = config.model_dump(mode="json", by_alias=True)
        params.write_text(yaml.safe_dump(dumped, sort_keys=False))  # keeps the feature order
        root = production_project(config, params, tmp)
        port = free_port()
        naive_port = free_port()
        plan: dict[str, Any] = {
            "port": port,
            "seconds": seconds,
            "rounds": rounds,
            "naive_port": naive_port,
        }
        plan["bodies"] = sample_bodies(config)
        plan["v2_bodies"] = v2_bodies(config)
        plan["model_name"] = config.serve.model_name
        naive_log = tmp / "naive.log"
        with (
            running_server(root, params, port, tmp / "server.log") as (ready, pid),
            running_server(root, params, naive_port, naive_log, naive=True) as (_, naive_pid),
        ):
            plan["server_pid"], plan["naive_pid"] = pid, naive_pid
            result = client(plan, seconds * 3 + 60)
        server_log = (tmp / "server.log").read_text(encoding="utf-8").splitlines()
        tokens = auth(root, params, tmp, plan["bodies"], seconds=seconds)
        loading = load_seconds(root)
        logged = inference_log(
            config,
            root,
            params,
            tmp,
            plan["bodies"],
            seconds=seconds,
            rounds=rounds,
            memory_requests=memory_requests,
        )
        compared = runtimes(config, root, tmp, plan["bodies"], seconds, rounds)
    access_lines = sum('"event": "access"' in line for line in server_log)
    scored = [json.loads(line) for line in server_log if '"scored ' in line]
    predict, baseline = result["concurrent_predict"], result["concurrent_baseline"]
    v2, naive = result["concurrent_v2"], result["concurrent_naive"]
    ratio = round(predict["rps"] / baseline["rps"], 3) if baseline["rps"] else 0.0
    v2_ratio = round(v2["rps"] / predict["rps"], 3) if predict["rps"] else 0.0
    naive_ratio = round(predict["rps"] / naive["rps"], 3) if naive["rps"] else 0.0
    sequential_p99 = result["sequential"]["p99_ms"]
    cpu_predict = predict.get("server_cpu_ms_per_request")
    cpu_baseline = baseline.get("server_cpu_ms_per_request")
    cpu_v2 = v2.get("server_cpu_ms_per_request")
    cpu_naive = naive.get("server_cpu_ms_per_request")
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
        # The same rows through the Open Inference Protocol, and through the naive server.
        "v2_endpoint": f"/v2/models/{config.serve.model_name}/infer",
        "v2_rps": v2["rps"],
        "v2_p99_ms": v2["p99_ms"],
        "v2_ratio": v2_ratio,
        "naive_server": "FastAPI def route: pipeline.predict_proba(pd.DataFrame(rows)) per request",
        "naive_rps": naive["rps"],
        "naive_p99_ms": naive["p99_ms"],
        "naive_ratio": naive_ratio,
        # The same two ratios in server CPU per request (less sensitive to other load).
        "v2_cpu_ratio": cpu_ratio(cpu_v2, cpu_predict),
        "naive_cpu_ratio": cpu_ratio(cpu_predict, cpu_naive),
        # Server CPU per request: less sensitive than requests/s to other load on the machine.
        "server_cpu_ms_per_request": {
            "sequential": result["sequential"].get("server_cpu_ms_per_request"),
            "concurrent_predict": cpu_predict,
            "concurrent_baseline": cpu_baseline,
            "concurrent_v2": cpu_v2,
            "concurrent_naive": cpu_naive,
        },
        "cpu_ratio": cpu_ratio(cpu_predict, cpu_baseline),
        "goal": GOAL,
        "meets_goal": bool(
            sequential_p99 < GOAL["sequential_p99_ms_below"]
            and ratio >= GOAL["ratio_at_least"]
            and v2_ratio >= GOAL["v2_ratio_at_least"]
            and naive_ratio >= GOAL["naive_ratio_at_least"]
        ),
        "errors": sum(phase["errors"] for phase in result.values()),
        "rows_per_model_call": scored[-1]["rows_per_call"] if scored else None,
        "access_log_lines": access_lines,
        "phases": result,
        # The inference log on vs off, side by side (goal: >= 0.9, p99 within 10%).
        "inference_log_ratio": logged["ratio"],
        "inference_log": logged,
        # Bearer tokens on vs off, side by side: p50 and p99 (goal: within 5%).
        "auth_ratio": tokens,
        # Loading the model at start: skops (with its trusted-type check) vs joblib, seconds.
        "load_seconds": loading,
    }
    # The same server from model.onnx (ONNX Runtime) and from the model file (scikit-learn).
    report.update(compared)
    log.info(
        "serving: sequential p50 %.2f ms, p99 %.2f ms; %.0f req/s at concurrency %d = %.0f%% of "
        "%s (%.0f req/s); OIP infer %.0f req/s (v2_ratio %.2f); naive %.0f req/s (naive_ratio "
        "%.1f)",
        report["sequential_p50_ms"],
        sequential_p99,
        predict["rps"],
        CONCURRENCY,
        ratio * 100,
        BASELINE,
        baseline["rps"],
        v2["rps"],
        v2_ratio,
        naive["rps"],
        naive_ratio,
    )
    log.info(
        "tokens: p50 x%s, p99 x%s of the server without them; model load: skops %.3fs, joblib "
        "%.3fs",
        tokens["p50_ratio"],
        tokens["p99_ratio"],
        loading["skops"],
        loading["joblib"],
    )
    log.info(
        "inference log: %.0f%% of the throughput without it (p99 x%s), RSS +%s MiB from %d to %d "
        "requests, writer %s rows/s",
        logged["ratio"] * 100,
        logged["p99_ratio"],
        logged["memory"]["rss_growth_mib"],
        memory_requests[0],
        memory_requests[-1],
        logged["writer_rows_per_second"],
    )
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == ["naive"]:
        naive_main(sys.argv[2:])
    else:
        client_main()
