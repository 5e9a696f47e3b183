"""`make drift-ui`: every recorded run in Evidently's UI, from the saved snapshots (offline)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlops import files
from mlops.config import Config
from mlops.drift.evidently_run import PREDICTION, telemetry_off
from mlops.drift.history import HISTORY_DIR, SNAPSHOTS

log = logging.getLogger(__name__)
WORKSPACE = HISTORY_DIR / "workspace"
IMPORTED = WORKSPACE / "imported.txt"
PROJECT_NAME = "drift"
UI_PORT = 8001  # `make serve` has 8000


def build_workspace(snapshots: Path = SNAPSHOTS, path: Path = WORKSPACE) -> int:
    """Add the saved snapshots not yet in the Evidently workspace; return how many were added."""
    telemetry_off()
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(path))
    found = workspace.search_project(PROJECT_NAME)
    if found:
        project = found[0]
    else:
        project = workspace.create_project(
            PROJECT_NAME, description="Every `make drift` run: current batch vs reference"
        )
        add_dashboard(project)
    imported = set(IMPORTED.read_text().split()) if IMPORTED.is_file() else set()
    added = 0
    for snapshot in sorted(snapshots.glob("*.json")):
        if snapshot.name in imported:
            continue
        workspace.add_run(project.id, Snapshot.load(str(snapshot)), include_data=False)
        imported.add(snapshot.name)
        files.write_text(IMPORTED, "".join(f"{name}\n" for name in sorted(imported)))
        added += 1
    return added


def add_dashboard(project: Any) -> None:
    """Panels over time: share of drifted columns and prediction drift score."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    project.dashboard.add_panel(
        line_plot_panel(
            "Share of drifted feature columns",
            [
                PanelMetric(
                    legend="share",
                    metric="DriftedColumnsCount",
                    metric_labels={"value_type": "share"},
                )
            ],
            size="half",
        )
    )
    project.dashboard.add_panel(
        line_plot_panel(
            "Prediction drift score",
            [
                PanelMetric(
                    legend=PREDICTION, metric="ValueDrift", metric_labels={"column": PREDICTION}
                )
            ],
            size="half",
        )
    )


def ui_command(config: Config, host: str | None = None, port: int | None = None) -> None:
    """`make drift-ui`: load new snapshots into the workspace, then serve Evidently's UI."""
    added = build_workspace()
    host, port = host or config.serve.host, port or UI_PORT
    log.info(
        "%d new run(s) added to %s; Evidently UI on http://%s:%d (Ctrl-C stops it)",
        added,
        WORKSPACE,
        host,
        port,
    )
    for handler in logging.getLogger("mlops").handlers:
        handler.flush()
    # What `evidently ui` runs, in this process: Evidently is imported once, not again by a CLI.
    # Its server configures the root logger: mlops's lines keep to their own handlers.
    from evidently.ui.service.app import run_local

    logging.getLogger("mlops").propagate = False
    run_local(host=host, port=port, workspace=str(WORKSPACE))
