"""A synthetic source of any size with a known shift, for scale tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops.config import Config


def shifted_columns(config: Config) -> list[str]:
    """The columns whose current distribution is shifted: numeric ones first, then categorical."""
    ordered = [*config.numeric, *config.categorical]
    return ordered[: config.synthetic.shifted_columns]


def generate(config: Config, rows: int, *, shifted: bool, seed: int) -> pd.DataFrame:
    """Rows of numeric and categorical features with a logistic label; shift applied if asked."""
    rng = np.random.default_rng(seed)
    spec = config.synthetic
    moved = set(shifted_columns(config)) if shifted else set()
    columns: dict[str, np.ndarray] = {}
    weights = np.random.default_rng(config.seed).normal(0, 1, len(config.features))
    base_mix = np.arange(spec.categories, 0, -1, dtype=float)
    for name in config.categorical:
        mix = base_mix[::-1] if name in moved else base_mix
        columns[name] = rng.choice(spec.categories, size=rows, p=mix / mix.sum())
    for name in config.numeric:
        columns[name] = rng.normal(spec.shift if name in moved else 0.0, 1.0, rows)
    frame = pd.DataFrame(columns)
    standardised = frame.to_numpy(dtype=np.float64)
    standardised[:, : spec.categorical] /= spec.categories
    logits = standardised @ weights + rng.logistic(0.0, 1.0, rows)
    frame[config.schema.target] = np.where(
        logits > 0, config.schema.labels[1], config.schema.labels[0]
    )
    return frame
