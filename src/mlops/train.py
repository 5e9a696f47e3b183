"""Stage `make train`: fit one scikit-learn Pipeline on the train split and write the candidate."""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from mlops import files, layout, model_file
from mlops.config import Config
from mlops.encoding import encoder_categories
from mlops.errors import InputError
from mlops.estimators import SPECS, Preprocessing, estimator_class
from mlops.predictions import RAW_FRAME

log = logging.getLogger(__name__)
CANDIDATE_DIR = layout.CANDIDATE
MODEL_FILE = model_file.MODEL_FILE
METADATA_FILE = "metadata.json"
LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "skops")


def positive_label(y: pd.Series, config: Config) -> Any:
    """The positive class of a binary target: schema.positive, else the rarer label (ties: the
    later one in schema.labels); None for multiclass."""
    if config.multiclass:
        return None
    if config.schema.positive is not None:
        return config.schema.positive
    counts = y.value_counts()
    shares = [(counts.get(label, 0), -index) for index, label in enumerate(config.schema.labels)]
    return config.schema.labels[shares.index(min(shares))]


def scoring(config: Config) -> str:
    """ROC-AUC for model selection: one-vs-rest averaged over classes when multiclass."""
    return "roc_auc_ovr" if config.multiclass else "roc_auc"


def columns_step(config: Config) -> ColumnTransformer:
    """The stored pipeline's first step: raw columns by name → the coded float64 matrix.

    Categorical columns become their position in encoder_categories() (unseen and missing:
    NaN), numeric ones pass through, in config.features order; extra columns are ignored and a
    missing one raises an error naming it. mlops.encoding.feature_matrix computes the same.
    """
    categorical, numeric = list(config.categorical), list(config.numeric)
    encoder = OrdinalEncoder(
        categories=[encoder_categories(values) for values in config.categorical.values()],
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
        dtype=np.float64,
    )
    steps = [("categorical", encoder, categorical), ("numeric", "passthrough", numeric)]
    return ColumnTransformer(
        [step for step in steps if step[2]], sparse_threshold=0.0, verbose_feature_names_out=False
    )


def build_pipeline(config: Config) -> Pipeline:
    """Raw columns → coded matrix (columns_step), preprocessing suited to the configured
    estimator, then the estimator itself: one stock scikit-learn Pipeline."""
    coded = build_matrix_pipeline(config)
    return Pipeline([("columns", columns_step(config)), *coded.steps])


def build_matrix_pipeline(config: Config) -> Pipeline:
    """The steps after columns_step: the estimator's preprocessing (its spec in mlops.estimators)
    and the estimator, on the coded matrix."""
    n_cat, n_features = len(config.categorical), len(config.features)
    name = config.train.estimator
    spec = SPECS[name]
    params: dict[str, Any] = {
        "random_state": config.seed,
        **config.train.hyperparameters.get(name, {}),
    }
    preprocessing = spec.preprocessing
    if spec.native_categorical and config.train.native_categorical:
        preprocessing = "ordinal"
        params.setdefault("categorical_features", [i < n_cat for i in range(n_features)])
    model = estimator_class(name)(**params)
    if preprocessing == "codes":
        # Trees split integer codes exactly; HGB's native categorical mode re-encodes every
        # predict call, which costs several ms a request when serving (measured in make bench).
        return Pipeline([("preprocess", "passthrough"), ("model", model)])
    return Pipeline([("preprocess", _preprocess(preprocessing, config)), ("model", model)])


def _preprocess(preprocessing: Preprocessing, config: Config) -> ColumnTransformer:
    """The ColumnTransformer of a "one_hot" or "ordinal" spec (categories first, then numbers)."""
    n_cat, n_features = len(config.categorical), len(config.features)
    categorical, numeric = list(range(n_cat)), list(range(n_cat, n_features))
    if preprocessing == "one_hot":
        # Missing categories are a category of their own (OneHotEncoder); missing numbers are
        # imputed inside the saved Pipeline, so serving needs no preprocessing of its own.
        gaps = any(config.max_missing(feature) > 0 for feature in config.features)
        scale = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        encode = [
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
            ("numeric", scale if gaps else StandardScaler(), numeric),
        ]
    else:
        ordinal = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.float64
        )
        encode = [("categorical", ordinal, categorical), ("numeric", "passthrough", numeric)]
    return ColumnTransformer([step for step in encode if step[2]], sparse_threshold=0.0)


