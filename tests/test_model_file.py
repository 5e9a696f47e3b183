"""mlops.model_file: each estimator round-trips through skops byte-stable; nothing else loads."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from mlops import model_file, train
from mlops.config import load_config
from mlops.errors import InputError
from mlops.estimators import SPECS

ROOT = Path(__file__).resolve().parents[1]
# Every estimator spec; those with native categorical splits also with them on.
KINDS = [(name, False) for name in SPECS] + [
    (name, True) for name, spec in SPECS.items() if spec.native_categorical
]
SMALL = {
    "hist_gradient_boosting": {"max_iter": 5},
    "random_forest": {"n_estimators": 5, "n_jobs": 1},
    "logistic_regression": {"max_iter": 200},
}


def fitted(
    estimator: str, native: bool, labels: list, gaps: bool = False
) -> tuple[object, pd.DataFrame]:
    """A small real pipeline of this estimator, as mlops.train builds it, and rows to score;
    gaps: missing values allowed and present (an imputer in the logistic pipeline)."""
    base = load_config(ROOT / "params.yaml")
    schema = base.schema.model_copy(
        update={
            "labels": labels,
            "positive": labels[-1] if len(labels) == 2 else None,
            "numeric": {
                name: bounds.model_copy(update={"max_missing": 0.2 if gaps else None})
                for name, bounds in base.schema.numeric.items()
            },
        }
    )
    settings = base.train.model_copy(
        update={"estimator": estimator, "native_categorical": native, "hyperparameters": SMALL}
    )
    config = base.model_copy(update={"schema_": schema, "train": settings})
    rng = np.random.default_rng(0)
    rows = 400
    x = pd.DataFrame(
        {
            name: rng.choice(config.categorical[name], rows)
            if name in config.categorical
            else rng.uniform(16, 90, rows)
            for name in config.features
        }
    )
    if gaps:  # a numeric column with gaps (tests/test_own_tables.py has categorical ones too)
        x.loc[x.index[::5], config.features[-1]] = np.nan
    y = np.array(labels)[np.arange(rows) % len(labels)]
    return train.build_pipeline(config).fit(x, y), x


@pytest.mark.parametrize("gaps", [False, True], ids=["complete", "gaps"])
@pytest.mark.parametrize("labels", [[0, 1], ["basic", "plus", "pro"]], ids=["binary", "multi"])
@pytest.mark.parametrize(("estimator", "native"), KINDS)
def test_every_estimator_round_trips_byte_stable(tmp_path, estimator, native, labels, gaps):
    model, x = fitted(estimator, native, labels, gaps)
    path = tmp_path / model_file.MODEL_FILE
    sha = model_file.save_model(model, path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = model_file.load_model(path, sha)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert model_file.dumps(loaded) == path.read_bytes()  # same model → same bytes
    assert model_file.untrusted_types(path.read_bytes()) == []
    for info in zipfile.ZipFile(path).infolist():
        assert info.date_time == model_file.ZIP_TIME


def test_the_sha256_is_checked_before_anything_is_decoded(tmp_path):
    path = tmp_path / model_file.MODEL_FILE
    path.write_bytes(b"not even a zip")
    with pytest.raises(InputError, match="sha256 does not match"):
        model_file.load_model(path, "0" * 64)
    with pytest.raises(InputError, match="sha256 does not match"):
        model_file.load_model(path, None)


def test_an_untrusted_type_is_refused_in_one_line(tmp_path):
    """A real skops file of a transformer that would call os.system: refused, never built."""
    import os

    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / model_file.MODEL_FILE
    path.write_bytes(skops.io.dumps(FunctionTransformer(os.system)))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(InputError, match=r"untrusted types posix\.system") as refused:
        model_file.load_model(path, sha)
    assert "\n" not in str(refused.value)


def test_a_legacy_joblib_loads_only_behind_its_sha256(tmp_path):
    model, x = fitted("logistic_regression", False, [0, 1])
    path = tmp_path / model_file.LEGACY_FILE
    joblib.dump(model, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(
        model_file.load_model(path, sha).predict_proba(x), model.predict_proba(x)
    )
    with pytest.raises(InputError, match="sha256 does not match"):
        model_file.load_model(path, "f" * 64)


def test_only_the_two_model_file_names_load(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(1))
    with pytest.raises(InputError, match="not a model file name"):
        model_file.load_model(path, hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(InputError, match=r"model_file .\.\./x. is not"):
        model_file.entry_file({"model_file": "../x"}, "versions.v1")
    assert model_file.entry_file({}, "versions.v1") == model_file.LEGACY_FILE
