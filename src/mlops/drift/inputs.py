"""Reading and checking what drift compares: the batch, the reference, the test split, the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mlops import files
from mlops.config import Config
from mlops.errors import InputError

METRICS = Path("reports/metrics.json")
# validate.check_frame's check names, as the one-line error puts them.
CHECK_WORDS = {
    "isin": "value not allowed",
    "in_range": "value out of range",
    "dtype": "not numeric",
    "not_null": "missing values",
    "max_missing": "too many missing values",
    "present": "column missing",
}


def has_labels(frame: pd.DataFrame, config: Config) -> bool:
    target = config.schema.target
    return target in frame.columns and bool(frame[target].notna().any())


def check_batch(frame: pd.DataFrame, config: Config, source: str) -> bool:
    """Schema checks of a batch (columns, dtypes, ranges, labels); return `labelled`.

    Frame-level checks meant for training data (minimum rows, label balance, duplicates) are
    left out: in a monitoring batch those are signals, not input errors; drift.min_rows applies.
    A feature category unseen in training is reported as drift (see analysis.unseen_categories);
    an unknown label value stays an error.
    """
    from mlops.validate import check_frame, unseen_is_warning

    with_labels = has_labels(frame, config)
    for result in check_frame(frame, config, labelled=with_labels):
        if result["passed"] or result["column"] == "(rows)":
            continue
        if unseen_is_warning(result, "current", config):
            continue  # a category the model never saw: a drift signal the report counts
        what = CHECK_WORDS.get(result["check"], f"{result['check']} check failed")
        detail = f"{result['failures']} row(s)"
        if result["examples"]:
            first = result["examples"][0]
            value = str(first["value"]).removesuffix(".0")
            where = f"row {first['row']}, " if first["row"] is not None else ""
            detail += f"; first: {where}value {value}"
        raise InputError(f"{source}: column {result['column']}: {what} ({detail})")
    check_rows(frame, config, source)
    return with_labels


def check_rows(frame: pd.DataFrame, config: Config, source: str) -> None:
    if len(frame) < config.drift.min_rows:
        raise InputError(
            f"{source}: {len(frame)} rows, fewer than drift.min_rows ({config.drift.min_rows})"
        )


def load_current(config: Config, current: Path | None) -> tuple[pd.DataFrame, str, bool]:
    """(batch, its name, labelled): the file named (CSV or Parquet), schema-checked here, or the
    current split.

    The current split from `make data` was validated by `make validate` before this stage runs
    (Make's order), so only its columns and size are checked again: a full schema check of a
    million rows would cost more than the drift computation itself.
    """
    if current is not None:
        frame = files.read_table(Path(current), config.features)
        return frame, str(current), check_batch(frame, config, str(current))
    path = config.data.processed_dir / "current.parquet"
    frame = files.read_parquet(path)
    missing = [c for c in config.features if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    check_rows(frame, config, str(path))
    return frame, str(path), has_labels(frame, config)


def load_reference(config: Config) -> pd.DataFrame:
    return files.read_parquet(config.data.processed_dir / f"{config.drift.reference}.parquet")


def load_test(config: Config) -> pd.DataFrame:
    return files.read_parquet(config.data.processed_dir / "test.parquet")


def load_model(config: Config | None = None) -> tuple[Any, dict]:
    """The production model if there is one, else the candidate; with a description of it.

    When production was trained on other features than params.yaml declares (a dataset switch,
    a renamed or removed column), the candidate of this schema is judged instead and the
    description says so; without such a candidate it is an InputError saying what to do.
    """
    from mlops import registry
    from mlops.train import load_candidate

    production = registry.load_production()
    note = None
    if production is not None:
        model, metadata = production
        source = "production"
        missing = _missing_features(metadata, config)
        if missing:
            candidate = _candidate_of_schema(config)
            if candidate is None:
                raise InputError(
                    f"production {metadata.get('version')} needs column(s) "
                    f"{', '.join(missing)} that params.yaml no longer declares: promote a model "
                    "trained on this schema (make promote, or FORCE_REASON=...), or roll back "
                    "params.yaml and the data (make rollback restores an older model)"
                )
            model, metadata = candidate
            source = "candidate"
            note = (
                f"production {production[1].get('version')} was trained on other columns "
                f"(missing here: {', '.join(missing)}); judged with the candidate instead"
            )
    else:
        model, metadata = load_candidate()
        source = "candidate"
    info = {
        "source": source,
        "version": metadata.get("version"),
        "model_sha256": metadata.get("model_sha256"),
        "features": metadata.get("features"),
        "categories": metadata.get("categories"),
        "feature_importance": importance_of(metadata),
    }
    if "positive" in metadata:  # older versions: evaluate.model_positive decides
        info["positive"] = metadata["positive"]
    if note:
        info["note"] = note
    return model, info


def _missing_features(metadata: dict, config: Config | None) -> list[str]:
    if config is None:
        return []
    return [name for name in metadata.get("features") or [] if name not in config.features]


def _candidate_of_schema(config: Config | None) -> tuple[Any, dict] | None:
    from mlops.train import load_candidate

    try:
        model, metadata = load_candidate()
    except (InputError, OSError, KeyError):
        return None
    return None if _missing_features(metadata, config) else (model, metadata)


def importance_of(metadata: dict) -> dict[str, float] | None:
    """The model's permutation importance: from its metadata, else from reports/metrics.json when
    that evaluated these very model bytes; None when neither has it."""
    found = metadata.get("feature_importance")
    if found:
        return dict(found)
    try:
        metrics = files.read_json(METRICS)
    except InputError:
        return None
    if isinstance(metrics, dict) and metrics.get("model_sha256") == metadata.get("model_sha256"):
        return metrics.get("feature_importance") or None
    return None
