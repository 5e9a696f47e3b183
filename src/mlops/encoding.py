"""The model's input: features as one float64 matrix, categories coded the same everywhere.

Categorical columns whose allowed values are all numbers keep their value as the code (the
embedded ACS codes train exactly as before); strings and booleans are coded by their position in
the declared list. Missing values and categories the model was not trained with become NaN,
which every estimator's pipeline treats as missing. Serving codes one row with `codes()`, batches
use `feature_matrix()`; tests/test_encoding.py checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where a column is coded: serving (codes()) never needs pandas
    import pandas as pd


def numeric_codes(values: Sequence[Any]) -> bool:
    """True when every allowed value is a number (booleans are not): the value is its own code."""
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def codes(values: Sequence[Any]) -> dict[Any, float]:
    """{allowed value: its code} for one categorical feature."""
    if numeric_codes(values):
        return {value: float(value) for value in values}
    return {value: float(position) for position, value in enumerate(values)}


def encode_column(column: pd.Series, values: Sequence[Any]) -> np.ndarray:
    """One categorical column as float codes; unseen or missing values as NaN."""
    import pandas as pd

    if numeric_codes(values):
        numbers = pd.to_numeric(column, errors="coerce")
        return numbers.where(numbers.isin(values)).to_numpy(dtype=np.float64, na_value=np.nan)
    positions = pd.Categorical(column, categories=list(values)).codes.astype(np.float64)
    positions[positions < 0] = np.nan
    return positions


def feature_matrix(
    frame: pd.DataFrame, features: Sequence[str], categories: Mapping[str, Sequence[Any]]
) -> np.ndarray:
    """The features in the given order as one float64 array (categorical ones coded)."""
    matrix = np.empty((len(frame), len(features)), dtype=np.float64)
    for index, name in enumerate(features):
        column = frame[name]
        if name in categories:
            matrix[:, index] = encode_column(column, categories[name])
        else:
            matrix[:, index] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return matrix


def unseen(frame: pd.DataFrame, categories: Mapping[str, Sequence[Any]]) -> dict[str, dict]:
    """{column: {value: count}} of categories outside the allowed values (missing not counted)."""
    found: dict[str, dict] = {}
    for name, values in categories.items():
        if name in frame.columns:
            counts = frame[name].value_counts(dropna=True)
            outside = unseen_counts(dict(zip(counts.index, counts.to_numpy(), strict=True)), values)
            if outside:
                found[name] = outside
    return found


def unseen_counts(counts: Mapping[Any, int], values: Sequence[Any]) -> dict[str, int]:
    """{value as text: count} of the counted values outside the allowed ones, by value."""
    import pandas as pd

    seen = pd.Series(list(counts), dtype=object)
    if numeric_codes(values):
        seen = pd.to_numeric(seen, errors="coerce").fillna(seen)
    outside: dict[str, int] = {}
    for value, count, allowed in zip(counts, counts.values(), seen.isin(values), strict=True):
        if not allowed and count:
            text = _text(value)
            outside[text] = outside.get(text, 0) + int(count)
    return dict(sorted(outside.items()))


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
