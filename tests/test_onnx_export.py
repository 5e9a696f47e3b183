"""ONNX export (mlops.onnx_export): every estimator of the table, binary and multiclass, native
categories on and off, converts and matches scikit-learn on the embedded data and on two public
tables with string categories and missing values (tests/data); the same model gives the same
bytes; what ONNX does not represent is served by scikit-learn."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from mlops import onnx_export, onnx_runtime, promote, train
from mlops.config import Config, SchemaConfig, load_config
from mlops.estimators import SPECS
from mlops.predictions import RAW_FRAME

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
# Every estimator spec; those with native categorical splits also with them on.
VARIANTS = [(name, False) for name in SPECS] + [
    (name, True) for name, spec in SPECS.items() if spec.native_categorical
]
SMALL = {"random_forest": {"n_estimators": 15, "min_samples_leaf": 5, "n_jobs": 1}}


def embedded() -> tuple[pd.DataFrame, dict]:
    """The repository's data (ACS employment, binary): 4,000 rows of one year."""
    frame = pd.read_csv(ROOT / "data" / "raw" / "employment_MA_2016.csv").head(4000)
    return frame, {}


def titanic() -> tuple[pd.DataFrame, dict]:
    """Binary, string categories (Sex, Embarked with gaps) and missing ages."""
    frame = pd.read_csv(DATA / "titanic" / "titanic_1_reference.csv.gz")
    schema = {
        "target": "Survived",
        "labels": [0, 1],
        "positive": 1,
        "min_rows": 10,
        "max_missing": 0.0,
        "numeric": {
            "Age": {"min": 0, "max": 100, "max_missing": 0.5},
            "Fare": {"min": 0, "max": 1000},
            "SibSp": {"min": 0, "max": 10},
        },
        "categorical": {
            "Sex": ["female", "male"],
            "Embarked": {"values": ["C", "Q", "S"], "max_missing": 0.05},
            "Pclass": [1, 2, 3],
        },
    }
    return frame, schema


def flights() -> tuple[pd.DataFrame, dict]:
    """Multiclass (origin: EWR, JFK, LGA), string carriers, missing delays."""
    frame = pd.read_parquet(DATA / "flights" / "flights_2013.parquet").head(3000)
    carriers = sorted(frame["carrier"].unique().tolist())
    schema = {
        "target": "origin",
        "labels": ["EWR", "JFK", "LGA"],
        "min_rows": 10,
        "max_missing": 0.0,
        "numeric": {
            "dep_delay": {"min": -100, "max": 2000, "max_missing": 0.1},
            "distance": {"min": 0, "max": 6000},
            "hour": {"min": 0, "max": 24},
        },
        "categorical": {"carrier": carriers[:-1]},  # the last carrier is unseen: coded NaN
    }
    return frame, schema


TABLES = {"embedded": embedded, "titanic": titanic, "flights": flights}


@cache
def base_config() -> Config:
    return load_config(ROOT / "params.yaml")


def table_config(schema: dict, estimator: str, native: bool) -> Config:
    config = base_config()
    if schema:
        config = config.model_copy(update={"schema_": SchemaConfig.model_validate(schema)})
    hyper = {**config.train.hyperparameters, **SMALL}
    settings = {"estimator": estimator, "native_categorical": native, "hyperparameters": hyper}
    return config.model_copy(update={"train": config.train.model_copy(update=settings)})


def fitted(table: str, estimator: str, native: bool) -> tuple:
    """(pipeline, metadata, frame, config) of a real fit on the table, as train.run makes it."""
    frame, schema = TABLES[table]()
    config = table_config(schema, estimator, native)
    y = frame[config.schema.target].to_numpy()
    with threadpool_limits(limits=1):
        pipeline = train.build_pipeline(config).fit(frame[config.features], y)
    metadata = {
        "input": RAW_FRAME,
        "estimator": estimator,
        "features": config.features,
        "categories": config.categorical,
        "classes": pipeline.classes_.tolist(),
        "positive": config.schema.positive if not config.multiclass else None,
    }
    return pipeline, metadata, frame, config


@pytest.mark.parametrize("table", list(TABLES))
@pytest.mark.parametrize(("estimator", "native"), VARIANTS)
def test_every_estimator_converts_and_matches_scikit_learn(table, estimator, native):
    pipeline, metadata, frame, config = fitted(table, estimator, native)
    if table != "embedded":
        assert frame[config.features].isna().any().any()  # missing values really reach it
    found = onnx_export.check(pipeline, metadata, frame, config)
    assert found["supported"], found
    assert found["labels_differ"] == 0
    assert found["max_difference"] <= onnx_export.TOLERANCE
    assert found["passed"]
    assert onnx_export.build(pipeline, metadata) == found["data"]  # deterministic bytes


def test_the_graph_takes_the_schema_columns_and_gives_probabilities():
    pipeline, metadata, _frame, config = fitted("flights", "hist_gradient_boosting", True)
    data = onnx_export.build(pipeline, metadata)
    model = onnx_runtime.OnnxModel(data, config.features, metadata["classes"], Path("m"), 1)
    session = model.session
    assert [item.name for item in session.get_inputs()] == config.features
    assert {item.type for item in session.get_inputs()} == {"tensor(double)"}
    assert [item.name for item in session.get_outputs()] == [onnx_export.OUTPUT]
    x = np.array([[0.0, np.nan, 7.0, 1.0]])
    proba = model.predict_proba(x)
    assert proba.shape == (1, 3)
    assert abs(proba.sum() - 1.0) < 1e-12


def test_same_model_same_bytes_across_fits():
    first = fitted("titanic", "random_forest", False)
    second = fitted("titanic", "random_forest", False)
    data = onnx_export.build(first[0], first[1])
    assert (
        hashlib.sha256(data).hexdigest()
        == hashlib.sha256(onnx_export.build(second[0], second[1])).hexdigest()
    )


def test_a_model_onnx_does_not_represent_is_served_by_scikit_learn():
    pipeline, metadata, frame, config = fitted("embedded", "logistic_regression", False)
    legacy = {key: value for key, value in metadata.items() if key != "input"}
    found = onnx_export.check(pipeline, legacy, frame, config)
    assert found["passed"]
    assert not found["supported"]
    assert "served by scikit-learn" in found["note"]
    with pytest.raises(onnx_export.Unsupported):
        onnx_export.build(pipeline, legacy)


def test_a_refused_parity_names_the_largest_difference():
    item = promote.criterion(
        "onnx_parity", 0.002, onnx_export.TOLERANCE, False, row=17, labels_differ=3
    )
    reason = promote.failure_reason(item)
    assert "0.002" in reason
    assert "test row 17" in reason
    assert "3 label(s) differ" in reason
    assert "onnx_parity" in promote.UNFORCEABLE
