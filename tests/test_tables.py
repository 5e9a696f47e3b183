"""mlops.tables: the fixed-width tables of `make models` and `make runs`."""

from __future__ import annotations

import numpy as np

from mlops import tables


def test_columns_are_as_wide_as_their_widest_cell_and_lines_carry_no_trailing_space():
    rows = [("", "version", "accuracy"), ("*", "v2", tables.number(0.81234)), ("", "v10", "n/a")]
    assert tables.aligned(rows).splitlines() == [
        "   version  accuracy",
        "*  v2       0.8123",
        "   v10      n/a",
    ]


def test_a_metric_cell_is_four_decimals_or_n_a():
    assert tables.number(1) == "1.0000"
    assert tables.number(np.float64(0.5)) == "0.5000"
    assert tables.number(None) == "n/a"
    assert tables.number("x") == "n/a"
