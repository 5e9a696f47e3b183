import json

import numpy as np
import pandas as pd
import pytest

from helpers import edit_params, run_cli
from mlops import validate
from mlops.config import load_config
from mlops.errors import CheckFailed


def test_embedded_data_passes(pipeline_dir):
    report = json.loads((pipeline_dir / "reports/validation.json").read_text())
    assert report["status"] == "passed"
    assert report["failed_checks"] == []
    checks = report["splits"]["train"]["checks"]
    assert {c["check"] for c in checks} >= {
        "present",
        "dtype",
        "isin",
        "in_range",
        "min_rows",
        "duplicate_rows",
        "label_balance",
    }


def break_split(root, split, change):
    path = root / f"data/processed/{split}.parquet"
    frame = pd.read_parquet(path)
    frame = change(frame)
    frame.to_parquet(path, index=False)


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        (lambda f: f.assign(AGEP=f["AGEP"].astype(str).where(f.index != 3, "old")), "AGEP.dtype"),
        (lambda f: f.assign(SCHL=f["SCHL"].where(f.index != 5, 99)), "SCHL.isin"),
        (lambda f: f.assign(AGEP=f["AGEP"].where(f.index != 7, 120)), "AGEP.in_range"),
        (lambda f: f.assign(MAR=f["MAR"].where(f.index > 10, np.nan)), "MAR.not_null"),
        (lambda f: f.assign(employed=f["employed"].where(f.index != 2, 3)), "employed.isin"),
        (lambda f: f.drop(columns="SEX"), "SEX.present"),
        (lambda f: f.head(10), "(rows).min_rows"),
        (lambda f: pd.concat([f] * 2, ignore_index=True), "(rows).duplicate_rows"),
        (lambda f: f[f["employed"] == 1], "(rows).label_balance"),
    ],
)
def test_schema_violation_fails_with_details(project, capsys, change, failed):
    break_split(project, "current", change)
    code, err = run_cli(capsys, "validate")
    assert code == 1
    assert "validation failed" in err
    assert "reports/validation.json" in err
    report = json.loads((project / "reports/validation.json").read_text())
    assert report["status"] == "failed"
    assert f"current.{failed}" in report["failed_checks"]
    assert report["splits"]["train"]["status"] == "passed"


def test_failure_examples_name_the_row(project):
    break_split(project, "test", lambda f: f.assign(SCHL=f["SCHL"].where(f.index != 5, 99)))
    with pytest.raises(CheckFailed):
        validate.run(load_config())
    report = json.loads((project / "reports/validation.json").read_text())
    [check] = [c for c in report["splits"]["test"]["checks"] if not c["passed"]]
    assert check["column"] == "SCHL"
    assert check["failures"] == 1
    assert check["examples"][0]["row"] == 5
    assert check["examples"][0]["value"] == "99.0"
    assert check["examples"][0]["record"]["SCHL"] == 99


def test_missing_values_allowed_up_to_limit(project):
    edit_params(project / "params.yaml", lambda p: p["schema"].update(max_missing=0.01))
    config = load_config()
    frame = pd.read_parquet(project / "data/processed/test.parquet")
    frame.loc[frame.index[:50], "MAR"] = np.nan
    assert all(c["passed"] for c in validate.check_frame(frame, config))
    frame.loc[frame.index[:200], "MAR"] = np.nan
    failed = [c for c in validate.check_frame(frame, config) if not c["passed"]]
    assert [(c["column"], c["check"]) for c in failed] == [("MAR", "max_missing")]


def test_unlabelled_batch_skips_label_checks(pipeline_dir):
    config = load_config(pipeline_dir / "params.yaml")
    frame = pd.read_parquet(pipeline_dir / "data/processed/current.parquet").drop(
        columns="employed"
    )
    checks = validate.check_frame(frame, config, labelled=False)
    assert all(c["passed"] for c in checks)
    assert "employed" not in {c["column"] for c in checks}
