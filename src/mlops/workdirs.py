"""Before a command runs: can this user write the folders it writes? If not, say so in one line.

In a container, models/ and reports/ are often host folders mounted into the image and owned by
someone else; without this check a stage would stop halfway with a PermissionError traceback.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mlops import layout

IMAGE_UID = 10001  # the Dockerfile's user
# Every command appends to reports/run.log; these also write into the folders listed.
WRITES: dict[str, tuple[str, ...]] = {
    "data": ("data/processed",),
    "drift-demo": ("data/processed",),
    "accept-data": ("data/raw",),
    "train": ("models", "models/candidate"),
    "promote": ("models",),
    "rollback": ("models",),
    "release-import": ("models",),
    "schema": ("models",),  # archives a registry of other columns (mlops.lineage)
}
RUN_LOG = layout.RUN_LOG
# Commands that write nothing in reports/ (score only where OUT says): reports/run.log is appended
# when it can be, a warning when not (a read-only reports/ must not block them).
READ_ONLY = ("models", "runs", "score", "serve", "release-export", "params-stamps", "summary")


def targets(args: argparse.Namespace) -> list[Path]:
    """The folders (and the appended run log) the command given by parsed CLI args writes;
    for a READ_ONLY command the run log is optional and not listed."""
    commands = args.names if args.command == "stages" else [args.command]  # stages: all of them
    written = [folder for command in commands for folder in WRITES.get(command, ())]
    paths = [RUN_LOG.parent, *map(Path, dict.fromkeys(written)), RUN_LOG]
    if args.command in READ_ONLY:
        paths = [path for path in paths if path not in (RUN_LOG.parent, RUN_LOG)]
    if args.command in ("params-stamps", "release-export"):
        paths.append(Path(args.directory))
    if getattr(args, "output", None):
        paths.append(Path(args.output).parent)
    if args.command == "score":
        paths.append(Path(args.out or layout.SCORES))
    if args.command == "schema":  # rewrites the params file in place (a temp file beside it)
        paths.append(Path(args.into).parent)
    return paths


def blocker(path: Path) -> Path | None:
    """The existing path that stops this user writing path (itself, or the folder to create it
    in), or None when writing is possible."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if os.access(candidate, os.W_OK) else candidate
    return None


def problem(args: argparse.Namespace) -> str | None:
    """One line naming the first unwritable folder or file and what to do; None when all are."""
    for path in targets(args):
        stuck = blocker(path)
        if stuck is not None:
            where = stuck.absolute()
            return (
                f"{where} is not writable by uid {os.getuid()} (gid {os.getgid()}): give that "
                f"user write access; for a folder mounted into the container, chown -R "
                f"{IMAGE_UID} it on the host (the image's user), or run as its owner with "
                f'--user "$(id -u)"'
            )
    return None
