"""Markdown report of metrics, gate and drift for CI job summaries and the PR comment.

The first line is a hidden marker: the workflow finds its own PR comment by it and updates that
comment in place instead of posting a new one. Missing or unreadable reports are stated, not
fatal, so a summary can always be written, even after a failed stage.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops import layout
from mlops.config import Config
from mlops.errors import InputError
from mlops.files import write_text

MARKER = "<!-- mlops-ci-report -->"
REPORTS = layout.REPORTS
REGISTRY = layout.REGISTRY
# Metrics compared candidate vs production, in this order (higher is better except log_loss).
METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall", "log_loss")
LOWER_IS_BETTER = {"log_loss"}
# Env vars ARTIFACT_URL_<NAME> (upload-artifact's artifact-url output) become download links.
ARTIFACT_PREFIX = "ARTIFACT_URL_"
STATUS = {  # drift.json status -> (icon, headline); only "alert" fails a run
    "ok": ("✅", "No drift"),
    "warning": ("⚠️", "Some columns drifted (below the alert threshold)"),
    "alert": ("🚨", "Drift alert"),
}
DECISIONS = {
    "promoted": "✅ promoted",
    "unchanged": "⚪ unchanged (identical to production)",
    "rejected": "❌ rejected",
}


def load(path: Path) -> tuple[Any, str | None]:
    """(payload, None), or (None, why not) for a missing or unreadable JSON report."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, f"`{path}` not found: the stage that writes it did not run"
    except (OSError, ValueError) as exc:
        return None, f"`{path}` is unreadable ({type(exc).__name__})"


def number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a" if value is None else str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def delta(candidate: Any, production: Any, metric: str) -> str:
    """Signed difference with an arrow that says whether the candidate is better."""
    if not all(isinstance(v, int | float) for v in (candidate, production)):
        return "n/a"
    diff = candidate - production
    if abs(diff) < 5e-5:
        return "±0"
    better = diff < 0 if metric in LOWER_IS_BETTER else diff > 0
    return f"{diff:+.4f} {'▲' if better else '▼'}"


def production_metrics(promotion: Any, registry: Any) -> tuple[str | None, dict[str, Any]]:
    """The production version and its metrics, from the gate's report or else the registry."""
    if isinstance(promotion, Mapping):
        production = promotion.get("production")
        if isinstance(production, Mapping):
            return production.get("version"), dict(production.get("metrics") or {})
        metrics = promotion.get("production_metrics")
        version = promotion.get("production_version", production)
        if isinstance(metrics, Mapping):
            return version, dict(metrics)
    if isinstance(registry, Mapping) and registry.get("production"):
        version = registry["production"]
        entry = (registry.get("versions") or {}).get(version)
        if isinstance(entry, Mapping) and isinstance(entry.get("metrics"), Mapping):
            return version, dict(entry["metrics"])
        return version, {}
    return None, {}


def metrics_section(reports: Path, registry_path: Path) -> list[str]:
    lines = ["### Metrics (test split)", ""]
    metrics, problem = load(reports / "metrics.json")
    if problem:
        return [*lines, f"⚠️ No metrics: {problem}.", ""]
    promotion, _ = load(reports / "promotion.json")
    registry, _ = load(registry_path)
    version, production = production_metrics(promotion, registry)
    if production:
        lines += [f"| metric | candidate | production ({version}) | Δ |", "|---|---:|---:|---:|"]
        for name in METRICS:
            if name in metrics:
                cand, prod = metrics[name], production.get(name)
                lines.append(
                    f"| {name} | {number(cand)} | {number(prod)} | {delta(cand, prod, name)} |"
                )
    else:
        lines += ["| metric | candidate |", "|---|---:|"]
        lines += [f"| {name} | {number(metrics[name])} |" for name in METRICS if name in metrics]
        lines += ["", "No production model yet: nothing to compare against."]
    rows = metrics.get("rows_processed")
    lines += ["", f"Rows scored: {number(rows)} · status: `{metrics.get('status', 'unknown')}`"]
    lines += [classes_line(metrics), ""]
    return lines


