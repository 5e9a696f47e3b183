"""Stage `make drift`: data, prediction and performance drift of a current batch, with Evidently.

Outputs reports/drift.{html,json,md}; every run is also recorded: reports/history/drift.jsonl,
the static page reports/drift_history.html and Evidently snapshots for `make drift-ui`. Exit: 0 no
alert, 1 alert with drift.fail_on_drift, 2 unusable input. Evidently is imported only when used.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops import files
from mlops.config import P_VALUE_TESTS, Config
from mlops.errors import CheckFailed, InputError
from mlops.imports import heavy_imports, import_in_background

log = logging.getLogger(__name__)
REPORTS = Path("reports")
HISTORY_DIR = REPORTS / "history"
HISTORY_LOG = HISTORY_DIR / "drift.jsonl"
HISTORY_PAGE = REPORTS / "drift_history.html"
SNAPSHOTS = HISTORY_DIR / "snapshots"
WORKSPACE = HISTORY_DIR / "workspace"
IMPORTED = WORKSPACE / "imported.txt"
PROJECT_NAME = "drift"
UI_PORT = 8001  # `make serve` has 8000
DEMO_BATCH = Path("data/processed/drift_demo.csv")
PREDICTION = "predicted_probability"
# Degradation must exceed the tolerance by this many standard errors of the current estimate,
# so that a small labelled batch does not raise an alarm by chance.
NOISE_Z = 4.0
# Below this many rows per-column scores are noisy (measured); the report says so.
NOISY_BELOW = 1_000
PERFORMANCE_METRICS = ("accuracy", "roc_auc")
# validate.check_frame's check names, as the one-line error puts them.
CHECK_WORDS = {
    "isin": "value not allowed",
    "in_range": "value out of range",
    "dtype": "not numeric",
    "not_null": "missing values",
    "max_missing": "too many missing values",
    "present": "column missing",
}


def telemetry_off() -> None:
    """Evidently 0.7's only switch: DO_NOT_TRACK set (to anything) silences its usage events, both
    the library's logger and `evidently ui`'s; child processes (drift-ui) inherit it."""
    os.environ["DO_NOT_TRACK"] = "1"


# --- inputs -----------------------------------------------------------------------------------


def has_labels(frame: pd.DataFrame, config: Config) -> bool:
    target = config.schema.target
    return target in frame.columns and bool(frame[target].notna().any())


def check_batch(frame: pd.DataFrame, config: Config, source: str) -> bool:
    """Schema checks of a batch (columns, dtypes, codes, ranges, labels); return `labelled`.

    Frame-level checks meant for training data (minimum rows, label balance, duplicates) are
    left out: in a monitoring batch those are signals, not input errors; drift.min_rows applies.
    """
    from mlops.validate import check_frame

    with_labels = has_labels(frame, config)
    for result in check_frame(frame, config, labelled=with_labels):
        if result["passed"] or result["column"] == "(rows)":
            continue
        what = CHECK_WORDS.get(result["check"], f"{result['check']} check failed")
        detail = f"{result['failures']} row(s)"
        if result["examples"]:
            first = result["examples"][0]
            value = str(first["value"]).removesuffix(".0")
            where = f"row {first['row']}, " if first["row"] is not None else ""
            detail += f"; first: {where}value {value}"
        raise InputError(f"{source}: column {result['column']}: {what} ({detail})")
    check_rows(frame, config, source)
    return with_labels


def check_rows(frame: pd.DataFrame, config: Config, source: str) -> None:
    if len(frame) < config.drift.min_rows:
        raise InputError(
            f"{source}: {len(frame)} rows, fewer than drift.min_rows ({config.drift.min_rows})"
        )


def load_current(config: Config, current: Path | None) -> tuple[pd.DataFrame, str, bool]:
    """(batch, its name, labelled): the CSV named, schema-checked here, or the current split.

    The current split from `make data` was validated by `make validate` before this stage runs
    (Make's order), so only its columns and size are checked again: a full schema check of a
    million rows would cost more than the drift computation itself.
    """
    if current is not None:
        frame = files.read_table(Path(current), config.features)
        return frame, str(current), check_batch(frame, config, str(current))
    path = config.data.processed_dir / "current.parquet"
    frame = files.read_parquet(path)
    missing = [c for c in config.features if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    check_rows(frame, config, str(path))
    return frame, str(path), has_labels(frame, config)


def load_reference(config: Config) -> pd.DataFrame:
    return files.read_parquet(config.data.processed_dir / f"{config.drift.reference}.parquet")


def load_model() -> tuple[Any, dict]:
    """The production model if there is one, else the candidate; with a description of it."""
    from mlops import registry
    from mlops.train import load_candidate

    production = registry.load_production()
    if production is not None:
        model, metadata = production
        source = "production"
    else:
        model, metadata = load_candidate()
        source = "candidate"
    return model, {
        "source": source,
        "version": metadata.get("version"),
        "model_sha256": metadata.get("model_sha256"),
        "features": metadata.get("features"),
        "categories": metadata.get("categories"),
    }


def sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """At most `size` rows, drawn without replacement (seeded); the frame itself if smaller."""
    if len(frame) <= size:
        return frame
    return frame.sample(n=size, random_state=seed).reset_index(drop=True)


def probabilities(model: Any, frame: pd.DataFrame, inputs: tuple[list[str], dict]) -> np.ndarray:
    """P(second class) of each row; inputs: the model's (features, categories)."""
    from mlops.encoding import feature_matrix

    return model.predict_proba(feature_matrix(frame, *inputs))[:, 1]


# --- performance --------------------------------------------------------------------------------


def standard_error(metric: str, value: float, y: np.ndarray, positive: Any) -> float:
    """Sampling standard error of accuracy (binomial) or ROC-AUC (Hanley & McNeil 1982)."""
    n = len(y)
    if metric == "accuracy":
        return math.sqrt(max(value * (1 - value), 0.0) / n)
    n_pos = int(np.sum(y == positive))
    n_neg = n - n_pos
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (
        value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)
    ) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))


