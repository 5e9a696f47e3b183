"""Stage `make evaluate`: score the candidate on the test split; metrics.json and plots."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from sklearn import metrics
from sklearn.pipeline import Pipeline

from mlops import __version__, files, layout, tracking
from mlops.config import Config
from mlops.predictions import matrix_model, model_matrix, model_positive, predict
from mlops.train import load_candidate

log = logging.getLogger(__name__)
REPORT = layout.METRICS


def score(model: Pipeline, x: np.ndarray, y: np.ndarray, positive: Any = None) -> dict:
    """Classification metrics of a fitted classifier on (x, y).

    Binary (positive given): precision, recall and F1 of the positive class, ROC-AUC of its
    probability. Multiclass (positive None): macro averages and one-vs-rest ROC-AUC.
    """
    classes = model.classes_
    predicted, proba = predict(model, x, positive)
    if len(classes) == 2 and positive is None:
        positive = classes[1]
    if positive is None:
        average: dict[str, Any] = {"average": "macro"}
        present = set(np.unique(y).tolist()) == set(classes.tolist())
        roc_auc = (
            metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes) if present else None
        )
    else:
        average = {"pos_label": positive}
        two = len(np.unique(y)) == 2
        column = list(classes).index(positive)
        roc_auc = metrics.roc_auc_score(y == positive, proba[:, column]) if two else None
    return {
        "accuracy": metrics.accuracy_score(y, predicted),
        "balanced_accuracy": metrics.balanced_accuracy_score(y, predicted),
        "precision": metrics.precision_score(y, predicted, **average, zero_division=0),
        "recall": metrics.recall_score(y, predicted, **average, zero_division=0),
        "f1": metrics.f1_score(y, predicted, **average, zero_division=0),
        "roc_auc": roc_auc,
        "log_loss": metrics.log_loss(y, proba, labels=classes),
        "confusion_matrix": metrics.confusion_matrix(y, predicted, labels=classes).tolist(),
        "per_class": metrics.classification_report(
            y, predicted, labels=classes, output_dict=True, zero_division=0
        ),
    }


def run(config: Config) -> dict:
    """Score the candidate on data/processed/test.parquet; write reports/metrics.json and PNGs."""
    started = time.perf_counter()
    base = {"version": __version__, "seed": config.seed, "rows_processed": 0}
    if tracking.enabled(config):
        tracking.prepare(config)
    try:
        model, metadata = load_candidate()
        test = files.read_parquet(config.data.processed_dir / "test.parquet")
        x, y = model_matrix(test, metadata, config), test[config.schema.target].to_numpy()
        positive = model_positive(model, metadata)
        coded = matrix_model(model, metadata)  # the pipeline after its raw-columns step
        result = {
            key: files.plain_json(value) for key, value in score(coded, x, y, positive).items()
        }
        predicted = predict(coded, x, positive)[0]
        from mlops import plots  # matplotlib: only evaluate draws (promote imports score)

        importance = plots.write_all(coded, x, y, predicted, config, positive)
    except Exception as exc:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        files.write_json(REPORT, {**base, "status": "error", "error": error})
        raise
    report = {
        **base,
        "status": "success",
        **result,
        "rows_processed": len(test),
        "classes": metadata.get("classes"),
        "positive": positive,
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
    if tracking.enabled(config):
        tracking.log_candidate(config, model, metadata, report)
    return report
