"""`make bench`: measures pipeline, drift, serving and own-data speed into reports/bench.json.

Each submodule exposes measure(config) -> dict; its result is stored under the submodule's name.
"""

from __future__ import annotations

import importlib
import logging
from datetime import UTC, datetime
from pathlib import Path

from mlops import files
from mlops.config import Config
from mlops.errors import InputError

log = logging.getLogger(__name__)
REPORT = Path("reports/bench.json")
SECTIONS = ("pipeline", "drift", "serving", "schema", "batches", "dvc")
# For a child interpreter to print: its own peak resident memory in MiB (VmHWM). Not ru_maxrss:
# Linux carries the memory of the process that spawned it (the bench, holding its data) into it.
OWN_PEAK_MIB = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024"


def run(config: Config, sections: tuple[str, ...] = SECTIONS, only: str | None = None) -> dict:
    """Run every benchmark section in turn, saving reports/bench.json after each one; with
    `only` (`make bench ONLY="drift batches"`), those sections, the others kept as they were."""
    report: dict = {"created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if only:
        sections = tuple(only.replace(",", " ").split())
        unknown = [name for name in sections if name not in SECTIONS]
        if unknown:
            known = ", ".join(SECTIONS)
            raise InputError(f"bench ONLY: no section {unknown[0]!r} (one of {known})")
        if REPORT.is_file():
            report = {**files.read_json(REPORT), "updated_at": report["created_at"]}
    for name in sections:
        log.info("benchmark: %s", name)
        report[name] = importlib.import_module(f"mlops.bench.{name}").measure(config)
        files.write_json(REPORT, report)
    return report
