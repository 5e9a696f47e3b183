"""End to end: `make all` in a temporary copy of the repository, as a user runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = f"VENV={ROOT / '.venv'}"
FILES = ("Makefile", "stages.mk", "params.yaml", "pyproject.toml", "requirements-dev.lock")


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


def claimed_files(result: subprocess.CompletedProcess) -> list[str]:
    """The files the final `pipeline up to date: a, b, c` line names."""
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("==> pipeline up to date: "), last
    return last.removeprefix("==> pipeline up to date: ").split(", ")


STAGES = ["data", "validate", "train", "evaluate", "promote", "drift"]
# Latest stage first: each case leaves the project up to date for the next one. The last stage,
# the gate's own rule, a stage's secondary output and the first stage, for real (about 15 s each);
# tests/test_stages.py reads every stamp rule's prerequisites from make's database.
OUTPUTS = [
    ("reports/drift.html", ["drift"]),
    ("reports/promotion.json", ["promote", "drift"]),
    ("reports/roc_curve.png", ["evaluate", "promote", "drift"]),
    ("data/processed/current.parquet", STAGES),
]


def run_log_stages(repo: Path, since: int) -> list[tuple[str, str]]:
    """(process id, stage) of every reports/run.log line after the first `since` lines."""
    lines = (repo / "reports/run.log").read_text().splitlines()[since:]
    return re.findall(r" pid=(\d+) (\S+) ", "\n".join(lines))


@pytest.mark.parametrize(("output", "expected"), OUTPUTS, ids=[name for name, _ in OUTPUTS])
def test_a_deleted_output_reruns_its_stage_and_what_follows(repo, output, expected):
    registry = (repo / "models/registry.json").read_bytes()
    logged = len((repo / "reports/run.log").read_text().splitlines())
    (repo / output).unlink()
    result = make(repo, "all")
    assert stages_run(result) == expected
    # the stale stages ran in one process (imports paid once), each with its own log lines
    ran = run_log_stages(repo, logged)
    assert len({pid for pid, _ in ran}) == 1
    assert set(expected) <= {stage for _, stage in ran}
    assert (repo / output).is_file()
    assert all((repo / name).is_file() for name in claimed_files(result))
    assert (repo / "models/registry.json").read_bytes() == registry  # nothing re-promoted
    assert stages_run(make(repo, "all")) == []


def test_a_missing_production_version_is_an_integrity_error(repo):
    """Registry files are history: no stage runs, nothing is retrained, the error says why."""
    version = repo / "models/v1"
    aside = repo / "v1.aside"
    version.rename(aside)
    try:
        result = make(repo, "all", check=False)
        assert result.returncode != 0
        assert stages_run(result) == []
        assert "production v1 has no models/v1/model.skops" in result.stderr
        assert "never re-made" in result.stderr
        assert not version.exists()
    finally:
        aside.rename(version)
    assert stages_run(make(repo, "all")) == []


def test_a_raised_bar_fails_make_all_and_keeps_the_registry(repo, tmp_path):
    """A params change re-runs only the stages reading that section; the gate holds production
    to the raised bar: rejected, `make all` fails, the registry is byte-identical. (In a copy of
    the repository with its mtimes, so Make sees what it saw there and `repo` stays as it is.)"""
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, symlinks=True)
    params = copy / "params.yaml"
    original = params.read_text()
    registry = (copy / "models/registry.json").read_bytes()
    params.write_text(original.replace("min_accuracy: 0.78", "min_accuracy: 0.99"))
    result = make(copy, "all", check=False)
    assert result.returncode != 0
    # the rejection is recorded; drift still reports on production and the new data
    assert stages_run(result) == ["promote", "drift"]
    assert "production v1 no longer meets min_accuracy 0.99" in result.stderr
    assert "make all: the gate rejected the candidate" in result.stderr
    assert "pipeline up to date" not in result.stdout
    again = make(copy, "all", check=False)
    assert again.returncode != 0  # still failing, nothing re-run
    assert stages_run(again) == []
    assert (copy / "models/registry.json").read_bytes() == registry
    params.write_text(original)  # the bar back: only the stages reading it run again
    assert stages_run(make(copy, "all")) == ["promote", "drift"]


def test_the_bench_reference_does_the_same_work_in_one_process(repo, tmp_path):
    """make bench compares `make all` with ONE_PROCESS: the same stages, so the same model."""
    from mlops.bench import pipeline

    reference = pipeline.copy_project(tmp_path)
    pipeline.timed([sys.executable, "-c", pipeline.ONE_PROCESS], reference)
    for name in ("models/candidate/metadata.json", "reports/metrics.json"):
        made, one = (json.loads((root / name).read_text()) for root in (repo, reference))
        assert one["model_sha256"] == made["model_sha256"], name
    for name in ("reports/drift.json", "reports/promotion.md", "models/registry.json"):
        assert (reference / name).is_file(), name


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
        "data-remote",
        "dvc-yaml",
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


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_clean_and_clean_all_remove_no_tracked_file(tmp_path):
    """In a git copy of the working tree: every kind of output goes, every tracked file stays."""
    root = tmp_path / "copy"
    for name in git(ROOT, "ls-files", "-z").split("\0"):
        if name and (ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "tracked files")
    outputs = [
        ".make/drift.ok",
        "data/processed/train.parquet",
        "models/candidate/model.skops",
        *(f"reports/{name}" for name in ("metrics.json", "promotion.md", "drift.html", "run.log")),
        "reports/roc_curve.png",
    ]
    history = ["models/v1/model.skops", "models/registry.json", "reports/history/drift.jsonl"]
    for name in [*outputs, *history, "venv/bin/python"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    venv = f"VENV={root / 'venv'}"
    for target, gone in (("clean", outputs), ("clean-all", [*history, "venv"])):
        subprocess.run(["make", target, venv], cwd=root, capture_output=True, check=True)
        assert [name for name in gone if (root / name).exists()] == [], target
        status = git(root, "status", "--porcelain", "--untracked-files=no")
        assert status == "", f"make {target} touched tracked files:\n{status}"
    assert (root / "models/README.md").is_file()
