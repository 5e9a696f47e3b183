"""Evaluation plots as PNG: confusion matrix, ROC, precision-recall, permutation importance."""

from __future__ import annotations

from typing import Any

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

from mlops import files, layout
from mlops.config import Config

REPORTS = layout.REPORTS


def _save(figure: plt.Figure, name: str) -> None:
    figure.tight_layout()
    files.atomic_write(
        REPORTS / name,
        lambda tmp: figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None}),
    )
    plt.close(figure)


def _curves(model: Pipeline, x: np.ndarray, y: np.ndarray, positive: Any) -> None:
    """ROC and precision-recall curves: of the positive class, or one-vs-rest per class."""
    proba = model.predict_proba(x)
    shown = [positive] if positive is not None else list(model.classes_)
    for name, display in (
        ("roc_curve.png", RocCurveDisplay),
        ("precision_recall.png", PrecisionRecallDisplay),
    ):
        figure, axes = plt.subplots(figsize=(5, 4))
        for label in shown:
            column = list(model.classes_).index(label)
            display.from_predictions(
                y == label, proba[:, column], ax=axes, name=f"{label}", plot_chance_level=False
            )
        axes.set_title(name.removesuffix(".png").replace("_", " "))
        _save(figure, name)


def write_all(
    model: Pipeline,
    x: np.ndarray,
    y: np.ndarray,
    predicted: np.ndarray,
    config: Config,
    positive: Any = None,
) -> dict[str, float]:
    """Write the four plots; return permutation importance (mean ROC-AUC drop) per feature.

    Multiclass models (positive None) are scored by one-vs-rest ROC-AUC.
    """
    figure, axes = plt.subplots(figsize=(5, 4))
    ConfusionMatrixDisplay.from_predictions(y, predicted, labels=model.classes_, ax=axes)
    axes.set_title("confusion matrix")
    _save(figure, "confusion_matrix.png")
    _curves(model, x, y, positive)
    rows = np.random.default_rng(config.seed).permutation(len(x))[: config.evaluate.importance_rows]
    result = permutation_importance(
        model,
        x[rows],
        y[rows],
        scoring="roc_auc_ovr" if positive is None else "roc_auc",
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
