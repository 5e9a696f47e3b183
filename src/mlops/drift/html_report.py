"""drift.html: the verdict on the first screen (what drift.md says), Evidently's panels below.

One self-contained file: the verdict is static HTML put at the top of Evidently's page, which
carries its own scripts inline; nothing is loaded over the network.
"""

from __future__ import annotations

import re
from html import escape

from mlops.drift.analysis import chunk_name
from mlops.drift.markdown import HEADLINES, exactness, model_name, number, sorted_columns
from mlops.drift.performance import METRICS

STYLE = """
#verdict { font: 14px system-ui, sans-serif; color: #222; margin: 1.5em 2em; }
#verdict h1 { font-size: 22px; margin: 0 0 .5em; }
#verdict table { border-collapse: collapse; margin: .5em 0 1em; }
#verdict td, #verdict th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
#verdict td.n { text-align: right; font-variant-numeric: tabular-nums; }
#verdict tr.drifted td, #verdict tr.alert td { background: #fde2e1; }
#verdict tr.warning td { background: #fff4d6; }
#verdict .alert { color: #b00020; } #verdict .ok { color: #1b5e20; }
"""


def _table(header: list[str], rows: list[tuple[str, list[str]]], numeric: set[int]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{escape(css)}">'
        + "".join(
            f"<td{' class=n' if i in numeric else ''}>{escape(cell)}</td>"
            for i, cell in enumerate(cells)
        )
        + "</tr>"
        for css, cells in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def verdict_section(result: dict) -> str:
    """The verdict block: status, why, columns by score, predictions, performance, chunks."""
    icon, headline = HEADLINES[result["status"]]
    status = result["status"]
    reasons = result["alerts"] or ["no rule fired"]
    parts = [
        f'<section id="verdict" data-status="{escape(status)}">',
        f'<h1 class="{escape(status)}">{icon} Drift: {escape(headline)} '
        f"(status: {escape(status)})</h1>",
        "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in reasons) + "</ul>",
        f"<p>Batch <code>{escape(result['batch'])}</code> ({result['current_rows']:,} rows) vs "
        f"{escape(result['reference'])} ({result['reference_rows']:,} rows); model "
        f"{escape(model_name(result['model']))}. Importance of drifted columns: "
        f"{escape(number(result['importance_drifted']))} (alert at ≥ "
        f"{result['importance_share']}); share drifted {result['share_drifted']:.3f} (alert at "
        f"≥ {result['drift_share']}).</p>",
    ]
    parts += [f"<p>{escape(line)}</p>" for line in exactness(result)]
    parts += [f"<p>Finding: {escape(f)}</p>" for f in result["findings"]]
    rows = [
        (
            "drifted" if column["drifted"] else "",
            [
                name,
                column["method"],
                f"{column['score']:.4f}",
                str(column["threshold"]),
                number(column["importance"]),
                f"{column['missing']:.3f}",
                "yes" if column["drifted"] else "no",
            ],
        )
        for name, column in sorted_columns(result)
    ]
    parts.append(
        _table(
            ["column", "method", "score", "threshold", "importance", "missing", "drifted"],
            rows,
            {2, 3, 4, 5},
        )
    )
    prediction = result["prediction_drift"]
    perf = result["performance"]
    perf_rows = []
    for metric in METRICS:
        if perf["reference"].get(metric) is None:
            continue
        perf_rows.append(
            (
                "alert" if metric in perf["degraded_metrics"] else "",
                [
                    metric,
                    number(perf["reference"][metric]),
                    number((perf["current"] or {}).get(metric)),
                    number(perf["estimated"].get(metric)),
                    number((perf["drops"].get(metric) or {}).get("margin")),
                ],
            )
        )
    parts += [
        f"<p>Prediction drift: {'drifted' if prediction['drifted'] else 'stable'} "
        f"({escape(prediction['method'])} {prediction['score']:.4f}, threshold "
        f"{prediction['threshold']}).</p>",
        f"<p>Performance: {'degraded' if perf['degraded'] else 'within tolerance'}, judged "
        f"{escape(perf['judged_by'])} ({escape(perf['estimated']['method'])}; assumes "
        f"{escape(perf['estimated']['assumption'])}).</p>",
        _table(
            ["metric", "test", "measured", "estimated", "alert beyond drop"],
            perf_rows,
            {1, 2, 3, 4},
        ),
    ]
    chunk_rows = [
        (
            chunk["status"],
            [
                chunk_name(chunk),
                chunk["status"],
                number(chunk["share_drifted"]),
                number(chunk["importance_drifted"]),
                number((chunk["prediction_drift"] or {}).get("score")),
                number(chunk["accuracy"]),
                chunk.get("accuracy_source") or "",
            ],
        )
        for chunk in result["chunks"]
    ]
    parts.append(f"<h2>Chunks over time</h2><p>{escape(result['chunking'])}.</p>")
    parts.append(
        _table(
            ["chunk", "status", "share drifted", "importance", "prediction", "accuracy", "source"],
            chunk_rows,
            {2, 3, 4, 5},
        )
        if chunk_rows
        else ""
    )
    parts.append("<p>Evidently's panels per column follow below.</p></section>")
    return "\n".join(parts)


def page(result: dict, evidently_html: str) -> str:
    """Evidently's page with the verdict inserted first in its body."""
    block = f"<style>{STYLE}</style>\n{verdict_section(result)}\n"
    found = re.search(r"<body[^>]*>", evidently_html)
    if found is None:
        return block + evidently_html
    return evidently_html[: found.end()] + block + evidently_html[found.end() :]
