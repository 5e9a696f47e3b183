"""Shared fixtures: a scratch copy of the project whose pipeline ran once per test session."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from threadpoolctl import threadpool_limits

import candidates
import objectstore
from helpers import built_once
from mlops import data, evaluate, promote, train, validate
from mlops.config import Config, load_config
from owndata import make_project, run_stages

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# `mlflow server` without its seven GenAI job-runner processes, as `make mlflow-ui` and the image
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """As the CLI does: one OpenMP/BLAS thread, so models are byte-identical everywhere."""
    with threadpool_limits(limits=1):
        yield


# Libraries' own work, which coverage does not measure (source = mlops) but, on Python 3.11, slows
# by half or more under its trace function (measured: the drift rule tests take 145 s instead of
# 92): run untraced. No mlops code runs inside these (pandera's checks and scikit-learn's fits
# can call ours, so they stay traced). (module, class or None, function)
UNTRACED = (
    ("evidently.core.report", "Report", "run"),
    ("evidently.core.report", "Snapshot", "get_html_str"),
    ("evidently.core.report", "Snapshot", "dumps"),
    ("evidently.core.report", "Snapshot", "dict"),
    ("evidently.core.datasets", "Dataset", "from_pandas"),
    ("evidently.legacy.calculations.stattests.registry", "StatTest", "__call__"),
    ("matplotlib.figure", "Figure", "savefig"),
    ("skops.io", None, "dumps"),
    ("skops.io", None, "loads"),
    ("sklearn.pipeline", "Pipeline", "fit"),
    ("sklearn.pipeline", "Pipeline", "predict"),
    ("sklearn.pipeline", "Pipeline", "predict_proba"),
    ("sklearn.model_selection._search", "BaseSearchCV", "fit"),
)


def untraced(function: Callable) -> Callable:
    @functools.wraps(function)  # its __name__ too: scikit-learn's scorers dispatch on it
    def call(*args, **kwargs):
        tracer = sys.gettrace()
        sys.settrace(None)
        try:
            return function(*args, **kwargs)
        finally:
            sys.settrace(tracer)

    return call


@pytest.fixture(scope="session", autouse=True)
def libraries_untraced() -> Iterator[None]:
    """Under coverage only (a trace function is set): UNTRACED's functions without it."""
    if sys.gettrace() is None:
        yield
        return
    import importlib

    with pytest.MonkeyPatch.context() as patch:
        for module, owner, name in UNTRACED:
            imported = untraced(importlib.import_module)(module)
            if owner is None:
                patch.setattr(imported, name, untraced(getattr(imported, name)))
                continue
            cls = getattr(imported, owner)
            patch.setattr(cls, name, Untraced(cls.__dict__[name]))
        yield


class Untraced:
    """A class attribute (method, classmethod, or a descriptor such as scikit-learn's
    available_if) whose calls run untraced."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def __get__(self, instance: Any, owner: type | None = None) -> Callable:
        return untraced(self.raw.__get__(instance, owner))


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


# Heaviest modules first (measured with --junitxml, 2 workers): with `--dist loadfile
# --no-loadscope-reorder` (make test) a worker takes a module when it is almost idle, so the long
# ones start early instead of running last on one worker while the other has nothing left.
HEAVY_FIRST = (
    "test_faults.py",  # about 60 real drift, promote and score runs, each killed or starved
    "test_pipeline.py",
    "test_dvc_remote.py",
    "test_tracking.py",
    "test_drift.py",
    "test_own_data.py",
    "test_promote.py",
    "test_drift_schema.py",
    "test_docs.py",
    "test_drift_rules.py",
    "test_workflows.py",
    "test_stages.py",
    "test_bench_batches.py",
    "test_bench_drift.py",
    "test_train.py",
    "test_bench_schema.py",
    "test_drift_stream.py",
    "test_bench_serving.py",
    "test_own_tables.py",
    "test_score.py",
    "test_serve.py",
    "test_drift_labels.py",
    "test_serve_inference_log.py",
    "test_storage.py",
    "test_serve_metrics.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept within


def run_directory(factory: pytest.TempPathFactory) -> Path:
    """This test run's temporary directory, shared by all its xdist workers."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A read-only project built once per run: by the first xdist worker that asks for it, while
    the others wait for it, instead of once per worker."""
    return built_once(run_directory(factory) / "shared" / name, build)


@pytest.fixture(scope="session")
def candidate_fits(tmp_path_factory: pytest.TempPathFactory) -> None:
    """tests/candidates.py's fits, made once per run and copied where asked again (set up with
    `project`, where candidates are trained: a test without files makes no temp directory)."""
    candidates.FITS = run_directory(tmp_path_factory) / "fits"


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy where data → validate → train → evaluate ran once (do not modify it)."""
    cache = mutmut_cache()
    if cache is not None and cache.is_dir():
        return cache

    def build(root: Path) -> None:
        copy_project(root)
        run_stages(root, (data, validate, train, evaluate))

    root = shared(tmp_path_factory, "pipeline", build)
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

    def build(root: Path) -> None:
        shutil.copytree(pipeline_dir, root)
        run_stages(root, (promote,))

    return shared(tmp_path_factory, "promoted", build)


@pytest.fixture
def project(
    tmp_path: Path, pipeline_dir: Path, monkeypatch: pytest.MonkeyPatch, candidate_fits: None
) -> Path:
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
    return shared(
        tmp_path_factory, "churn", lambda root: run_stages(make_project(root, target="churn"))
    )


@pytest.fixture(scope="session")
def plans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same table with three classes ("basic", "plus", "pro") and no time column: each raw
    file is a period; promoted (read-only)."""

    def build(root: Path) -> None:
        run_stages(make_project(root, target="plan", dated=False))

    return shared(tmp_path_factory, "plans", build)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible server (moto_server) on loopback for this session: its endpoint."""
    with objectstore.moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty bucket of this test's own, as s3://name; AWS_ENDPOINT_URL and dummy credentials
    set for this process and the processes it starts."""
    for key, value in objectstore.environment(s3_server).items():
        monkeypatch.setenv(key, value)
    return objectstore.new_bucket(s3_server)


@pytest.fixture(scope="session")
def trained_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `git clone` of this branch's HEAD after `make train` (read-only): the model bytes Make
    makes, which DVC (`dvc repro`, a pulled remote) must make too."""
    from helpers import git_clone, run_in

    def build(root: Path) -> None:
        git_clone(ROOT, root)
        done = run_in(root, "make", "train")
        assert done.returncode == 0, f"make train: {done.stderr[-3000:]}"

    return shared(tmp_path_factory, "trained-clone", build)
