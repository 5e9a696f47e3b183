"""A fitted model's predictions as the pipeline defines them (evaluate, score, drift)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.config import Config
from mlops.encoding import feature_matrix

RAW_FRAME = "raw_frame"  # metadata "input" of a model file that takes raw rows by name


def model_positive(model: Any, metadata: dict) -> Any:
    """A model's positive class: its metadata's, else (older versions) classes_[1] if binary."""
    if "positive" in metadata:
        return metadata["positive"]
    return model.classes_.tolist()[1] if len(model.classes_) == 2 else None


def takes_raw_frame(metadata: dict) -> bool:
    """True for a model file that takes raw rows by name (trained since the raw-frame pipeline)."""
    return metadata.get("input") == RAW_FRAME


def matrix_model(model: Any, metadata: dict) -> Any:
    """What scores model_matrix(): the pipeline after its raw-columns step (the whole model for
    versions trained before it, which took the coded matrix themselves, and for an OnnxModel of
    mlops.onnx_runtime, which scores the coded matrix itself)."""
    if getattr(model, "runtime", None) == "onnx":
        return model
    return model[1:] if takes_raw_frame(metadata) else model


def model_matrix(frame: Any, metadata: dict, config: Config) -> np.ndarray:
    """frame as a model's input: its own features and categories (config's for older versions)."""
    return feature_matrix(
        frame,
        metadata.get("features") or config.features,
        metadata.get("categories") or config.categorical,
        legacy=not takes_raw_frame(metadata),
    )


POSITIVE_AT = 0.5  # a binary model calls its positive class at this probability or more


def decide(
    proba: np.ndarray, classes: np.ndarray, positive: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, the probability each was chosen with): with `positive` (the positive class's
    column) the positive label at POSITIVE_AT or more, else the most probable class. The one label
    rule of evaluation, drift, scoring and the API."""
    if positive is None:
        top = proba.argmax(axis=1)
        return classes[top], proba[np.arange(len(proba)), top]
    chosen = proba[:, positive]
    return classes[np.where(chosen >= POSITIVE_AT, positive, 1 - positive)], chosen


def predict(model: Any, x: np.ndarray, positive: Any) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, class probabilities): binary models call `positive` (default: their
    second class) as decide() does; multiclass models their most probable class."""
    proba = model.predict_proba(x)
    classes = np.asarray(model.classes_)
    return decide(proba, classes, positive_column(classes, positive))[0], proba


def positive_column(classes: np.ndarray, positive: Any) -> int | None:
    """The positive class's column (a binary model's second class by default); None: multiclass."""
    if len(classes) == 2 and positive is None:
        return 1
    return None if positive is None else list(classes).index(positive)
