"""Pipeline speed: `make all` from clean and no-op against one process, and training at scale.

The reference for `make all` is ONE_PROCESS: one fresh interpreter calling the same stage
functions in order (the same work with the same libraries), without Make, the CLI, stamps or
logs. `ratio` = clean `make all` / that, so it measures what the orchestration costs: the
interpreters started, the imports paid again, the params stamps. The goal is at most 1.5.
`mlflow_added_seconds`: clean `make all` with MLFLOW_TRACKING_URI on a local `mlflow server`
minus without (medians of alternated runs); the goal is under 3 s.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from mlops.bench import OWN_PEAK_MIB
from mlops.config import Config

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]
PROJECT_FILES = ("Makefile", "stages.mk", "params.yaml", "pyproject.toml", "requirements-dev.lock")
TRAIN_ROWS = (100_000, 1_000_000)
PAIRS = 3  # alternating (make all, one process) pairs; medians compared, as the drift bench does
GOAL_RATIO = 1.5
GOAL_MLFLOW_SECONDS = 3.0  # tracking to a local `mlflow server`: added seconds per make all
ONE_PROCESS = (
    "from threadpoolctl import threadpool_limits\n"
    "from mlops import data, drift, evaluate, promote, train, validate\n"
    "from mlops.config import load_config\n"
    "config = load_config()\n"
    "with threadpool_limits(limits=1):\n"
    "    for stage in (data, validate, train, evaluate, promote, drift):\n"
    "        stage.run(config)\n"
)
# Runs one CLI command in a fresh interpreter and prints its peak resident memory in MiB.
CHILD = (
    "import sys; from mlops import cli; code = cli.main(sys.argv[1:]); "
    f"print({OWN_PEAK_MIB}); sys.exit(code)"
)


def copy_project(destination: Path) -> Path:
    """The files `make all` needs, with their modification times, so Make reuses the venv."""
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, destination / name)
    shutil.copytree(ROOT / "src", destination / "src")
    shutil.copytree(ROOT / "data" / "raw", destination / "data" / "raw")
    return destination


def timed(argv: list[str], root: Path, env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every process it started) of one command run in root."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        argv,
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1", **(env or {})},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime
    return round(wall, 2), round(used, 2)


def timed_make(root: Path, target: str = "all") -> float:
    return timed(["make", target, f"VENV={ROOT / '.venv'}"], root)[0]


def compare(pairs: int = PAIRS) -> dict:
    """Clean `make all` and the one-process reference, alternated `pairs` times, each in a new copy.

    On a shared machine one command's time drifts by ±20% from minute to minute; alternating and
    comparing medians keeps the ratio far steadier than either time.
    """
    make_runs: list[tuple[float, float]] = []
    reference_runs: list[tuple[float, float]] = []
    noop = None
    for _ in range(pairs):
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            project = copy_project(Path(tmp))
            make_runs.append(timed(["make", "all", f"VENV={ROOT / '.venv'}"], project))
            noop = timed_make(project) if noop is None else noop
            metrics = json.loads((project / "reports" / "metrics.json").read_text())
        with tempfile.TemporaryDirectory(prefix="bench-one-process-") as tmp:
            reference = copy_project(Path(tmp))
            reference_runs.append(timed([sys.executable, "-c", ONE_PROCESS], reference))
    make_all, make_cpu = (statistics.median(run[i] for run in make_runs) for i in (0, 1))
    one_process, one_cpu = (statistics.median(run[i] for run in reference_runs) for i in (0, 1))
    ratio = round(make_all / one_process, 3)
    return {
        "pairs": pairs,
        # medians over the pairs; every run is listed under "runs"
        "make_all_clean_seconds": make_all,
        "make_all_noop_seconds": noop,
        "one_process_seconds": one_process,
        "ratio": ratio,
        "make_all_clean_cpu_seconds": make_cpu,
        "one_process_cpu_seconds": one_cpu,
        "cpu_ratio": round(make_cpu / one_cpu, 3),
        "goal_ratio": GOAL_RATIO,
        "within_goal": ratio <= GOAL_RATIO,
        "runs": {
            "make_all_clean_seconds": [run[0] for run in make_runs],
            "one_process_seconds": [run[0] for run in reference_runs],
        },
        "accuracy": metrics["accuracy"],
        "roc_auc": metrics["roc_auc"],
    }


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` on loopback (SQLite store and artifacts in root); yields its URI."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--workers", "1"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    with (root / "server.log").open("wb") as output:
        server = subprocess.Popen(
            command, cwd=root, stdout=output, stderr=output, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {root}/server.log") from None
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def logged_runs(uri: str, experiments: list[str]) -> list[int]:
    """How many runs each experiment holds on the server at uri."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    counts = []
    for name in experiments:
        found = client.get_experiment_by_name(name)
        counts.append(0 if found is None else len(client.search_runs([found.experiment_id])))
    return counts


