"""Every drift run recorded: reports/history/drift.jsonl, the static page drift_history.html (with
its SVG charts, no script) and Evidently snapshots for `make drift-ui`."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops import files, layout
from mlops.drift.analysis import chunk_name
from mlops.drift.markdown import model_name
from mlops.drift.performance import METRICS

REPORTS = layout.REPORTS
HISTORY_DIR = layout.DRIFT_HISTORY
HISTORY_LOG = layout.DRIFT_LOG
HISTORY_PAGE = REPORTS / "drift_history.html"
SNAPSHOTS = HISTORY_DIR / "snapshots"


def history_entry(result: dict) -> dict:
    perf = result["performance"]
    return {
        "created_at": result["created_at"],
        "batch": result["batch"],
        "status": result["status"],
        "dataset_drift": result["dataset_drift"],
        "share_drifted": result["share_drifted"],
        "drift_share": result["drift_share"],
        "drifted_columns": result["drifted_columns"],
        "prediction_score": result["prediction_drift"]["score"],
        "prediction_threshold": result["prediction_drift"]["threshold"],
        "prediction_drifted": result["prediction_drift"]["drifted"],
        "importance_drifted": result["importance_drifted"],
        "importance_share": result["importance_share"],
        "performance": perf["current"],
        "estimated": {m: perf["estimated"].get(m) for m in METRICS},
        "degraded": perf["degraded"],
        "chunks": [
            {
                "name": chunk_name(chunk),
                "status": chunk["status"],
                "share_drifted": chunk["share_drifted"],
                "importance_drifted": chunk["importance_drifted"],
                "accuracy": chunk["accuracy"],
            }
            for chunk in result["chunks"]
        ],
        "current_rows": result["current_rows"],
        "model": model_name(result["model"]),
    }


def read_history(path: Path = HISTORY_LOG) -> list[dict]:
    """Every recorded run, oldest first (a torn last line from a crash is skipped)."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def record(result: dict, snapshot: Any, keep: int) -> Callable[[], None]:
    """Every run: Evidently's snapshot saved (the newest `keep`) for `make drift-ui`, the static
    page redrawn, then a line in reports/history/drift.jsonl, the record itself, written last.
    Returns the undo of that line (for a run whose reports then could not be switched). Cost
    independent of history length, apart from the small log and page."""
    saved = None
    if keep > 0:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        saved = SNAPSHOTS / f"{stamp}-{result['status']}.json"
        files.write_text(saved, snapshot.dumps())
        for old in sorted(SNAPSHOTS.glob("*.json"))[:-keep]:
            old.unlink()
    before = HISTORY_LOG.read_bytes() if HISTORY_LOG.is_file() else None
    entries = [*read_history(), history_entry(result)]
    files.write_text(HISTORY_PAGE, history_page(entries))
    files.write_text(HISTORY_LOG, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))

    def undo() -> None:
        if saved is not None:
            saved.unlink(missing_ok=True)
        if before is None:
            HISTORY_LOG.unlink(missing_ok=True)
        else:
            files.write_bytes(HISTORY_LOG, before)

    return undo


def _svg_line(values: list[float | None], limit: float | None, title: str) -> str:
    """A small self-contained SVG line chart of values per run, with the alert threshold."""
    width, height, pad = 640, 160, 28
    points = [v for v in values if v is not None]
    top = max([*points, limit or 0.0, 1e-9]) * 1.1
    step = (width - 2 * pad) / max(len(values) - 1, 1)

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * v / top

    path = " ".join(
        f"{pad + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None
    )
    dots = "".join(
        f'<circle cx="{pad + i * step:.1f}" cy="{y(v):.1f}" r="3"/>'
        for i, v in enumerate(values)
        if v is not None
    )
    line = (
        f'<line x1="{pad}" x2="{width - pad}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
        f'class="limit"/><text x="{width - pad}" y="{y(limit) - 4:.1f}" text-anchor="end">'
        f"alert at {limit:g}</text>"
        if limit is not None
        else ""
    )
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        f'<line x1="{pad}" x2="{pad}" y1="{pad}" y2="{height - pad}" class="axis"/>'
        f'<line x1="{pad}" x2="{width - pad}" y1="{height - pad}" y2="{height - pad}" '
        f'class="axis"/><text x="{pad - 4}" y="{pad}" text-anchor="end">{top:.2g}</text>'
        f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end">0</text>{line}'
        f'<polyline points="{path}"/>{dots}</svg></figure>'
    )


def history_page(entries: list[dict]) -> str:
    """reports/drift_history.html: every run over time, no script, no network."""
    latest = entries[-1]
    charts = (
        _svg_line(
            [e["share_drifted"] for e in entries],
            latest.get("drift_share"),
            "Share of drifted feature columns per run",
        )
        + _svg_line(
            [e["prediction_score"] for e in entries],
            latest.get("prediction_threshold"),
            "Prediction drift score per run",
        )
        + _svg_line(
            [e.get("importance_drifted") for e in entries],
            latest.get("importance_share"),
            "Share of the model's importance in drifted columns per run",
        )
    )
    rows = []
    for e in reversed(entries):
        perf = e.get("performance") or {}
        figures = ", ".join(f"{k} {v:.3f}" for k, v in perf.items() if v is not None)
        estimated = e.get("estimated") or {}
        guess = ", ".join(f"{k} {v:.3f}" for k, v in estimated.items() if v is not None)
        figures = (
            "; ".join(part for part in (figures, guess and f"estimated {guess}") if part)
            or "no labels"
        )
        chunks = " → ".join(f"{c['status']}" for c in e.get("chunks") or []) or "-"
        cells = [
            e["created_at"],
            e["batch"],
            e["status"] + (" (degraded)" if e.get("degraded") else ""),
            f"{e['share_drifted']:.3f}",
            ", ".join(e["drifted_columns"]) or "-",
            f"{e['prediction_score']:.3f}",
            figures,
            chunks,
            f"{e['current_rows']:,}",
            e["model"],
        ]
        cells_html = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f'<tr class="{html.escape(e["status"])}">{cells_html}</tr>')
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "run (UTC)",
            "batch",
            "status",
            "share drifted",
            "drifted columns",
            "prediction score",
            "performance",
            "chunks (in order)",
            "rows",
            "model",
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift history</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
figure {{ display: inline-block; margin: 0 2em 1em 0; }}
svg text {{ font-size: 10px; fill: #555; }}
polyline {{ fill: none; stroke: #1f77b4; stroke-width: 2; }} circle {{ fill: #1f77b4; }}
.axis {{ stroke: #999; }} .limit {{ stroke: #d62728; stroke-dasharray: 4 3; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: 4px 8px; }}
tr.alert td {{ background: #fde2e1; }} tr.warning td {{ background: #fff4d6; }}
</style></head><body>
<h1>Drift history</h1>
<p>{len(entries)} run(s) of <code>make drift</code> / <code>make drift-demo</code>, oldest to newest
in the charts, newest first in the table. Each run's full report is kept as an Evidently snapshot
in <code>reports/history/snapshots/</code>: <code>make drift-ui</code> shows them in Evidently's
UI.</p>
{charts}
<table><thead><tr>{header}</tr></thead><tbody>
{"".join(rows)}
</tbody></table></body></html>
"""
