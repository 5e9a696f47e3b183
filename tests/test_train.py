import json

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
    before = (project / "models/candidate/model.joblib").read_bytes()
    metadata = train.run(load_config())
    assert (project / "models/candidate/model.joblib").read_bytes() == before
    assert (
        metadata["model_sha256"]
        == json.loads((project / "models/candidate/metadata.json").read_text())["model_sha256"]
    )


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
    path = project / "models/candidate/model.joblib"
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
