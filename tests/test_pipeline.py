"""End to end: `make all` in a temporary copy of the repository, as a user runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = f"VENV={ROOT / '.venv'}"
FILES = ("Makefile", "params.yaml", "pyproject.toml", "requirements-dev.lock")


def make(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", *args, VENV], cwd=root, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"make {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def stages_run(result: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"^==> (\w[\w-]*)$", result.stdout, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository (same mtimes, so Make reuses the venv) after one `make all`."""
    root = tmp_path_factory.mktemp("repo")
    for name in FILES:
        shutil.copy2(ROOT / name, root / name)
    shutil.copytree(ROOT / "src", root / "src")
    shutil.copytree(ROOT / "data" / "raw", root / "data" / "raw")
    result = make(root, "all")
    assert stages_run(result) == ["data", "validate", "train", "evaluate", "promote", "drift"]
    return root


def test_make_all_writes_every_artifact(repo):
    for name in (
        "validation.json",
        "metrics.json",
        "promotion.json",
        "promotion.md",
        "drift.json",
        "drift.md",
        "drift.html",
        "run.log",
        "confusion_matrix.png",
        "roc_curve.png",
        "precision_recall.png",
        "feature_importance.png",
    ):
        assert (repo / "reports" / name).is_file(), name
    assert json.loads((repo / "reports/validation.json").read_text())["status"] == "passed"
    assert json.loads((repo / "reports/metrics.json").read_text())["status"] == "success"
    assert json.loads((repo / "reports/promotion.json").read_text())["decision"] == "promoted"
    assert json.loads((repo / "models/registry.json").read_text())["production"] == "v1"
    assert json.loads((repo / "reports/drift.json").read_text())["dataset_drift"] is False


def test_second_make_all_runs_nothing(repo):
    result = make(repo, "all")
    assert stages_run(result) == []
    assert "mlops" not in result.stdout + result.stderr


def test_params_change_reruns_only_downstream(repo):
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("min_recall: null", "min_recall: 0.5"))
    assert stages_run(make(repo, "all")) == ["promote", "drift"]
    assert stages_run(make(repo, "all")) == []


def test_help_lists_contract_targets(repo):
    listed = make(repo, "help").stdout
    for target in (
        "all",
        "test",
        "lint",
        "help",
        "data",
        "validate",
        "train",
        "evaluate",
        "bench",
        "promote",
        "rollback",
        "drift",
        "drift-demo",
        "serve",
        "models",
        "runs",
    ):
        assert re.search(rf"^\s+(\x1b\[36m)?{target}\b", listed, flags=re.MULTILINE), target


def test_bad_params_stops_make_with_exit_2(repo):
    params = repo / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("min_accuracy: 0.78", "min_accuracy: 7.8"))
    try:
        result = make(repo, "all", check=False)
    finally:
        params.write_text(original)
    assert result.returncode != 0
    assert "params.yaml: promotion.min_accuracy" in result.stderr
    assert "Traceback" not in result.stderr
