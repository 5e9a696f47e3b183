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

log = logging.getLogger(__name__)
REPORT = Path("reports/bench.json")
SECTIONS = ("pipeline", "drift", "serving", "schema")


def run(config: Config, sections: tuple[str, ...] = SECTIONS) -> dict:
    """Run every benchmark section in turn, saving reports/bench.json after each one."""
    report: dict = {"created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    for name in sections:
        log.info("benchmark: %s", name)
        report[name] = importlib.import_module(f"mlops.bench.{name}").measure(config)
        files.write_json(REPORT, report)
    return report
