"""ONNX Runtime for a version's model.onnx (mlops.onnx_export): sessions sized for this
container's CPUs, and a scikit-learn-like model (predict_proba, classes_) for `make score`."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlops import files
from mlops.config import Config
from mlops.errors import InputError

log = logging.getLogger(__name__)
OUTPUT = "probabilities"  # as in mlops.onnx_export (not imported: that is the exporter)


def cpu_count() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def telemetry_off() -> None:
    """ONNX Runtime (1.2x+, Linux too) writes a device id under ~/.cache/Microsoft and sends
    usage events unless ORT_DISABLE_TELEMETRY is set before it is first imported; a user who
    sets it otherwise keeps their choice."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def session(data: bytes, threads: int, where: Path) -> Any:
    """One InferenceSession: `threads` intra-op threads that sleep rather than spin when idle
    (a spinning pool would take the cores from the event loop or the reader between calls)."""
    telemetry_off()
    try:
        import onnxruntime
    except ImportError as exc:
        raise InputError(
            f"{where}: onnxruntime is not installed ({exc}); install it (the serve dependency "
            "group) or set serve.runtime / score.runtime: sklearn"
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


def check_inputs(sess: Any, where: Path, features: list[str]) -> None:
    """The session's inputs must be the features, float64 [N, 1], and it must give OUTPUT."""
    found = [item.name for item in sess.get_inputs()]
    if found != list(features):
        raise InputError(f"{where}: its inputs {found} are not the schema's features {features}")
    wrong = [
        item.name
        for item in sess.get_inputs()
        if item.type != "tensor(double)" or len(item.shape) != 2 or item.shape[1] != 1
    ]
    if wrong:
        raise InputError(f"{where}: inputs {wrong} are not float64 columns of shape [N, 1]")
    if OUTPUT not in [item.name for item in sess.get_outputs()]:
        raise InputError(f"{where}: has no output {OUTPUT!r}")


class OnnxModel:
    """A model.onnx as scoring calls a model: predict_proba(coded rows) and classes_.

    Picklable (Dask workers): the bytes travel, each process opens its own session on first use.
    """

    runtime = "onnx"

    def __init__(self, data: bytes, features: list[str], classes: list, where: Path, threads: int):
        self.data, self.features, self.where, self.threads = data, list(features), where, threads
        self.classes_ = np.asarray(classes)
        self._session: Any = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_session": None}

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = session(self.data, self.threads, self.where)
            check_inputs(self._session, self.where, self.features)
        return self._session

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of coded rows (mlops.encoding codes, features order)."""
        x = np.asarray(x, dtype=np.float64)
        feeds = {name: x[:, i : i + 1] for i, name in enumerate(self.features)}
        return self.session.run([OUTPUT], feeds)[0]


def version_files(
    models_dir: Path, version: str, runtime: str, setting: str
) -> tuple[Path, dict] | None:
    """(model.onnx, metadata incl. "version") of a version ONNX should answer for, verified
    against registry.json; None when the version has none or runtime is sklearn. setting: the
    params.yaml key named in errors."""
    from mlops import registry

    registry_data = registry.read_registry(models_dir)
    entry = registry_data["versions"].get(version) or {}
    if runtime == "sklearn" or (runtime == "auto" and not entry.get("onnx_sha256")):
        return None
    if not entry.get("onnx_sha256"):
        raise InputError(
            f"{models_dir / version / registry.ONNX_FILE}: {setting} is onnx but {version} has "
            f"no ONNX file (scikit-learn serves it: {setting} auto)"
        )
    # The version's model file too (hashed, never loaded): a tampered version is not served.
    registry.verified_model_file(models_dir, version, registry_data)
    path = registry.verified_onnx_file(models_dir, version, registry_data)
    assert path is not None  # the entry names an onnx_sha256
    where = path.parent / registry.METADATA_FILE
    metadata = files.read_json(where)
    if metadata.get("model_sha256") != entry["sha256"]:
        raise InputError(f"{where}: model_sha256 does not match the registry")
    if metadata.get("onnx_sha256") != entry["onnx_sha256"]:
        raise InputError(f"{where}: onnx_sha256 differs from the registry")
    return path, {**metadata, "version": version}


def read_verified(path: Path, expected: str) -> bytes:
    """The file's bytes, refused unless their sha256 is the expected one."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        raise InputError(f"{path}: sha256 does not match the registry; refusing to load")
    return data


def production(
    models_dir: Path, config: Config, runtime: str, setting: str, threads: int | None = None
) -> tuple[OnnxModel, dict] | None:
    """(OnnxModel, metadata) of production for `make score` or `make drift` (runtime: the value
    of `setting`, score.runtime or drift.runtime), or None when scikit-learn answers; the session
    is opened and checked here."""
    from mlops import registry

    version = registry.production_version(models_dir)
    if version is None:
        return None
    found = version_files(Path(models_dir), version, runtime, setting)
    if found is None:
        return None
    path, metadata = found
    classes = metadata.get("classes") or []
    features = metadata.get("features") or config.features
    model = OnnxModel(
        read_verified(path, metadata["onnx_sha256"]),
        features,
        classes,
        path,
        threads or cpu_count(),
    )
    model.session  # noqa: B018 (opened and checked now: a bad file fails before any scoring)
    return model, metadata
