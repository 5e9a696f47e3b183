import hashlib
import json
import subprocess
import sys

import pytest

from helpers import edit_params
from mlops import data, evaluate, train, validate
from mlops.config import load_config
from mlops.errors import InputError


def test_candidate_metadata(pipeline_dir):
    metadata = json.loads((pipeline_dir / "models/candidate/metadata.json").read_text())
    assert metadata["estimator"] == "hist_gradient_boosting"
    assert metadata["train_rows"] == 30_000
    assert len(metadata["model_sha256"]) == 64
    assert len(metadata["data_sha256"]) == 64
    assert metadata["features"][-1] == "AGEP"
    assert {"python", "scikit-learn", "numpy", "pandas"} <= set(metadata["libraries"])
    assert metadata["params"]["seed"] == 42
    assert metadata["git_commit"]
    assert metadata["created_at"].endswith("+00:00")


def test_same_inputs_give_same_model_bytes(project):
    """The train stage, run again as a user runs it (its own process), writes the same bytes.

    In a process, not in this worker: after some other test modules ran in the same xdist worker,
    an in-process retrain wrote a pickle 6 bytes longer (not found yet; see the session note).
    """
    before = (project / "models/candidate/model.skops").read_bytes()
    subprocess.run([sys.executable, "-m", "mlops", "train"], cwd=project, check=True)
    assert (project / "models/candidate/model.skops").read_bytes() == before
    metadata = json.loads((project / "models/candidate/metadata.json").read_text())
    assert metadata["model_sha256"] == hashlib.sha256(before).hexdigest()


def fewer_importance_rows(project) -> None:
    """Permutation importance on 500 test rows, not 2,000: the metrics still use all 7,500."""
    edit_params(project / "params.yaml", lambda p: p["evaluate"].update(importance_rows=500))


@pytest.mark.parametrize("estimator", ["random_forest", "logistic_regression"])
def test_other_estimators_train_and_score(project, estimator):
    edit_params(project / "params.yaml", lambda p: p["train"].update(estimator=estimator))
    edit_params(
        project / "params.yaml",
        lambda p: p["train"]["hyperparameters"]["random_forest"].update(n_estimators=20),
    )
    fewer_importance_rows(project)
    config = load_config()
    assert train.run(config)["estimator"] == estimator
    report = evaluate.run(config)
    assert report["accuracy"] > 0.75


def test_cross_validation_and_search(project):
    edit_params(
        project / "params.yaml",
        lambda p: p["train"].update(
            cv_folds=2,
            search={"max_iter": [20, 40]},
            hyperparameters={"hist_gradient_boosting": {"early_stopping": False}},
        ),
    )
    metadata = train.run(load_config())
    assert set(metadata["cross_validation"]) == {"accuracy", "roc_auc"}
    assert metadata["search"]["best_params"]["max_iter"] in (20, 40)
    assert 0.5 < metadata["search"]["best_roc_auc"] < 1


def test_tampered_candidate_is_refused(project):
    path = project / "models/candidate/model.skops"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(InputError, match="sha256 does not match"):
        train.load_candidate()
    path.unlink()
    with pytest.raises(InputError, match="not found"):
        train.load_candidate()


def test_train_needs_data(fresh):
    with pytest.raises(InputError, match="make data"):
        train.run(load_config())


def test_synthetic_pipeline_end_to_end(fresh):
    edit_params(
        fresh / "params.yaml",
        lambda p: (
            p["data"].update(source="synthetic"),
            p["synthetic"].update(rows=3000),
            p["schema"].update(min_rows=500),
        ),
    )
    config = load_config()
    for stage in (data, validate, train):
        stage.run(config)
    assert evaluate.run(config)["roc_auc"] > 0.7


def test_native_categorical_mode(project):
    edit_params(project / "params.yaml", lambda p: p["train"].update(native_categorical=True))
    fewer_importance_rows(project)
    config = load_config()
    pipeline = train.build_pipeline(config)
    assert pipeline.named_steps["model"].categorical_features[0] is True
    train.run(config)
    assert evaluate.run(config)["accuracy"] > 0.78


def own_config(target: str, estimator: str, native: bool):
    """params.yaml with tests/owndata.py's schema (strings, booleans, gaps) and one estimator."""
    import yaml

    from mlops.config import Config
    from owndata import ROOT, schema

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["schema"] = schema(target)
    params["train"].update(estimator=estimator, native_categorical=native)
    params["train"]["hyperparameters"]["random_forest"] = {"n_estimators": 10}
    return Config.model_validate(params)


CASES = [
    (target, estimator, native)
    for target in ("churn", "plan")
    for estimator, native in (
        ("hist_gradient_boosting", False),
        ("hist_gradient_boosting", True),
        ("random_forest", False),
        ("logistic_regression", False),
    )
]


@pytest.mark.parametrize(("target", "estimator", "native"), CASES)
def test_the_model_takes_raw_rows_by_name(target, estimator, native):
    """Every estimator, binary and multiclass, native categorical on and off: the fitted pipeline
    takes the raw frame in any column order with extra columns, names a missing column, and its
    steps after the first give the same answers on mlops.encoding's matrix."""
    import numpy as np

    from mlops.encoding import feature_matrix
    from owndata import table

    config = own_config(target, estimator, native)
    frame = table(600, 7, "2024-01-01")
    frame.loc[frame.index[:5], "plan" if target == "churn" else "churn"] = None  # a gap
    pipeline = train.build_pipeline(config).fit(frame[config.features], frame[target])
    assert pipeline.steps[0][0] == "columns"
    assert list(pipeline.feature_names_in_) == config.features
    rows = frame.sample(frac=1, axis=1, random_state=0)  # shuffled columns, extra ones kept
    expected = pipeline.predict_proba(frame[config.features])
    np.testing.assert_array_equal(pipeline.predict_proba(rows), expected)
    matrix = feature_matrix(frame, config.features, config.categorical)
    np.testing.assert_allclose(pipeline[1:].predict_proba(matrix), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="spend"):
        pipeline.predict_proba(rows.drop(columns="spend"))


def test_stored_model_is_a_raw_rows_pipeline(pipeline_dir):
    from mlops.model_file import load_model

    metadata = json.loads((pipeline_dir / "models/candidate/metadata.json").read_text())
    model = load_model(pipeline_dir / "models/candidate/model.skops", metadata["model_sha256"])
    assert metadata["input"] == "raw_frame"
    assert list(model.feature_names_in_) == metadata["features"]
