"""The drift verdict of a batch against the reference: no file I/O here.

Rules (mlops.drift.rules; any one alerts; drift.json lists each that fired):
- dataset drift: the share of drifted feature columns reaches drift.drift_share (Evidently);
- importance-weighted drift: the drifted columns carry at least drift.importance_share of the
  model's permutation importance (negative importances count as 0), in batches of at least
  NOISY_BELOW rows (below, one chance flag of an important many-code column would alert);
- prediction drift: the predicted probability's score reaches drift.prediction's threshold (and,
  multiclass, the predicted class mix's);
- degradation: accuracy, ROC-AUC or F1, measured (labels) or estimated (CBPE, no labels), falls
  below its alert line: the test split's figure less NOISE_Z standard deviations of that metric
  at the batch's or chunk's size (mlops.drift.performance);
- a chunk alerts: the batch is also judged in drift.chunks parts over time, by the same rules.
A drifted column without an alert is a warning.

Predictions, performance and the chunk boundaries use every row of the batch (positions as read);
the column tests use the sample (Evidently), and below RESAMPLE_BELOW compared rows a distance
test's threshold is raised to the noise of random reference samples of that size
(`threshold_source`), so that chance alone does not make a small table or chunk drift.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import P_VALUE_TESTS, ColumnPolicy, Config
from mlops.drift import evidently_run, exact, rules, stream
from mlops.drift.evidently_run import PREDICTED_LABEL, PREDICTION
from mlops.drift.performance import (
    PerformanceEstimator,
    Predictions,
    of_probabilities,
    performance,
    positive_label,
    predict,
)
from mlops.drift.stream import Batch
from mlops.predictions import matrix_model, takes_raw_frame

# Chunks smaller than this are not judged: per-column scores below it are mostly noise (measured).
MIN_CHUNK_ROWS = 1_000
NOISY_BELOW = rules.NOISY_BELOW
# Distance tests on fewer compared rows than this: the threshold is at least the noise of random
# reference samples of that size (mean + RESAMPLE_Z standard deviations over RESAMPLES draws).
RESAMPLE_BELOW = 5_000
RESAMPLES = 30
RESAMPLE_Z = 3.0
POLICY = "policy"


def sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """At most `size` rows, drawn without replacement (seeded); the frame itself if smaller."""
    if len(frame) <= size:
        return frame
    return frame.sample(n=size, random_state=seed).reset_index(drop=True)


def model_input(
    frame: pd.DataFrame, features: list[str], categories: dict[str, Any], legacy: bool = False
) -> np.ndarray:
    """The model's input matrix, coded with the categories it was trained with."""
    from mlops.encoding import feature_matrix

    return feature_matrix(frame, features, categories, legacy)


# --- importance, missing values, unseen categories ----------------------------------------------


def importance_shares(
    importance: dict[str, Any] | None, features: list[str]
) -> dict[str, float] | None:
    """Each feature's share of the model's total positive permutation importance."""
    if not importance:
        return None
    positive = {name: max(float(importance.get(name) or 0.0), 0.0) for name in features}
    total = sum(positive.values())
    if total <= 0:
        return None
    return {name: round(value / total, 6) for name, value in positive.items()}


def importance_drifted(shares: dict[str, Any] | None, drifted: list[str]) -> float | None:
    return None if shares is None else round(sum(shares[name] for name in drifted), 6)


def unseen_categories(batch: Batch) -> dict[str, dict[str, Any]]:
    """Per categorical column, rows whose value the model never saw: {name: {rows, share,
    examples}} (a validation finding and a drift signal, never an input error)."""
    found = {}
    for name, counts in batch.unseen.items():
        rows = sum(counts.values())
        examples = list(counts)[:5]  # most frequent first
        found[name] = {"rows": rows, "share": round(rows / batch.total, 6), "examples": examples}
    return found


def exact_scores(
    reference: pd.DataFrame, batch: Batch, config: Config, tests: dict[str, ColumnPolicy]
) -> dict[str, float]:
    """Each column's drift score over every row of the batch, where its test (tests: the
    resolved column_tests) has an all-row form (mlops.drift.exact) and the column has values;
    computed while Evidently is still importing."""
    found = {}
    for name, test in tests.items():
        numeric = name not in config.categorical
        stats = batch.numeric[name] if numeric else batch.categorical[name]
        method = test.method
        if exact.supported(method, numeric) and stats.rows > stats.missing:
            found[name] = round(exact.score(method, reference[name], stats), 6)
    return found


