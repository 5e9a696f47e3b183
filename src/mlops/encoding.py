"""The model's input: features as one float64 matrix, categories coded the same everywhere.

A category's code is its position in `encoder_categories()`: the list the stored pipeline's
first step (an OrdinalEncoder, mlops.train.columns_step) was given, i.e. the declared values,
sorted when they are numbers or booleans (scikit-learn requires that). Missing values and
categories the model was not trained with become NaN, which every estimator's pipeline treats as
missing. So `pipeline[1:]` on `feature_matrix(frame)` is `pipeline` on the raw frame: serving codes
one row with `codes()` and skips pandas, batches use `feature_matrix()`; tests/test_encoding.py
checks that the three agree.

Models trained before the pipeline took raw rows (`legacy=True`) took numeric categories as their
own value; strings and booleans by their position in the declared list.
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


def encoder_categories(values: Sequence[Any]) -> list[Any]:
    """The allowed values in the order the pipeline's OrdinalEncoder holds them: numbers and
    booleans sorted (scikit-learn refuses them unsorted), strings as declared."""
    if all(isinstance(v, int | float) for v in values):
        return sorted(values)
    return list(values)


def codes(values: Sequence[Any], legacy: bool = False) -> dict[Any, float]:
    """{allowed value: its code} for one categorical feature."""
    if legacy and numeric_codes(values):
        return {value: float(value) for value in values}
    ordered = list(values) if legacy else encoder_categories(values)
    return {value: float(position) for position, value in enumerate(ordered)}


def legacy_table(values: Sequence[Any]) -> np.ndarray:
    """legacy code of each code: table[code] is what a model trained before raw rows expects."""
    old = codes(values, legacy=True)
    return np.array([old[value] for value in encoder_categories(values)], dtype=np.float64)


def to_legacy(x: np.ndarray, categories: Mapping[str, Sequence[Any]]) -> np.ndarray:
    """A coded matrix (categorical columns first, in order) recoded for a legacy model."""
    out = x.copy()
    for index, values in enumerate(categories.values()):
        table = legacy_table(values)
        if np.array_equal(table, np.arange(len(table), dtype=np.float64)):
            continue
        column = out[:, index]
        known = ~np.isnan(column)
        column[known] = table[column[known].astype(np.intp)]
    return out


def numeric_positions(found: np.ndarray, values: Sequence[Any]) -> np.ndarray:
    """Numbers as their position among the allowed numbers (sorted); others and NaN as NaN."""
    allowed = np.asarray(encoder_categories(values), dtype=np.float64)
    positions = np.searchsorted(allowed, found).clip(0, len(allowed) - 1)
    return np.where(allowed[positions] == found, positions, np.nan)


def encode_column(column: pd.Series, values: Sequence[Any], legacy: bool = False) -> np.ndarray:
    """One categorical column as float codes; unseen or missing values as NaN."""
    import pandas as pd

    if numeric_codes(values):
        numbers = pd.to_numeric(column, errors="coerce")
        if legacy:
            return numbers.where(numbers.isin(values)).to_numpy(dtype=np.float64, na_value=np.nan)
        return numeric_positions(numbers.to_numpy(dtype=np.float64, na_value=np.nan), values)
    ordered = list(values) if legacy else encoder_categories(values)
    positions = pd.Categorical(column, categories=ordered).codes.astype(np.float64)
    positions[positions < 0] = np.nan
    return positions


def feature_matrix(
    frame: pd.DataFrame,
    features: Sequence[str],
    categories: Mapping[str, Sequence[Any]],
    legacy: bool = False,
) -> np.ndarray:
    """The features in the given order as one float64 array (categorical ones coded)."""
    matrix = np.empty((len(frame), len(features)), dtype=np.float64)
    for index, name in enumerate(features):
        column = frame[name]
        if name in categories:
            matrix[:, index] = encode_column(column, categories[name], legacy)
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
