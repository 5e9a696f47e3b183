import json

import pytest
from PIL import Image

from mlops import evaluate
from mlops.config import load_config
from mlops.errors import InputError

PLOTS = ("confusion_matrix.png", "roc_curve.png", "precision_recall.png", "feature_importance.png")


def test_metrics_contract(pipeline_dir):
    report = json.loads((pipeline_dir / "reports/metrics.json").read_text())
    for key in (
        "accuracy",
        "roc_auc",
        "f1",
        "status",
        "rows_processed",
        "seed",
        "version",
        "latency_ms",
        "balanced_accuracy",
        "precision",
        "recall",
        "log_loss",
        "confusion_matrix",
        "per_class",
    ):
        assert key in report
    assert report["status"] == "success"
    assert report["rows_processed"] == 7_500
    assert 0.77 < report["accuracy"] < 0.82
    assert 0.83 < report["roc_auc"] < 0.88
    assert sum(map(sum, report["confusion_matrix"])) == 7_500
    assert set(report["feature_importance"]) == set(
        load_config(pipeline_dir / "params.yaml").features
    )


def test_plots_are_real_images(pipeline_dir):
    for name in PLOTS:
        with Image.open(pipeline_dir / "reports" / name) as image:
            assert image.format == "PNG"
            assert image.width > 300


def test_metrics_are_deterministic(project):
    before = json.loads((project / "reports/metrics.json").read_text())
    after = evaluate.run(load_config())
    for key in ("accuracy", "roc_auc", "f1", "log_loss", "confusion_matrix", "feature_importance"):
        assert after[key] == before[key]


def test_failure_writes_error_status(project):
    (project / "models/candidate/model.skops").write_bytes(b"tampered")
    with pytest.raises(InputError):
        evaluate.run(load_config())
    report = json.loads((project / "reports/metrics.json").read_text())
    assert report["status"] == "error"
    assert "sha256 does not match" in report["error"]
