"""The drift benchmark, small: its baseline computes Evidently's tests, its report is complete."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.bench import drift as bench
from mlops.config import Config


def test_measure_small(config):
    """The whole benchmark at 3,000 rows: drift and the scipy baseline agree on the shift (one
    run of each, and none through the model file: every drift run pays a fresh interpreter's
    Evidently import; that run is the same command with drift.runtime sklearn)."""
    result = bench.measure(config, rows=3_000, model_rows=2_000, repeats=1, sklearn=False)
    assert result["rows"] == 3_000
    assert result["columns"] == {"numeric": 15, "categorical": 5}
    assert result["shifted_columns"] == ["num_00", "num_01", "num_02"]
    assert result["drift_flagged_columns"] == result["shifted_columns"]
    assert result["baseline_flagged_columns"] == result["shifted_columns"]
    assert result["goals"]["flags_exactly_the_shifted_columns"] is True
    assert result["goals"]["same_decisions_as_full_data"] is True
    assert result["sampled"] is False
    assert result["model_runtime"] == "onnx"  # production, through its model.onnx
    for key in ("drift_seconds", "drift_cpu_seconds", "baseline_seconds", "cpu_ratio"):
        assert result[key] > 0
    # Medians of the runs, each run listed.
    assert result["repeats"] == 1
    assert result["runs"]["drift_seconds"] == [result["drift_seconds"]]
    assert result["sklearn_seconds"] is result["sklearn_ratio"] is None
    assert result["runs"]["sklearn_seconds"] == []
    assert result["runs"]["baseline_seconds"] == [result["baseline_seconds"]]


def test_stat_tests_match_evidentlys_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 2, 5_000), rng.normal(1, 2, 5_000)
    assert bench.stat_test("wasserstein", a, b, numeric=True) == pytest.approx(0.5, abs=0.05)
    assert bench.stat_test("ks", a, b, numeric=True) < 1e-6
    assert bench.stat_test("jensenshannon", a, a, numeric=True) == pytest.approx(0.0, abs=1e-6)
    codes = rng.integers(0, 4, 5_000).astype(float)
    assert bench.stat_test("psi", codes, codes, numeric=False) == pytest.approx(0.0)
    # A code absent from one side is filled with a small share, as Evidently does.
    assert bench.stat_test("psi", codes, np.where(codes == 3, 2, codes), numeric=False) > 1
    with pytest.raises(ValueError, match="does not implement 'hellinger'"):
        bench.stat_test("hellinger", a, b, numeric=True)


def test_bench_params_are_a_valid_synthetic_config(config):
    params = bench.bench_params(config, model_rows=2_000)
    synthetic = Config.model_validate(params)
    assert synthetic.data.source == "synthetic"
    assert len(synthetic.features) == 20
