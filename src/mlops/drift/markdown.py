"""drift.md: the verdict first, then every column, predictions, performance and the chunks."""

from __future__ import annotations

from mlops.drift.analysis import NOISY_BELOW, chunk_name
from mlops.drift.performance import METRICS

HEADLINES = {
    "ok": ("✅", "no drift"),
    "warning": ("⚠️", "some columns drifted, no alert"),
    "alert": ("🚨", "drift alert"),
}


def model_name(model: dict) -> str:
    if model.get("version"):
        return f"{model['source']} {model['version']}"
    sha = model.get("model_sha256") or ""
    return f"{model['source']} (sha256 {sha[:12]})"


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def sorted_columns(result: dict) -> list[tuple[str, dict]]:
    """Every column, the most moved first (p-value tests: the smallest p first)."""

    def key(item: tuple[str, dict]) -> tuple[bool, float]:
        column = item[1]
        p_value = column["method"] in ("ks", "chisquare", "z", "g_test")
        return (not column["drifted"], column["score"] if p_value else -column["score"])

    return sorted(result["columns"].items(), key=key)


def performance_line(perf: dict) -> str:
    """Measured and estimated figures against the test split, and the judgement."""
    state = "**degraded**" if perf["degraded"] else "within tolerance"
    estimated = perf["estimated"]
    parts = []
    for metric in METRICS:
        before = perf["reference"].get(metric)
        if before is None:
            continue
        measured = (perf["current"] or {}).get(metric)
        text = f"{metric} {before:.3f} on test → "
        if measured is not None:
            text += f"{measured:.3f} measured, "
        text += f"{number(estimated.get(metric))} estimated"
        error = (estimated.get("error") or {}).get(metric)
        if error is not None:
            text += f" (estimate off by {error:+.3f})"
        line = perf["drops"].get(metric, {}).get("lower_alert")
        if line is not None:
            text += f", alert line {line:.3f}"
        parts.append(text)
    judged = {"measured": "labels", "estimated": "no labels: CBPE estimate"}.get(
        perf["judged_by"],
        f"labels on {perf.get('labelled_rows', 0):,} sampled rows, CBPE estimate on the rest",
    )
    return f"- **Performance** ({judged}): {state}; " + "; ".join(parts) + "."


def exactness(result: dict) -> list[str]:
    """Which column scores cover every row, and where they overruled the sample's verdict."""
    if not result["sampled"]:
        return []
    columns = result["columns"]
    exact = [name for name, column in columns.items() if column.get("exact")]
    others = [name for name in columns if name not in exact]
    left = f" ({', '.join(others)} from the sample: no all-row form of their test)"
    lines = [
        f"Column scores over all {result['current_rows']:,} rows: {len(exact)} of {len(columns)}"
        + (left if others else "")
        + f"; the charts, predictions and performance use the sample of "
        f"{result['rows_compared']['current']:,} rows."
    ]
    for name, found in result.get("exact_overruled", {}).items():
        said = {True: "drift", False: "no drift"}
        lines.append(
            f"{name}: the sample said {said[found['sample_drifted']]} "
            f"({columns[name]['method']} {found['sample_score']:.4f}), all rows say "
            f"{said[found['exact_drifted']]} ({found['exact_score']:.4f}): all rows decide."
        )
    return lines


def markdown(result: dict, html_name: str) -> str:
    """Verdict first, then the columns; pasteable into a job summary or PR comment."""
    icon, headline = HEADLINES[result["status"]]
    lines = [f"## {icon} Drift: {headline}", ""]
    if result["alerts"]:
        lines += [*(f"- {reason}" for reason in result["alerts"]), ""]
    compared = result["rows_compared"]
    sampled = (
        f", sampled to {compared['current']:,} and {compared['reference']:,}"
        if result["sampled"]
        else ""
    )
    lines += [
        f"Batch `{result['batch']}` ({result['current_rows']:,} rows) vs {result['reference']} "
        f"({result['reference_rows']:,} rows){sampled}; model: {model_name(result['model'])}.",
        "",
    ]
    if result["sampled"]:
        lines += [*exactness(result), ""]
    if result["model"].get("note"):
        lines += [f"Note: {result['model']['note']}.", ""]
    drifted = result["drifted_columns"]
    importance = result["importance_drifted"]
    lines.append(
        f"- **Data drift:** {len(drifted)} of {len(result['columns'])} columns drifted "
        f"(share {result['share_drifted']:.3f}; dataset drift at ≥ {result['drift_share']}); "
        + (
            f"they carry {importance:.3f} of the model's importance (alert at ≥ "
            f"{result['importance_share']}"
            + (f"; {result['importance_note']}" if result.get("importance_note") else "")
            + ")."
            if importance is not None
            else f"{result['importance_note']}."
        )
    )
    if result["current_rows"] < NOISY_BELOW:
        lines.append(
            f"  Below {NOISY_BELOW:,} rows per-column scores are noisy: many-category columns "
            "can cross their threshold by chance."
        )
    prediction = result["prediction_drift"]
    lines.append(
        f"- **Prediction drift:** {'**drifted**' if prediction['drifted'] else 'stable'} "
        f"({prediction['method']} {prediction['score']:.4f}, threshold {prediction['threshold']}; "
        f"mean predicted probability {prediction['reference_mean']:.3f} → "
        f"{prediction['current_mean']:.3f})."
    )
    lines.append(performance_line(result["performance"]))
    lines += [f"- **Finding:** {finding}" for finding in result["findings"]]
    lines += [
        "",
        "| column | method | score | threshold | importance | missing | drifted |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, column in sorted_columns(result):
        lines.append(
            f"| {name} | {column['method']} | {column['score']:.4f} | {column['threshold']} | "
            f"{number(column['importance'])} | {column['missing']:.3f} | "
            f"{'**yes**' if column['drifted'] else 'no'} |"
        )
    lines.append("")
    lines += chunk_lines(result["chunks"], result["chunking"])
    lines += [f"Full report: `{html_name}` (self-contained, opens offline in any browser).", ""]
    return "\n".join(lines)


def metrics_text(chunk: dict) -> str:
    """Every metric of a chunk against its alert line: "accuracy 0.901 (line 0.905), ..."."""
    metrics = chunk.get("metrics")
    if not metrics:  # drift.json of an older version
        return f"{chunk['accuracy']:.3f} ({chunk['accuracy_source']})"
    parts = [
        f"{name} {number(line['value'])} (line {number(line['lower_alert'])})"
        for name, line in metrics.items()
        if line["value"] is not None
    ]
    return ", ".join(parts) + f" ({chunk['accuracy_source']})"


def chunk_lines(chunks: list[dict], chunking: str) -> list[str]:
    lines = [f"Chunks over time: {chunking}.", ""]
    if not chunks:
        return lines
    lines += [
        "| chunk | status | share drifted | importance drifted | prediction score | performance |",
        "|---|---|---:|---:|---:|---|",
    ]
    for chunk in chunks:
        prediction = chunk["prediction_drift"] or {}
        accuracy = metrics_text(chunk) if chunk["accuracy"] is not None else "n/a"
        lines.append(
            f"| {chunk_name(chunk)} | {chunk['status']} | {number(chunk['share_drifted'])} | "
            f"{number(chunk['importance_drifted'])} | {number(prediction.get('score'))} | "
            f"{accuracy} |"
        )
    return [*lines, ""]
