"""The static parameter lists match the installed scikit-learn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from mlops import estimators

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(estimators.SPECS))
def test_parameter_names_match_scikit_learn(name: str) -> None:
    cls = estimators.estimator_class(name)
    assert set(cls().get_params()) == estimators.SPECS[name].parameters


def test_the_estimator_literal_names_exactly_the_specs() -> None:
    """params.yaml's `train.estimator` type and the table cannot drift apart."""
    assert get_args(estimators.Estimator) == tuple(estimators.SPECS)


@pytest.mark.parametrize("name", list(estimators.SPECS))
def test_a_spec_says_its_preprocessing_and_native_categorical_only_where_the_class_takes_it(
    name: str,
) -> None:
    spec = estimators.SPECS[name]
    assert spec.preprocessing in get_args(estimators.Preprocessing)
    assert spec.native_categorical == ("categorical_features" in spec.parameters)


def test_unknown_parameters_are_named() -> None:
    assert estimators.unknown_parameters("random_forest", {"n_estimators": 5, "depth": 3}) == [
        "depth"
    ]


def test_loading_params_imports_no_scikit_learn() -> None:
    code = (
        "import sys; from mlops.config import load_config; load_config('params.yaml'); "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"
