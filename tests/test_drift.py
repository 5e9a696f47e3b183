"""make drift / drift-demo with real Evidently: policy, outputs, history, exit codes, bad input."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import drift_parts
from drift_parts import analyse
from helpers import edit_params, run_cli, run_module
from mlops import drift, promote
from mlops.config import load_config
from mlops.drift import demo, evidently_run, history, performance, ui
from mlops.errors import CheckFailed, InputError

parts = drift_parts.parts  # the shared fixture

CONTRACT_KEYS = {
    "dataset_drift",
    "share_drifted",
    "drifted_columns",
    "columns",
    "prediction_drift",
    "performance",
    "reference_rows",
    "current_rows",
    "sampled",
    "status",
    "importance_drifted",
    "chunks",
}
EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", re.I
)


def test_embedded_2018_batch_is_mild_drift_and_passes(project, config):
    """The real 2015-17 -> 2018 drift does not trip the default policy; every output is written."""
    result = drift.run(config)
    assert result["status"] == "ok"
    assert result["dataset_drift"] is False
    assert result["drifted_columns"] == []
    assert not result["prediction_drift"]["drifted"]
    assert not result["performance"]["degraded"]
    # Measured margins: no column or prediction score within half of its threshold.
    for name, column in result["columns"].items():
        assert column["score"] < column["threshold"] / 2, name
    assert result["prediction_drift"]["score"] < result["prediction_drift"]["threshold"] / 2

    saved = json.loads(Path("reports/drift.json").read_text())
    assert set(saved) >= CONTRACT_KEYS
    assert set(saved["columns"]) == set(config.features)
    for column in saved["columns"].values():
        assert set(column) == {
            "method",
            "score",
            "threshold",
            "drifted",
            "importance",
            "missing",
            "exact",
            "threshold_source",  # 12,500 rows: the policy's thresholds are outside the noise
        }
        assert column["threshold_source"] == "policy"
        assert 0 <= column["importance"] <= 1
        assert column["missing"] == 0
    assert sum(c["importance"] for c in saved["columns"].values()) == pytest.approx(1, abs=1e-5)
    assert saved["importance_drifted"] == 0
    # One period (2018) in the batch: its rows need not be in time order, so no chunks.
    assert saved["chunks"] == []
    estimated = saved["performance"]["estimated"]
    assert abs(estimated["error"]["accuracy"]) < 0.02, estimated
    assert abs(estimated["error"]["roc_auc"]) < 0.02, estimated
    assert {"method", "score", "drifted", "threshold"} <= set(saved["prediction_drift"])
    assert {"reference", "current", "degraded"} <= set(saved["performance"])
    assert saved["performance"]["current"]["accuracy"] > 0.7
    assert saved["sampled"] is False
    assert saved["reference_rows"] == 30_000
    assert saved["current_rows"] == 12_500
    assert saved["model"]["source"] == "candidate"

    # The benchmark's numpy/scipy baseline computes the same tests: the same scores.
    from mlops.bench.drift import baseline

    reference = pd.read_parquet("data/processed/train.parquet")
    current = pd.read_parquet("data/processed/current.parquet")
    for name, column in baseline(reference, current, config).items():
        assert column["score"] == pytest.approx(result["columns"][name]["score"], abs=2e-6), name

    summary = Path("reports/drift.md").read_text()
    assert summary.startswith("## ✅ Drift: no drift")

    html = Path("reports/drift.html").read_text()
    assert len(html) > 100_000
    assert "<script" in html
    # The dataset verdict, then a panel and a pass/fail test per feature and for the predictions.
    assert "Count of Drifted Columns" in html
    panels = [*config.features, evidently_run.PREDICTION]
    for name in panels:
        assert f"Value Drift for column {name}" in html, name
    # As the runbook says: categorical features first, then numeric, then the predictions.
    assert config.features[0] == "SCHL"
    assert config.features[-1] == "AGEP"
    found = sorted(panels, key=lambda name: html.index(f"Value Drift for column {name}"))
    assert found == panels
    # The verdict first in the page's body, before Evidently's app.
    body = html[html.index("<body") :]
    assert body.index('<section id="verdict"') < body.index("<div")
    assert EXTERNAL.search(
        '<script type="module" src="https://cdn.example/x.js">'
    )  # the probe works
    assert not EXTERNAL.search(html), "the report must not load anything over the network"

    runs = history.read_history()
    assert [entry["status"] for entry in runs] == ["ok"]
    page = Path("reports/drift_history.html").read_text()
    assert "<svg" in page
    assert "<script" not in page
    assert not EXTERNAL.search(page)
    (snapshot,) = history.SNAPSHOTS.glob("*-ok.json")
    assert snapshot.stat().st_size > 10_000

    # A torn last line (a crash mid-write) is skipped, not fatal.
    with history.HISTORY_LOG.open("a") as handle:
        handle.write('{"torn": ')
    assert len(history.read_history()) == 1
    assert os.environ["DO_NOT_TRACK"] == "1"


def test_drift_ui_serves_every_run_offline(project, config):
    """Snapshots are loaded into an Evidently workspace once each; `evidently ui` serves them."""
    result = drift.run(config)
    result["status"] = "warning"  # a second, distinct snapshot without another Evidently run
    snapshot = next(history.SNAPSHOTS.glob("*.json"))
    history.SNAPSHOTS.joinpath("20000101T000000000000Z-warning.json").write_bytes(
        snapshot.read_bytes()
    )
    assert ui.build_workspace() == 2
    assert ui.build_workspace() == 0  # already imported: nothing re-added
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlops", "drift-ui", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        projects = wait_for_json(f"http://127.0.0.1:{port}/api/projects", server)
        (found,) = [p for p in projects if p["name"] == ui.PROJECT_NAME]
        runs = wait_for_json(
            f"http://127.0.0.1:{port}/api/projects/{found['id']}/snapshots", server
        )
        assert len(runs) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)

    # Only the newest history_snapshots are kept; 0 keeps none (the log still grows).
    history.record(result, _FakeSnapshot(), keep=1)
    assert [p.read_text() for p in history.SNAPSHOTS.glob("*.json")] == ["{}"]
    history.record(result, _FakeSnapshot(), keep=0)
    assert len(list(history.SNAPSHOTS.glob("*.json"))) == 1
    assert len(history.read_history()) == 3


def wait_for_json(url: str, server: subprocess.Popen, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "the UI exited"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout}s")


class _FakeSnapshot:
    """Stands in for an Evidently snapshot where only its serialisation is written."""

    def dumps(self) -> str:
        return "{}"


def test_injected_shift_is_found_in_exactly_those_columns(parts):
    current = parts["current"].copy()
    rng = np.random.default_rng(0)
    current["MAR"] = current["MAR"].replace({1: 5, 5: 1})  # married <-> never married
    current.loc[rng.random(len(current)) < 0.4, "SEX"] = 1
    current["AGEP"] = (current["AGEP"] + 8).clip(16, 90)
    shifted = {"MAR", "SEX", "AGEP"}
    result = analyse(parts, current)
    assert set(result["drifted_columns"]) == shifted
    for name, column in result["columns"].items():
        assert column["drifted"] is (name in shifted), name


@pytest.mark.parametrize(
    ("rows", "seed"), [(200, 1), (200, 2), (1_000, 3), (10_000, 4), (100_000, 5)]
)
def test_same_distribution_resample_raises_nothing(parts, rows, seed):
    """Held-out rows of the training years, resampled: no alert at any batch size."""
    current = parts["test"].sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    result = analyse(parts, current)
    assert result["dataset_drift"] is False
    assert result["share_drifted"] < parts["config"].drift.drift_share / 2
    assert not result["prediction_drift"]["drifted"]
    assert not result["performance"]["degraded"]
    assert result["status"] != "alert"
    if rows >= 1_000:
        assert result["drifted_columns"] == []


def test_large_batches_are_sampled_and_overrides_apply(parts):
    """Above drift.sample_size both frames are sampled; a per-column override reaches Evidently."""
    base = parts["config"]
    ks = base.drift.numeric.model_copy(update={"method": "ks", "threshold": 0.05})
    policy = base.drift.model_copy(update={"sample_size": 5_000, "columns": {"AGEP": ks}})
    config = base.model_copy(update={"drift": policy})
    result = analyse(parts, parts["current"].head(8_000), config)
    assert result["sampled"] is True
    assert result["reference_rows"] == 30_000
    assert result["current_rows"] == 8_000
    assert result["rows_compared"] == {"reference": 5_000, "current": 5_000}
    assert result["dataset_drift"] is False
    age = result["columns"]["AGEP"]
    assert age["method"] == "ks"
    assert age["threshold"] == 0.05
    assert age["drifted"] is (age["score"] <= 0.05)  # a p-value: drift at or below
    assert result["columns"]["SCHL"]["method"] == "psi"


def test_cli_exit_codes_labels_absent_and_production_model(project, config, capsys):
    """Exit 0 without labels (performance says so), 1 on drift, 0 when fail_on_drift is false."""
    promote.run(config)  # production v1: drift now judges the production model
    current = pd.read_parquet("data/processed/current.parquet")
    current.drop(columns=[config.schema.target]).to_csv("unlabelled.csv", index=False)
    drifted, _ = demo.drifted_batch(current, config, seed=7)
    drifted.to_csv("drifted.csv", index=False)

    code, stderr = run_cli(capsys, "drift", "--current", "unlabelled.csv")
    assert code == 0, stderr
    saved = json.loads(Path("reports/drift.json").read_text())
    assert saved["status"] == "ok"
    assert saved["model"]["source"] == "production"
    assert saved["model"]["version"] == "v1"
    assert saved["performance"]["current"] is None
    assert saved["performance"]["labelled"] is False
    assert saved["performance"]["degraded"] is False
    assert "no 'employed' column" in saved["performance"]["note"]
    assert "**Performance** (no labels: CBPE estimate)" in Path("reports/drift.md").read_text()
    assert saved["performance"]["judged_by"] == "estimated"
    assert saved["performance"]["estimated"]["accuracy"] > 0.7

    done = run_module(project, "drift", "--current", "drifted.csv")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert "FAILED: importance-weighted drift: drifted column(s) SCHL, AGEP carry 0.65" in line
    assert "prediction drift" in line
    saved = json.loads(Path("reports/drift.json").read_text())
    assert saved["status"] == "alert"
    assert saved["drifted_columns"] == ["SCHL", "AGEP"]
    assert Path("reports/drift.md").read_text().startswith("## 🚨 Drift: drift alert")

    edit_params(project / "params.yaml", lambda p: p["drift"].update(fail_on_drift=False))
    result = drift.run(load_config(), current=Path("drifted.csv"))
    assert result["status"] == "alert"
    assert [e["status"] for e in history.read_history()] == ["ok", "alert", "alert"]
    assert len(list(history.SNAPSHOTS.glob("*-alert.json"))) == 2


def test_production_is_judged_with_its_onnx_file_as_with_its_model_file(project, config):
    """drift.runtime auto judges production through model.onnx (no unpickling; the gate held it to
    the model file's labels and 1e-5); sklearn gives the same verdicts and figures."""
    promote.run(config)
    by_onnx = drift.run(config)
    assert by_onnx["model"]["runtime"] == "onnx"
    edit_params(project / "params.yaml", lambda p: p["drift"].update(runtime="sklearn"))
    by_sklearn = drift.run(load_config())
    assert by_sklearn["model"]["runtime"] == "sklearn"
    for key in ("status", "dataset_drift", "drifted_columns", "columns", "alerts"):
        assert by_onnx[key] == by_sklearn[key], key
    for key in ("score", "drifted"):
        assert by_onnx["prediction_drift"][key] == pytest.approx(
            by_sklearn["prediction_drift"][key], abs=1e-5
        )
    assert_close(by_onnx["performance"], by_sklearn["performance"], "performance")
    assert [c["status"] for c in by_onnx["chunks"]] == [c["status"] for c in by_sklearn["chunks"]]


def assert_close(found: object, expected: object, where: str, tolerance: float = 1e-5) -> None:
    """The same structure, numbers within tolerance, everything else equal."""
    if isinstance(expected, dict):
        assert isinstance(found, dict), where
        assert found.keys() == expected.keys(), where
        for key, value in expected.items():
            assert_close(found[key], value, f"{where}.{key}", tolerance)
    elif isinstance(expected, list):
        assert isinstance(found, list), where
        for i, (a, b) in enumerate(zip(found, expected, strict=True)):
            assert_close(a, b, f"{where}[{i}]", tolerance)
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert found == pytest.approx(expected, abs=tolerance), where
    else:
        assert found == expected, where


def test_demo_drifts_real_data_and_expects_the_alert(project, config):
    result = demo.demo_command(config)
    assert result["status"] == "alert"
    assert set(result["drifted_columns"]) == {"AGEP", "SCHL"}
    assert result["prediction_drift"]["drifted"]
    assert result["performance"]["degraded"]
    assert demo.DEMO_BATCH.is_file()
    assert Path("reports/drift_demo.html").is_file()
    assert not Path("reports/drift.json").exists(), "the demo leaves the real report alone"
    batch = pd.read_csv(demo.DEMO_BATCH)
    current = pd.read_parquet("data/processed/current.parquet")
    unchanged = [c for c in current.columns if c not in ("AGEP", "SCHL")]
    pd.testing.assert_frame_equal(batch[unchanged], current[unchanged], check_dtype=False)
    assert (batch["AGEP"] >= current["AGEP"]).all()
    assert batch["AGEP"].max() <= 90

    def lax(p):
        p["drift"].update(performance_tolerance=1.0, drift_share=1.0, importance_share=1.0)
        p["drift"]["prediction"]["threshold"] = 10.0

    edit_params(project / "params.yaml", lax)
    with pytest.raises(CheckFailed, match="raised no alert"):
        demo.demo_command(load_config())


def write_bad(name: str, current: pd.DataFrame) -> Path:
    path = Path(name)
    if name == "empty.csv":
        path.write_text("")
    elif name == "binary.csv":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01")
    elif name == "header_only.csv":
        current.head(0).to_csv(path, index=False)
    elif name == "no_schl.csv":
        current.drop(columns=["SCHL"]).to_csv(path, index=False)
    elif name == "unknown_code.csv":
        current.assign(MAR=current["MAR"].where(current.index != 3, 9)).to_csv(path, index=False)
    elif name == "old_age.csv":
        current.assign(AGEP=current["AGEP"].where(current.index != 5, 140)).to_csv(
            path, index=False
        )
    elif name == "bad_label.csv":
        current.assign(employed=current["employed"].where(current.index != 8, 7)).to_csv(
            path, index=False
        )
    elif name == "tiny.csv":
        current.head(50).to_csv(path, index=False)
    elif name == "text_age.csv":
        current.astype({"AGEP": object}).assign(
            AGEP=lambda f: f["AGEP"].where(f.index != 2, "forty")
        ).to_csv(path, index=False)
    return path


BAD_BATCHES = {
    "empty.csv": "empty file",
    "binary.csv": "not a readable CSV",
    "header_only.csv": "header_only.csv: no rows",
    "no_schl.csv": "missing column(s) SCHL",
    "old_age.csv": (
        "column AGEP: value out of range (1 row(s); first: data row 6 (1-based), value 140)"
    ),
    "bad_label.csv": "column employed: value not allowed (1 row(s); first: data row 9",
    "tiny.csv": "50 rows, fewer than drift.min_rows (200)",
    "text_age.csv": "column AGEP: not numeric",
}
# One through a fresh process (its exit code and stderr as a user sees them); the rest through
# the same CLI entry in-process.
SUBPROCESS = ("bad_label.csv",)


@pytest.mark.parametrize("name", list(BAD_BATCHES))
def test_malformed_batches_exit_2_with_one_line(project, capsys, name):
    current = pd.read_parquet("data/processed/current.parquet").drop(columns=["year"])
    path = write_bad(name, current)
    if name in SUBPROCESS:
        done = run_module(project, "drift", "--current", str(path))
        code, stderr = done.returncode, done.stderr
    else:
        code, stderr = run_cli(capsys, "drift", "--current", str(path))
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"[drift] error: {name}: ")
    assert BAD_BATCHES[name] in lines[0]
    assert "Traceback" not in stderr
    assert not Path("reports/drift.json").exists()
    assert not history.HISTORY_LOG.exists()


