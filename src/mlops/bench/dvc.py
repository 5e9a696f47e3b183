"""What data/raw in a DVC remote costs `make data` when there is nothing to pull.

Two copies of the project, one with data/raw in git and one moved to a DVC remote (a local
folder) with `make data-remote`; a no-op `make data` in each, alternated; `make_data_added_seconds`
= the difference of the medians: Make runs the check only when the pointer or a raw file is
newer than its last check, so it is about 0. `check_seconds`: the check itself (a Python process
comparing every file with DVC's manifest, no DVC process) after every raw file was touched. The
goal for both is under 1 s.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import tempfile
from pathlib import Path

from mlops.bench.pipeline import ROOT, copy_project, timed, timed_make
from mlops.config import Config

log = logging.getLogger(__name__)
PAIRS = 5
GOAL_SECONDS = 1.0
GIT = ("git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid")


def git_project(root: Path) -> Path:
    """A copy of the project committed to a new git repository."""
    root.mkdir(parents=True)
    copy_project(root)
    for args in (("init", "--quiet"), ("add", "--all"), ("commit", "--quiet", "-m", "bench")):
        subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)
    return root


def measure(config: Config, pairs: int = PAIRS) -> dict:
    """Medians of no-op `make data` without and with data/raw.dvc, alternated `pairs` times."""
    with tempfile.TemporaryDirectory(prefix="bench-dvc-") as tmp:
        plain, moved = git_project(Path(tmp, "git")), git_project(Path(tmp, "dvc"))
        remote = Path(tmp, "remote")
        convert = ["make", "data-remote", f"REMOTE={remote}", f"VENV={ROOT / '.venv'}"]
        started = timed(convert, moved)[0]
        subprocess.run([*GIT, "commit", "-qm", "dvc"], cwd=moved, check=True, capture_output=True)
        for root in (plain, moved):
            timed_make(root, "data")  # the split made once; timed from here on: nothing to do
        runs: dict[str, list[float]] = {"git": [], "dvc": [], "check": []}
        for _ in range(pairs):
            runs["git"].append(timed_make(plain, "data"))
            runs["dvc"].append(timed_make(moved, "data"))
            for path in Path(moved, "data/raw").iterdir():  # every file looks changed: hashed
                path.touch()
            runs["check"].append(timed_make(moved, ".make/raw.ok"))
            timed_make(moved, "data")
    added = round(statistics.median(runs["dvc"]) - statistics.median(runs["git"]), 2)
    log.info("data/raw in a DVC remote adds %ss to a no-op make data", added)
    return {
        "make_data_added_seconds": added,
        "make_data_goal_seconds": GOAL_SECONDS,
        # the check itself, when every raw file's mtime changed (all hashed, nothing pulled)
        "check_seconds": statistics.median(runs["check"]),
        "data_remote_seconds": started,
        "runs": {
            "make_data_noop_git_seconds": runs["git"],
            "make_data_noop_dvc_seconds": runs["dvc"],
            "check_seconds": runs["check"],
        },
    }
