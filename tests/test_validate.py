import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import edit_params, run_cli
from mlops import validate
from mlops.config import Config, load_config
from mlops.errors import CheckFailed

ROOT = Path(__file__).resolve().parents[1]


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


def test_unseen_categories_in_current_are_a_warning_not_a_failure(project):
    break_split(project, "current", lambda f: f.assign(SCHL=f["SCHL"].where(f.index != 5, 99)))
    report = validate.run(load_config())
    assert report["status"] == "passed"
    assert report["warnings"] == ["current.SCHL.isin"]
    [check] = [c for c in report["splits"]["current"]["checks"] if not c["passed"]]
    assert check["severity"] == "warning"
    assert check["examples"][0]["value"] == "99"


def test_failure_examples_name_the_row(project):
    break_split(project, "test", lambda f: f.assign(SCHL=f["SCHL"].where(f.index != 5, 99)))
    with pytest.raises(CheckFailed):
        validate.run(load_config())
    report = json.loads((project / "reports/validation.json").read_text())
    [check] = [c for c in report["splits"]["test"]["checks"] if not c["passed"]]
    assert check["column"] == "SCHL"
    assert check["failures"] == 1
    assert check["examples"][0]["row"] == 5
    assert check["examples"][0]["value"] == "99"
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


# ---------------------------------------------------------------- every limit: below, at, above


def small_config(**schema) -> Config:
    """A config whose schema is one string category, one number and a 0/1 label."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["schema"] = {
        "target": "y",
        "labels": [0, 1],
        "positive": 1,
        "min_rows": 1,
        "max_duplicate_share": 1.0,
        "min_label_share": 0.0,
        "numeric": {"x": {"min": 0, "max": 1000}},
        "categorical": {"c": ["a", "b"]},
        **schema,
    }
    params["drift"]["columns"] = {}
    return Config.model_validate(params)


def frame_of(rows: int, *, positives: int | None = None) -> pd.DataFrame:
    """rows distinct rows (x differs), labels alternating unless `positives` says how many are 1."""
    y = [i % 2 for i in range(rows)] if positives is None else [1] * positives
    y += [0] * (rows - len(y))
    return pd.DataFrame(
        {"c": ["a", "b"] * (rows // 2) + ["a"] * (rows % 2), "x": range(rows), "y": y}
    )


def failed_checks(frame: pd.DataFrame, config: Config) -> set[str]:
    return {
        f"{c['column']}.{c['check']}"
        for c in validate.check_frame(frame, config)
        if not c["passed"]
    }


@pytest.mark.parametrize(("rows", "passes"), [(9, False), (10, True), (11, True)])
def test_min_rows_boundary(rows, passes):
    found = failed_checks(frame_of(rows), small_config(min_rows=10))
    assert ("(rows).min_rows" not in found) is passes


@pytest.mark.parametrize(("duplicates", "passes"), [(1, True), (2, True), (3, False)])
def test_max_duplicate_share_boundary(duplicates, passes):
    frame = frame_of(10)
    frame.iloc[10 - duplicates :] = frame.iloc[0].tolist()  # share duplicated: duplicates / 10
    found = failed_checks(frame, small_config(max_duplicate_share=0.2))
    assert ("(rows).duplicate_rows" not in found) is passes


@pytest.mark.parametrize(("missing", "passes"), [(1, True), (2, True), (3, False)])
@pytest.mark.parametrize("column", ["c", "x"])
def test_max_missing_boundary_per_column(column, missing, passes):
    """max_missing 0.2 on one column (its own limit); the other column allows none."""
    frame = frame_of(10)
    frame.loc[: missing - 1, column] = None
    numeric = {"x": {"min": 0, "max": 1000, **({"max_missing": 0.2} if column == "x" else {})}}
    categorical = {"c": {"values": ["a", "b"], "max_missing": 0.2} if column == "c" else ["a", "b"]}
    found = failed_checks(frame, small_config(numeric=numeric, categorical=categorical))
    assert (f"{column}.max_missing" not in found) is passes
    assert found <= {f"{column}.max_missing"}


def test_column_without_its_own_limit_takes_the_schema_default():
    frame = frame_of(10)
    frame.loc[:1, "x"] = None
    assert failed_checks(frame, small_config(max_missing=0.2)) == set()
    assert "x.not_null" in failed_checks(frame, small_config(max_missing=0.0))


@pytest.mark.parametrize(("positives", "passes"), [(2, False), (3, True), (4, True)])
def test_min_label_share_boundary(positives, passes):
    found = failed_checks(frame_of(10, positives=positives), small_config(min_label_share=0.3))
    assert ("(rows).label_balance" not in found) is passes


def test_categories_compare_as_the_file_holds_them():
    """ "1" (a string) is not the category 1; True is not 1: typed values never coerce."""
    config = small_config(categorical={"c": [1, 2]})
    frame = frame_of(4).assign(c=["1", 2, 1, 2])
    assert failed_checks(frame, config) == {"c.isin"}
    config = small_config(categorical={"c": [False, True]})
    assert failed_checks(frame_of(4).assign(c=[True, False, True, None]), config) == {"c.not_null"}


def test_check_frame_reports_every_declared_check_with_its_failures():
    """A missing column, a missing value and an undeclared category, each under its own check."""
    frame = frame_of(4).drop(columns="x").assign(c=["a", "z", "b", None])
    results = validate.check_frame(frame, small_config())
    assert [(r["column"], r["check"], r["failures"]) for r in results] == [
        ("c", "present", 0),
        ("c", "not_null", 1),
        ("c", "isin", 1),
        ("x", "present", 1),
        ("x", "dtype", 0),
        ("x", "not_null", 0),
        ("x", "in_range", 0),
        ("y", "present", 0),
        ("y", "not_null", 0),
        ("y", "isin", 0),
        ("(rows)", "min_rows", 0),
        ("(rows)", "duplicate_rows", 0),
        ("(rows)", "label_balance", 0),
    ]
    assert [r["passed"] for r in results] == [r["failures"] == 0 for r in results]
    by_check = {(r["column"], r["check"]): r for r in results}
    assert by_check["c", "isin"]["examples"] == [
        {"row": 1, "value": "z", "record": {"c": "z", "y": 1}}
    ]
    assert by_check["x", "present"]["examples"] == [{"row": None, "value": "x", "record": None}]
    assert by_check["c", "isin"]["requires"] == "only declared values or labels"
    assert by_check["(rows)", "min_rows"]["requires"] == "at least 1 rows"
    unlabelled = validate.check_frame(frame.drop(columns="y"), small_config(), labelled=False)
    assert {r["column"] for r in unlabelled} == {"c", "x", "(rows)"}
    nullable = small_config(numeric={"x": {"min": 0, "max": 1000, "max_missing": 0.2}})
    checks = [(r["column"], r["check"]) for r in validate.check_frame(frame_of(10), nullable)]
    assert [check for column, check in checks if column == "x"] == [
        "present",
        "dtype",
        "in_range",
        "max_missing",  # instead of not_null: some missing values are allowed
    ]
