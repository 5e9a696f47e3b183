"""Small helpers shared by tests: run the CLI in-process and rewrite params.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mlops import cli


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