def test_missing_inputs_are_input_errors(project, config):
    current = pd.read_parquet("data/processed/current.parquet")
    current.drop(columns=["AGEP"]).to_parquet("data/processed/current.parquet")
    with pytest.raises(InputError, match=r"current\.parquet: missing column\(s\) AGEP"):
        drift.run(config)
    current.head(150).to_parquet("data/processed/current.parquet")
    with pytest.raises(InputError, match=r"150 rows, fewer than drift\.min_rows \(200\)"):
        drift.run(config)
    Path("data/processed/current.parquet").unlink()
    with pytest.raises(InputError, match="run `make data` first"):
        drift.run(config)
    Path("models/candidate/metadata.json").unlink()
    with pytest.raises(InputError, match=r"metadata\.json"):
        drift.run(config)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["categorical"].update(method="wasserstein"), "does not apply to categorical"),
        (lambda d: d["numeric"].update(method="chisquare"), "does not apply to numeric"),
        (lambda d: d["prediction"].update(method="z"), "prediction (a probability)"),
        (
            lambda d: d.update(columns={"SCHL": {"method": "ks", "threshold": 0.05}}),
            "drift.columns.SCHL: ks does not apply to categorical",
        ),
        (lambda d: d["numeric"].update(method="ks", threshold=5), "threshold must be below 1"),
        (lambda d: d.update(min_rows=10), "drift.min_rows"),
    ],
)
def test_bad_drift_policy_is_a_config_error(tmp_path, edit, message):
    path = tmp_path / "params.yaml"
    path.write_text(Path(__file__).resolve().parents[1].joinpath("params.yaml").read_text())
    edit_params(path, lambda p: edit(p["drift"]))
    with pytest.raises(InputError, match=re.escape(message)):
        load_config(path)


def test_drift_decision_by_kind_of_score():
    assert evidently_run.drifted("ks", 0.01, 0.05) is True
    assert evidently_run.drifted("ks", 0.05, 0.05) is True
    assert evidently_run.drifted("psi", 0.1, 0.1) is True
    assert evidently_run.drifted("psi", 0.01, 0.1) is False


def test_performance_noise_margin_and_standard_errors():
    y = np.array([0, 1] * 100)
    n, n_pos = len(y), int(y.sum())
    assert performance.standard_error("accuracy", 0.8, n, n_pos) == pytest.approx(
        (0.8 * 0.2 / 200) ** 0.5
    )
    auc = performance.standard_error("roc_auc", 0.85, n, n_pos)
    assert 0.02 < auc < 0.04  # Hanley & McNeil at 100 positives, 100 negatives
