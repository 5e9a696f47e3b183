"""Small helpers shared by tests: run the CLI in-process and rewrite params.yaml."""

from __future__ import annotations

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
