"""Stage `make evaluate`: score the candidate on the test split; metrics.json and plots."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from sklearn import metrics
from sklearn.pipeline import Pipeline

from mlops import __version__, files, plots
from mlops.config import Config
from mlops.train import feature_matrix, load_candidate

log = logging.getLogger(__name__)
REPORT = Path("reports/metrics.json")


def score(model: Pipeline, x: np.ndarray, y: np.ndarray) -> dict:
    """Classification metrics of a fitted binary classifier on (x, y)."""
    probability = model.predict_proba(x)[:, 1]
    predicted = model.classes_[(probability >= 0.5).astype(int)]
    positive = model.classes_[1]
    return {
        "accuracy": metrics.accuracy_score(y, predicted),
        "balanced_accuracy": metrics.balanced_accuracy_score(y, predicted),
        "precision": metrics.precision_score(y, predicted, pos_label=positive, zero_division=0),
        "recall": metrics.recall_score(y, predicted, pos_label=positive, zero_division=0),
        "f1": metrics.f1_score(y, predicted, pos_label=positive, zero_division=0),
        "roc_auc": metrics.roc_auc_score(y, probability) if len(np.unique(y)) == 2 else None,
        "log_loss": metrics.log_loss(y, probability, labels=model.classes_),
        "confusion_matrix": metrics.confusion_matrix(y, predicted, labels=model.classes_).tolist(),
        "per_class": metrics.classification_report(
            y, predicted, labels=model.classes_, output_dict=True, zero_division=0
        ),
    }


def run(config: Config) -> dict:
    """Score the candidate on data/processed/test.parquet; write reports/metrics.json and PNGs."""
    started = time.perf_counter()
    base = {"version": __version__, "seed": config.seed, "rows_processed": 0}
    try:
        model, metadata = load_candidate()
        test = files.read_parquet(config.data.processed_dir / "test.parquet")
        x, y = feature_matrix(test, config.features), test[config.schema.target].to_numpy()
        result = {key: _plain(value) for key, value in score(model, x, y).items()}
        importance = plots.write_all(model, x, y, config)
    except Exception as exc:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        files.write_json(REPORT, {**base, "status": "error", "error": error})
        raise
    report = {
        **base,
        "status": "success",
        **result,
        "rows_processed": len(test),
        "model_sha256": metadata["model_sha256"],
        "data_sha256": files.sha256_file(config.data.processed_dir / "test.parquet"),
        "feature_importance": importance,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    files.write_json(REPORT, report)
    log.info(
        "accuracy %.4f  roc_auc %.4f  f1 %.4f on %d test rows",
        report["accuracy"],
        report["roc_auc"],
        report["f1"],
        len(test),
    )
    return report


def _plain(value: object) -> object:
    """numpy scalars and nested dicts to plain JSON-able Python values, rounded for stable diffs."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float | np.floating):
        return round(float(value), 6)
    return value
