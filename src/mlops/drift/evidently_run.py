"""Evidently: the report behind drift.html and its per-column results, and the same stat tests on
chunks of a batch. Evidently is imported only when used (about 2 s)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import pandas as pd

from mlops.config import P_VALUE_TESTS, ColumnPolicy, Config
from mlops.imports import heavy_imports, import_in_background

PREDICTION = "predicted_probability"
PREDICTED_LABEL = "predicted_label"


def telemetry_off() -> None:
    """Evidently 0.7's only switch: DO_NOT_TRACK set (to anything) silences its usage events, both
    the library's logger and `evidently ui`'s; child processes (drift-ui) inherit it."""
    os.environ["DO_NOT_TRACK"] = "1"


def import_evidently() -> None:
    """Import Evidently (about 2 s) while the data is read and scored (see import_in_background)."""
    telemetry_off()
    import_in_background("evidently", "evidently.metrics")


def column_tests(config: Config, features: list[str]) -> dict[str, ColumnPolicy]:
    """Each feature's test, resolved once (Config.drift_policy) for the dataset count, the
    per-column panels and the chunks, so they can never disagree."""
    return {name: config.drift_policy(name) for name in features}


def snapshot(
    config: Config,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: list[str],
    multiclass: bool,
    timestamp: datetime,
    tags: list[str],
    metadata: dict[str, str],
) -> Any:
    """Run Evidently on the features (per column and as a whole) and on the predictions.

    The metrics are those DataDriftPreset expands to, DriftedColumnsCount and one ValueDrift per
    feature, without the preset itself: its overview table computes every column's test twice
    more while rendering (1.5-2 s at 50k rows, measured). Panels come in params.yaml's feature
    order (categorical first, then numeric), then the prediction's. Multiclass models add the
    predicted class distribution (PSI, the categorical policy's threshold).
    """
    telemetry_off()
    with heavy_imports():
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import DriftedColumnsCount, ValueDrift

    policy = config.drift
    tests = column_tests(config, features)
    dataset = DriftedColumnsCount(
        columns=features,
        drift_share=policy.drift_share,
        per_column_method={name: test.method for name, test in tests.items()},
        per_column_threshold={name: test.threshold for name, test in tests.items()},
    )
    per_column = [
        ValueDrift(column=name, method=test.method, threshold=test.threshold)
        for name, test in tests.items()
    ]
    predictions = [
        ValueDrift(
            column=PREDICTION,
            method=policy.prediction.method,
            threshold=policy.prediction.threshold,
        )
    ]
    categorical = [name for name in features if name in config.categorical]
    numeric = [name for name in features if name not in config.categorical]
    outputs = [PREDICTION]
    if multiclass:
        predictions.append(
            ValueDrift(column=PREDICTED_LABEL, method="psi", threshold=policy.categorical.threshold)
        )
        outputs.append(PREDICTED_LABEL)
    report = Report(
        [dataset, *per_column, *predictions], include_tests=True, metadata=metadata, tags=tags
    )
    definition = DataDefinition(
        numerical_columns=[*numeric, PREDICTION],
        categorical_columns=[*categorical, *outputs[1:]],
    )
    columns = [*features, *outputs]
    return report.run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
        timestamp=timestamp.replace(tzinfo=None),
        name=metadata.get("batch"),
    )


def read_snapshot(found: Any, config: Config, features: list[str]) -> dict[str, Any]:
    """Per-column results and the dataset verdict from Evidently's metrics and tests."""
    content = found.dict()
    failed: dict[str, bool] = {}
    dataset_test = None
    for test in content["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift"):
            failed[params["column"]] = test["status"] == "FAIL"
        elif params["type"].endswith(":DriftedColumnsCount"):
            dataset_test = test["status"]
    columns: dict[str, dict[str, Any]] = {}
    share = count = None
    for metric in content["metrics"]:
        params = metric["config"]
        if params["type"].endswith(":ValueDrift"):
            name = params["column"]
            score = float(metric["value"])
            threshold = float(params["threshold"])
            columns[name] = {
                "method": params["method"],
                "score": round(score, 6),
                "threshold": threshold,
                "drifted": failed.get(name, drifted(params["method"], score, threshold)),
            }
        elif params["type"].endswith(":DriftedColumnsCount"):
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
    if share is None:  # pragma: no cover - Evidently always computes it
        raise RuntimeError("Evidently returned no DriftedColumnsCount")
    dataset_drift = dataset_test == "FAIL" if dataset_test else share >= config.drift.drift_share
    return {
        "columns": {name: columns[name] for name in features},
        "prediction": columns[PREDICTION],
        "predicted_label": columns.get(PREDICTED_LABEL),
        "share": round(share, 6),
        "count": count,
        "dataset_drift": bool(dataset_drift),
    }


def drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's rule, as documented: a p-value drifts at or below its threshold, a distance at
    or above it (pinned by a test at the threshold)."""
    return score <= threshold if method in P_VALUE_TESTS else score >= threshold


def scores(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    tests: dict[str, ColumnPolicy],
    categorical: set[str],
) -> dict[str, dict[str, Any]]:
    """Evidently's own stat test per column on one chunk (no report, no rendering): {name:
    {method, score, threshold, drifted}}."""
    telemetry_off()
    with heavy_imports():
        from evidently.legacy.calculations.stattests import get_stattest
        from evidently.legacy.core import ColumnType

    found = {}
    for name, test in tests.items():
        # The test itself compares with the enum, not its value: "cat" would take the numeric
        # branch of hellinger and never the binned one of a numeric psi.
        kind = ColumnType.Categorical if name in categorical else ColumnType.Numerical
        ref, cur = reference[name].dropna(), current[name].dropna()
        if ref.empty or cur.empty:
            continue
        stattest = get_stattest(ref, cur, kind, test.method)
        outcome = stattest(ref, cur, kind, test.threshold)
        found[name] = {
            "method": test.method,
            "score": round(float(outcome.drift_score), 6),
            "threshold": test.threshold,
            "drifted": bool(outcome.drifted),
        }
    return found
