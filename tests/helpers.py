"""Small helpers shared by tests: run the CLI in-process, rewrite params.yaml, copy a project
ready for Make."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mlops import cli

ROOT = Path(__file__).resolve().parents[1]


def built_once(root: Path, build: Callable[[Path], None]) -> Path:
    """root, made by build(root) unless a process of this test run already made it: the first
    to ask builds it (a file lock) while the others wait, then all of them read it."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f"{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root.parent / f"{root.name}.built").is_file():
            shutil.rmtree(root, ignore_errors=True)
            build(root)
            (root.parent / f"{root.name}.built").touch()
    return root


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Run `python -m mlops ARGV` in-process; return (exit code, stderr)."""
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def edit_params(path: Path, edit) -> None:
    """Load params.yaml, let edit(mapping) change it in place, write it back."""
    params: dict[str, Any] = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_module(
    project: Path, *argv: str, env: dict | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """`python -m mlops ARGV` in a fresh interpreter in the project copy (prefix: e.g. setpriv)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "mlops", *argv],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DO_NOT_TRACK": "1", **(env or {})},
        timeout=600,
    )


MAKE_FILES = (
    "Makefile",
    "stages.mk",
    "pyproject.toml",
    "requirements.lock",
    "requirements-dev.lock",
)


def made_copy(promoted: Path, root: Path) -> Path:
    """A copy of promoted_dir plus what Make needs, Make told that the stages up to promote ran.

    They did (promoted_dir ran them in-process, the same code, on one thread as the CLI does);
    `make -t` records it, so a `make all` there runs only what remains (drift) or what a test
    changed, instead of the whole pipeline again.
    """
    shutil.copytree(promoted, root)
    for name in MAKE_FILES:
        shutil.copy2(ROOT / name, root / name)  # same mtimes: Make reuses the venv
    shutil.copytree(ROOT / "src", root / "src")
    (root / ".venv").symlink_to(Path(sys.prefix))
    for args in (["make", ".make/params.ok"], ["make", "-t", ".make/promote.ok"]):
        done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
    return root


OLD = 946_684_800  # 2000-01-01: older than the shared .venv's stamp, so Make never reinstalls it
GIT = ("git", "-c", "user.name=test", "-c", "user.email=test@example.invalid")


def git_clone(source: Path, destination: Path) -> Path:
    """`git clone` of source's committed HEAD, its files dated 2000 (Make reuses this .venv)."""
    subprocess.run([*GIT, "clone", "--quiet", str(source), str(destination)], check=True)
    for path in destination.rglob("*"):
        if ".git" not in path.relative_to(destination).parts and path.is_file():
            os.utime(path, (OLD, OLD))
    return destination


def clone_env(clone: Path, **extra: str) -> dict[str, str]:
    """This .venv's commands first, the clone's own code (not this checkout's), DVC offline."""
    drop = ("MAKE", "MFLAGS", "COV_", "COVERAGE_", "PYTEST_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    return {
        **env,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(clone / "src"),
        "DO_NOT_TRACK": "1",
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATE_CHECK": "1",
        **extra,
    }


def run_in(clone: Path, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command in the clone (`make ...` uses this checkout's .venv); output captured."""
    if argv[0] == "make":
        argv = (*argv, f"VENV={ROOT / '.venv'}")
    return subprocess.run(
        argv,
        cwd=clone,
        capture_output=True,
        text=True,
        check=False,
        env=env or clone_env(clone),
        timeout=900,
    )


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
