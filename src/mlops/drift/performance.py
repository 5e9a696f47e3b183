"""Model performance on a batch: measured where labels exist, estimated from probabilities (CBPE),
each judged against an alert line drawn from the test split's own variability.

Metrics, every task: accuracy, ROC-AUC and F1 (binary: of the positive class; multiclass: the
one-vs-rest macro ROC-AUC and the macro F1).

Estimation is confidence-based performance estimation (CBPE; NannyML, after Guo et al. 2017 on
calibration): the production model's probabilities are calibrated on the labelled test split
(isotonic regression), and each row of the batch then counts as correct, positive or of class k
with its calibrated probability. Accuracy: the mean of P(correct) (binary: from P(positive);
multiclass: from the top-class probability). ROC-AUC: the area under the curve where each row is
a fractional positive (multiclass: per class, one-vs-rest, then the mean). F1: from the expected
true and false positives and false negatives. Assumption: no concept drift. P(label | features)
is what it was on the test split; only the mix of inputs moved. A change in that relation is
invisible without labels.

Alert lines (NannyML's way, with a bootstrap): a metric of a batch or chunk of n rows alerts when
it falls below `lower_alert` = the test split's figure - drift.performance_tolerance - NOISE_Z
standard deviations, the standard deviation being how much that metric varies over DRAWS seeded
bootstrap samples of n rows of the test split (at most EXACT_UP_TO rows drawn, scaled by
sqrt(drawn / n) above), and never less than the test split's own (the same at its size): the
figure it is compared with is itself an estimate, so a batch far larger than the test split is
not held to a finer line than the test split can draw. A random sample of the test split crosses
a line with probability about 0.13% per metric (NOISE_Z = 3); new rows of the test split's
distribution, whose own figure differs from the test split's by chance too, at most about 1.7%
(a chunk as large as the test split; less for smaller or larger chunks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from mlops.config import Config

METRICS = ("accuracy", "roc_auc", "f1")
NOISE_Z = 3.0  # standard deviations of the metric at the chunk's size below the test split's
DRAWS = 100  # bootstrap samples of the test split per size
EXACT_UP_TO = 5_000  # bootstrap at the chunk's own size up to this many rows; scaled above
THRESHOLDS = (
    f"test split's figure - tolerance - {NOISE_Z:g} standard deviations of the metric over "
    f"{DRAWS} seeded bootstrap samples of the chunk's size (at most {EXACT_UP_TO:,} rows drawn, "
    "scaled by sqrt(drawn / rows) above), never less than at the test split's own size"
)


@dataclass(frozen=True)
class Predictions:
    """What the model said about some rows: predicted labels and every class's probability."""

    labels: np.ndarray
    proba: np.ndarray  # (rows, classes), in `classes` order
    classes: np.ndarray
    positive: Any  # binary: the positive label; multiclass: None

    def take(self, rows: np.ndarray | slice) -> Predictions:
        return Predictions(self.labels[rows], self.proba[rows], self.classes, self.positive)

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def probability(self) -> np.ndarray:
        """The monitored probability: binary P(positive); multiclass the top-class one."""
        if self.positive is None:
            return self.proba.max(axis=1)
        return self.proba[:, list(self.classes).index(self.positive)]

    @property
    def scores(self) -> np.ndarray:
        """(rows, k) the scores ROC-AUC ranks: binary P(positive); multiclass every class's."""
        return self.probability[:, None] if self.positive is not None else self.proba

    @property
    def predicted(self) -> np.ndarray:
        """(rows, k) whether each row was predicted as the positive class (binary) or class k."""
        if self.positive is not None:
            return (self.labels == self.positive)[:, None]
        return self.labels[:, None] == self.classes[None, :]


def positive_label(model: Any, model_info: dict) -> Any:
    """Binary: the positive label (metadata "positive", else the second class); else None."""
    from mlops.predictions import model_positive

    return model_positive(model, model_info)


def predict(model: Any, x: np.ndarray, positive: Any) -> Predictions:
    from mlops.predictions import predict as labels_and_probabilities

    labels, proba = labels_and_probabilities(model, x, positive)
    return of_probabilities(labels, proba, np.asarray(model.classes_), positive)


