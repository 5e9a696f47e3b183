"""The served model: verified loading, reload on a registry change, and dynamic batching."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mlops import encoding
from mlops.config import Config
from mlops.errors import InputError
from mlops.predictions import decide, matrix_model, takes_raw_frame
from mlops.serve.schema import example_instance, request_model

log = logging.getLogger("mlops.serve")
REGISTRY_FILE = "registry.json"
# Passes of the event loop a batch stays open: tasks created from bytes read in one pass only run
# in the next, so two passes let requests that arrived while the batch formed join it.
FLUSH_PASSES = 2


@dataclass(frozen=True)
class Loaded:
    """A verified production model and what the API needs to answer with it.

    `model` is the stored file (a pipeline that takes raw rows by name, or a version trained
    before that); `predict_proba(x)` scores the coded matrix serve.schema's validators build
    (mlops.encoding codes, one row per request row) the fast way, without pandas.
    """

    model: Any
    metadata: dict
    version: str
    classes: np.ndarray
    positive: int | None  # binary: the column of predict_proba holding the positive label
    coded: Any  # what scores the coded matrix: model[1:], or the legacy model itself
    legacy: dict | None = None  # a legacy model's categories: codes are translated for it

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of coded rows (mlops.encoding codes, config.features order)."""
        if self.legacy is not None:
            x = encoding.to_legacy(x, self.legacy)
        return self.coded.predict_proba(x)


def check_schema(metadata: dict, config: Config) -> None:
    """A model's features and categories (its metadata) must be those params.yaml declares."""
    version = str(metadata.get("version") or "unknown")
    trained_on = metadata.get("features")
    if trained_on is not None and list(trained_on) != config.features:
        raise InputError(
            f"model {version} was trained on features {trained_on}, "
            f"params.yaml declares {config.features}"
        )
    categories = metadata.get("categories")
    if categories is not None and categories != config.categorical:
        changed = [
            name for name in config.categorical if categories.get(name) != config.categorical[name]
        ]
        raise InputError(
            f"model {version} was trained with other allowed values for {', '.join(changed)} "
            "than params.yaml declares"
        )


def check_model(model: Any, metadata: dict, config: Config) -> Loaded:
    """Refuse a model that cannot serve this schema; one trial prediction must succeed."""
    version = str(metadata.get("version") or "unknown")
    check_schema(metadata, config)
    raw = takes_raw_frame(metadata)
    names = getattr(model, "feature_names_in_", None)
    if raw and (names is None or sorted(names) != sorted(config.features)):
        found = "none" if names is None else list(names)
        raise InputError(
            f"model {version} takes raw rows, but by columns {found}, not {config.features}"
        )
    if raw and _encoded_categories(model) != [
        encoding.encoder_categories(values) for values in config.categorical.values()
    ]:
        raise InputError(
            f"model {version} encodes other categories than params.yaml declares (its first step)"
        )
    classes = np.asarray(getattr(model, "classes_", []))
    if not hasattr(model, "predict_proba") or len(classes) < 2:
        raise InputError(f"model {version} gives no class probabilities")
    positive_label = metadata.get("positive", classes.tolist()[1] if len(classes) == 2 else None)
    if len(classes) == 2 and positive_label not in classes.tolist():
        raise InputError(f"model {version} has no probability for label {positive_label!r}")
    positive = None if len(classes) > 2 else classes.tolist().index(positive_label)
    legacy = None if raw else dict(config.categorical)
    loaded = Loaded(
        model, metadata, version, classes, positive, matrix_model(model, metadata), legacy
    )
    trial(loaded, config)
    return loaded


def trial(loaded: Loaded, config: Config) -> None:
    """One prediction of the schema's example row must give finite class probabilities."""
    example: Any = request_model(config).model_validate({"instances": [example_instance(config)]})
    instance = example.instances[0]
    row = np.array(
        [[getattr(instance, field) for field in type(instance).model_fields]], np.float64
    )
    with threadpool_limits(limits=1):  # this may run in a worker thread (a reload)
        proba = loaded.predict_proba(row)
    if proba.shape != (1, len(loaded.classes)) or not np.all(np.isfinite(proba)):
        raise InputError(f"model {loaded.version}: trial prediction returned {proba!r}")


