"""Shared fixtures: a scratch copy of the project whose pipeline ran once per test session."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from mlops import data, evaluate, promote, train, validate
from mlops.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """As the CLI does: one OpenMP/BLAS thread, so models are byte-identical everywhere."""
    with threadpool_limits(limits=1):
        yield


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop before any test when .venv is older than its lock: the tests' `make` runs (VENV is
    this .venv, shared by every copy and every worker) would reinstall it from a temp copy."""
    installed = ROOT / ".venv" / ".installed"
    if not installed.is_file():
        return  # no venv made by `make venv` (e.g. a mutmut copy): nothing shared to protect
    stale = [
        name
        for name in ("pyproject.toml", "requirements-dev.lock")
        if (ROOT / name).stat().st_mtime > installed.stat().st_mtime
    ]
    if stale:
        pytest.exit(f"{', '.join(stale)} newer than .venv/.installed: run `make venv` first", 2)


def pytest_terminal_summary(terminalreporter) -> None:
    """tests/test_docs.py's counts and skips per docs session (its "docs" user property, which
    also reaches the main process from an xdist worker)."""
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "docs"
    ]
    if lines:
        terminalreporter.write_sep("-", "executable docs")
        for line in sorted(lines):
            terminalreporter.write_line(line)


def copy_project(destination: Path) -> Path:
    """params.yaml and data/raw copied into destination, the layout the stages expect."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", destination / "params.yaml")
    shutil.copytree(ROOT / "data" / "raw", destination / "data" / "raw")
    return destination


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy where data → validate → train → evaluate ran once (do not modify it)."""
    cache = mutmut_cache()
    if cache is not None and cache.is_dir():
        return cache
    root = copy_project(tmp_path_factory.mktemp("pipeline"))
    previous = Path.cwd()
    os.chdir(root)
    try:
        config = load_config()
        for stage in (data, validate, train, evaluate):
            stage.run(config)
    finally:
        os.chdir(previous)
    if cache is not None:  # first complete build wins; a concurrent worker's copy is dropped
        staged = cache.with_name(f"{cache.name}-{os.getpid()}")
        shutil.copytree(root, staged)
        with contextlib.suppress(OSError):
            staged.rename(cache)
    return root


def mutmut_cache() -> Path | None:
    """Under `make mutate`, where the pipeline fixture is kept for every mutant's test session.

    Each mutant runs its tests in a new session; re-running the pipeline there costs more than
    most mutants' tests. The fixture's stages run unmutated (built once, keyed by the source),
    and a mutant is still killed by the tests that call its function.
    """
    if not os.environ.get("MUTANT_UNDER_TEST"):
        return None
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        digest.update(path.read_bytes())
    return ROOT / f".pipeline-cache-{digest.hexdigest()[:12]}"


@pytest.fixture(scope="session")
def promoted_dir(tmp_path_factory: pytest.TempPathFactory, pipeline_dir: Path) -> Path:
    """A copy of pipeline_dir whose candidate went through the gate: production v1 (read-only)."""
    root = tmp_path_factory.mktemp("promoted") / "project"
    shutil.copytree(pipeline_dir, root)
    previous = Path.cwd()
    os.chdir(root)
    try:
        promote.run(load_config())
    finally:
        os.chdir(previous)
    return root


@pytest.fixture
def project(tmp_path: Path, pipeline_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of pipeline_dir, made the working directory, free to modify."""
    root = tmp_path / "project"
    shutil.copytree(pipeline_dir, root)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project copy with raw data only, made the working directory."""
    root = copy_project(tmp_path / "fresh")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def config(project: Path) -> Config:
    return load_config(project / "params.yaml")


@pytest.fixture(scope="session")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/owndata.py's table, binary "no"/"yes", monthly periods from a timestamp; promoted
    (read-only: copy it with owndata.private_copy to change anything)."""
    from owndata import make_project, run_stages

    root = make_project(tmp_path_factory.mktemp("churn") / "project", target="churn")
    run_stages(root)
    return root


@pytest.fixture(scope="session")
def plans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same table with three classes ("basic", "plus", "pro") and no time column: each raw
    file is a period; promoted (read-only)."""
    from owndata import make_project, run_stages

    root = make_project(tmp_path_factory.mktemp("plans") / "project", target="plan", dated=False)
    run_stages(root)
    return root