def classification_scores(model: Any, y: np.ndarray, probability: np.ndarray) -> dict:
    """Accuracy and ROC-AUC from predicted probabilities (as mlops.evaluate.score defines them)."""
    from sklearn import metrics

    predicted = model.classes_[(probability >= 0.5).astype(int)]
    return {
        "accuracy": float(metrics.accuracy_score(y, predicted)),
        "roc_auc": float(metrics.roc_auc_score(y, probability)) if len(np.unique(y)) == 2 else None,
    }


def performance(
    config: Config,
    model: Any,
    features: tuple[list[str], dict],
    test: pd.DataFrame,
    current: pd.DataFrame,
    labelled: bool,
) -> dict:
    """Accuracy and ROC-AUC on current vs the test split; degraded beyond tolerance and noise.

    `current` carries the model's predicted probabilities already (column PREDICTION).
    """
    target = config.schema.target
    reference = classification_scores(
        model, test[target].to_numpy(), probabilities(model, test, features)
    )
    result: dict[str, Any] = {
        "reference": {m: _round(v) for m, v in reference.items()},
        "reference_split": "test",
        "reference_rows": len(test),
        "current": None,
        "current_rows": 0,
        "labelled": labelled,
        "tolerance": config.drift.performance_tolerance,
        "noise_z": NOISE_Z,
        "drops": {},
        "degraded": False,
        "degraded_metrics": [],
    }
    if not labelled:
        result["note"] = f"the current batch has no {target!r} column: performance not measured"
        return result
    y = current[target].to_numpy()
    scores = classification_scores(model, y, current[PREDICTION].to_numpy())
    result["current"] = {m: _round(v) for m, v in scores.items()}
    result["current_rows"] = len(current)
    for metric in PERFORMANCE_METRICS:
        now, before = scores[metric], reference[metric]
        if now is None or before is None:
            continue
        error = standard_error(metric, now, y, model.classes_[1])
        margin = config.drift.performance_tolerance + NOISE_Z * error
        drop = before - now
        result["drops"][metric] = {
            "drop": _round(drop),
            "margin": _round(margin),
            "standard_error": _round(error),
        }
        if drop > margin:
            result["degraded_metrics"].append(metric)
    result["degraded"] = bool(result["degraded_metrics"])
    return result


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


