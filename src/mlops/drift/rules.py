"""The drift rules: each judges the figures of a batch or a chunk under the drift policy and says
why it alerts, or nothing. The same list judges the whole batch and every chunk (mlops.drift.
analysis); adding a rule is one class here, its policy field in config.py and its test.

Any one finding alerts. drift.json keeps the findings' messages (`rule_alerts`, a chunk's
`alerts`), so renderers of a downloaded drift.json need nothing from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mlops.config import DriftConfig

# Below this many rows the importance rule does not judge: one chance flag of an important
# many-code column would alert (measured).
NOISY_BELOW = 1_000


@dataclass(frozen=True)
class Figures:
    """What the rules judge, for a whole batch or one chunk of `rows` rows."""

    columns: dict[str, dict[str, Any]]  # per feature: method, score, threshold, drifted
    dataset_drift: bool
    share: float  # of the feature columns drifted
    importance: float | None  # share of the model's importance carried by the drifted columns
    prediction: dict[str, Any]  # the predicted probability's test (and the predicted class mix's)
    perf: dict[str, Any]  # mlops.drift.performance.performance's result
    rows: int

    @property
    def drifted(self) -> list[str]:
        return [name for name, column in self.columns.items() if column["drifted"]]


@dataclass(frozen=True)
class Finding:
    """One reason to alert."""

    rule: str
    message: str


class Rule(Protocol):
    """A drift rule: its findings on one batch or chunk."""

    name: ClassVar[str]

    def judge(self, figures: Figures, policy: DriftConfig) -> list[Finding]: ...


class DatasetDrift:
    """The share of drifted feature columns reaches drift.drift_share."""

    name: ClassVar[str] = "dataset_drift"

    def judge(self, figures: Figures, policy: DriftConfig) -> list[Finding]:
        if not figures.dataset_drift:
            return []
        return [
            Finding(
                self.name,
                f"dataset drift: {len(figures.drifted)} of {len(figures.columns)} columns drifted "
                f"(share {figures.share:.2f} ≥ {policy.drift_share})",
            )
        ]


class ImportanceDrift:
    """The drifted columns carry at least drift.importance_share of the model's importance."""

    name: ClassVar[str] = "importance_drift"

    def judge(self, figures: Figures, policy: DriftConfig) -> list[Finding]:
        importance = figures.importance
        if importance is None or figures.rows < NOISY_BELOW:
            return []
        if importance < policy.importance_share:
            return []
        return [
            Finding(
                self.name,
                f"importance-weighted drift: drifted column(s) {', '.join(figures.drifted)} carry "
                f"{importance:.2f} of the model's importance (≥ {policy.importance_share})",
            )
        ]


class PredictionDrift:
    """The predicted probability's distribution drifted (drift.prediction's test)."""

    name: ClassVar[str] = "prediction_drift"

    def judge(self, figures: Figures, policy: DriftConfig) -> list[Finding]:
        prediction = figures.prediction
        if not prediction.get("probability_drifted", prediction["drifted"]):
            return []
        return [
            Finding(
                self.name,
                f"prediction drift: {prediction['method']} {prediction['score']:.3f} "
                f"≥ {prediction['threshold']}",
            )
        ]


class PredictedClassMix:
    """Multiclass: the mix of predicted classes drifted."""

    name: ClassVar[str] = "predicted_class_mix"

    def judge(self, figures: Figures, policy: DriftConfig) -> list[Finding]:
        label = figures.prediction.get("predicted_label")
        if not label or not label["drifted"]:
            return []
        return [
            Finding(
                self.name,
                f"prediction drift (predicted class mix): {label['method']} "
                f"{label['score']:.3f} ≥ {label['threshold']}",
            )
        ]


class Degradation:
    """A performance metric, measured or estimated (CBPE), fell below its alert line."""

    name: ClassVar[str] = "degradation"

    def judge(self, figures: Figures, policy: DriftConfig) -> list[Finding]:
        perf = figures.perf
        source = perf["judged_by"]
        current = perf["current"] if source == "measured" else perf["estimated"]
        reference: dict[str, Any] = perf.get("reference") or {}
        if source == "estimated":  # CBPE's own figure on the test split
            reference = perf["estimated"].get("reference", reference)
        found = []
        for metric in perf["degraded_metrics"]:
            drop = perf["drops"][metric]
            line = drop.get("lower_alert")
            below = "" if line is None else f"below the alert line {line:.3f}, "
            found.append(
                Finding(
                    self.name,
                    f"{metric} degraded ({source}): {current[metric]:.3f} vs "
                    f"{reference[metric]:.3f} on test ({below}drop {drop['drop']:.3f} > "
                    f"{drop['margin']:.3f})",
                )
            )
        return found


RULES: tuple[Rule, ...] = (
    DatasetDrift(),
    ImportanceDrift(),
    PredictionDrift(),
    PredictedClassMix(),
    Degradation(),
)


def judge(figures: Figures, policy: DriftConfig) -> list[Finding]:
    """Every rule's findings, in RULES order (empty: no alert)."""
    return [finding for rule in RULES for finding in rule.judge(figures, policy)]