def of_probabilities(
    labels: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: Any
) -> Predictions:
    if positive is None and len(classes) == 2:
        positive = classes[1]
    return Predictions(labels, proba, classes, positive)


# --- metrics as sums over rows --------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Per-row quantities every metric is built from: measured (0/1 from labels) or expected
    (calibrated probabilities). k columns: the positive class (binary), every class (multiclass)."""

    correct: np.ndarray  # (rows,) correct, or P(correct)
    truth: np.ndarray  # (rows, k) of the class, or P(class)
    predicted: np.ndarray  # (rows, k) predicted as the class
    groups: np.ndarray  # (rows, k) rank group of the row's score for the class (ties share one)
    sizes: tuple[int, ...]  # groups per column

    def take(self, rows: np.ndarray) -> Rows:
        return Rows(
            self.correct[rows],
            self.truth[rows],
            self.predicted[rows],
            self.groups[rows],
            self.sizes,
        )

    def metrics(self) -> dict[str, float | None]:
        """Accuracy, ROC-AUC (macro over classes with both outcomes) and F1 (macro)."""
        aucs, f1s = [], []
        for k, size in enumerate(self.sizes):
            truth, predicted = self.truth[:, k], self.predicted[:, k]
            auc = grouped_auc(self.groups[:, k], size, truth)
            if auc is not None:
                aucs.append(auc)
            tp = float(truth[predicted].sum())
            fp = float(predicted.sum()) - tp
            fn = float(truth.sum()) - tp
            if 2 * tp + fp + fn > 0:
                f1s.append(2 * tp / (2 * tp + fp + fn))
        return {
            "accuracy": float(np.mean(self.correct)) if len(self.correct) else None,
            "roc_auc": float(np.mean(aucs)) if aucs else None,
            "f1": float(np.mean(f1s)) if f1s else None,
        }


def rank_groups(scores: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Per column, each row's index among the column's sorted distinct scores."""
    groups = np.empty(scores.shape, dtype=np.int64)
    sizes = []
    for k in range(scores.shape[1]):
        values, groups[:, k] = np.unique(scores[:, k], return_inverse=True)
        sizes.append(len(values))
    return groups, tuple(sizes)


def grouped_auc(group: np.ndarray, size: int, positive: np.ndarray) -> float | None:
    """ROC-AUC with row i a positive of weight positive[i], scores given as rank groups."""
    pos = np.bincount(group, weights=positive, minlength=size)
    neg = np.bincount(group, minlength=size) - pos
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= 1e-12 or total_neg <= 1e-12:
        return None
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (total_pos * total_neg))


def expected_roc_auc(score: np.ndarray, positive: np.ndarray) -> tuple[float | None, float]:
    """ROC-AUC when row i is a positive with probability positive[i]: (AUC, expected positives).

    Pairs (i, j) count positive[i] * (1 - positive[j]) when score[i] > score[j], half on ties.
    """
    values, group = np.unique(score, return_inverse=True)
    return grouped_auc(group, len(values), np.asarray(positive, dtype=np.float64)), float(
        np.sum(positive)
    )


def measured_rows(y: np.ndarray, predicted: Predictions, groups: tuple | None = None) -> Rows:
    if predicted.positive is not None:
        truth = (y == predicted.positive)[:, None].astype(np.float64)
    else:
        truth = (y[:, None] == predicted.classes[None, :]).astype(np.float64)
    groups = groups or rank_groups(predicted.scores)
    correct = (y == predicted.labels).astype(np.float64)
    return Rows(correct, truth, predicted.predicted, *groups)


def measured(y: np.ndarray, predicted: Predictions) -> dict[str, float | None]:
    """Accuracy, ROC-AUC and F1 from labels (ROC-AUC: None unless both outcomes occur)."""
    return measured_rows(y, predicted).metrics()