def classes_line(metrics: dict[str, Any]) -> str:
    """Which class precision, recall and F1 speak of (binary), or that they are macro averages."""
    classes = metrics.get("classes") or []
    if metrics.get("positive") is not None:
        return (
            f"Positive class: `{metrics['positive']}` (precision, recall, F1 and ROC-AUC are its)."
        )
    if len(classes) > 2:
        shown = ", ".join(f"`{label}`" for label in classes)
        return (
            f"Classes: {shown}; precision, recall and F1 are macro averages, ROC-AUC one-vs-rest."
        )
    return ""


def criterion_rows(criteria: Any) -> list[str]:
    """Table rows for the gate's criteria, given as a list of dicts or a name -> dict mapping."""
    if isinstance(criteria, Mapping):
        criteria = [{"name": name, **value} for name, value in criteria.items()]
    if not isinstance(criteria, list) or not criteria:
        return []
    rows = ["| criterion | value | threshold | result |", "|---|---:|---:|---|"]
    for item in criteria:
        if not isinstance(item, Mapping):
            continue
        passed = item.get("passed")
        result = "pass" if passed else "**fail**" if passed is False else "n/a"
        name = item.get("name") or item.get("criterion") or "?"
        rows.append(
            f"| {name} | {number(item.get('value'))} | {number(item.get('threshold'))} | {result} |"
        )
    return [*rows, ""]


def gate_section(reports: Path, config: Config) -> list[str]:
    lines = ["### Promotion gate", ""]
    promotion, problem = load(reports / "promotion.json")
    if problem:
        return [*lines, f"⚠️ No gate decision: {problem}.", ""]
    decision = str(promotion.get("decision", "unknown"))
    candidate = promotion.get("candidate")
    version = candidate.get("version") if isinstance(candidate, Mapping) else None
    to = f" → {version}" if decision == "promoted" and version else ""
    forced = " (**FORCED**)" if promotion.get("forced") else ""
    lines += [f"**Decision: {DECISIONS.get(decision, decision)}{to}{forced}**", ""]
    reasons = promotion.get("reasons") or []
    if isinstance(reasons, str):
        reasons = [reasons]
    lines += [f"- {reason}" for reason in reasons]
    if reasons:
        lines.append("")
    lines += criterion_rows(promotion.get("criteria"))
    lines += [
        f"Policy: accuracy ≥ {config.promotion.min_accuracy}, and at most "
        f"{config.promotion.max_regression:.1%} below production's accuracy.",
        "",
    ]
    return lines


def drift_section(reports: Path) -> list[str]:
    lines = ["### Drift", ""]
    drift, problem = load(reports / "drift.json")
    if problem:
        return [*lines, f"⚠️ No drift report: {problem}.", ""]
    status = str(drift.get("status", "unknown"))
    icon, headline = STATUS.get(status, ("❔", f"status {status}"))
    lines += [f"**{icon} {headline}**", ""]
    alerts = drift.get("alerts") or []
    lines += [f"- {alert}" for alert in alerts if isinstance(alert, str)]
    if alerts:
        lines.append("")
    dataset = {True: "yes", False: "no"}.get(drift.get("dataset_drift"), "unknown")
    share = number(drift.get("share_drifted"), 3)
    lines += [f"Dataset drift: {dataset} (share of drifted columns {share})", ""]
    if drift.get("importance_drifted") is not None:
        lines += [
            f"Importance of the drifted columns: {number(drift['importance_drifted'], 3)} of the "
            f"model's (alert at ≥ {number(drift.get('importance_share'))})",
            "",
        ]
    names = drift.get("drifted_columns") or []
    columns = drift.get("columns") or {}
    if names:
        lines += [
            "| drifted column | method | score | threshold | importance |",
            "|---|---|---:|---:|---:|",
        ]
        for name in names:
            info = columns.get(name) or {}
            lines.append(
                f"| {name} | {info.get('method', 'n/a')} | {number(info.get('score'))} | "
                f"{number(info.get('threshold'))} | {number(info.get('importance'), 3)} |"
            )
        lines.append("")
    else:
        lines += ["No column drifted.", ""]
    prediction = drift.get("prediction_drift")
    if isinstance(prediction, Mapping):
        flag = "**drifted**" if prediction.get("drifted") else "stable"
        lines.append(
            f"- Prediction drift: {flag} ({prediction.get('method', '?')} "
            f"{number(prediction.get('score'))}, threshold {number(prediction.get('threshold'))})"
        )
    lines += performance_lines(drift.get("performance"))
    chunks = [c for c in drift.get("chunks") or [] if isinstance(c, Mapping)]
    if chunks:
        lines.append("- Chunks over time: " + " → ".join(str(c.get("status")) for c in chunks))
    model = drift.get("model")
    if isinstance(model, Mapping) and model.get("version"):
        lines.append(f"- Model: {model.get('source', '')} {model['version']}".replace("  ", " "))
    rows = (drift.get("reference_rows"), drift.get("current_rows"))
    if all(isinstance(n, int) for n in rows):
        sampled = " (sampled)" if drift.get("sampled") else ""
        lines.append(f"- Rows: reference {rows[0]}, current {rows[1]}{sampled}")
    return [*lines, ""]


