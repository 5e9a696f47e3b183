"""Pipeline speed: `make all` from clean and no-op, and training at 100k and 1M rows."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mlops.config import Config

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]
PROJECT_FILES = ("Makefile", "params.yaml", "pyproject.toml", "requirements-dev.lock")
TRAIN_ROWS = (100_000, 1_000_000)
# Runs one CLI command in a fresh interpreter and prints its peak resident memory in MiB.
CHILD = (
    "import resource, sys; from mlops import cli; code = cli.main(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(code)"
)


def copy_project(destination: Path) -> Path:
    """The files `make all` needs, with their modification times, so Make reuses the venv."""
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, destination / name)
    shutil.copytree(ROOT / "src", destination / "src")
    shutil.copytree(ROOT / "data" / "raw", destination / "data" / "raw")
    return destination


def timed_make(root: Path, target: str = "all") -> float:
    started = time.perf_counter()
    subprocess.run(
        ["make", target, f"VENV={ROOT / '.venv'}"],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return round(time.perf_counter() - started, 2)


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


def measure(config: Config) -> dict:
    """Wall times of the embedded pipeline and of training on synthetic data at scale."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        project = copy_project(Path(tmp))
        full = timed_make(project)
        noop = timed_make(project)
        metrics = json.loads((project / "reports" / "metrics.json").read_text())
    result = {
        "make_all_clean_seconds": full,
        "make_all_noop_seconds": noop,
        "accuracy": metrics["accuracy"],
        "roc_auc": metrics["roc_auc"],
        "training": [],
    }
    log.info("make all: %.1fs from clean, %.2fs no-op", full, noop)
    for rows in TRAIN_ROWS:
        with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
            result["training"].append(train_at_scale(Path(tmp), rows))
        log.info("train on %d rows: %s", rows, result["training"][-1])
    return result