def _encoded_categories(model: Any) -> list[list[Any]] | None:
    """The category lists of a raw-rows pipeline's encoder (None when it has none)."""
    encoder = getattr(model[0], "named_transformers_", {}).get("categorical")
    categories = getattr(encoder, "categories_", None)
    return None if categories is None else [list(values.tolist()) for values in categories]


class ModelSlot:
    """Holds the served model; refresh() swaps in a new production model once it is verified."""

    def __init__(self, config: Config, models_dir: Path) -> None:
        self.config = config
        self.models_dir = Path(models_dir)
        self.current: Loaded | None = None
        self.problem = "no production model yet (promote one: make promote)"
        self._seen: tuple | None = None
        self.threads = 1  # ONNX Runtime intra-op threads; the server sets serving_threads()

    @property
    def version(self) -> str | None:
        return self.current.version if self.current else None

    def _signature(self) -> tuple | None:
        try:
            info = os.stat(self.models_dir / REGISTRY_FILE)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def refresh(self, force: bool = False) -> bool:
        """Load production if registry.json changed (or force); True when the model was swapped."""
        from mlops import registry
        from mlops.serve import onnx_model

        signature = self._signature()
        if signature == self._seen and not force:
            return False
        self._seen = signature
        try:
            version = registry.production_version(self.models_dir)
            if version is None:
                if self.current is None:
                    self.problem = "no production model yet (promote one: make promote)"
                else:
                    log.warning("registry has no production model; still serving %s", self.version)
                return False
            if self.current is not None and version == self.current.version and not force:
                return False
            started = time.perf_counter()
            loaded = onnx_model.load(self.models_dir, version, self.config, self.threads)
            if loaded is None:  # no model.onnx (or serve.runtime sklearn): scikit-learn serves
                found = registry.load_production(self.models_dir)
                if found is None:
                    return False
                loaded = check_model(*found, self.config)
        except Exception as exc:  # any bad model is refused; the old one keeps serving
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.problem = f"production model refused: {reason}"
            log.error("%s; serving %s", self.problem, self.version or "nothing")
            return False
        previous, self.current = self.version, loaded
        log.info(
            "serving model %s (was %s) with %s, loaded in %.1f ms",
            loaded.version,
            previous or "nothing",
            "ONNX Runtime" if loaded.metadata.get("runtime") == "onnx" else "scikit-learn",
            (time.perf_counter() - started) * 1000,
        )
        return True


class Batcher:
    """Rows of requests that arrive together are scored in one model call (dynamic batching).

    Nothing waits on a timer: the first pending request schedules the model call FLUSH_PASSES
    event-loop passes later (microseconds), so a lone request is scored at once, while requests
    whose bytes arrived meanwhile (concurrent clients) join it and share the model's fixed
    per-call cost, which dominates for a few rows (HistGradientBoosting: one call per tree).
    """

    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot
        self.pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self.calls = 0
        self.rows = 0

    async def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """(labels, probabilities as `Prediction.probability`, all probabilities, version)."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((x, future))
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_soon(self.flush, FLUSH_PASSES)
        return await future

    def flush(self, passes: int = 0) -> None:
        if passes > 0:
            asyncio.get_running_loop().call_soon(self.flush, passes - 1)
            return
        pending, self.pending = self.pending, []
        loaded = self.slot.current
        try:
            if loaded is None:
                raise RuntimeError("no model loaded")
            x = pending[0][0] if len(pending) == 1 else np.concatenate([p[0] for p in pending])
            proba = loaded.predict_proba(x)
        except Exception as exc:
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        self.calls += 1
        self.rows += len(x)
        labels, chosen = decide(proba, loaded.classes, loaded.positive)
        start = 0
        for rows, future in pending:
            end = start + len(rows)
            if not future.done():
                result = (labels[start:end], chosen[start:end], proba[start:end], loaded.version)
                future.set_result(result)
            start = end
