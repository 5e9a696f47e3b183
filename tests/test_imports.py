"""Heavy imports: GC paused and frozen around them; background imports that a later one joins."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from mlops.imports import heavy_imports, import_in_background


def test_heavy_imports_freeze_what_they_load_and_restore_the_gc():
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with heavy_imports():
        assert not gc.isenabled()
        kept = [{"cycle": None} for _ in range(100)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(kept)
    with heavy_imports():
        with heavy_imports():
            pass
        assert not gc.isenabled(), "an inner block must not switch the GC back on"
    assert gc.isenabled()


def test_heavy_imports_restore_a_disabled_gc_as_disabled():
    gc.disable()
    try:
        with heavy_imports():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_background_import_is_joined_by_the_next_import():
    """A fresh interpreter: the module is loaded on the thread, then imported as usual."""
    done = run_python(
        "import sys, gc; from mlops.imports import import_in_background\n"
        "thread = import_in_background('json.tool', 'email.mime.text')\n"
        "import json.tool, email.mime.text\n"
        "thread.join()\n"
        "assert 'email.mime.text' in sys.modules and gc.isenabled()\n"
        "print('ok', thread.name)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok import json.tool, email.mime.text"
    assert done.stderr == ""


def test_a_failed_background_import_is_raised_by_the_next_import_only():
    thread = import_in_background("mlops_no_such_module")
    thread.join()
    assert gc.isenabled()
    done = run_python(
        "from mlops.imports import import_in_background\n"
        "import_in_background('mlops_no_such_module').join()\n"
        "import mlops_no_such_module"
    )
    assert done.returncode == 1
    assert done.stderr.count("ModuleNotFoundError") == 1
    assert "Exception in thread" not in done.stderr


def test_a_failed_command_does_not_wait_for_a_background_import(project):
    """`python -m mlops` exits with its code and one line as soon as a command fails, even
    while the import it started on another thread (here: one that never ends) is running."""
    gate = project / "gate_module.py"
    gate.write_text("import threading\nthreading.Event().wait()\n")  # an import that never ends
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys; from mlops import imports; "
            "imports.import_in_background('gate_module'); "
            "sys.argv = ['mlops', 'drift', '--current', 'nothere.csv']; "
            "runpy.run_module('mlops', run_name='__main__')",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,  # waiting for the import would never end
        env={**os.environ, "PYTHONPATH": str(project)},
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == "[drift] error: nothere.csv: no such file or folder"


def loaded_after(code: str) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after running code."""
    done = run_python(
        f"{code}\nimport sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_only_drift_imports_evidently():
    stages = "mlops.cli, mlops.data, mlops.validate, mlops.train, mlops.evaluate, mlops.promote"
    assert "evidently" not in loaded_after(f"import {stages}")
    assert "sklearn" not in loaded_after("import mlops.cli, mlops.config, mlops.validate")


def test_only_evaluate_draws_with_matplotlib():
    """promote imports evaluate's scoring; the plots' matplotlib (1.5 s) is evaluate.run's."""
    assert "matplotlib" not in loaded_after("import mlops.cli, mlops.evaluate, mlops.promote")


def test_validating_the_config_imports_no_scikit_learn():
    """The estimator table lives in mlops.estimators (static names); until it exists, skip."""
    pytest.importorskip("mlops.estimators")
    from conftest import ROOT

    params = str(ROOT / "params.yaml")
    loaded = loaded_after(f"from mlops.config import load_config; load_config({params!r})")
    assert "sklearn" not in loaded


def test_tracking_off_imports_no_mlflow(project):
    """evaluate, promote and a rollback with tracking off (no MLFLOW_TRACKING_URI) load nothing
    of mlflow: `make all` without tracking pays nothing for it."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mlops import cli\n"
            "assert cli.main(['stages', '--stamps', '.make', 'evaluate', 'promote']) == 0\n"
            "assert cli.main(['rollback']) == 2\n"  # no earlier version: the hook is not reached
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(done.stdout.split())
    assert "mlops" in loaded
    assert "mlflow" not in loaded
    assert not (project / "mlruns").exists()
