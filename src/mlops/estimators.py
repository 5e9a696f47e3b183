"""The estimators `train.estimator` may name, one spec each: the scikit-learn class, its parameter
names and the preprocessing that goes in front of it (mlops.train.build_matrix_pipeline).

The parameter names are listed here so that params.yaml is validated without importing
scikit-learn (tests/test_estimators.py checks them against the installed version). Adding an
estimator: one SPECS entry and its name in the Estimator Literal (a test keeps the two equal).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

Estimator = Literal["hist_gradient_boosting", "random_forest", "logistic_regression"]

# What train puts in front of the estimator, on the coded matrix (categories as integer codes):
# "one_hot": one-hot categories, scaled numbers (imputed when the schema allows missing ones);
# "ordinal": categories re-coded, unknown codes as -1, numbers as they are;
# "codes": the coded matrix as it is (trees that split integer codes exactly).
Preprocessing = Literal["one_hot", "ordinal", "codes"]


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator: its class, its parameters, its preprocessing."""

    class_path: str
    parameters: frozenset[str]
    preprocessing: Preprocessing
    # it takes `categorical_features` (train.native_categorical: "ordinal" with the categorical
    # columns marked, in place of its own preprocessing)
    native_categorical: bool = False

    @property
    def class_name(self) -> str:
        return self.class_path.rpartition(".")[2]


SPECS: dict[str, EstimatorSpec] = {
    "hist_gradient_boosting": EstimatorSpec(
        "sklearn.ensemble.HistGradientBoostingClassifier",
        frozenset(
            [
                "categorical_features",
                "class_weight",
                "early_stopping",
                "interaction_cst",
                "l2_regularization",
                "learning_rate",
                "loss",
                "max_bins",
                "max_depth",
                "max_features",
                "max_iter",
                "max_leaf_nodes",
                "min_samples_leaf",
                "monotonic_cst",
                "n_iter_no_change",
                "random_state",
                "scoring",
                "tol",
                "validation_fraction",
                "verbose",
                "warm_start",
            ]
        ),
        "codes",
        native_categorical=True,
    ),
    "random_forest": EstimatorSpec(
        "sklearn.ensemble.RandomForestClassifier",
        frozenset(
            [
                "bootstrap",
                "ccp_alpha",
                "class_weight",
                "criterion",
                "max_depth",
                "max_features",
                "max_leaf_nodes",
                "max_samples",
                "min_impurity_decrease",
                "min_samples_leaf",
                "min_samples_split",
                "min_weight_fraction_leaf",
                "monotonic_cst",
                "n_estimators",
                "n_jobs",
                "oob_score",
                "random_state",
                "verbose",
                "warm_start",
            ]
        ),
        "ordinal",
    ),
    "logistic_regression": EstimatorSpec(
        "sklearn.linear_model.LogisticRegression",
        frozenset(
            [
                "C",
                "class_weight",
                "dual",
                "fit_intercept",
                "intercept_scaling",
                "l1_ratio",
                "max_iter",
                "n_jobs",
                "penalty",
                "random_state",
                "solver",
                "tol",
                "verbose",
                "warm_start",
            ]
        ),
        "one_hot",
    ),
}


def estimator_class(name: str) -> type:
    """The scikit-learn class behind an estimator name (imports scikit-learn)."""
    module, _, cls = SPECS[name].class_path.rpartition(".")
    return getattr(importlib.import_module(module), cls)


def class_name(name: str) -> str:
    """The scikit-learn class name of an estimator, e.g. RandomForestClassifier."""
    return SPECS[name].class_name


def unknown_parameters(name: str, params: dict) -> list[str]:
    """The keys of params that are not parameters of the named estimator."""
    return [key for key in params if key not in SPECS[name].parameters]