# --- the Evidently report -----------------------------------------------------------------------


def import_evidently() -> None:
    """Import Evidently (about 2 s) while the data is read and scored (see import_in_background)."""
    telemetry_off()
    import_in_background("evidently", "evidently.metrics")


def evidently_snapshot(
    config: Config,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    timestamp: datetime,
    tags: list[str],
    metadata: dict[str, str],
):
    """Run Evidently on the features (per column and as a whole) and on the predictions.

    The metrics are those DataDriftPreset expands to, DriftedColumnsCount and one ValueDrift per
    feature, without the preset itself: its overview table computes every column's test twice
    more while rendering (1.5-2 s at 50k rows, measured). The HTML shows the drifted-columns
    count and one panel per column instead.
    """
    telemetry_off()
    with heavy_imports():
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import DriftedColumnsCount, ValueDrift

    policy = config.drift
    # Each feature's test, resolved once (Config.drift_policy) for both the dataset count and the
    # per-column metrics, so the two can never disagree.
    tests = {name: config.drift_policy(name) for name in config.features}
    dataset = DriftedColumnsCount(
        columns=config.features,
        drift_share=policy.drift_share,
        per_column_method={name: test.method for name, test in tests.items()},
        per_column_threshold={name: test.threshold for name, test in tests.items()},
    )
    per_column = [
        ValueDrift(column=name, method=test.method, threshold=test.threshold)
        for name, test in tests.items()
    ]
    prediction = ValueDrift(
        column=PREDICTION, method=policy.prediction.method, threshold=policy.prediction.threshold
    )
    report = Report(
        [dataset, *per_column, prediction], include_tests=True, metadata=metadata, tags=tags
    )
    definition = DataDefinition(
        numerical_columns=[*config.numeric, PREDICTION],
        categorical_columns=list(config.categorical),
    )
    columns = [*config.features, PREDICTION]
    return report.run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
        timestamp=timestamp.replace(tzinfo=None),
        name=metadata.get("batch"),
    )


def read_snapshot(snapshot: Any, config: Config) -> dict:
    """Per-column results and the dataset verdict from Evidently's metrics and tests."""
    content = snapshot.dict()
    failed: dict[str, bool] = {}
    dataset_test = None
    for test in content["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift"):
            failed[params["column"]] = test["status"] == "FAIL"
        elif params["type"].endswith(":DriftedColumnsCount"):
            dataset_test = test["status"]
    columns: dict[str, dict] = {}
    share = count = None
    for metric in content["metrics"]:
        params = metric["config"]
        if params["type"].endswith(":ValueDrift"):
            name = params["column"]
            score = float(metric["value"])
            threshold = float(params["threshold"])
            columns[name] = {
                "method": params["method"],
                "score": round(score, 6),
                "threshold": threshold,
                "drifted": failed.get(name, _drifted(params["method"], score, threshold)),
            }
        elif params["type"].endswith(":DriftedColumnsCount"):
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
    prediction = columns.pop(PREDICTION)
    ordered = {name: columns[name] for name in config.features}
    if share is None:  # pragma: no cover - Evidently always computes it
        raise RuntimeError("Evidently returned no DriftedColumnsCount")
    dataset_drift = dataset_test == "FAIL" if dataset_test else share >= config.drift.drift_share
    return {
        "columns": ordered,
        "prediction": prediction,
        "share": round(share, 6),
        "count": count,
        "dataset_drift": bool(dataset_drift),
    }


def _drifted(method: str, score: float, threshold: float) -> bool:
    return score < threshold if method in P_VALUE_TESTS else score >= threshold


# --- verdict and outputs ------------------------------------------------------------------------