def cross_validation(pipeline: Pipeline, x: pd.DataFrame, y: np.ndarray, config: Config) -> dict:
    """k-fold scores of the configured pipeline on train (or {} when switched off)."""
    if config.train.cv_folds < 2:
        return {}
    folds = StratifiedKFold(config.train.cv_folds, shuffle=True, random_state=config.seed)
    scores = cross_validate(pipeline, x, y, cv=folds, scoring=("accuracy", scoring(config)))
    return {
        metric: {
            "mean": float(np.mean(scores[f"test_{key}"])),
            "std": float(np.std(scores[f"test_{key}"])),
        }
        for metric, key in (("accuracy", "accuracy"), ("roc_auc", scoring(config)))
    }


def search(
    pipeline: Pipeline, x: pd.DataFrame, y: np.ndarray, config: Config
) -> tuple[Pipeline, dict]:
    """Grid search over train.search, refitting the best; return it and the best params."""
    grid = {f"model__{key}": values for key, values in config.train.search.items()}
    folds = StratifiedKFold(config.train.cv_folds, shuffle=True, random_state=config.seed)
    searcher = GridSearchCV(pipeline, grid, cv=folds, scoring=scoring(config), n_jobs=1, refit=True)
    searcher.fit(x, y)
    best = {key.removeprefix("model__"): value for key, value in searcher.best_params_.items()}
    return searcher.best_estimator_, {
        "best_params": best,
        "best_roc_auc": float(searcher.best_score_),
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"python": platform.python_version(), **{name: version(name) for name in LIBRARIES}}


def run(config: Config) -> dict:
    """Fit on data/processed/train.parquet; write models/candidate/{model.skops,metadata.json}."""
    train_path = config.data.processed_dir / "train.parquet"
    frame = files.read_parquet(train_path)
    x, y = frame[config.features], frame[config.schema.target].to_numpy()
    pipeline = build_pipeline(config)
    started = time.perf_counter()
    # One OpenMP thread here too, not only under the CLI: HistGradientBoosting's histogram sums
    # depend on the thread count, so the same inputs give the same bytes in any caller.
    with threadpool_limits(limits=1, user_api="openmp"):
        cv = cross_validation(pipeline, x, y, config)
        tuned: dict = {}
        if config.train.search:
            pipeline, tuned = search(pipeline, x, y, config)
        else:
            pipeline.fit(x, y)
    fit_seconds = time.perf_counter() - started
    model_path = CANDIDATE_DIR / MODEL_FILE
    sha256 = model_file.save_model(pipeline, model_path)
    (CANDIDATE_DIR / model_file.LEGACY_FILE).unlink(missing_ok=True)  # a pre-skops candidate
    metadata = {
        "model_sha256": sha256,
        "model_file": MODEL_FILE,
        "estimator": config.train.estimator,
        "input": RAW_FRAME,
        "params": {"seed": config.seed, "train": config.train.model_dump(mode="json")},
        "features": config.features,
        "categories": config.categorical,
        "target": config.schema.target,
        "classes": pipeline.classes_.tolist(),
        "positive": positive_label(frame[config.schema.target], config),
        "data_sha256": files.sha256_file(train_path),
        "train_rows": len(frame),
        "cross_validation": cv,
        "search": tuned,
        "fit_seconds": round(fit_seconds, 3),
        "libraries": library_versions(),
        "git_commit": git_commit(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    files.write_json(CANDIDATE_DIR / METADATA_FILE, metadata)
    log.info(
        "fitted %s on %d rows in %.1fs; sha256 %s",
        config.train.estimator,
        len(frame),
        fit_seconds,
        metadata["model_sha256"][:12],
    )
    return metadata


def load_candidate() -> tuple[Pipeline, dict]:
    """The candidate model, refused unless its bytes match the sha256 in its metadata."""
    metadata = files.read_json(CANDIDATE_DIR / METADATA_FILE)
    path = CANDIDATE_DIR / model_file.entry_file(metadata, str(CANDIDATE_DIR / METADATA_FILE))
    if not path.is_file():
        raise InputError(f"{path}: not found (run `make train`)")
    against = str(CANDIDATE_DIR / METADATA_FILE)
    model = model_file.load_model(path, metadata["model_sha256"], against)
    return model, metadata
