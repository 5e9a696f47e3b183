"""Evaluation plots as PNG: confusion matrix, ROC, precision-recall, permutation importance."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
)
from sklearn.pipeline import Pipeline

from mlops import files
from mlops.config import Config

REPORTS = Path("reports")


def _save(figure: plt.Figure, name: str) -> None:
    figure.tight_layout()
    files.atomic_write(
        REPORTS / name,
        lambda tmp: figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None}),
    )
    plt.close(figure)


def write_all(model: Pipeline, x: np.ndarray, y: np.ndarray, config: Config) -> dict[str, float]:
    """Write the four plots; return permutation importance (mean ROC-AUC drop) per feature."""
    for name, display in (
        ("confusion_matrix.png", ConfusionMatrixDisplay),
        ("roc_curve.png", RocCurveDisplay),
        ("precision_recall.png", PrecisionRecallDisplay),
    ):
        figure, axes = plt.subplots(figsize=(5, 4))
        display.from_estimator(model, x, y, ax=axes)
        axes.set_title(name.removesuffix(".png").replace("_", " "))
        _save(figure, name)
    rows = np.random.default_rng(config.seed).permutation(len(x))[: config.evaluate.importance_rows]
    result = permutation_importance(
        model,
        x[rows],
        y[rows],
        scoring="roc_auc",
        n_repeats=config.evaluate.importance_repeats,
        random_state=config.seed,
        n_jobs=1,
    )
    order = np.argsort(result.importances_mean)
    figure, axes = plt.subplots(figsize=(6, 0.3 * len(order) + 1))
    axes.barh(
        np.array(config.features)[order],
        result.importances_mean[order],
        xerr=result.importances_std[order],
    )
    axes.set_xlabel("mean drop in ROC-AUC when shuffled")
    axes.set_title("permutation importance (test split)")
    _save(figure, "feature_importance.png")
    return {config.features[i]: round(float(result.importances_mean[i]), 6) for i in order[::-1]}
