"""Degradation verdicts (mlops.drift.performance): every metric of every task, alert lines from the
test split's own variability, their stated false-alarm rate, and a synthetic source with injected
accuracy drops of 0.02-0.04 at chunk sizes of 2,000-4,000 rows, with labels and without."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import metrics
from sklearn.linear_model import LogisticRegression

from mlops.config import Config
from mlops.drift import analysis, evidently_run
from mlops.drift.performance import (
    DRAWS,
    NOISE_Z,
    PerformanceEstimator,
    measured,
    performance,
    predict,
    standard_error,
)

ROOT = Path(__file__).resolve().parents[1]
FEATURES = [f"x{i}" for i in range(5)]
WEIGHTS = np.array([7.5, -6.0, 4.5, 3.0, 1.5])  # accuracy about 0.95, as on car loans


def synthetic_config(labels: list, **drift) -> Config:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["time_column"] = "day"
    params["schema"].update(
        target="y",
        labels=labels,
        positive=None,
        numeric={name: {"min": -20, "max": 20} for name in FEATURES},
        categorical={},
    )
    params["drift"]["columns"] = {}
    params["drift"].update(drift)
    return Config.model_validate(params)


def population(rows: int, seed: int, classes: int = 2) -> pd.DataFrame:
    """Features N(0, 1); the label drawn from a fixed logistic (softmax) model: no concept drift
    anywhere, so a drop in accuracy comes from the mix of rows alone."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    if classes == 2:
        p = 1 / (1 + np.exp(-(x @ WEIGHTS)))
        y = (rng.random(rows) < p).astype(int)
    else:
        logits = np.column_stack([x @ np.roll(WEIGHTS, k) for k in range(classes)])
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        y = (rng.random(rows)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return pd.DataFrame(x, columns=FEATURES).assign(y=y)


@pytest.fixture(scope="module")
def binary() -> dict:
    config = synthetic_config([0, 1])
    train, test = population(20_000, 1), population(20_000, 2)
    model = LogisticRegression().fit(train[FEATURES].to_numpy(), train["y"])
    info = {"source": "candidate", "version": None, "features": FEATURES, "positive": 1}
    info["categories"] = {}
    return {"config": config, "train": train, "test": test, "model": model, "info": info}


def said(model, frame: pd.DataFrame, positive=1):
    return predict(model, frame[FEATURES].to_numpy(), positive)


# --- every metric for every task ------------------------------------------------------------------


def test_binary_metrics_are_sklearns(binary):
    test = binary["test"]
    found = measured(test["y"].to_numpy(), said(binary["model"], test))
    proba = binary["model"].predict_proba(test[FEATURES].to_numpy())[:, 1]
    assert found["accuracy"] == pytest.approx(metrics.accuracy_score(test["y"], proba >= 0.5))
    assert found["roc_auc"] == pytest.approx(metrics.roc_auc_score(test["y"], proba))
    assert found["f1"] == pytest.approx(metrics.f1_score(test["y"], proba >= 0.5))


def test_multiclass_has_ovr_macro_roc_auc_and_macro_f1_measured_and_estimated():
    train, test, current = (population(8_000, seed, classes=3) for seed in (3, 4, 5))
    model = LogisticRegression().fit(train[FEATURES].to_numpy(), train["y"])
    on_test = said(model, test, positive=None)
    assert on_test.positive is None
    y = test["y"].to_numpy()
    found = measured(y, on_test)
    proba = model.predict_proba(test[FEATURES].to_numpy())
    assert found["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, proba, multi_class="ovr"))
    assert found["f1"] == pytest.approx(metrics.f1_score(y, proba.argmax(axis=1), average="macro"))
    estimator = PerformanceEstimator.fit(y, on_test)
    perf = performance(synthetic_config([0, 1, 2]), estimator, said(model, current, None), None)
    assert perf["estimated"]["roc_auc"] is not None
    truth = measured(current["y"].to_numpy(), said(model, current, None))
    for metric in ("accuracy", "roc_auc", "f1"):  # CBPE multiclass: close without labels
        assert perf["estimated"][metric] == pytest.approx(truth[metric], abs=0.02), metric
        line = perf["metrics"][metric]
        assert line["source"] == "estimated"
        assert line["lower_alert"] < line["value"]
    assert not perf["degraded"]


# --- the alert lines ------------------------------------------------------------------------------


def test_bootstrap_spread_agrees_with_the_analytic_standard_errors(binary):
    """At n rows the accuracy's bootstrap standard deviation is the binomial one (within the noise
    of DRAWS draws); the ROC-AUC's is of the order of Hanley & McNeil's, which assumes
    exponential score distributions and overstates it near an AUC of 1."""
    test = binary["test"]
    y = test["y"].to_numpy()
    estimator = PerformanceEstimator.fit(y, said(binary["model"], test))
    for rows in (500, 2_000):
        spread = estimator._bootstrap("measured", rows)
        accuracy = estimator.reference["accuracy"]
        binomial = standard_error("accuracy", accuracy, rows, 0)
        assert spread["accuracy"] == pytest.approx(binomial, rel=0.25)
        auc = standard_error("roc_auc", estimator.reference["roc_auc"], rows, rows * y.mean())
        assert auc / 3 < spread["roc_auc"] < auc * 1.3
    # Above EXACT_UP_TO rows: scaled by sqrt(drawn / rows); never below the test split's own.
    big = estimator.spread("measured", 1_000_000)
    own = estimator._bootstrap("measured", len(y))
    assert big == pytest.approx(own)
    assert DRAWS >= 100
    assert NOISE_Z == 3.0


@pytest.mark.parametrize("rows", [500, 2_000, 8_000])
def test_false_alarm_rate_on_random_samples_of_the_reference(binary, rows):
    """The stated rate: random samples of the test split at 500, 2,000 and 8,000 rows raise no
    performance alert (measured or estimated) and no dataset drift (size-aware column thresholds
    against the training reference) in at least 19 of 20 seeded draws at each size."""
    config, test, train = binary["config"], binary["test"], binary["train"]
    estimator = PerformanceEstimator.fit(
        test["y"].to_numpy(), said(binary["model"], test), seed=config.seed
    )
    tests = evidently_run.column_tests(config, FEATURES)
    reference = train.sample(5_000, random_state=0).reset_index(drop=True)
    alarms, cache = 0, {}
    rng = np.random.default_rng(rows)
    for _ in range(20):
        draw = test.iloc[rng.choice(len(test), rows, replace=False)].reset_index(drop=True)
        predicted = said(binary["model"], draw)
        labelled = performance(config, estimator, predicted, draw["y"].to_numpy())
        unlabelled = performance(config, estimator, predicted, None)
        columns = evidently_run.scores(reference, draw, tests, set())
        analysis.size_aware(columns, reference, tests, set(), rows, seed=config.seed, cache=cache)
        share = sum(column["drifted"] for column in columns.values()) / len(columns)
        alarms += bool(
            labelled["degraded"] or unlabelled["degraded"] or share >= config.drift.drift_share
        )
    assert alarms <= 1


def test_small_samples_take_the_noise_of_the_reference_as_threshold(binary):
    """At 300 rows a Wasserstein distance of 0.1 reference standard deviations is inside the
    noise: the column's threshold becomes the resampled one and says so; at 20,000 rows (and for
    p-value tests at any size) the policy's stands."""
    config, train = binary["config"], binary["train"]
    reference = train.head(10_000)
    tests = evidently_run.column_tests(config, FEATURES)
    small = train.tail(300)
    columns = evidently_run.scores(reference, small, tests, set())
    analysis.size_aware(columns, reference, tests, set(), 300, seed=0, cache={})
    for column in columns.values():
        assert column["threshold_source"] == "reference resampling at 300 rows"
        assert column["threshold"] > column["policy_threshold"] == 0.1
        assert not column["drifted"]
    big = {"x0": {"method": "wasserstein", "score": 0.05, "threshold": 0.1, "drifted": False}}
    analysis.size_aware(big, reference, tests, set(), 20_000, seed=0, cache={})
    assert big["x0"]["threshold_source"] == "policy"
    ks = {"x0": {"method": "ks", "score": 0.5, "threshold": 0.05, "drifted": False}}
    ks_tests = {"x0": tests["x0"].model_copy(update={"method": "ks", "threshold": 0.05})}
    analysis.size_aware(ks, reference, ks_tests, set(), 300, seed=0, cache={})
    assert ks["x0"]["threshold_source"] == "policy"


def test_a_drop_just_beyond_the_line_alerts_and_just_inside_does_not(binary):
    test = binary["test"]
    estimator = PerformanceEstimator.fit(test["y"].to_numpy(), said(binary["model"], test))
    sd = estimator.spread("measured", 2_000)["accuracy"]
    reference = estimator.reference["accuracy"]
    from mlops.drift.performance import judge

    for delta, degraded in ((-1e-6, False), (1e-6, True)):
        drops, found = judge(
            estimator.reference,
            {"accuracy": reference - NOISE_Z * sd - delta},
            {"accuracy": sd},
            0.0,
        )
        assert (found == ["accuracy"]) is degraded
        assert drops["accuracy"]["lower_alert"] == pytest.approx(reference - NOISE_Z * sd)


# --- injected drops on a synthetic source --------------------------------------------------------

# (rows, injected accuracy drop or 0): one chunk per day, quiet ones between the drops
PLAN = [
    (2_000, 0.0),
    (2_000, 0.04),
    (3_000, 0.0),
    (3_000, 0.03),
    (4_000, 0.0),
    (4_000, 0.02),
    (2_500, 0.0),
    (2_500, 0.035),
    (3_500, 0.025),
    (4_000, 0.0),
]


def drifted_batch(binary: dict) -> pd.DataFrame:
    """Chunks drawn from the population; in the drop chunks a share of rows the model is unsure
    about (top probability under 0.75) replaces ordinary ones, sized to lower the expected
    accuracy by the drop: covariate shift, so CBPE sees it too."""
    pool = population(400_000, 9)
    proba = binary["model"].predict_proba(pool[FEATURES].to_numpy())[:, 1]
    correct = (proba >= 0.5) == pool["y"].to_numpy().astype(bool)
    unsure = np.abs(proba - 0.5) < 0.25
    base, hard = correct.mean(), correct[unsure].mean()
    rng = np.random.default_rng(11)
    unsure_rows, all_rows = np.flatnonzero(unsure), np.arange(len(pool))
    parts = []
    for day, (rows, drop) in enumerate(PLAN, 1):
        extra = round(rows * drop / (base - hard))
        picked = np.concatenate(
            [
                rng.choice(all_rows, rows - extra, replace=False),
                rng.choice(unsure_rows, extra, replace=False),
            ]
        )
        parts.append(pool.iloc[rng.permutation(picked)].assign(day=day))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("labelled", [True, False])
def test_every_injected_drop_is_flagged_and_every_quiet_chunk_stays_quiet(binary, labelled):
    current = drifted_batch(binary)
    if not labelled:
        current = current.drop(columns="y")
    result, _ = analysis.analyse(
        binary["config"],
        binary["train"],
        current,
        binary["test"],
        labelled=labelled,
        batch="synthetic drops",
        model=binary["model"],
        model_info=binary["info"],
    )
    chunks = result["chunks"]
    assert [c["rows_compared"] for c in chunks] == [rows for rows, _ in PLAN]
    edges = np.cumsum([0] + [rows for rows, _ in PLAN])
    assert [c["rows"] for c in chunks] == [[int(a), int(b) - 1] for a, b in pairwise(edges)]
    source = "measured" if labelled else "estimated"
    for chunk, (rows, drop) in zip(chunks, PLAN, strict=True):
        line = chunk["metrics"]["accuracy"]
        assert line["source"] == source
        assert set(chunk["metrics"]) == {"accuracy", "roc_auc", "f1"}
        if drop:
            assert "accuracy" in chunk["degraded_metrics"], (rows, drop, line)
            assert line["value"] < line["lower_alert"]
            assert chunk["status"] == "alert"
        else:
            assert chunk["degraded_metrics"] == [], (rows, chunk["metrics"])
            assert chunk["status"] != "alert", chunk["alerts"]
