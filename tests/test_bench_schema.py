"""The own-data benchmark's helpers at small scale (the 1M-row run is `make bench`)."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from mlops.bench import schema as bench


def test_both_tables_have_the_same_shape_and_signal():
    text = bench.table(2_000, strings=True)
    codes = bench.table(2_000, strings=False)
    assert text.shape == codes.shape == (2_000, bench.COLUMNS + 1)
    assert set(text["label"]) == {"no", "yes"}
    assert set(codes["label"]) == {0, 1}
    assert (text["label"] == "yes").tolist() == (codes["label"] == 1).tolist()
    assert text["cat_03"].str.startswith("level ").all()
    assert text["cat_00"].isna().sum() == codes["cat_00"].isna().sum() > 0
    numbers = codes.drop(columns="label")
    assert all(pd.api.types.is_float_dtype(numbers[name]) for name in numbers)
    assert text["num_00"].isna().mean() > 0.005


def test_write_raw_splits_history_and_current(tmp_path):
    paths = bench.write_raw(tmp_path / "raw", bench.table(1_000, strings=True))
    assert [len(pd.read_parquet(path)) for path in paths] == [800, 200]
    assert [p.name for p in sorted((tmp_path / "raw").iterdir())] == [p.name for p in paths]


def test_walkthrough_on_a_small_text_table(tmp_path):
    """make schema, accept-data and all on 5,000 rows of text: each step timed, the model gated."""
    result = bench.walkthrough(tmp_path, 5_000, strings=True)
    assert set(result) == {"schema_seconds", "accept_data_seconds", "make_all_seconds"}
    assert all(seconds > 0 for seconds in result.values())
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert params["schema"]["labels"] == ["no", "yes"]
    assert len(params["schema"]["categorical"]) == bench.CATEGORICAL
    assert len(params["schema"]["numeric"]) == bench.COLUMNS - bench.CATEGORICAL
    promotion = json.loads((tmp_path / "reports" / "promotion.json").read_text())
    assert promotion["decision"] == "promoted"
