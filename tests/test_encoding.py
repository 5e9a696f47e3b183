"""One coding of categories for batches (feature_matrix) and for single requests (codes)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlops import encoding

CATEGORIES = {
    "sector": ["Private", "Self-emp", "State-gov"],
    "remote": [False, True],
    "code": [1, 2, 5],
    "half": [0.5, 1.5],
}
FRAME = pd.DataFrame(
    {
        "sector": ["State-gov", None, "Private", "Unknown"],
        "remote": [True, False, None, True],
        "code": [5, 2, np.nan, 7],
        "half": [1.5, 0.5, 0.5, 2.5],
        "age": [30.0, np.nan, 50.5, 61.0],
    }
)


def test_numbers_keep_their_value_and_strings_their_position():
    x = encoding.feature_matrix(FRAME, [*CATEGORIES, "age"], CATEGORIES)
    expected = [
        [2, 1, 5, 1.5, 30.0],
        [np.nan, 0, 2, 0.5, np.nan],  # missing stays missing
        [0, np.nan, np.nan, 0.5, 50.5],
        [np.nan, 1, np.nan, np.nan, 61.0],  # unseen "Unknown", 7 and 2.5 read as missing
    ]
    np.testing.assert_array_equal(x, np.array(expected, dtype=np.float64))


@pytest.mark.parametrize("column", list(CATEGORIES))
def test_single_row_codes_equal_the_batch_coding(column):
    values = CATEGORIES[column]
    table = encoding.codes(values)
    batch = encoding.feature_matrix(pd.DataFrame({column: values}), [column], CATEGORIES)
    assert batch[:, 0].tolist() == [table[value] for value in values]


def test_unseen_counts_values_outside_the_schema():
    assert encoding.unseen(FRAME, CATEGORIES) == {
        "sector": {"Unknown": 1},
        "code": {"7": 1},
        "half": {"2.5": 1},
    }
    assert encoding.unseen(FRAME.drop(columns="sector"), {"sector": ["Private"]}) == {}


def test_column_order_follows_features():
    x = encoding.feature_matrix(FRAME, ["age", "code"], CATEGORIES)
    assert x[0].tolist() == [30.0, 5.0]
    assert math.isnan(x[1, 0])
