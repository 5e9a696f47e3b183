"""The estimators `train.estimator` may name: their scikit-learn class and parameter names.

The parameter names are listed here so that params.yaml is validated without importing
scikit-learn (tests/test_estimators.py checks them against the installed version).
"""

from __future__ import annotations

import importlib
from typing import Literal

Estimator = Literal["hist_gradient_boosting", "random_forest", "logistic_regression"]

CLASSES: dict[str, str] = {
    "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
}

PARAMETERS: dict[str, frozenset[str]] = {
    "hist_gradient_boosting": frozenset(
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
    "random_forest": frozenset(
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
    "logistic_regression": frozenset(
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
}


def estimator_class(name: str) -> type:
    """The scikit-learn class behind an estimator name (imports scikit-learn)."""
    module, _, cls = CLASSES[name].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def class_name(name: str) -> str:
    """The scikit-learn class name of an estimator, e.g. RandomForestClassifier."""
    return CLASSES[name].rpartition(".")[2]


def unknown_parameters(name: str, params: dict) -> list[str]:
    """The keys of params that are not parameters of the named estimator."""
    return [key for key in params if key not in PARAMETERS[name]]
