"""Model performance on a batch: measured where labels exist, estimated from probabilities (CBPE).

Estimation is confidence-based performance estimation (CBPE; NannyML, after Guo et al. 2017 on
calibration): the production model's probabilities are calibrated on the labelled test split
(isotonic regression), and each row of the batch then counts as correct with its calibrated
probability. The expected accuracy is the mean of those; the expected ROC-AUC (binary) is the
area under the curve where each row is a fractional positive (weight = calibrated P(positive)).
Assumption: no concept drift. P(label | features) is what it was on the test split; only the
mix of inputs moved. A change in that relation is invisible without labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops.config import Config

METRICS = ("accuracy", "roc_auc")
# Degradation must exceed the tolerance by this many standard errors of the current figure,
# so that a small batch does not raise an alarm by chance.
NOISE_Z = 4.0


@dataclass(frozen=True)
class Predictions:
    """What the model said about some rows: the predicted labels and the monitored probability
    (binary: P(positive); multiclass: the top-class probability)."""

    labels: np.ndarray
    probability: np.ndarray
    positive: Any  # binary: the positive label; multiclass: None

    def take(self, rows: np.ndarray | slice) -> Predictions:
        return Predictions(self.labels[rows], self.probability[rows], self.positive)

    def __len__(self) -> int:
        return len(self.labels)


def positive_label(model: Any, model_info: dict) -> Any:
    """Binary: the positive label (metadata "positive", else the second class); else None."""
    from mlops.predictions import model_positive

    return model_positive(model, model_info)


def predict(model: Any, x: np.ndarray, positive: Any) -> Predictions:
    from mlops.predictions import predict as labels_and_probabilities

    labels, proba = labels_and_probabilities(model, x, positive)
    if positive is None:
        return Predictions(labels, proba.max(axis=1), None)
    return Predictions(labels, proba[:, list(model.classes_).index(positive)], positive)


def standard_error(metric: str, value: float, n: int, n_pos: float) -> float:
    """Sampling standard error of accuracy (binomial) or ROC-AUC (Hanley & McNeil 1982)."""
    if metric == "accuracy":
        return math.sqrt(max(value * (1 - value), 0.0) / n)
    n_neg = n - n_pos
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (
        value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)
    ) / max(n_pos * n_neg, 1.0)
    return math.sqrt(max(variance, 0.0))


def measured(y: np.ndarray, predicted: Predictions) -> dict[str, float | None]:
    """Accuracy and (binary, both labels present) ROC-AUC."""
    from sklearn import metrics

    accuracy = float(np.mean(y == predicted.labels))
    roc = None
    if predicted.positive is not None and len(np.unique(y)) == 2:
        roc = float(metrics.roc_auc_score(y == predicted.positive, predicted.probability))
    return {"accuracy": accuracy, "roc_auc": roc}


def measured_errors(scores: dict, y: np.ndarray, predicted: Predictions) -> dict[str, float]:
    n_pos = float(np.sum(y == predicted.positive)) if predicted.positive is not None else 0.0
    return {m: standard_error(m, v, len(y), n_pos) for m, v in scores.items() if v is not None}


@dataclass(frozen=True)
class Estimator:
    """CBPE calibrated on the test split: P(positive | probability) for a binary model,
    P(correct | top-class probability) for a multiclass one."""

    calibrator: Any
    reference: dict[str, float | None]
    reference_errors: dict[str, float]

    @classmethod
    def fit(cls, y: np.ndarray, predicted: Predictions) -> Estimator:
        from sklearn.isotonic import IsotonicRegression

        if predicted.positive is not None:
            target = y == predicted.positive
        else:
            target = y == predicted.labels
        calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        calibrator.fit(predicted.probability, target.astype(np.float64))
        reference = measured(y, predicted)
        return cls(calibrator, reference, measured_errors(reference, y, predicted))

    def estimate(self, predicted: Predictions) -> tuple[dict, dict]:
        """(expected metrics, their standard errors) on rows without labels."""
        calibrated = self.calibrator.predict(predicted.probability)
        if predicted.positive is None:
            correct = calibrated
        else:
            correct = np.where(predicted.labels == predicted.positive, calibrated, 1 - calibrated)
        n = len(correct)
        accuracy = float(np.mean(correct))
        # The batch's own sampling error and the calibration's (the test split's error).
        errors = {
            "accuracy": math.hypot(
                math.sqrt(float(np.sum(correct * (1 - correct)))) / n,
                self.reference_errors["accuracy"],
            )
        }
        scores: dict[str, float | None] = {"accuracy": accuracy, "roc_auc": None}
        if predicted.positive is not None:
            roc, positives = expected_roc_auc(predicted.probability, calibrated)
            if roc is not None:
                scores["roc_auc"] = roc
                errors["roc_auc"] = math.hypot(
                    standard_error("roc_auc", roc, n, positives),
                    self.reference_errors.get("roc_auc", 0.0),
                )
        return scores, errors


def expected_roc_auc(score: np.ndarray, positive: np.ndarray) -> tuple[float | None, float]:
    """ROC-AUC when row i is a positive with probability positive[i]: (AUC, expected positives).

    Pairs (i, j) count positive[i] * (1 - positive[j]) when score[i] > score[j], half on ties.
    """
    values, group = np.unique(score, return_inverse=True)
    pos = np.bincount(group, weights=positive, minlength=len(values))
    neg = np.bincount(group, weights=1 - positive, minlength=len(values))
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= 0 or total_neg <= 0:
        return None, total_pos
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (total_pos * total_neg)), total_pos


def judge(
    reference: dict, current: dict, errors: dict, tolerance: float
) -> tuple[dict[str, dict], list[str]]:
    """Per metric: the drop vs the reference and its margin; the metrics degraded beyond it."""
    drops: dict[str, dict] = {}
    degraded = []
    for metric in METRICS:
        now, before = current.get(metric), reference.get(metric)
        if now is None or before is None:
            continue
        margin = tolerance + NOISE_Z * errors[metric]
        drop = before - now
        drops[metric] = {
            "drop": rounded(drop),
            "margin": rounded(margin),
            "standard_error": rounded(errors[metric]),
        }
        if drop > margin:
            degraded.append(metric)
    return drops, degraded


def performance(
    config: Config,
    estimator: Estimator,
    current: Predictions,
    y: np.ndarray | None,
) -> dict:
    """Measured (labels) and estimated (always) accuracy and ROC-AUC on a batch vs the test
    split; degraded when either drops beyond tolerance plus NOISE_Z of its standard errors."""
    tolerance = config.drift.performance_tolerance
    estimated, estimated_errors = estimator.estimate(current)
    estimated_drops, estimated_degraded = judge(
        estimator.reference, estimated, estimated_errors, tolerance
    )
    result: dict[str, Any] = {
        "reference": {m: rounded(v) for m, v in estimator.reference.items()},
        "reference_split": "test",
        "current": None,
        "current_rows": len(current),
        "labelled": y is not None,
        "tolerance": tolerance,
        "noise_z": NOISE_Z,
        "drops": {},
        "estimated": {
            "method": "CBPE (isotonic calibration on the test split)",
            "assumption": "no concept drift: P(label | features) as on the test split",
            **{m: rounded(v) for m, v in estimated.items()},
            "standard_errors": {m: rounded(v) for m, v in estimated_errors.items()},
            "drops": estimated_drops,
            "degraded_metrics": estimated_degraded,
        },
        "degraded": False,
        "degraded_metrics": [],
    }
    known = None if y is None else _labelled(y)
    if known is not None and not known.any():
        y, known = None, None
    result["labelled_rows"] = 0 if known is None else int(known.sum())
    if y is None:
        result["note"] = (
            f"the batch has no {config.schema.target!r} column: performance estimated, not measured"
        )
        result["judged_by"] = "estimated"
        result["drops"], result["degraded_metrics"] = estimated_drops, estimated_degraded
    else:
        # Labels are the truth: the estimate then only shows how close it came.
        labelled = current if known.all() else current.take(known)
        y = y[known]
        scores = measured(y, labelled)
        result["current"] = {m: rounded(v) for m, v in scores.items()}
        result["judged_by"] = "measured"
        result["drops"], result["degraded_metrics"] = judge(
            estimator.reference, scores, measured_errors(scores, y, labelled), tolerance
        )
        result["estimated"]["error"] = {
            m: rounded(estimated[m] - scores[m])
            for m in METRICS
            if estimated.get(m) is not None and scores.get(m) is not None
        }
        if not known.all():  # labels that arrived for some rows: the rest is estimated
            rest, rest_errors = estimator.estimate(current.take(~known))
            rest_drops, rest_degraded = judge(estimator.reference, rest, rest_errors, tolerance)
            result["judged_by"] = "measured+estimated"
            result["unlabelled"] = {
                "rows": int((~known).sum()),
                **{m: rounded(v) for m, v in rest.items()},
                "drops": rest_drops,
                "degraded_metrics": rest_degraded,
            }
            for metric in rest_degraded:
                if metric not in result["degraded_metrics"]:
                    result["degraded_metrics"].append(metric)
                    result["drops"][metric] = rest_drops[metric]
    result["degraded"] = bool(result["degraded_metrics"])
    return result


def _labelled(y: np.ndarray) -> np.ndarray:
    """Which rows have a label (labels joined later leave the others missing)."""
    import pandas as pd

    return np.asarray(pd.notna(y), dtype=bool)


def rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)