def standard_error(metric: str, value: float, n: int, n_pos: float) -> float:
    """Sampling standard error of accuracy (binomial) or ROC-AUC (Hanley & McNeil 1982): the
    analytic forms the bootstrap agrees with (tests/test_drift_rules.py)."""
    if metric == "accuracy":
        return math.sqrt(max(value * (1 - value), 0.0) / n)
    n_neg = n - n_pos
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (
        value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)
    ) / max(n_pos * n_neg, 1.0)
    return math.sqrt(max(variance, 0.0))


# --- the estimator and the alert lines ------------------------------------------------------------


@dataclass
class PerformanceEstimator:
    """CBPE calibrated on the test split, and the test split's variability at any size."""

    calibrator: Any  # binary: P(positive | score); multiclass: P(correct | top-class probability)
    per_class: list[Any] | None  # multiclass: P(class k | its probability), one per class
    reference: dict[str, float | None]  # measured on the test split
    reference_estimated: dict[str, float | None]  # CBPE on the test split
    test_rows: dict[str, Rows]  # {"measured": ..., "estimated": ...} of the test split
    seed: int = 0
    _spreads: dict = field(default_factory=dict, repr=False)

    @classmethod
    def fit(cls, y: np.ndarray, predicted: Predictions, seed: int = 0) -> PerformanceEstimator:
        from sklearn.isotonic import IsotonicRegression

        def isotonic(score: np.ndarray, target: np.ndarray) -> Any:
            model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            return model.fit(score, target.astype(np.float64))

        per_class = None
        if predicted.positive is not None:
            calibrator = isotonic(predicted.probability, y == predicted.positive)
        else:
            calibrator = isotonic(predicted.probability, y == predicted.labels)
            per_class = [
                isotonic(predicted.proba[:, k], y == label)
                for k, label in enumerate(predicted.classes)
            ]
        estimator = cls(calibrator, per_class, {}, {}, {}, seed)
        groups = rank_groups(predicted.scores)
        estimator.test_rows = {
            "measured": measured_rows(y, predicted, groups),
            "estimated": estimator.expected_rows(predicted, groups),
        }
        estimator.reference = estimator.test_rows["measured"].metrics()
        estimator.reference_estimated = estimator.test_rows["estimated"].metrics()
        return estimator

    def expected_rows(self, predicted: Predictions, groups: tuple | None = None) -> Rows:
        """CBPE's per-row expectations on rows without labels."""
        calibrated = self.calibrator.predict(predicted.probability)
        if predicted.positive is None:
            correct = calibrated
            truth = np.column_stack(
                [c.predict(predicted.proba[:, k]) for k, c in enumerate(self.per_class or [])]
            )
            total = truth.sum(axis=1, keepdims=True)
            truth = np.divide(truth, total, out=np.zeros_like(truth), where=total > 0)
        else:
            is_positive = predicted.labels == predicted.positive
            correct = np.where(is_positive, calibrated, 1 - calibrated)
            truth = calibrated[:, None]
        groups = groups or rank_groups(predicted.scores)
        return Rows(correct, truth, predicted.predicted, *groups)

    def estimate(self, predicted: Predictions) -> tuple[dict, dict]:
        """(expected metrics, their standard deviations at this many rows) without labels."""
        scores = self.expected_rows(predicted).metrics()
        return scores, self.spread("estimated", len(predicted))

    def spread(self, source: str, rows: int) -> dict[str, float]:
        """Per metric: its standard deviation over test-split samples of `rows` rows, never less
        than at the test split's own size (see the module docstring)."""
        own = self._bootstrap(source, rows)
        test = self._bootstrap(source, len(self.test_rows[source].correct))
        return {m: max(own[m], test.get(m, 0.0)) for m in own}

    def _bootstrap(self, source: str, rows: int) -> dict[str, float]:
        drawn = max(min(rows, EXACT_UP_TO), 2)
        key = (source, drawn)
        if key not in self._spreads:
            base = self.test_rows[source]
            rng = np.random.default_rng([self.seed, drawn, source == "estimated"])
            draws = [
                base.take(rng.integers(0, len(base.correct), drawn)).metrics() for _ in range(DRAWS)
            ]
            self._spreads[key] = {
                m: float(np.std(values, ddof=1))
                for m in METRICS
                if len(values := [v for d in draws if (v := d[m]) is not None]) > 1
            }
        scale = math.sqrt(drawn / max(rows, 1))
        return {m: sd * scale for m, sd in self._spreads[key].items()}


