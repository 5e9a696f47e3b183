"""Reading and checking what drift compares: the batch, the reference, the test split, the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mlops import files, layout
from mlops.config import Config
from mlops.drift import stream
from mlops.drift.labels import read as read_labels
from mlops.drift.stream import Batch
from mlops.errors import InputError

METRICS = layout.METRICS


def load_current(
    config: Config,
    current: Path | str | None,
    reference: pd.DataFrame,
    model_info: dict,
    labels: Path | str | None = None,
    model: Any = None,
) -> Batch:
    """The batch a CURRENT= names (a file, folder or glob of CSV or Parquet), streamed and checked
    row by row (mlops.drift.stream), or the current split.

    The current split from `make data` was validated by `make validate` before this stage runs
    (Make's order), so only its columns and size are checked again. With the model, every row is
    predicted in the same pass (performance and chunks judge all rows).
    """
    features = model_info.get("features") or config.features
    categories = model_info.get("categories") or config.categorical
    categories = {name: values for name, values in categories.items() if name in features}
    if labels is not None and current is None:
        raise InputError("LABELS= joins ground truth to a CURRENT= batch: name the batch too")
    scorer = None if model is None else stream.scorer(model, model_info, features, categories)
    if current is not None:
        joined = read_labels(config, labels) if labels is not None else None
        return stream.read(
            config, current, reference, features, categories, labels=joined, scorer=scorer
        )
    path = config.data.processed_dir / "current.parquet"
    if not path.is_file():
        raise InputError(f"{path}: not found (run `make data` first)")
    return stream.read(config, path, reference, features, categories, checked=False, scorer=scorer)


def read_frame(config: Config, current: Path | None) -> pd.DataFrame:
    """A batch small enough to hold in memory (the drift demo's): the file named, else the current
    split."""
    if current is not None:
        return files.read_table(Path(current), config.features)
    return files.read_parquet(config.data.processed_dir / "current.parquet")


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
    from mlops.train import load_candidate

    production = _production(config)
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
        "runtime": getattr(model, "runtime", "sklearn"),
        "features": metadata.get("features"),
        "categories": metadata.get("categories"),
        "feature_importance": importance_of(metadata),
    }
    if "positive" in metadata:  # older versions: evaluate.model_positive decides
        info["positive"] = metadata["positive"]
    if "input" in metadata:  # the model file takes raw rows (older versions: the legacy matrix)
        info["input"] = metadata["input"]
    if note:
        info["note"] = note
    return model, info


def _production(config: Config | None) -> tuple[Any, dict] | None:
    """Production's model.onnx in ONNX Runtime where drift.runtime allows and the version has one
    (the gate checked its parity with the model file; it scores in a fraction of scikit-learn's
    time and needs no unpickling), else its model file; None when there is no production yet."""
    from mlops import onnx_runtime, registry

    if config is not None:
        found = onnx_runtime.production(
            registry.MODELS_DIR, config, config.drift.runtime, "drift.runtime"
        )
        if found is not None:
            return found
    return registry.load_production()


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