def decide_exactly(
    columns: dict[str, dict[str, Any]], scores: dict[str, float], *, sampled: bool
) -> dict[str, dict[str, Any]]:
    """Where a sample was judged, every column with an all-row score (exact_scores) is decided by
    it and says `exact: true`; unsampled, Evidently saw every row, so all are exact. Returns the
    columns whose sample verdict the exact one overruled, with both."""
    overruled = {}
    for name, column in columns.items():
        column["exact"] = not sampled or name in scores
        if not sampled or not column["exact"]:
            continue
        found = scores[name]
        is_drifted = bool(evidently_run.drifted(column["method"], found, column["threshold"]))
        if is_drifted != column["drifted"]:
            overruled[name] = {
                "sample_score": column["score"],
                "sample_drifted": column["drifted"],
                "exact_score": found,
                "exact_drifted": is_drifted,
            }
        column.update(score=found, drifted=is_drifted)
    return overruled


# --- size-aware column thresholds ----------------------------------------------------------------


def noise_threshold(
    reference: pd.DataFrame,
    name: str,
    test: ColumnPolicy,
    categorical: set[str],
    rows: int,
    seed: int,
) -> float:
    """A distance test's score of random reference samples of `rows` rows against the reference:
    mean + RESAMPLE_Z standard deviations over RESAMPLES seeded draws."""
    rng = np.random.default_rng([seed, rows, sum(map(ord, name))])
    column = reference[[name]]
    found = []
    for _ in range(RESAMPLES):
        picked = rng.choice(len(column), size=rows, replace=rows > len(column))
        scored = evidently_run.scores(reference, column.iloc[picked], {name: test}, categorical)
        if name in scored:
            found.append(scored[name]["score"])
    if len(found) < 2:
        return test.threshold
    return float(np.mean(found) + RESAMPLE_Z * np.std(found, ddof=1))


def size_aware(
    columns: dict[str, dict[str, Any]],
    reference: pd.DataFrame,
    tests: dict[str, ColumnPolicy],
    categorical: set[str],
    rows: int,
    *,
    seed: int,
    cache: dict[tuple[str, int], float],
) -> None:
    """Each column's `threshold_source`: below RESAMPLE_BELOW compared rows, a distance test whose
    threshold lies inside the noise of reference samples of that size takes the noise as its
    threshold (and is re-decided); p-value tests already account for the size."""
    for name, column in columns.items():
        column["threshold_source"] = POLICY
        test = tests.get(name)
        if test is None or test.method in P_VALUE_TESTS or rows >= RESAMPLE_BELOW or rows < 2:
            continue
        key = (name, rows)
        if key not in cache:
            cache[key] = noise_threshold(reference, name, test, categorical, rows, seed)
        noise = round(cache[key], 6)
        if noise > column["threshold"]:
            column.update(
                policy_threshold=column["threshold"],
                threshold=noise,
                threshold_source=f"reference resampling at {rows:,} rows",
                drifted=bool(evidently_run.drifted(test.method, column["score"], noise)),
            )


# --- rules ----------------------------------------------------------------------------------------


def rule_alerts(config: Config, figures: rules.Figures) -> list[str]:
    """The reasons to alert on one batch or chunk (empty: no alert): mlops.drift.rules."""
    return [finding.message for finding in rules.judge(figures, config.drift)]


def verdict(result: dict[str, Any]) -> tuple[str, list[str]]:
    """("ok" | "warning" | "alert", reasons) of a whole batch. Only an alert fails the run."""
    alerts = list(result["rule_alerts"])
    for chunk in result["chunks"]:
        if chunk["status"] == "alert":
            alerts += [f"{chunk_name(chunk)}: {reason}" for reason in chunk["alerts"]]
    if alerts:
        return "alert", alerts
    if result["drifted_columns"]:
        names = ", ".join(result["drifted_columns"])
        return "warning", [f"column drift below the dataset thresholds: {names}"]
    return "ok", []


def chunk_name(chunk: dict[str, Any]) -> str:
    first, last = chunk["rows"] or ("?", "?")
    where = f"period {chunk['period']}, " if chunk["period"] is not None else ""
    return f"chunk {chunk['chunk']} ({where}rows {first}-{last})"


# --- chunks -------------------------------------------------------------------------------------


