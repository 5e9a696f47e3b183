"""Fault injection (#26): SIGKILL after every write of promote, drift, score and rollback, a full
disk (ENOSPC) at their writes, two runs at once and a read-only reports/. After each: the registry,
the run log and the reports are consistent, and the next run recovers.

The faults are injected from the tests' side: tests/faults_probe.py wraps os.replace and
os.rename (the commit of every atomic write, and the version dir's rename) inside the project and
runs the CLI; production code has no hook for them.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from candidates import BETTER, train_candidate
from mlops import promote, registry, runlog
from mlops.config import load_config

PROBE = Path(__file__).with_name("faults_probe.py")
BATCH = "data/processed/current.parquet"

# Every write each command commits, in order (the probe's trace, checked below).
PROMOTE_WRITES = (
    "models/runs.pending.json",  # the journal: the run-log line, before anything else
    "models/.stage-v2-*/metadata.json",
    "models/v2",  # the version dir, renamed into place
    "models/registry.json",  # the promotion is done
    "reports/promotion.json",
    "reports/promotion.md",
    "models/runs.jsonl",
)
DRIFT_WRITES = (
    "reports/.drift-generations/g-*/drift.html",
    "reports/.drift-generations/g-*/drift.json",
    "reports/.drift-generations/g-*/drift.md",
    "reports/history/snapshots/*-ok.json",
    "reports/drift_history.html",
    "reports/history/drift.jsonl",  # the run recorded
    "reports/drift.html",  # the stable links, into .drift-current
    "reports/drift.json",
    "reports/drift.md",
    "reports/.drift-current",  # the switch
)
SCORE_WRITES = ("out/predictions.parquet", "out/rejects.parquet", "out/score.json")
ROLLBACK_WRITES = ("models/registry.json",)


class ForkServer:
    """tests/faults_probe.py's `serve`, one per test process: each probe forks a child of a
    process that has imported the commands' libraries once, instead of a new interpreter that
    imports them for seconds. The child is a real process (killed, out of disk, exit codes) run
    in the project's folder exactly as `faults_probe.py MODE AT ARGV` runs."""

    process: subprocess.Popen | None = None
    usable: bool | None = None

    @classmethod
    def call(cls, root: Path, request: dict) -> subprocess.CompletedProcess | None:
        if cls.usable is None:
            env = {**os.environ, **PROBE_ENV, "OPENBLAS_NUM_THREADS": "1"}
            cls.process = subprocess.Popen(
                [sys.executable, str(PROBE), "serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            atexit.register(cls.process.kill)
            cls.usable = json.loads(cls.process.stdout.readline() or "{}").get("ready", False)
        if not cls.usable or cls.process is None:
            return None
        out, err = root.parent / f".{root.name}.out", root.parent / f".{root.name}.err"
        request = {**request, "cwd": str(root), "out": str(out), "err": str(err)}
        cls.process.stdin.write(json.dumps(request) + "\n")
        cls.process.stdin.flush()
        status = json.loads(cls.process.stdout.readline())["status"]
        texts = [path.read_text() for path in (out, err)]
        out.unlink()
        err.unlink()
        return subprocess.CompletedProcess(request["argv"], status, *texts)


PROBE_ENV = {"DO_NOT_TRACK": "1", "PYTHONPATH": str(PROBE.parent)}


def probe(
    root: Path, mode: str, at: int, *argv: str, trace: Path | None = None
) -> subprocess.CompletedProcess:
    """`python -m mlops ARGV` in root with fault `mode` (kill, enospc, trace) at write number at."""
    extra = {} if trace is None else {"FAULT_TRACE": str(trace)}
    served = ForkServer.call(root, {"mode": mode, "at": at, "argv": list(argv), "env": extra})
    if served is not None:
        return served
    return subprocess.run(
        [sys.executable, str(PROBE), mode, str(at), *argv],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **PROBE_ENV, **extra},
        timeout=600,
    )


def traced(root: Path, *argv: str) -> list[str]:
    trace = root.parent / f"{root.name}.trace"
    done = probe(root, "trace", 0, *argv, trace=trace)
    assert done.returncode == 0, done.stderr
    return trace.read_text().splitlines()


def matches(trace: list[str], expected: tuple[str, ...]) -> bool:
    return len(trace) == len(expected) and all(
        fnmatch.fnmatch(path, pattern) for path, pattern in zip(trace, expected, strict=True)
    )


@contextlib.contextmanager
def inside(root: Path):
    previous = Path.cwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def gate_ready(tmp_path_factory, promoted_dir, candidate_fits) -> Path:
    """Production v1 and a better candidate, evaluated: the next `promote` makes v2."""
    root = tmp_path_factory.mktemp("faults") / "gate"
    shutil.copytree(promoted_dir, root)
    with inside(root):
        train_candidate(load_config(), **BETTER)
    return root


def copy(source: Path, tmp_path: Path, name: str = "p") -> Path:
    shutil.copytree(source, tmp_path / name, symlinks=True)
    return tmp_path / name


def one_line(stderr: str) -> str:
    """The one line a command printed on stderr (progress lines aside), no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if " error: " in line or "FAILED" in line]
    assert len(errors) == 1, stderr
    return errors[0]


# --- what "consistent" means --------------------------------------------------------------------


def assert_registry(root: Path, allowed: set[str]) -> str:
    """registry.json and every version verify; production is loadable and one of allowed."""
    models = root / "models"
    assert registry.consistency_problems(models) == []
    production = registry.read_registry(models)["production"]
    assert production in allowed
    return production


def assert_run_log(root: Path) -> None:
    """After a command ran: no journal left, and every promotion in the registry's history has
    its one "promoted" line in runs.jsonl."""
    models = root / "models"
    assert not (models / registry.PENDING_RUN).exists()
    runs = runlog.read_runs(models / "runs.jsonl")
    history = registry.read_registry(models)["history"]
    for item in history:
        if item["event"] in ("promoted", "forced"):
            lines = [r for r in runs if r["version"] == item["to"] and r["decision"] == "promoted"]
            assert len(lines) == 1, (item, runs)


def assert_drift_reports(root: Path) -> None:
    """drift.{html,json,md}: none, or the three of one run (one generation folder)."""
    paths = [root / "reports" / f"drift{suffix}" for suffix in (".html", ".json", ".md")]
    there = [path.exists() for path in paths]
    assert not any(there) or all(there), there
    if all(there):
        folders = {Path(os.path.realpath(path)).parent for path in paths}
        assert len(folders) == 1  # one generation: the three of one run
        assert json.loads(paths[1].read_text())["status"] in ("ok", "warning", "alert")


def assert_no_leftovers(root: Path) -> None:
    left = [p for p in root.rglob("*.tmp")]
    assert left == []
    generations = root / "reports/.drift-generations"
    if generations.exists():
        assert len(list(generations.iterdir())) == 1


def assert_score_output(out: Path) -> None:
    """score.json, when there, describes the two Parquet files beside it."""
    if not (out / "score.json").exists():
        return
    summary = json.loads((out / "score.json").read_text())
    assert len(pd.read_parquet(out / "predictions.parquet")) == summary["scored"]
    assert len(pd.read_parquet(out / "rejects.parquet")) == summary["rejected"]


# --- promote ------------------------------------------------------------------------------------


def test_the_promotion_writes_are_the_listed_ones(gate_ready, tmp_path):
    root = copy(gate_ready, tmp_path)
    assert matches(traced(root, "promote"), PROMOTE_WRITES), traced
    assert_registry(root, {"v2"})
    assert_run_log(root)


@pytest.mark.parametrize("at", range(1, len(PROMOTE_WRITES) + 1))
def test_promote_killed_after_each_write_recovers(gate_ready, tmp_path, at):
    root = copy(gate_ready, tmp_path)
    killed = probe(root, "kill", at, "promote")
    assert killed.returncode == -signal.SIGKILL
    done = at >= PROMOTE_WRITES.index("models/registry.json") + 1
    assert assert_registry(root, {"v1", "v2"}) == ("v2" if done else "v1")
    again = probe(root, "none", 0, "promote")  # the next run: finishes or repeats the job
    assert again.returncode == 0, again.stderr
    assert assert_registry(root, {"v2"}) == "v2"
    assert_run_log(root)
    assert sorted(registry.read_registry(root / "models")["versions"]) == ["v1", "v2"]
    assert [p.name for p in (root / "models").iterdir() if p.name.startswith(".")] == []
    assert_no_leftovers(root)


def test_a_kill_between_the_registry_and_the_run_log_loses_no_promotion(gate_ready, tmp_path):
    """Item 5: killed right after registry.json, any next command (here `models`, read-only)
    appends the "promoted" line, and the default release-export then finds it."""
    root = copy(gate_ready, tmp_path)
    at = PROMOTE_WRITES.index("models/registry.json") + 1
    assert probe(root, "kill", at, "promote").returncode == -signal.SIGKILL
    assert (root / "models" / registry.PENDING_RUN).exists()
    shown = probe(root, "none", 0, "models")
    assert shown.returncode == 0, shown.stderr
    assert "v2's promotion was interrupted after registry.json: finished it" in shown.stderr
    assert_run_log(root)
    exported = probe(root, "none", 0, "release-export", "dist")
    assert exported.returncode == 0, exported.stderr
    assert "release bundle model-v2 written to dist" in exported.stderr


@pytest.mark.parametrize("at", range(1, len(PROMOTE_WRITES) + 1))
def test_promote_on_a_full_disk(gate_ready, tmp_path, at):
    """ENOSPC at each write: before registry.json, one line, exit 2, production unchanged; after
    it, the promotion stands (exit 0, a warning) and the next command completes the run log."""
    root = copy(gate_ready, tmp_path)
    before = (root / "models/registry.json").read_bytes()
    full = probe(root, "enospc", at, "promote")
    assert "Traceback" not in full.stderr
    if at <= PROMOTE_WRITES.index("models/registry.json") + 1:
        assert full.returncode == 2, full.stderr
        line = one_line(full.stderr)
        assert line.startswith("[promote] error: ")
        assert "no space left on the device" in line
        assert (root / "models/registry.json").read_bytes() == before
        assert assert_registry(root, {"v1"}) == "v1"
    else:
        assert full.returncode == 0, full.stderr
        assert "promoted v2, but " in full.stderr
        assert "the promotion stands" in full.stderr
        assert assert_registry(root, {"v2"}) == "v2"
    assert probe(root, "none", 0, "runs").returncode == 0  # the next command
    assert_run_log(root)
    again = probe(root, "none", 0, "promote")
    assert again.returncode == 0, again.stderr
    assert assert_registry(root, {"v2"}) == "v2"
    assert_run_log(root)
    assert_no_leftovers(root)


def test_two_promotions_at_once(gate_ready, tmp_path):
    root = copy(gate_ready, tmp_path)
    command = [sys.executable, "-m", "mlops", "promote"]
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    runs = [
        subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    for run in runs:
        run.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, err in results:
        assert "Traceback" not in err
        if code == 2:
            assert "run it again" in one_line(err)
    assert assert_registry(root, {"v2"}) == "v2"
    assert sorted(registry.read_registry(root / "models")["versions"]) == ["v1", "v2"]
    assert_run_log(root)


# --- drift ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drifted(tmp_path_factory, promoted_dir) -> Path:
    """Production v1 and the reports and history of one drift run."""
    root = copy(promoted_dir, tmp_path_factory.mktemp("faults"), "drifted")
    assert probe(root, "none", 0, "drift").returncode == 0
    return root


def test_drift_killed_after_each_write_never_mixes_its_reports(promoted_dir, tmp_path):
    """One project killed after write 1, then after write 2, …: each run starts from what the
    killed one left; the reports are never a mix, and a last run finishes clean."""
    root = copy(promoted_dir, tmp_path)
    assert matches(traced(copy(promoted_dir, tmp_path, "t"), "drift"), DRIFT_WRITES)
    for at in range(1, len(DRIFT_WRITES) + 1):
        killed = probe(root, "kill", at, "drift")
        assert killed.returncode == -signal.SIGKILL, (at, killed.stderr)
        assert_drift_reports(root)
        assert_registry(root, {"v1"})
    done = probe(root, "none", 0, "drift")
    assert done.returncode == 0, done.stderr
    assert_drift_reports(root)
    assert (root / "reports/drift.json").exists()
    assert_no_leftovers(root)


@pytest.mark.parametrize(
    "write",
    [
        "reports/.drift-generations/g-*/drift.html",
        "reports/.drift-generations/g-*/drift.md",
        "reports/.drift-current",
        "reports/history/drift.jsonl",
    ],
)
def test_drift_on_a_full_disk_is_one_line(drifted, tmp_path, write):
    """Wherever the disk fills, the run is in neither the reports nor the history."""
    root = copy(drifted, tmp_path)
    names = ("drift.json", "drift.md", "history/drift.jsonl")
    before = {p: (root / "reports" / p).read_bytes() for p in names}
    at = DRIFT_WRITES.index(write) + 1
    full = probe(root, "enospc", at, "drift")
    assert full.returncode == 2, full.stderr
    line = one_line(full.stderr)
    assert line.startswith("[drift] error: ")
    assert "no space left on the device" in line
    assert_drift_reports(root)
    assert {p: (root / "reports" / p).read_bytes() for p in before} == before
    assert not list((root / "reports/.drift-generations").glob("g-*/drift.md"))[1:]
    assert probe(root, "none", 0, "drift").returncode == 0
    assert_drift_reports(root)
    assert_no_leftovers(root)


def test_two_drift_runs_at_once(promoted_dir, tmp_path):
    root = copy(promoted_dir, tmp_path)
    command = [sys.executable, "-m", "mlops", "drift"]
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    runs = [subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.DEVNULL) for _ in "ab"]
    assert [run.wait(timeout=600) for run in runs] == [0, 0]
    assert_drift_reports(root)
    assert_no_leftovers(root)
    history = (root / "reports/history/drift.jsonl").read_text().splitlines()
    assert len(history) == 2  # both recorded: neither rewrote the log over the other


def test_drift_on_a_real_full_disk(promoted_dir, tmp_path):
    """A 1 MB tmpfs mounted on reports/ (root only): the 2 MB drift.html does not fit."""
    root = copy(promoted_dir, tmp_path)
    reports = root / "reports"
    shutil.rmtree(reports)
    reports.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(reports)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the injected ENOSPC tests cover it")
    try:
        full = probe(root, "none", 0, "drift")
        assert full.returncode == 2, full.stderr
        assert "no space left on the device" in one_line(full.stderr)
        assert_drift_reports(root)
        assert list(reports.rglob("*.tmp")) == []
        generations = reports / ".drift-generations"
        assert not generations.exists() or len(list(generations.iterdir())) <= 1
    finally:
        subprocess.run(["umount", str(reports)], check=False)


# --- score and rollback -------------------------------------------------------------------------


@pytest.mark.parametrize("at", range(1, len(SCORE_WRITES) + 1))
def test_score_killed_after_each_write(promoted_dir, tmp_path, at):
    root = copy(promoted_dir, tmp_path)
    argv = ("score", "--current", BATCH, "--out", "out")
    assert probe(root, "none", 0, *argv).returncode == 0  # an earlier run's output
    assert matches(traced(root, *argv), SCORE_WRITES)
    killed = probe(root, "kill", at, *argv)
    assert killed.returncode == -signal.SIGKILL
    assert_score_output(root / "out")
    assert (root / "out/score.json").exists() == (at == len(SCORE_WRITES))
    again = probe(root, "none", 0, *argv)
    assert again.returncode == 0, again.stderr
    assert_score_output(root / "out")
    assert_no_leftovers(root)


@pytest.mark.parametrize("at", range(1, len(SCORE_WRITES) + 1))
def test_score_on_a_full_disk_is_one_line(promoted_dir, tmp_path, at):
    root = copy(promoted_dir, tmp_path)
    full = probe(root, "enospc", at, "score", "--current", BATCH, "--out", "out")
    assert full.returncode == 2, full.stderr
    assert "no space left on the device" in one_line(full.stderr)
    assert_score_output(root / "out")
    assert not (root / "out/score.json").exists()
    assert_no_leftovers(root)


@pytest.fixture(scope="module")
def two_versions(gate_ready, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "two"
    shutil.copytree(gate_ready, root)
    with inside(root):
        promote.run(load_config())
    return root


@pytest.mark.parametrize("mode", ["kill", "enospc"])
def test_rollback_killed_or_on_a_full_disk(two_versions, tmp_path, mode):
    root = copy(two_versions, tmp_path)
    assert matches(traced(copy(two_versions, tmp_path, "t"), "rollback"), ROLLBACK_WRITES)
    faulted = probe(root, mode, 1, "rollback", "--reason", "fault test")
    if mode == "kill":
        assert faulted.returncode == -signal.SIGKILL
        assert assert_registry(root, {"v1"}) == "v1"  # the one write is the rollback
    else:
        assert faulted.returncode == 2, faulted.stderr
        assert "no space left on the device" in one_line(faulted.stderr)
        assert assert_registry(root, {"v2"}) == "v2"
        again = probe(root, "none", 0, "rollback", "--reason", "fault test")
        assert again.returncode == 0, again.stderr
        assert assert_registry(root, {"v1"}) == "v1"
    assert_run_log(root)
    assert_no_leftovers(root)


# --- a read-only reports/ ---------------------------------------------------------------------


def unprivileged() -> tuple[str, ...]:
    """A command prefix: as this user, but without root's power to ignore permission bits."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits would not apply")
    return (setpriv, "--bounding-set=-all", "--inh-caps=-all")


@pytest.mark.parametrize(
    "argv", [("models",), ("runs",), ("score", "--current", BATCH, "--out", "elsewhere")]
)
def test_read_only_reports_do_not_block_read_only_commands(promoted_dir, tmp_path, argv):
    """Item 8: run.log cannot be appended: one warning, the command works, exit 0."""
    root = copy(promoted_dir, tmp_path)
    (root / "reports/run.log").write_text("")
    (root / "reports/run.log").chmod(0o444)
    (root / "reports").chmod(0o555)
    try:
        done = subprocess.run(
            [*unprivileged(), sys.executable, "-m", "mlops", *argv],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "DO_NOT_TRACK": "1"},
        )
    finally:
        (root / "reports").chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning: reports/run.log" in line]
    assert len(warnings) == 1, done.stderr
    assert "going on without the run log" in warnings[0]
    assert (root / "reports/run.log").read_text() == ""