def tracked_copy(destination: Path, name: str) -> Path:
    """A project copy logging to an experiment and registered model of its own: each tracked
    run logs everything (a candidate already in MLflow would skip its model)."""
    project = copy_project(destination)
    params = project / "params.yaml"
    text = params.read_text(encoding="utf-8")
    for key in ("experiment", "registered_model"):
        text = text.replace(f"  {key}: mlops ", f"  {key}: {name} ")
    params.write_text(text, encoding="utf-8")
    return project


def tracking_cost(pairs: int = PAIRS) -> dict:
    """Clean `make all` without tracking and with MLFLOW_TRACKING_URI on a local `mlflow server`,
    alternated `pairs` times; `mlflow_added_seconds` = the difference of the medians."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        return {
            "mlflow_added_seconds": None,
            "note": "mlflow not installed (pip install .[mlflow])",
        }
    plain: list[tuple[float, float]] = []
    tracked: list[tuple[float, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-mlflow-") as store,
        mlflow_server(Path(store)) as uri,
    ):
        names = [f"bench-{number}" for number in range(pairs)]
        for name in names:
            for runs, env in ((plain, None), (tracked, {"MLFLOW_TRACKING_URI": uri})):
                with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
                    project = tracked_copy(Path(tmp), name) if env else copy_project(Path(tmp))
                    argv = ["make", "all", f"VENV={ROOT / '.venv'}"]
                    runs.append(timed(argv, project, env))
        # a tracked run that only warned would make tracking look free
        logged = logged_runs(uri, [*names, *(f"{name}-monitoring" for name in names)])
    if logged != [1] * (2 * pairs):
        raise RuntimeError(f"runs per experiment after the tracked make all: {logged}")

    def added(i: int) -> float:
        return round(
            statistics.median(r[i] for r in tracked) - statistics.median(r[i] for r in plain), 2
        )

    return {
        "mlflow_added_seconds": added(0),
        # CPU seconds of make all's processes (not the server's): steadier on a shared machine
        "mlflow_added_cpu_seconds": added(1),
        "mlflow_goal_seconds": GOAL_MLFLOW_SECONDS,
        "mlflow_within_goal": added(0) < GOAL_MLFLOW_SECONDS,
        "mlflow_runs": {
            "untracked_seconds": [r[0] for r in plain],
            "tracked_seconds": [r[0] for r in tracked],
            "untracked_cpu_seconds": [r[1] for r in plain],
            "tracked_cpu_seconds": [r[1] for r in tracked],
        },
    }


def timed_command(root: Path, *argv: str) -> dict:
    """Wall time and peak memory of `python -m mlops ARGV` run in root."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], cwd=root, check=True, capture_output=True, text=True
    )
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mib": round(float(result.stdout.split()[-1]), 1),
    }


def train_at_scale(root: Path, rows: int) -> dict:
    """Generate `rows` synthetic rows (train + test) and time training on them."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = "synthetic"
    params["synthetic"]["rows"] = rows
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    timed_command(root, "data")
    return {
        "rows": rows,
        "train_rows": int(rows * (1 - params["data"]["test_size"])),
        **timed_command(root, "train"),
    }


def measure(config: Config, pairs: int = PAIRS, train_rows: tuple[int, ...] = TRAIN_ROWS) -> dict:
    """`make all` (clean and no-op) against one process, and training on synthetic data at scale."""
    result = {**compare(pairs), **tracking_cost(pairs), "training": []}
    log.info(
        "make all: %.1fs from clean (one process %.1fs, ratio %.2f), %.2fs no-op",
        result["make_all_clean_seconds"],
        result["one_process_seconds"],
        result["ratio"],
        result["make_all_noop_seconds"],
    )
    log.info(
        "MLflow tracking to a local server adds %ss to make all", result["mlflow_added_seconds"]
    )
    for rows in train_rows:
        with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
            result["training"].append(train_at_scale(Path(tmp), rows))
        log.info("train on %d rows: %s", rows, result["training"][-1])
    return result