def verdict(result: dict) -> tuple[str, list[str]]:
    """("ok" | "warning" | "alert", reasons). Only an alert fails the run."""
    alerts = []
    if result["dataset_drift"]:
        alerts.append(
            f"dataset drift: {len(result['drifted_columns'])} of {len(result['columns'])} "
            f"columns drifted (share {result['share_drifted']:.2f} ≥ {result['drift_share']})"
        )
    prediction = result["prediction_drift"]
    if prediction["drifted"]:
        alerts.append(
            f"prediction drift: {prediction['method']} {prediction['score']:.3f} "
            f"≥ {prediction['threshold']}"
        )
    perf = result["performance"]
    for metric in perf["degraded_metrics"]:
        drop = perf["drops"][metric]
        alerts.append(
            f"{metric} degraded: {perf['current'][metric]:.3f} on current vs "
            f"{perf['reference'][metric]:.3f} on test "
            f"(drop {drop['drop']:.3f} > {drop['margin']:.3f})"
        )
    if alerts:
        return "alert", alerts
    if result["drifted_columns"]:
        names = ", ".join(result["drifted_columns"])
        return "warning", [f"column drift below the dataset threshold: {names}"]
    return "ok", []


def analyse(
    config: Config,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    test: pd.DataFrame,
    *,
    labelled: bool,
    batch: str,
    model: Any,
    model_info: dict,
) -> tuple[dict, Any]:
    """The drift result (drift.json's content) and the Evidently snapshot behind it."""
    started = time.perf_counter()
    policy = config.drift
    sampled = len(reference) > policy.sample_size or len(current) > policy.sample_size
    reference_rows, current_rows = len(reference), len(current)
    reference = sample(reference, policy.sample_size, config.seed)
    current = sample(current, policy.sample_size, config.seed + 1)
    features = (
        model_info.get("features") or config.features,
        model_info.get("categories") or config.categorical,
    )
    reference = reference.assign(**{PREDICTION: probabilities(model, reference, features)})
    current = current.assign(**{PREDICTION: probabilities(model, current, features)})
    perf = performance(config, model, features, test, current, labelled)
    predicted = time.perf_counter()
    created = datetime.now(UTC)
    snapshot = evidently_snapshot(
        config,
        reference,
        current,
        timestamp=created,
        tags=[batch],
        metadata={"batch": batch, "model": model_info.get("version") or model_info["source"]},
    )
    found = read_snapshot(snapshot, config)
    drifted = [name for name, column in found["columns"].items() if column["drifted"]]
    result: dict[str, Any] = {
        "status": "ok",
        "dataset_drift": found["dataset_drift"],
        "share_drifted": found["share"],
        "drifted_columns": drifted,
        "columns": found["columns"],
        "prediction_drift": {
            **found["prediction"],
            "column": PREDICTION,
            "reference_mean": _round(reference[PREDICTION].mean()),
            "current_mean": _round(current[PREDICTION].mean()),
        },
        "performance": perf,
        "reference_rows": reference_rows,
        "current_rows": current_rows,
        "sampled": sampled,
        "sample_size": policy.sample_size,
        "rows_compared": {"reference": len(reference), "current": len(current)},
        "alerts": [],
        "fail_on_drift": policy.fail_on_drift,
        "drift_share": policy.drift_share,
        "reference": policy.reference,
        "batch": batch,
        "model": {k: v for k, v in model_info.items() if k not in ("features", "categories")},
        "policy": policy.model_dump(mode="json"),
        "created_at": created.isoformat(timespec="seconds"),
    }
    result["status"], result["alerts"] = verdict(result)
    finished = time.perf_counter()
    result["seconds"] = round(finished - started, 2)
    result["timings"] = {
        "sample_predict_score": round(predicted - started, 2),
        "evidently": round(finished - predicted, 2),
    }
    return result, snapshot


