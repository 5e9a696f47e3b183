"""mlops.onnx_runtime: a session from model bytes, with ONNX Runtime's telemetry off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SESSION = """
import sys
from pathlib import Path
from onnx import TensorProto, helper
{first}
from mlops import onnx_runtime

value = helper.make_tensor_value_info
graph = helper.make_graph(
    [helper.make_node("Identity", ["x"], ["y"])], "g",
    [value("x", TensorProto.FLOAT, [1])], [value("y", TensorProto.FLOAT, [1])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
onnx_runtime.session(model.SerializeToString(), 1, Path("model.onnx"))
"""


# ONNX Runtime keeps quiet on its own where these say it runs in CI (as `.ci/run` does).
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "TF_BUILD", "GITLAB_CI", "JENKINS_URL", "BUILD_ID")


def run_session(home: Path, first: str = "") -> subprocess.CompletedProcess:
    """A session made in a fresh process whose home (and cache) is `home`, telemetry not set."""
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", *CI_VARIABLES)}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    return subprocess.run(
        [sys.executable, "-c", SESSION.format(first=first)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_a_session_leaves_no_device_id_and_prints_nothing(tmp_path):
    control = run_session(tmp_path / "control", first="import onnxruntime")
    assert control.returncode == 0, control.stderr
    if not list((tmp_path / "control").rglob("deviceid")):
        pytest.skip("this onnxruntime writes no telemetry device id even when imported first")
    made = run_session(tmp_path / "home")
    assert made.returncode == 0, made.stderr
    assert list((tmp_path / "home").rglob("deviceid")) == []
    assert made.stderr == ""
