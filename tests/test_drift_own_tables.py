"""Drift on a user's own table (tests/owndata.py): string and boolean categories, gaps, unseen
categories, Parquet batches, dates grouped into periods, and a multiclass model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import run_cli
from mlops.config import load_config
from owndata import private_copy, table


def test_multiclass_drift_on_class_mix_and_top_probability(plans, tmp_path, monkeypatch, capsys):
    """A Parquet batch of another month with a sector the model never saw and no labels: a
    finding and a drifted column, not an error; predictions judged by top-class probability and
    predicted class mix; accuracy estimated."""
    private_copy(plans, tmp_path, monkeypatch)
    batch = table(1_500, 9, "2024-04-01").drop(columns="plan")
    batch.loc[batch.index[:40], "sector"] = "Gov-other"
    batch.to_parquet("april.parquet", index=False)
    code, stderr = run_cli(capsys, "drift", "--current", "april.parquet")
    assert code in (0, 1), stderr
    assert "Traceback" not in stderr
    saved = json.loads(Path("reports/drift.json").read_text())
    prediction = saved["prediction_drift"]
    assert prediction["column"] == "predicted_probability"  # the top-class probability
    assert 1 / 3 <= prediction["reference_mean"] <= 1
    assert prediction["predicted_label"]["method"] == "psi"
    assert saved["columns"]["sector"]["unseen"] == {
        "rows": 40,
        "share": round(40 / 1_500, 6),
        "examples": ["Gov-other"],
    }
    assert saved["columns"]["sector"]["drifted"] is True
    assert saved["findings"] == [
        "sector: 40 row(s) with categories unseen in training (e.g. Gov-other)"
    ]
    assert saved["columns"]["age"]["missing"] == pytest.approx(batch["age"].isna().mean(), abs=1e-6)
    assert saved["columns"]["sector"]["missing"] > 0
    perf = saved["performance"]
    assert perf["judged_by"] == "estimated"
    assert 0.5 < perf["estimated"]["roc_auc"] <= 1  # multiclass: one-vs-rest macro (CBPE)
    assert 0 < perf["estimated"]["f1"] <= 1  # macro F1
    assert 0.3 < perf["estimated"]["accuracy"] <= 1
    assert "Value Drift for column predicted_label" in Path("reports/drift.html").read_text()


def test_a_batch_over_several_months_is_judged_by_month(churn, tmp_path, monkeypatch):
    """Rows of three months in one batch: one chunk per month, in order; in the third month a
    third of the labels turn, so that month alerts (measured accuracy) and is named."""
    private_copy(churn, tmp_path, monkeypatch)
    months = [table(1_200, 20 + i, f"2024-0{4 + i}-01") for i in range(3)]
    turned = months[2].index % 3 == 0
    months[2].loc[turned, "churn"] = months[2].loc[turned, "churn"].map({"no": "yes", "yes": "no"})
    pd.concat(months, ignore_index=True).to_csv("quarter.csv", index=False)
    from mlops import drift

    config = load_config()
    assert config.data.period == "month"
    result = drift.run(
        config.model_copy(
            update={"drift": config.drift.model_copy(update={"fail_on_drift": False})}
        ),
        Path("quarter.csv"),
    )
    assert result["chunking"] == "by period of 'signup'"
    assert [c["period"] for c in result["chunks"]] == ["2024-04", "2024-05", "2024-06"]
    assert all(c["status"] != "alert" for c in result["chunks"][:2])
    assert result["chunks"][2]["status"] == "alert"
    assert result["chunks"][2]["accuracy"] < result["chunks"][0]["accuracy"] - 0.1
    assert any(a.startswith("chunk 3 (period 2024-06, rows 2400-3599): ") for a in result["alerts"])
    assert result["chunks"][2]["accuracy_source"] == "measured"
