"""The model file on raw rows against the fast path (coded matrix → pipeline[1:]): same answers.

The gate runs this on the test split before it promotes (criterion `raw_rows_parity`): the stored
pipeline is called on the raw frame with its columns in a shuffled order, the fast path that
serving, scoring and drift use on mlops.encoding's matrix, and every label must agree and every
probability be within TOLERANCE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.config import Config

TOLERANCE = 1e-9


def check(model: Any, metadata: dict[str, Any], frame: Any, config: Config) -> dict[str, Any]:
    """{passed, takes_raw_rows, max_difference, row, labels_differ} of the model on frame."""
    from mlops.predictions import (
        matrix_model,
        model_matrix,
        model_positive,
        predict,
        takes_raw_frame,
    )

    if not takes_raw_frame(metadata) or not hasattr(model, "feature_names_in_"):
        return {"passed": False, "takes_raw_rows": False, "max_difference": None}
    features = list(metadata.get("features") or config.features)
    shuffled = [features[i] for i in np.random.default_rng(config.seed).permutation(len(features))]
    positive = model_positive(model, metadata)
    fast_labels, fast = predict(
        matrix_model(model, metadata), model_matrix(frame, metadata, config), positive
    )
    raw_labels, raw = predict(model, frame[shuffled], positive)
    difference = np.abs(fast - raw)
    worst = int(np.unravel_index(np.argmax(difference), difference.shape)[0]) if len(frame) else 0
    largest = float(difference.max()) if difference.size else 0.0
    labels_differ = int(np.sum(fast_labels != raw_labels))
    return {
        "passed": largest <= TOLERANCE and labels_differ == 0,
        "takes_raw_rows": True,
        "max_difference": largest,
        "row": worst,
        "labels_differ": labels_differ,
    }