def performance_lines(performance: Any) -> list[str]:
    """One line: current-batch metrics against the reference ones, or why there are none."""
    if not isinstance(performance, Mapping):
        return []
    current = performance.get("current")
    reference = performance.get("reference") or {}
    verdict = "**degraded**" if performance.get("degraded") else "within tolerance"
    if not isinstance(current, Mapping) or not current:
        estimated = performance.get("estimated")
        if not isinstance(estimated, Mapping):
            return ["- Performance on current data: no labels"]
        pairs = ", ".join(
            f"{name} {number(reference.get(name))} → {number(estimated.get(name))}"
            for name in ("accuracy", "roc_auc", "f1")
            if estimated.get(name) is not None
        )
        return [f"- Performance on current data: no labels; estimated (CBPE) {verdict} ({pairs})"]
    pairs = ", ".join(
        f"{name} {number(reference.get(name))} → {number(value)}" for name, value in current.items()
    )
    return [f"- Performance on current data: {verdict} ({pairs})"]


def artifacts_section(env: Mapping[str, str]) -> list[str]:
    lines = ["### Artifacts", ""]
    server, repo, run_id = (
        env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    links = sorted(
        (key.removeprefix(ARTIFACT_PREFIX).lower().replace("_", "-"), url)
        for key, url in env.items()
        if key.startswith(ARTIFACT_PREFIX) and url
    )
    lines += [f"- [{name}]({url})" for name, url in links]
    if server and repo and run_id:
        lines.append(
            f"- [All artifacts and logs of this run]({server}/{repo}/actions/runs/{run_id})"
        )
        lines.append(f"- `gh run download {run_id} --repo {repo}`")
    elif not links:
        lines.append("Local run: reports are in `reports/`, the candidate in `models/candidate/`.")
    return [*lines, ""]


SECTIONS = ("metrics", "gate", "drift", "artifacts")


def parse_sections(value: str | None) -> tuple[str, ...]:
    """'drift,artifacts' -> ('drift', 'artifacts'); None -> every section. Unknown: InputError."""
    if value is None:
        return SECTIONS
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown or not chosen:
        raise InputError(
            f"--sections: {', '.join(unknown) or 'empty'} (choose from {', '.join(SECTIONS)})"
        )
    return chosen


def render(
    config: Config,
    env: Mapping[str, str],
    reports: Path = REPORTS,
    sections: tuple[str, ...] = SECTIONS,
) -> str:
    """The report: marker, heading, then the chosen sections in their fixed order."""
    sha = env.get("GITHUB_SHA", "")
    title = "ML pipeline report" if {"metrics", "gate"} & set(sections) else "Drift report"
    lines = [MARKER, f"## {title}" + (f" for `{sha[:12]}`" if sha else ""), ""]
    builders = {
        "metrics": lambda: metrics_section(reports, REGISTRY),
        "gate": lambda: gate_section(reports, config),
        "drift": lambda: drift_section(reports),
        "artifacts": lambda: artifacts_section(env),
    }
    for name in SECTIONS:
        if name in sections:
            lines += builders[name]()
    return "\n".join(lines).rstrip("\n") + "\n"


def run(config: Config, output: Path | None = None, sections: str | None = None) -> None:
    """Write the report (all sections, or the comma-separated ones) to output, or print it."""
    text = render(config, os.environ, sections=parse_sections(sections))
    if output is None:
        sys.stdout.write(text)
    else:
        write_text(Path(output), text)
