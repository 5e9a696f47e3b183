"""A user's own table through every stage: string and boolean categories, gaps, dates, any labels.

The table is generated (tests/owndata.py) so each feature can be aimed at; tests/test_own_data.py
runs real public tables end to end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from helpers import edit_params, run_cli
from mlops import data, evaluate, predictions, serve, train
from mlops.config import load_config
from mlops.errors import InputError
from mlops.model_file import load_model
from mlops.serve.schema import PredictResponse
from owndata import SECTORS, private_copy


def client_for(root: Path) -> Iterator[TestClient]:
    config = load_config(root / "params.yaml")
    with TestClient(serve.create_app(config, root / "models", poll_seconds=3600)) as client:
        yield client


def row(**change) -> dict:
    base = {"sector": "Private", "remote": True, "plan": "plus", "age": 41, "spend": 120.5}
    return {**base, **change}


def test_timestamps_group_into_monthly_periods(churn):
    manifest = json.loads((churn / "data/processed/manifest.json").read_text())
    assert manifest["periods"] == {"current": "2024-03", "train": ["2024-01", "2024-02"]}
    assert manifest["rows"]["current"] == 1500
    current = pd.read_parquet(churn / "data/processed/current.parquet")
    assert current["sector"].isna().any()  # gaps kept: the model reads them as missing
    assert set(current["sector"].dropna()) <= set(SECTORS)


def test_string_labels_with_a_configured_positive_class(churn):
    metrics = json.loads((churn / "reports/metrics.json").read_text())
    metadata = json.loads((churn / "models/candidate/metadata.json").read_text())
    assert metadata["classes"] == ["no", "yes"]
    assert metadata["positive"] == metrics["positive"] == "yes"
    assert metadata["categories"]["sector"] == SECTORS
    assert metadata["categories"]["remote"] == [False, True]
    assert 0.6 < metrics["accuracy"] <= 1
    assert 0.6 < metrics["roc_auc"] <= 1
    assert len(metrics["confusion_matrix"]) == 2
    assert json.loads((churn / "reports/promotion.json").read_text())["decision"] == "promoted"


def test_minority_class_is_positive_when_none_is_configured(churn, tmp_path, monkeypatch):
    config = load_config(churn / "params.yaml")
    frame = pd.read_parquet(churn / "data/processed/train.parquet")
    unset = config.model_copy(
        update={"schema_": config.schema.model_copy(update={"positive": None})}
    )
    rarer = frame["churn"].value_counts().idxmin()
    assert train.positive_label(frame["churn"], unset) == rarer


def test_serving_takes_strings_booleans_and_null(churn):
    for client in client_for(churn):
        answer = client.post("/predict", json={"instances": [row(), row(sector=None, age=None)]})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["label"] in ("no", "yes") for p in predictions] == [True, True]
        assert all(0 <= p["probability"] <= 1 for p in predictions)
        assert answer.headers["x-model-version"] == "v1"
        meta = client.get("/metadata").json()
        assert meta["labels"] == {"negative": "no", "positive": "yes"}
        nullable = {f["name"]: f["nullable"] for f in meta["features"]}
        assert nullable == {
            "sector": True,
            "remote": False,
            "plan": False,
            "age": True,
            "spend": False,
        }


def test_serving_matches_the_batch_model(churn):
    """A row answered by the API equals the pipeline's own prediction for it."""
    config = load_config(churn / "params.yaml")
    test = pd.read_parquet(churn / "data/processed/test.parquet").head(25)
    metadata = json.loads((churn / "models/candidate/metadata.json").read_text())
    model = load_model(churn / "models/candidate/model.skops", metadata["model_sha256"])
    x = predictions.model_matrix(test, metadata, config)
    coded = predictions.matrix_model(model, metadata)
    labels, proba = predictions.predict(coded, x, metadata["positive"])
    rows = json.loads(test[config.features].to_json(orient="records"))
    for client in client_for(churn):
        answer = client.post("/predict", json={"instances": rows}).json()["predictions"]
    assert [p["label"] for p in answer] == labels.tolist()
    assert [p["probability"] for p in answer] == pytest.approx(proba[:, 1].tolist())


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"sector": "Unknown-gov"}, "instances[0].sector", '"Private", "Self-emp"'),
        ({"remote": "yes"}, "instances[0].remote", "valid boolean"),
        ({"spend": None}, "instances[0].spend", "valid number"),
        ({"plan": 3}, "instances[0].plan", "valid string"),
    ],
)
def test_bad_category_or_null_is_422_naming_field(churn, change, field, reason):
    for client in client_for(churn):
        answer = client.post("/predict", json={"instances": [row(**change)]})
        assert answer.status_code == 422
        [item] = answer.json()["detail"]
        assert item["field"] == field
        assert reason in item["reason"]


