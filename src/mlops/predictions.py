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
    versions trained before it, which took the coded matrix themselves)."""
    return model[1:] if takes_raw_frame(metadata) else model


def model_matrix(frame: Any, metadata: dict, config: Config) -> np.ndarray:
    """frame as a model's input: its own features and categories (config's for older versions)."""
    return feature_matrix(
        frame,
        metadata.get("features") or config.features,
        metadata.get("categories") or config.categorical,
        legacy=not takes_raw_frame(metadata),
    )


def predict(model: Any, x: np.ndarray, positive: Any) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, class probabilities): binary models call `positive` (default: their
    second class) at a probability of 0.5 or more; multiclass models their most probable class."""
    proba = model.predict_proba(x)
    if len(model.classes_) == 2 and positive is None:
        positive = model.classes_[1]
    if positive is None:
        return model.classes_[proba.argmax(axis=1)], proba
    column = list(model.classes_).index(positive)
    negative = model.classes_[1 - column]
    return np.where(proba[:, column] >= 0.5, positive, negative), proba
