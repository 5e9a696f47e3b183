"""The drift verdict and the per-column decision at their edges (found alive by `make mutate`)."""

from __future__ import annotations

import pytest

from mlops import drift


@pytest.mark.parametrize(
    ("method", "score", "drifted"),
    [
        ("ks", 0.05, False),  # a p-value exactly at the threshold is not drift
        ("ks", 0.0499, True),
        ("psi", 0.1, True),  # a distance exactly at the threshold is drift
        ("psi", 0.0999, False),
    ],
)
def test_a_score_at_the_threshold(method, score, drifted):
    threshold = 0.05 if method == "ks" else 0.1
    assert drift._drifted(method, score, threshold) is drifted


def result(**changes) -> dict:
    """A drift result as analyse() builds it: four columns, nothing drifted."""
    base = {
        "dataset_drift": False,
        "drifted_columns": [],
        "columns": ["AGEP", "SCHL", "MAR", "SEX"],
        "share_drifted": 0.0,
        "drift_share": 0.5,
        "prediction_drift": {
            "drifted": False,
            "method": "wasserstein",
            "score": 0.01,
            "threshold": 0.1,
        },
        "performance": {"degraded_metrics": [], "drops": {}, "current": {}, "reference": {}},
    }
    return {**base, **changes}


def test_nothing_drifted_is_ok():
    assert drift.verdict(result()) == ("ok", [])


def test_column_drift_below_the_dataset_share_is_a_warning_naming_the_columns():
    status, reasons = drift.verdict(result(drifted_columns=["AGEP", "SCHL"], share_drifted=0.25))
    assert status == "warning"
    assert reasons == ["column drift below the dataset threshold: AGEP, SCHL"]


def test_every_alert_is_named_with_its_numbers():
    status, reasons = drift.verdict(
        result(
            dataset_drift=True,
            drifted_columns=["AGEP", "SCHL"],
            share_drifted=0.5,
            prediction_drift={
                "drifted": True,
                "method": "wasserstein",
                "score": 0.25,
                "threshold": 0.1,
            },
            performance={
                "degraded_metrics": ["accuracy"],
                "drops": {"accuracy": {"drop": 0.08, "margin": 0.02}},
                "current": {"accuracy": 0.71},
                "reference": {"accuracy": 0.79},
            },
        )
    )
    assert status == "alert"
    assert reasons == [
        "dataset drift: 2 of 4 columns drifted (share 0.50 ≥ 0.5)",
        "prediction drift: wasserstein 0.250 ≥ 0.1",
        "accuracy degraded: 0.710 on current vs 0.790 on test (drop 0.080 > 0.020)",
    ]