def chunk_plan(
    times: pd.Series | None, total: int, config: Config
) -> tuple[list[tuple[Any, np.ndarray]], str]:
    """([(period label or None, row positions in the batch)] in batch order, how it was split).

    By period when the batch holds the time column (`times`, every row; one period: no chunks,
    since its rows need not be in time order); else drift.chunks equal row ranges, the rows taken
    to be in arrival order (fewer chunks when one would hold under MIN_CHUNK_ROWS rows).
    """
    time_column = config.data.time_column
    if times is not None:
        periods = period_labels(times, getattr(config.data, "period", None))
        order = pd.unique(periods.dropna().sort_values())
        if len(order) < 2:
            return [], f"one period in {time_column!r}: not split (its rows need not be in order)"
        values = periods.to_numpy()
        plan = [(label, np.flatnonzero(values == label)) for label in order]
        return plan, f"by period of {time_column!r}"
    count = min(config.drift.chunks, total // MIN_CHUNK_ROWS)
    if count < 2:
        return [], f"under {2 * MIN_CHUNK_ROWS:,} rows: not split"
    edges = np.linspace(0, total, count + 1).round().astype(int)
    plan = [(None, np.arange(start, end)) for start, end in pairwise(edges)]
    return plan, f"{count} equal row ranges, rows taken in arrival order"


def period_labels(values: pd.Series, period: str | None) -> pd.Series:
    """Integer periods as they are; dates and timestamps by drift period (default month)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values
    stamps = pd.to_datetime(values, errors="coerce")
    if stamps.isna().all():
        return values.astype(str)
    from mlops.data import PERIOD_FREQUENCY

    return stamps.dt.to_period(PERIOD_FREQUENCY[period or "month"]).astype(str)


def analyse_chunks(
    config: Config,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    rows: np.ndarray,
    *,
    plan: list[tuple[Any, np.ndarray]],
    total: int,
    features: list[str],
    shares: dict[str, Any] | None,
    estimator: PerformanceEstimator,
    predictions: Predictions,
    y: np.ndarray | None,
    cache: dict[tuple[str, int], float],
) -> list[dict[str, Any]]:
    """Each chunk judged like a whole batch: performance and the prediction's test on every row
    of the chunk, Evidently's column tests (no report) on its rows in the sample."""
    tests = evidently_run.column_tests(config, features)
    categorical = set(config.categorical)
    prediction_test = {PREDICTION: config.drift.prediction}
    chunk_of = np.full(total, -1, dtype=np.int64)  # each row's chunk, to find the sampled ones
    for number, (_, positions) in enumerate(plan):
        chunk_of[positions] = number
    sampled_chunk = chunk_of[rows]
    chunks = []
    for number, (period, positions) in enumerate(plan, 1):
        chunk: dict[str, Any] = {
            "chunk": number,
            "period": _plain(period),
            "rows": [int(positions[0]), int(positions[-1])] if len(positions) else [],
            "rows_compared": len(positions),
        }
        chunks.append(chunk)
        if len(positions) < MIN_CHUNK_ROWS:
            chunk.update(
                status="skipped",
                share_drifted=None,
                importance_drifted=None,
                prediction_drift=None,
                accuracy=None,
                alerts=[],
                note=f"fewer than {MIN_CHUNK_ROWS:,} rows: not judged",
            )
            continue
        part = current.iloc[np.flatnonzero(sampled_chunk == number - 1)]
        columns = evidently_run.scores(reference, part, tests, categorical) if len(part) else {}
        size_aware(columns, reference, tests, categorical, len(part), seed=config.seed, cache=cache)
        drifted = [name for name, column in columns.items() if column["drifted"]]
        share = len(drifted) / max(len(columns), 1)
        said = predictions.take(positions)
        scored = pd.DataFrame({PREDICTION: said.probability})
        prediction = evidently_run.scores(reference, scored, prediction_test, set())[PREDICTION]
        perf = performance(config, estimator, said, None if y is None else y[positions])
        importance = importance_drifted(shares, drifted)
        figures = rules.Figures(
            columns=columns,
            dataset_drift=share >= config.drift.drift_share,
            share=share,
            importance=importance,
            prediction=prediction,
            perf=perf,
            rows=len(positions),
        )
        alerts = rule_alerts(config, figures)
        source = perf["judged_by"]
        figures = perf["current"] if source == "measured" else perf["estimated"]
        chunk.update(
            status="alert" if alerts else ("warning" if drifted else "ok"),
            rows_sampled=len(part),
            share_drifted=round(share, 6),
            importance_drifted=importance,
            drifted_columns=drifted,
            prediction_drift=prediction,
            accuracy=figures["accuracy"],
            accuracy_source=source,
            metrics=perf["metrics"],
            degraded_metrics=perf["degraded_metrics"],
            alerts=alerts,
        )
    return chunks


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- the whole analysis ---------------------------------------------------------------------------


def analyse(
    config: Config,
    reference: pd.DataFrame,
    current: Batch | pd.DataFrame,
    test: pd.DataFrame,
    *,
    labelled: bool,
    batch: str,
    model: Any,
    model_info: dict[str, Any],
) -> tuple[dict[str, Any], Any]:
    """The drift result (drift.json's content) and the Evidently snapshot behind it."""
    started = time.perf_counter()
    policy = config.drift
    target = config.schema.target
    features = model_info.get("features") or config.features
    categories = model_info.get("categories") or config.categorical
    categories = {k: v for k, v in categories.items() if k in features}
    positive = positive_label(model, model_info)
    # The model as it scores a coded matrix (mlops.predictions), and that matrix's coding.
    legacy, coded_model = not takes_raw_frame(model_info), matrix_model(model, model_info)
    if isinstance(current, pd.DataFrame):
        scorer = stream.Scorer(coded_model, positive, features, categories, legacy=legacy)
        current = stream.from_frame(
            config, current, reference, features, categories, name=batch, scorer=scorer
        )
    whole: Batch = current
    sampled = len(reference) > policy.sample_size or whole.total > policy.sample_size
    reference_rows, current_rows = len(reference), whole.total
    unseen = unseen_categories(whole)
    full_reference = reference
    reference = sample(reference, policy.sample_size, config.seed)
    current, rows = whole.sample, whole.rows

    every = whole.every
    pending = None
    if every is not None:  # every row: predicted on a thread while the sample is judged
        pool = ThreadPoolExecutor(max_workers=1)
        pending = pool.submit(predict_all, model, every["x"], positive)
        pool.shutdown(wait=False)  # the thread ends when its work is done
    said = {
        name: predict(coded_model, model_input(frame, features, categories, legacy), positive)
        for name, frame in (("current", current), ("test", test))
    }
    if every is not None:
        y = every.get("target") if labelled else None
        times = pd.Series(every["time"]) if "time" in every else None
        total = whole.total
    else:  # a batch read without the model: the sample stands for every row
        y = current[target].to_numpy() if labelled else None
        time_column = config.data.time_column
        times = current[time_column] if time_column and time_column in current else None
        rows, total = np.arange(len(current)), len(current)
    estimator = PerformanceEstimator.fit(test[target].to_numpy(), said["test"], seed=config.seed)
    # The reference's predictions are the model's outputs on the held-out test split, resampled
    # (seeded) to the reference's size: on its own training rows a model is over-confident (a
    # multiclass top-class probability of 0.9997 ± 0.0005 on train against 0.995 ± 0.035 on test,
    # measured), which any drift score normalised by the reference's spread would blow up.
    rows_of_test = np.random.default_rng(config.seed).choice(
        len(test), size=len(reference), replace=len(test) < len(reference)
    )
    reference = _with_predictions(reference, said["test"].take(rows_of_test))
    current = _with_predictions(current, said["current"])
    tests = evidently_run.column_tests(config, features)
    scores = exact_scores(full_reference, whole, config, tests) if sampled else {}
    predicted = time.perf_counter()

    created = datetime.now(UTC)
    found_snapshot = evidently_run.snapshot(
        config,
        reference,
        current,
        features=features,
        multiclass=positive is None,
        timestamp=created,
        tags=[batch],
        metadata={"batch": batch, "model": model_info.get("version") or model_info["source"]},
    )
    found = evidently_run.read_snapshot(found_snapshot, config, features)
    evidently_done = time.perf_counter()

    shares = importance_shares(model_info.get("feature_importance"), features)
    columns = found["columns"]
    overruled = decide_exactly(columns, scores, sampled=sampled)
    said["every"] = said["current"] if pending is None else pending.result()
    perf = performance(config, estimator, said["every"], y)
    resampled: dict[tuple[str, int], float] = {}
    size_aware(
        columns,
        reference,
        tests,
        set(config.categorical),
        len(current),
        seed=config.seed,
        cache=resampled,
    )
    for name, column in columns.items():
        column["importance"] = None if shares is None else shares[name]
        column["missing"] = whole.missing_share(name)
        if name in unseen:
            column["unseen"] = unseen[name]
            column["drifted"] = True
    drifted = [name for name, column in columns.items() if column["drifted"]]
    share = round(len(drifted) / max(len(columns), 1), 6)
    # Evidently's dataset test counts the sample's flags; the exact ones may differ from those.
    exact_used = sampled and any(column["exact"] for column in columns.values())
    own = exact_used or any(c["threshold_source"] != POLICY for c in columns.values())
    dataset_drift = share >= policy.drift_share or (found["dataset_drift"] and not own)
    importance = importance_drifted(shares, drifted)
    prediction = {
        **found["prediction"],
        "column": PREDICTION,
        "reference_mean": _round(reference[PREDICTION].mean()),
        "current_mean": _round(current[PREDICTION].mean()),
    }
    if found["predicted_label"] is not None:
        prediction["predicted_label"] = found["predicted_label"]
        prediction["probability_drifted"] = prediction["drifted"]
        prediction["drifted"] = prediction["drifted"] or found["predicted_label"]["drifted"]
    plan, chunking = chunk_plan(times, total, config)
    chunks = analyse_chunks(
        config,
        reference,
        current,
        rows,
        plan=plan,
        total=total,
        features=features,
        shares=shares,
        estimator=estimator,
        predictions=said["every"],
        y=y,
        cache=resampled,
    )
    result: dict[str, Any] = {
        "status": "ok",
        "dataset_drift": bool(dataset_drift),
        "share_drifted": share,
        "importance_drifted": importance,
        "importance_share": policy.importance_share,
        "drifted_columns": drifted,
        "columns": columns,
        "prediction_drift": prediction,
        "performance": perf,
        "chunks": chunks,
        "chunking": chunking,
        "findings": [
            f"{name}: {info['rows']} row(s) with categories unseen in training "
            f"(e.g. {', '.join(info['examples'])})"
            for name, info in unseen.items()
        ],
        "reference_rows": reference_rows,
        "current_rows": current_rows,
        "current_files": whole.files,
        "labelled_rows": whole.labelled_rows,  # rows of the batch with a label (all rows)
        # statistics of every row per column (mlops.drift.exact), and the verdicts they overruled
        "current_stats": {name: whole.summary(name) for name in columns},
        "exact_overruled": overruled,
        "sampled": sampled,
        "sample_size": policy.sample_size,
        "rows_compared": {"reference": len(reference), "current": len(current)},
        "alerts": [],
        "fail_on_drift": policy.fail_on_drift,
        "drift_share": policy.drift_share,
        "reference": policy.reference,
        "batch": batch,
        "model": {
            k: v for k, v in model_info.items() if k not in ("features", "categories", "input")
        },
        "policy": policy.model_dump(mode="json"),
        "created_at": created.isoformat(timespec="seconds"),
    }
    if shares is not None and current_rows < NOISY_BELOW:
        result["importance_note"] = (
            f"the importance rule applies from {NOISY_BELOW:,} rows: below, per-column flags "
            "are mostly chance"
        )
    if shares is None:
        result["importance_note"] = (
            "the importance rule could not run: the model's metadata has no feature_importance "
            "(promote a model evaluated by this version of `make evaluate`)"
        )
    figures = rules.Figures(
        columns=columns,
        dataset_drift=result["dataset_drift"],
        share=share,
        importance=importance,
        prediction=prediction,
        perf=perf,
        rows=current_rows,
    )
    result["rule_alerts"] = rule_alerts(config, figures)
    result["status"], result["alerts"] = verdict(result)
    finished = time.perf_counter()
    result["seconds"] = round(finished - started, 2)
    result["timings"] = {
        "sample_predict_score": round(predicted - started, 2),
        "evidently": round(evidently_done - predicted, 2),
        "chunks": round(finished - evidently_done, 2),
    }
    return result, found_snapshot


def predict_all(model: Any, parts: list[Any], positive: Any) -> Predictions:
    """Every row's predictions, part by part as read (each Predictions, or its future from the
    pass), joined."""
    found: list[Predictions] = [
        part.result() if isinstance(part, Future) else part for part in parts
    ]
    if len(found) == 1:
        return found[0]
    return of_probabilities(
        np.concatenate([p.labels for p in found]),
        np.concatenate([p.proba for p in found]),
        found[0].classes,
        positive,
    )


def _with_predictions(frame: pd.DataFrame, said: Predictions) -> pd.DataFrame:
    columns = {PREDICTION: said.probability}
    if said.positive is None:
        columns[PREDICTED_LABEL] = said.labels.astype(str)
    return frame.assign(**columns)


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)