def judge(
    reference: dict, current: dict, errors: dict, tolerance: float
) -> tuple[dict[str, dict], list[str]]:
    """Per metric: the drop vs the reference, its margin (tolerance + NOISE_Z standard
    deviations) and the alert line; the metrics that fell below their line."""
    drops: dict[str, dict] = {}
    degraded = []
    for metric in METRICS:
        now, before = current.get(metric), reference.get(metric)
        if now is None or before is None or metric not in errors:
            continue
        margin = tolerance + NOISE_Z * errors[metric]
        drop = before - now
        drops[metric] = {
            "drop": rounded(drop),
            "margin": rounded(margin),
            "standard_error": rounded(errors[metric]),
            "lower_alert": rounded(before - margin),
        }
        if drop > margin:
            degraded.append(metric)
    return drops, degraded


def metric_lines(values: dict, drops: dict, source: str) -> dict[str, dict]:
    """{metric: {value, source, lower_alert}} of one batch or chunk, every metric of the task."""
    return {
        metric: {
            "value": rounded(values.get(metric)),
            "source": source,
            "lower_alert": drops.get(metric, {}).get("lower_alert"),
        }
        for metric in METRICS
    }


def performance(
    config: Config,
    estimator: PerformanceEstimator,
    current: Predictions,
    y: np.ndarray | None,
) -> dict:
    """Measured (labels) and estimated (always) accuracy, ROC-AUC and F1 on a batch vs the test
    split; degraded when one falls below its alert line (see the module docstring)."""
    tolerance = config.drift.performance_tolerance
    groups = rank_groups(current.scores)
    estimated = estimator.expected_rows(current, groups).metrics()
    estimated_errors = estimator.spread("estimated", len(current))
    estimated_drops, estimated_degraded = judge(
        estimator.reference_estimated, estimated, estimated_errors, tolerance
    )
    result: dict[str, Any] = {
        "reference": {m: rounded(v) for m, v in estimator.reference.items()},
        "reference_split": "test",
        "current": None,
        "current_rows": len(current),
        "labelled": y is not None,
        "tolerance": tolerance,
        "noise_z": NOISE_Z,
        "thresholds": THRESHOLDS,
        "drops": {},
        "estimated": {
            "method": "CBPE (isotonic calibration on the test split)",
            "assumption": "no concept drift: P(label | features) as on the test split",
            **{m: rounded(v) for m, v in estimated.items()},
            "reference": {m: rounded(v) for m, v in estimator.reference_estimated.items()},
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
        result["metrics"] = metric_lines(estimated, estimated_drops, "estimated")
    else:
        assert known is not None  # labels given (y), so which rows have one
        # Labels are the truth: the estimate then only shows how close it came.
        labelled = current if known.all() else current.take(known)
        y = y[known]
        labelled_groups = groups if known.all() else None  # None: ranked for these rows
        scores = measured_rows(y, labelled, labelled_groups).metrics()
        result["current"] = {m: rounded(v) for m, v in scores.items()}
        result["judged_by"] = "measured"
        result["drops"], result["degraded_metrics"] = judge(
            estimator.reference, scores, estimator.spread("measured", len(labelled)), tolerance
        )
        result["metrics"] = metric_lines(scores, result["drops"], "measured")
        result["estimated"]["error"] = {
            m: rounded(guess - found)
            for m in METRICS
            if (guess := estimated.get(m)) is not None and (found := scores.get(m)) is not None
        }
        if not known.all():  # labels that arrived for some rows: the rest is estimated
            rest, rest_errors = estimator.estimate(current.take(~known))
            rest_drops, rest_degraded = judge(
                estimator.reference_estimated, rest, rest_errors, tolerance
            )
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