def markdown(result: dict, html_name: str) -> str:
    """Verdict first, then the drifted columns; pasteable into a job summary or PR comment."""
    icon, headline = {
        "ok": ("✅", "no drift"),
        "warning": ("⚠️", "some columns drifted, no alert"),
        "alert": ("🚨", "drift alert"),
    }[result["status"]]
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
        f"({result['reference_rows']:,} rows){sampled}; model: {_model_name(result['model'])}.",
        "",
    ]
    drifted = result["drifted_columns"]
    lines.append(
        f"- **Data drift:** {len(drifted)} of {len(result['columns'])} columns drifted "
        f"(share {result['share_drifted']:.3f}; dataset drift at ≥ {result['drift_share']})."
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
    perf = result["performance"]
    if perf["current"] is None:
        lines.append(f"- **Performance:** not measured: {perf['note']}.")
    else:
        figures = "; ".join(
            f"{m} {perf['current'][m]:.3f} vs {perf['reference'][m]:.3f} on test"
            for m in PERFORMANCE_METRICS
            if perf["current"].get(m) is not None
        )
        state = "**degraded**" if perf["degraded"] else "within tolerance"
        lines.append(f"- **Performance:** {state} ({figures}).")
    lines.append("")
    if drifted:
        lines += ["| drifted column | method | score | threshold |", "|---|---|---:|---:|"]
        for name in sorted(drifted, key=lambda n: -result["columns"][n]["score"]):
            column = result["columns"][name]
            lines.append(
                f"| {name} | {column['method']} | {column['score']:.4f} | {column['threshold']} |"
            )
        lines.append("")
    lines += [f"Full report: `{html_name}` (self-contained, opens offline in any browser).", ""]
    return "\n".join(lines)


def _model_name(model: dict) -> str:
    if model.get("version"):
        return f"{model['source']} {model['version']}"
    sha = model.get("model_sha256") or ""
    return f"{model['source']} (sha256 {sha[:12]})"


def write_reports(result: dict, snapshot: Any, prefix: Path) -> None:
    html = prefix.with_suffix(".html")
    files.write_text(html, snapshot.get_html_str(as_iframe=False))
    files.write_json(prefix.with_suffix(".json"), result)
    files.write_text(prefix.with_suffix(".md"), markdown(result, html.name))


# --- history ------------------------------------------------------------------------------------


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
        "performance": perf["current"],
        "degraded": perf["degraded"],
        "current_rows": result["current_rows"],
        "model": _model_name(result["model"]),
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


def record(result: dict, snapshot: Any, keep: int) -> None:
    """Every run: a line in reports/history/drift.jsonl, the static page redrawn, and Evidently's
    snapshot saved (the newest `keep`) for `make drift-ui`. Cost independent of history length,
    apart from the small log and page."""
    entries = [*read_history(), history_entry(result)]
    files.write_text(HISTORY_LOG, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
    files.write_text(HISTORY_PAGE, history_page(entries))
    if keep <= 0:
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    files.write_text(SNAPSHOTS / f"{stamp}-{result['status']}.json", snapshot.dumps())
    for old in sorted(SNAPSHOTS.glob("*.json"))[:-keep]:
        old.unlink()


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
    charts = _svg_line(
        [e["share_drifted"] for e in entries],
        latest.get("drift_share"),
        "Share of drifted feature columns per run",
    ) + _svg_line(
        [e["prediction_score"] for e in entries],
        latest.get("prediction_threshold"),
        "Prediction drift score per run",
    )
    rows = []
    for e in reversed(entries):
        perf = e.get("performance") or {}
        figures = ", ".join(f"{k} {v:.3f}" for k, v in perf.items() if v is not None) or "no labels"
        cells = [
            e["created_at"],
            e["batch"],
            e["status"] + (" (degraded)" if e.get("degraded") else ""),
            f"{e['share_drifted']:.3f}",
            ", ".join(e["drifted_columns"]) or "-",
            f"{e['prediction_score']:.3f}",
            figures,
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
    argv = ["-m", "evidently.cli", "ui", "--workspace", str(WORKSPACE)]
    os.execv(sys.executable, [sys.executable, *argv, "--host", host, "--port", str(port)])


# --- entry points -------------------------------------------------------------------------------


def report(
    config: Config, current: pd.DataFrame, *, labelled: bool, batch: str, prefix: Path
) -> dict:
    """Analyse a checked batch, write the reports, record the run; return drift.json's content."""
    reference = load_reference(config)
    test = files.read_parquet(config.data.processed_dir / "test.parquet")
    model, model_info = load_model()
    log.info(
        "comparing %s (%d rows%s) with %s (%d rows); model: %s",
        batch,
        len(current),
        "" if labelled else ", no labels",
        config.drift.reference,
        len(reference),
        _model_name(model_info),
    )
    result, snapshot = analyse(
        config,
        reference,
        current,
        test,
        labelled=labelled,
        batch=batch,
        model=model,
        model_info=model_info,
    )
    write_reports(result, snapshot, prefix)
    record(result, snapshot, config.drift.history_snapshots)
    log.info(
        "%s: %d of %d columns drifted (share %.2f), prediction %s %.3f, performance %s; "
        "reports %s.{html,json,md}",
        result["status"],
        len(result["drifted_columns"]),
        len(result["columns"]),
        result["share_drifted"],
        result["prediction_drift"]["method"],
        result["prediction_drift"]["score"],
        "degraded"
        if result["performance"]["degraded"]
        else ("not measured" if result["performance"]["current"] is None else "ok"),
        prefix,
    )
    return result


def run(config: Config, current: Path | None = None) -> dict:
    """`make drift [CURRENT=batch.csv]`: exit 1 (CheckFailed) on an alert with fail_on_drift."""
    import_evidently()
    frame, batch, with_labels = load_current(config, current)
    result = report(config, frame, labelled=with_labels, batch=batch, prefix=REPORTS / "drift")
    if result["status"] == "alert":
        message = "; ".join(result["alerts"]) + " (see reports/drift.html)"
        if config.drift.fail_on_drift:
            raise CheckFailed(message)
        log.warning("%s; drift.fail_on_drift is false: not failing", message)
    return result


# --- demo -------------------------------------------------------------------------------------


def drifted_batch(frame: pd.DataFrame, config: Config, seed: int) -> tuple[pd.DataFrame, dict]:
    """A deliberately drifted copy of a real batch and a description of what was changed.

    The first numeric feature (AGEP, age) moves up by half a reference standard deviation (about
    ten years), clipped to its declared range; the categorical feature with the most codes (SCHL,
    schooling) gets 40% of its rows redrawn uniformly from its allowed codes, a different mix.
    Labels stay as they were, so a model that relies on these columns also loses accuracy.
    """
    rng = np.random.default_rng(seed)
    out = frame.copy()
    changes: dict[str, str] = {}
    if config.numeric:
        name, bounds = next(iter(config.numeric.items()))
        values = out[name].to_numpy(dtype=np.float64)
        step = 0.5 * float(np.std(values))
        moved = np.clip(values + step, bounds.min, bounds.max)
        if pd.api.types.is_integer_dtype(out[name]):
            moved = np.round(moved)
        out[name] = moved.astype(out[name].dtype)
        changes[name] = f"shifted up by {step:.1f} (half a standard deviation), clipped"
    if config.categorical:
        name, codes = max(config.categorical.items(), key=lambda item: len(item[1]))
        redraw = rng.random(len(out)) < 0.4
        out.loc[redraw, name] = rng.choice(codes, size=int(redraw.sum()))
        changes[name] = "40% of rows redrawn uniformly from the allowed codes"
    return out, changes


def demo_command(config: Config, current: Path | None = None) -> dict:
    """`make drift-demo`: drift a real batch on purpose, report on it, expect the alert.

    Writes data/processed/drift_demo.csv and reports/drift_demo.{html,json,md}. Exit 0 when the
    drifted batch raises the alert (the demo worked), 1 when it does not (monitoring too lax).
    """
    import_evidently()
    frame, batch, with_labels = load_current(config, current)
    drifted, changes = drifted_batch(frame, config, config.seed)
    files.atomic_write(DEMO_BATCH, lambda tmp: drifted.to_csv(tmp, index=False))
    log.info("demo batch %s from %s: %s", DEMO_BATCH, batch, changes)
    result = report(
        config, drifted, labelled=with_labels, batch=str(DEMO_BATCH), prefix=REPORTS / "drift_demo"
    )
    if result["status"] != "alert":
        raise CheckFailed(
            f"the deliberately drifted batch raised no alert (status {result['status']}): "
            "the drift policy in params.yaml may be too lax; see reports/drift_demo.html"
        )
    log.info(
        "demo: alert raised as expected (%s); open reports/drift_demo.html",
        "; ".join(result["alerts"]),
    )
    return result
