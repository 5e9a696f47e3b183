"""The served model from models/vN/model.onnx with ONNX Runtime (no scikit-learn needed).

A version whose registry entry names an `onnx_sha256` is served from its ONNX file (serve.runtime
auto or onnx): the file's sha256 is checked against registry.json first, then one
InferenceSession is opened and its inputs must be the schema's features, one float64 [N, 1]
column each, in order (mlops.onnx_export); a trial prediction must succeed. Any problem is an
InputError naming the file: the previous model keeps serving (a reload), or the server refuses
to start (exit 2).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlops import files
from mlops.config import Config
from mlops.errors import InputError

log = logging.getLogger("mlops.serve")
OUTPUT = "probabilities"  # as in mlops.onnx_export (not imported: it is the exporter)


def cpu_count() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def serving_threads() -> int:
    """Intra-op threads of the serving session: one on up to 2 CPUs (a request is tens of
    microseconds of work; a second thread would compete with the event loop), else half the
    container's CPUs, at most 4 (large batches split across them)."""
    cpus = cpu_count()
    return 1 if cpus <= 2 else min(4, cpus // 2)


def session(data: bytes, threads: int, where: Path) -> Any:
    """One InferenceSession: `threads` intra-op threads that sleep rather than spin when idle
    (a spinning pool would take the cores from the event loop between requests)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise InputError(
            f"{where}: onnxruntime is not installed ({exc}); install the serve dependencies "
            "or set serve.runtime: sklearn"
        ) from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own errors: a corrupt or unloadable graph
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{where}: not a loadable ONNX model ({reason[:200]})") from None


class OnnxScorer:
    """predict_proba(x) of coded rows (mlops.encoding codes, config.features order)."""

    def __init__(self, sess: Any, names: list[str]) -> None:
        self.session = sess
        self.names = names
        self.run = sess.run

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        feeds = {name: x[:, i : i + 1] for i, name in enumerate(self.names)}
        return self.run([OUTPUT], feeds)[0]


def check_inputs(sess: Any, where: Path, config: Config) -> None:
    """The session's inputs must be config.features, float64 [N, 1], and it must give OUTPUT."""
    found = [item.name for item in sess.get_inputs()]
    if found != config.features:
        raise InputError(
            f"{where}: its inputs {found} are not the schema's features {config.features}"
        )
    wrong = [
        item.name
        for item in sess.get_inputs()
        if item.type != "tensor(double)" or len(item.shape) != 2 or item.shape[1] != 1
    ]
    if wrong:
        raise InputError(f"{where}: inputs {wrong} are not float64 columns of shape [N, 1]")
    if OUTPUT not in [item.name for item in sess.get_outputs()]:
        raise InputError(f"{where}: has no output {OUTPUT!r}")


def version_files(models_dir: Path, version: str, config: Config) -> tuple[Path, dict] | None:
    """(model.onnx path, metadata) of a version ONNX should serve, verified; None when the
    version has no ONNX file or serve.runtime is sklearn."""
    from mlops import registry

    runtime = config.serve.runtime
    registry_data = registry.read_registry(models_dir)
    entry = registry_data["versions"].get(version) or {}
    if runtime == "sklearn" or (runtime == "auto" and not entry.get("onnx_sha256")):
        return None
    if not entry.get("onnx_sha256"):
        raise InputError(
            f"{models_dir / version / registry.ONNX_FILE}: serve.runtime is onnx but {version} "
            f"has no ONNX file ({entry.get('served_by', 'sklearn')} serves it: serve.runtime auto)"
        )
    path = registry.verified_onnx_file(models_dir, version, registry_data)
    metadata = files.read_json(path.parent / registry.METADATA_FILE)
    if metadata.get("onnx_sha256") != entry["onnx_sha256"]:
        where = path.parent / registry.METADATA_FILE
        raise InputError(f"{where}: onnx_sha256 differs from the registry")
    return path, {**metadata, "version": version}


def load(models_dir: Path, version: str, config: Config, threads: int = 1) -> Any | None:
    """The serve.model.Loaded of a version from its model.onnx, or None when scikit-learn
    serves it (no ONNX file, or serve.runtime sklearn)."""
    from mlops.serve.model import Loaded, trial

    found = version_files(Path(models_dir), version, config)
    if found is None:
        return None
    path, metadata = found
    started = time.perf_counter()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != metadata["onnx_sha256"]:  # changed since it was verified
        raise InputError(f"{path}: sha256 does not match the registry; refusing to load")
    sess = session(data, threads, path)
    check_inputs(sess, path, config)
    classes = np.asarray(metadata.get("classes") or [])
    if len(classes) < 2:
        raise InputError(f"{path.parent / 'metadata.json'}: no `classes`")
    positive_label = metadata.get("positive", classes.tolist()[1] if len(classes) == 2 else None)
    if len(classes) == 2 and positive_label not in classes.tolist():
        raise InputError(f"{path}: no probability for label {positive_label!r}")
    positive = None if len(classes) > 2 else classes.tolist().index(positive_label)
    scorer = OnnxScorer(sess, list(config.features))
    loaded = Loaded(sess, {**metadata, "runtime": "onnx"}, version, classes, positive, scorer)
    trial(loaded, config)
    log.info(
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
