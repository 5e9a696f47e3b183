"""The batch benchmark, small: drift and score over a folder of Parquet files, both engines."""

from __future__ import annotations

import json

import pytest

from mlops.bench import batches as bench
from mlops.errors import InputError


def test_measure_small(config):
    """20,000 rows in 2 files: every figure is there and the shift is found (the Dask engine's
    equality is tested in test_drift_stream and test_score)."""
    result = bench.measure(
        config, rows=20_000, files=2, repeats=1, reference_rows=20_000, dask=False, one_file=False
    )
    assert (result["rows"], result["files"], result["columns"]) == (20_000, 2, 20)
    assert result["drift_flagged_columns"] == result["shifted_columns"]
    assert result["goals"]["flags_exactly_the_shifted_columns"] is True
    assert result["drift_exact_columns"] == 20
    assert result["score_rejected"] == 0
    assert set(result["engines"]) == {"local"}
    for key in ("floor_seconds", "drift_seconds", "drift_peak_rss_mib", "score_rows_per_second"):
        assert result[key] > 0
    assert result["drift_ratio_to_floor"] == round(
        result["drift_seconds"] / result["floor_seconds"], 3
    )
    assert result["drift_peak_rss_mib"] >= result["drift_main_process_peak_rss_mib"]
    assert result["one_file_drift_seconds"] is None  # one_file=False: 2 child runs fewer
    assert result["drift_added_ratio_to_floor_added"] is None
    # make score from model.onnx beside the scikit-learn path, the same labels
    assert result["score_onnx_runtime"] == "onnx"
    assert result["score_onnx_rows_per_second"] > 0
    assert result["score_onnx_same_labels"] is True
    speedup = result["score_seconds"] / result["score_onnx_seconds"]
    assert result["score_onnx_speedup"] == pytest.approx(speedup, abs=0.01)


def test_an_unknown_section_is_refused_and_the_report_kept(project):
    from mlops import bench as sections

    sections.REPORT.parent.mkdir(exist_ok=True)
    sections.REPORT.write_text(json.dumps({"created_at": "then", "drift": {"ratio": 0.8}}))
    with pytest.raises(InputError, match="no section 'nope'"):
        sections.run(None, only="nope")
    assert json.loads(sections.REPORT.read_text())["drift"] == {"ratio": 0.8}
