"""The served model from models/vN/model.onnx with ONNX Runtime (no scikit-learn needed).

A version whose registry entry names an `onnx_sha256` is served from its ONNX file (serve.runtime
auto or onnx): the file's sha256 is checked against registry.json first, then one
InferenceSession is opened and its inputs must be the schema's features, one float64 [N, 1]
column each, in order (mlops.onnx_export); a trial prediction must succeed. Any problem is an
InputError naming the file: the previous model keeps serving (a reload), or the server refuses
to start (exit 2).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlops import onnx_runtime
from mlops.config import Config
from mlops.errors import InputError

log = logging.getLogger("mlops.serve")
OUTPUT = onnx_runtime.OUTPUT


def serving_threads() -> int:
    """Intra-op threads of the serving session: one on up to 2 CPUs (a request is tens of
    microseconds of work; a second thread would compete with the event loop), else half the
    container's CPUs, at most 4 (large batches split across them)."""
    cpus = onnx_runtime.cpu_count()
    return 1 if cpus <= 2 else min(4, cpus // 2)


def load(models_dir: Path, version: str, config: Config, threads: int = 1) -> Any | None:
    """The serve.model.Loaded of a version from its model.onnx, or None when scikit-learn
    serves it (no ONNX file, or serve.runtime sklearn)."""
    from mlops.serve.model import Loaded, check_schema, trial

    runtime = config.serve.runtime
    found = onnx_runtime.version_files(Path(models_dir), version, runtime, "serve.runtime")
    if found is None:
        return None
    path, metadata = found
    check_schema(metadata, config)
    started = time.perf_counter()
    data = onnx_runtime.read_verified(path, metadata["onnx_sha256"])
    classes = np.asarray(metadata.get("classes") or [])
    if len(classes) < 2:
        raise InputError(f"{path.parent / 'metadata.json'}: no `classes`")
    positive_label = metadata.get("positive", classes.tolist()[1] if len(classes) == 2 else None)
    if len(classes) == 2 and positive_label not in classes.tolist():
        raise InputError(f"{path}: no probability for label {positive_label!r}")
    positive = None if len(classes) > 2 else classes.tolist().index(positive_label)
    scorer = onnx_runtime.OnnxModel(data, config.features, classes.tolist(), path, threads)
    sess = scorer.session  # opened and its inputs checked against the schema
    loaded = Loaded(sess, {**metadata, "runtime": "onnx"}, version, classes, positive, scorer)
    trial(loaded, config)
    log.debug(  # the slot logs "serving model ..." once it is swapped in
        "loaded %s from %s (ONNX Runtime, %d intra-op thread(s)) in %.1f ms",
        version,
        path,
        threads,
        (time.perf_counter() - started) * 1000,
    )
    return loaded


def preflight(config: Config, models_dir: Path = Path("models")) -> None:
    """At start: production's ONNX file must load, or the server refuses to start (InputError,
    exit 2, one line naming the file). A version scikit-learn serves is checked as before."""
    from mlops import registry

    version = registry.production_version(models_dir)
    if version is not None:
        load(models_dir, version, config, serving_threads())