def test_multiclass_trains_scores_and_serves(plans):
    manifest = json.loads((plans / "data/processed/manifest.json").read_text())
    assert manifest["periods"] == {
        "current": "customers_2024-03",
        "train": ["customers_2024-01", "customers_2024-02"],
    }
    metrics = json.loads((plans / "reports/metrics.json").read_text())
    assert metrics["positive"] is None
    assert metrics["classes"] == ["basic", "plus", "pro"]
    assert len(metrics["confusion_matrix"]) == 3
    assert 0.5 < metrics["accuracy"] <= 1
    assert 0.5 < metrics["roc_auc"] <= 1
    assert set(metrics["per_class"]) >= {"basic", "plus", "pro", "macro avg"}
    assert (plans / "reports/roc_curve.png").stat().st_size > 0
    for client in client_for(plans):
        body = {"instances": [{**row(), "churn": "no"}]}
        body["instances"][0].pop("plan")
        answer = client.post("/predict", json=body)
        assert answer.status_code == 200, answer.text
        [prediction] = answer.json()["predictions"]
        PredictResponse.model_validate_json(answer.content)  # multiclass: still the declared model
        assert set(prediction["probabilities"]) == {"basic", "plus", "pro"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1)
        assert prediction["probability"] == max(prediction["probabilities"].values())
        assert prediction["label"] == max(
            prediction["probabilities"], key=prediction["probabilities"].get
        )
        assert client.get("/metadata").json()["labels"] == {"classes": ["basic", "plus", "pro"]}


@pytest.mark.parametrize("estimator", ["random_forest", "logistic_regression"])
def test_every_estimator_takes_gaps_and_strings(churn, tmp_path, monkeypatch, estimator):
    root = private_copy(churn, tmp_path, monkeypatch)
    edit_params(root / "params.yaml", lambda p: p["train"].update(estimator=estimator))
    edit_params(
        root / "params.yaml",
        lambda p: p["train"]["hyperparameters"]["random_forest"].update(n_estimators=20),
    )
    config = load_config()
    first = train.run(config)
    assert train.run(config)["model_sha256"] == first["model_sha256"]  # deterministic
    report = evaluate.run(config)
    assert 0.6 < report["accuracy"] <= 1


def test_one_period_of_history_is_split_by_test_size(churn, tmp_path, monkeypatch):
    root = private_copy(churn, tmp_path, monkeypatch)
    edit_params(root / "params.yaml", lambda p: p["data"].update(current="2024-02"))
    manifest = data.run(load_config())
    assert manifest["periods"] == {"current": "2024-02", "train": ["2024-01"]}
    assert manifest["rows"]["train"] + manifest["rows"]["test"] == 1500


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p["data"].update(period=None),
            "column signup: '2024-01-",
        ),
        (lambda p: p["data"].update(time_column="spend", period="day"), None),
    ],
)
def test_time_column_that_does_not_parse_is_one_line(
    churn, tmp_path, monkeypatch, capsys, edit, message
):
    root = private_copy(churn, tmp_path, monkeypatch)
    edit_params(root / "params.yaml", edit)
    before = (root / "data/processed/train.parquet").read_bytes()
    code, err = run_cli(capsys, "data")
    if message is None:  # numbers parse as epoch times: one day, so one period in all
        assert code == 2
        assert "one period" in err
    else:
        assert code == 2
        assert "customers_2024-01.csv" in err
        assert message in err
        assert "not an integer period" in err
    assert "Traceback" not in err
    assert (root / "data/processed/train.parquet").read_bytes() == before


def test_unparseable_date_names_file_row_and_value(churn, tmp_path, monkeypatch, capsys):
    root = private_copy(churn, tmp_path, monkeypatch)
    path = root / "data/raw/customers_2024-03.csv"
    frame = pd.read_csv(path)
    frame.loc[7, "signup"] = "not a date"
    frame.to_csv(path, index=False)
    data.accept(root / "data/raw")
    code, err = run_cli(capsys, "data")
    assert code == 2
    assert "customers_2024-03.csv: column signup: 'not a date' at row 8 is not a date" in err


def test_missing_period_value_names_file_and_row(churn, tmp_path, monkeypatch, capsys):
    root = private_copy(churn, tmp_path, monkeypatch)
    path = root / "data/raw/customers_2024-03.csv"
    frame = pd.read_csv(path)
    frame.loc[4, "signup"] = None
    frame.to_csv(path, index=False)
    data.accept(root / "data/raw")
    code, err = run_cli(capsys, "data")
    assert code == 2
    assert "customers_2024-03.csv: column signup: no value at row 5" in err


def test_typed_timestamps_need_a_period_and_parse_with_one(churn):
    stamps = pd.Series(pd.to_datetime(["2024-01-31 23:00", "2024-02-01 01:00"]), name="signup")
    with pytest.raises(
        InputError, match=r"x\.parquet: column signup holds timestamps: set data\.period"
    ):
        data.period_labels(stamps, None, "x.parquet")
    assert data.period_labels(stamps, "month", "x.parquet").astype(str).tolist() == [
        "2024-01",
        "2024-02",
    ]
    assert data.period_labels(stamps, "quarter", "x.parquet").astype(str).tolist() == ["2024Q1"] * 2
