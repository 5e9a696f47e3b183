"""Stage `make drift`: data, prediction and performance drift of a current batch, with Evidently.

Outputs reports/drift.{html,json,md}; every run is also recorded: reports/history/drift.jsonl,
the static page reports/drift_history.html and Evidently snapshots for `make drift-ui`. Exit: 0 no
alert, 1 alert with drift.fail_on_drift, 2 unusable input. Evidently is imported only when used.

Modules: inputs (read and check), analysis (the verdict, no I/O), performance (measured and
estimated), evidently_run, markdown, html_report, history (log, page, SVG), ui, demo, stage.
"""

from mlops.drift.demo import demo_command
from mlops.drift.stage import run
from mlops.drift.ui import ui_command

__all__ = ["demo_command", "run", "ui_command"]
