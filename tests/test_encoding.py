"""One coding of categories for batches (feature_matrix), single requests (codes) and the stored
pipeline's first step (mlops.train.columns_step); the legacy coding of older model versions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops import encoding

CATEGORIES = {
    "sector": ["Private", "Self-emp", "State-gov"],
    "remote": [False, True],
    "code": [5, 1, 2],  # declared unsorted: numbers are coded by their sorted position
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


def test_codes_are_positions_in_the_encoders_list():
    x = encoding.feature_matrix(FRAME, [*CATEGORIES, "age"], CATEGORIES)
    expected = [
        [2, 1, 2, 1, 30.0],
        [np.nan, 0, 1, 0, np.nan],  # missing stays missing
        [0, np.nan, np.nan, 0, 50.5],
        [np.nan, 1, np.nan, np.nan, 61.0],  # unseen "Unknown", 7 and 2.5 read as missing
    ]
    np.testing.assert_array_equal(x, np.array(expected, dtype=np.float64))


def test_legacy_numbers_keep_their_value_and_strings_their_position():
    x = encoding.feature_matrix(FRAME, [*CATEGORIES, "age"], CATEGORIES, legacy=True)
    expected = [
        [2, 1, 5, 1.5, 30.0],
        [np.nan, 0, 2, 0.5, np.nan],
        [0, np.nan, np.nan, 0.5, 50.5],
        [np.nan, 1, np.nan, np.nan, 61.0],
    ]
    np.testing.assert_array_equal(x, np.array(expected, dtype=np.float64))
    features = [*CATEGORIES, "age"]
    recoded = encoding.to_legacy(encoding.feature_matrix(FRAME, features, CATEGORIES), CATEGORIES)
    np.testing.assert_array_equal(recoded, x)
    declared_true_first = {"remote": [True, False]}
    coded = encoding.feature_matrix(FRAME, ["remote"], declared_true_first)
    np.testing.assert_array_equal(
        encoding.to_legacy(coded, declared_true_first),
        encoding.feature_matrix(FRAME, ["remote"], declared_true_first, legacy=True),
    )


def test_the_pipelines_first_step_codes_the_same():
    """columns_step on the raw frame (columns shuffled, one extra) is feature_matrix exactly."""
    import yaml

    from mlops.config import Config
    from mlops.train import columns_step

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["schema"]["categorical"] = CATEGORIES
    params["schema"]["numeric"] = {"age": {"min": 0, "max": 100}}
    config = Config.model_validate(params)
    step = columns_step(config).fit(FRAME[config.features])
    assert list(step.feature_names_in_) == config.features
    frame = FRAME.assign(extra="ignored")[["age", "extra", "half", "remote", "code", "sector"]]
    np.testing.assert_array_equal(
        step.transform(frame), encoding.feature_matrix(FRAME, config.features, CATEGORIES)
    )
    with pytest.raises(ValueError, match="sector"):
        step.transform(frame.drop(columns="sector"))


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
    assert x[0].tolist() == [30.0, 2.0]
    assert math.isnan(x[1, 0])
