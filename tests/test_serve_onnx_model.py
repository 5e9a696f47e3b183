"""Serving from models/vN/model.onnx (mlops.serve.onnx_model): the gate stores it, the server
loads it with ONNX Runtime after its sha256, answers as scikit-learn does, and a corrupt,
tampered or mismatched file is refused: a reload keeps the previous model, a start exits 2."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from mlops import files, registry
from mlops.config import Config, load_config
from mlops.encoding import feature_matrix
from mlops.errors import InputError
from mlops.serve import onnx_model
from mlops.serve.model import ModelSlot

MODELS = Path("models")


@pytest.fixture
def served(promoted_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """A private copy of the promoted project (production v1, with model.onnx), as cwd."""
    root = tmp_path / "project"
    shutil.copytree(promoted_dir, root)
    monkeypatch.chdir(root)
    return load_config(root / "params.yaml")


def runtime(config: Config, name: str) -> Config:
    return config.model_copy(update={"serve": config.serve.model_copy(update={"runtime": name})})


def rewrite_onnx(data: bytes) -> Path:
    """Replace v1's model.onnx and record its sha256 as a consistent (but bad) version would."""
    path = MODELS / "v1" / registry.ONNX_FILE
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    entries = files.read_json(MODELS / "registry.json")
    entries["versions"]["v1"]["onnx_sha256"] = sha
    files.write_json(MODELS / "registry.json", entries)
    metadata = files.read_json(MODELS / "v1" / "metadata.json")
    files.write_json(MODELS / "v1" / "metadata.json", {**metadata, "onnx_sha256": sha})
    return path


def test_the_gate_stores_model_onnx_and_its_sha256(served):
    entry = files.read_json(MODELS / "registry.json")["versions"]["v1"]
    path = MODELS / "v1" / "model.onnx"
    assert entry["onnx_sha256"] == files.sha256_file(path)
    assert entry["served_by"] == "onnx"
    gate = files.read_json(Path("reports/promotion.json"))["criteria"]
    parity = next(item for item in gate if item["name"] == "onnx_parity")
    assert parity["passed"]
    assert parity["supported"]
    assert parity["value"] <= 1e-5
    assert registry.consistency_problems(MODELS) == []


def test_onnx_answers_as_scikit_learn_does(served):
    onnx_slot, sklearn_slot = (
        ModelSlot(served, MODELS),
        ModelSlot(runtime(served, "sklearn"), MODELS),
    )
    assert onnx_slot.refresh(force=True)
    assert sklearn_slot.refresh(force=True)
    assert onnx_slot.current.metadata["runtime"] == "onnx"
    assert "runtime" not in sklearn_slot.current.metadata
    test = files.read_parquet(served.data.processed_dir / "test.parquet")
    x = feature_matrix(test, served.features, served.categorical)
    fast, reference = onnx_slot.current.predict_proba(x), sklearn_slot.current.predict_proba(x)
    assert np.abs(fast - reference).max() <= 1e-5
    assert onnx_slot.current.classes.tolist() == sklearn_slot.current.classes.tolist()
    assert onnx_slot.current.positive == sklearn_slot.current.positive


def test_a_tampered_file_is_refused_and_the_previous_model_keeps_serving(served):
    slot = ModelSlot(served, MODELS)
    assert slot.refresh(force=True)
    before = slot.current
    with open(MODELS / "v1" / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    assert not slot.refresh(force=True)
    assert slot.current is before
    assert "models/v1/model.onnx: sha256 does not match" in slot.problem
    with pytest.raises(InputError, match=r"models/v1/model\.onnx: sha256 does not match"):
        onnx_model.preflight(served, MODELS)


def test_a_corrupt_file_is_refused_naming_it(served):
    rewrite_onnx(b"not an onnx model")
    with pytest.raises(InputError, match=r"models/v1/model.onnx: not a loadable ONNX model"):
        onnx_model.preflight(served, MODELS)


def test_inputs_that_are_not_the_schema_are_refused(served):
    model = onnx.load(MODELS / "v1" / "model.onnx")
    first = model.graph.input[0].name
    model.graph.input[0].name = "renamed"
    for node in model.graph.node:
        node.input[:] = ["renamed" if name == first else name for name in node.input]
    rewrite_onnx(model.SerializeToString())
    with pytest.raises(InputError, match="are not the schema's features"):
        onnx_model.preflight(served, MODELS)


def test_a_missing_file_is_refused_and_runtime_sklearn_ignores_it(served):
    (MODELS / "v1" / "model.onnx").unlink()
    with pytest.raises(InputError, match=r"models/v1/model\.onnx: not found"):
        onnx_model.preflight(served, MODELS)
    slot = ModelSlot(runtime(served, "sklearn"), MODELS)
    assert slot.refresh(force=True)
    assert "runtime" not in slot.current.metadata


def test_runtime_onnx_insists_on_an_onnx_file(served):
    entries = files.read_json(MODELS / "registry.json")
    entries["versions"]["v1"]["onnx_sha256"] = None
    files.write_json(MODELS / "registry.json", entries)
    assert onnx_model.load(MODELS, "v1", served) is None  # auto: scikit-learn serves it
    with pytest.raises(InputError, match=r"serve\.runtime is onnx but v1 has no ONNX file"):
        onnx_model.load(MODELS, "v1", runtime(served, "onnx"))


def test_the_server_refuses_to_start_on_a_bad_onnx_file(served):
    with open(MODELS / "v1" / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    done = subprocess.run(
        [sys.executable, "-m", "mlops", "serve", "--port", "9"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DO_NOT_TRACK": "1"},
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "model.onnx" in line]
    assert len(lines) == 1
    assert "models/v1/model.onnx: sha256 does not match" in lines[0]
    assert "Traceback" not in done.stderr


WITHOUT_ONNXRUNTIME = r"""
import importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "onnxruntime":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from mlops import cli
sys.exit(cli.main(["serve", "--port", "9"]))
"""


def test_without_onnxruntime_the_server_refuses_to_start_naming_the_file(served):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_ONNXRUNTIME],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DO_NOT_TRACK": "1"},
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "model.onnx" in line]
    assert len(lines) == 1
    assert "models/v1/model.onnx: onnxruntime is not installed" in lines[0]
    assert "Traceback" not in done.stderr
