"""The gate: thresholds, regression against production, identical candidates, force, exit codes,
and SIGKILL at every point of a promotion."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from candidates import BETTER, CLOSE, WEAK, add_candidate, snapshot, train_candidate, with_policy
from helpers import edit_params, run_cli, run_module
from mlops import files, promote, registry, runlog
from mlops.errors import CheckFailed, InputError

FAULTS_PROBE = Path(__file__).parent / "faults_probe.py"  # SIGKILL before or after a named write


def report() -> dict:
    return json.loads(Path("reports/promotion.json").read_text())


def test_first_candidate_becomes_v1(project, config):
    result = promote.run(config)
    assert result["decision"] == "promoted"
    assert registry.production_version() == "v1"
    metadata = json.loads(Path("models/v1/metadata.json").read_text())
    candidate = json.loads(Path("models/candidate/metadata.json").read_text())
    for key in ("model_sha256", "params", "data_sha256", "libraries", "git_commit", "created_at"):
        assert metadata[key] == candidate[key]
    assert metadata["version"] == "v1"
    assert metadata["promoted_by"] == registry.who()
    assert metadata["promoted_at"].endswith("+00:00")
    assert metadata["metrics"]["accuracy"] == report()["candidate"]["metrics"]["accuracy"]
    assert files.sha256_file(Path("models/v1/model.skops")) == candidate["model_sha256"]
    entry = json.loads(Path("models/registry.json").read_text())
    assert entry["versions"]["v1"]["sha256"] == candidate["model_sha256"]
    assert entry["history"][0]["event"] == "promoted"
    assert {"who", "when", "why", "from", "to"} <= set(entry["history"][0])
    assert report()["production"]["version"] is None
    markdown = Path("reports/promotion.md").read_text()
    assert markdown.splitlines()[0] == "### Promotion gate: ✅ promoted v1"
    assert "| min_accuracy |" in markdown


def test_below_threshold_rejected_and_models_untouched(project, config):
    promote.run(config)
    train_candidate(config, **WEAK)
    before = snapshot(project / "models", skip=("runs.jsonl",))
    runs_before = len(runlog.read_runs())
    with pytest.raises(CheckFailed, match=r"accuracy 0\.77\d+ < 0\.78"):
        promote.run(config)
    assert snapshot(project / "models", skip=("runs.jsonl",)) == before
    assert len(runlog.read_runs()) == runs_before + 1  # the run log records every run
    assert report()["decision"] == "rejected"
    assert registry.production_version() == "v1"


def test_exactly_at_threshold_passes(project, config):
    accuracy = json.loads(Path("reports/metrics.json").read_text())["accuracy"]
    with pytest.raises(CheckFailed):
        promote.run(with_policy(config, min_accuracy=accuracy + 1e-6))
    assert promote.run(with_policy(config, min_accuracy=accuracy))["decision"] == "promoted"
    first = report()["criteria"][0]
    assert (first["name"], first["value"], first["threshold"], first["passed"]) == (
        "min_accuracy",
        accuracy,
        accuracy,
        True,
    )


def test_regression_beyond_tolerance_rejected_even_above_threshold(project, config):
    promote.run(config)
    train_candidate(config, **WEAK)
    with pytest.raises(CheckFailed, match="below production v1"):
        promote.run(with_policy(config, min_accuracy=0.5))
    criteria = {item["name"]: item for item in report()["criteria"]}
    assert criteria["min_accuracy"]["passed"] is True
    assert criteria["max_regression"]["passed"] is False
    assert registry.production_version() == "v1"


def test_slightly_worse_within_tolerance_is_promoted(project, config):
    promote.run(config)
    metrics = train_candidate(config, **CLOSE)
    production = report()["candidate"]["metrics"]["accuracy"]
    assert metrics["accuracy"] < production  # worse, but within 0.5% of production's accuracy
    assert promote.run(config)["decision"] == "promoted"
    assert registry.production_version() == "v2"


def test_tolerance_is_a_fraction_of_production_accuracy(config):
    production = {"accuracy": 0.8}
    policy = with_policy(config, max_regression=0.005, min_roc_auc=None)
    at_floor = promote.judge(policy, {"accuracy": 0.796}, "passed", "v1", production)
    assert at_floor[1]["threshold"] == pytest.approx(0.796)
    assert at_floor[1]["passed"] is True
    below = promote.judge(policy, {"accuracy": 0.7959}, "passed", "v1", production)
    assert below[1]["passed"] is False


def test_production_is_rescored_on_the_current_test_split(project, config):
    promote.run(config)
    test_path = config.data.processed_dir / "test.parquet"
    test = files.read_parquet(test_path)
    files.write_parquet(test_path, test.iloc[: len(test) // 2])
    with pytest.raises(InputError, match="scored another test split"):
        promote.run(config)  # metrics.json is stale: it scored the old split
    train_candidate(config, **BETTER)
    with contextlib.suppress(CheckFailed):  # either way, the report is written
        promote.run(config)
    result = report()
    stored = registry.read_registry()["versions"]["v1"]["metrics"]["accuracy"]
    rescored = result["production"]["metrics"]["accuracy"]
    assert rescored != stored
    assert result["test_data_sha256"] == files.sha256_file(test_path)


def test_identical_candidate_is_a_noop(project, config):
    promote.run(config)
    before = snapshot(project / "models")
    result = promote.run(config)
    assert result["decision"] == "unchanged"
    assert "identical to production v1" in result["reasons"][0]
    assert snapshot(project / "models") == before


def test_rolled_back_model_is_not_silently_repromoted(project, config):
    promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    registry.rollback(reason="v2 misbehaves in production")
    before = snapshot(project / "models")
    result = promote.run(config)  # the same v2 candidate, as the next `make all` would gate it
    assert result["decision"] == "unchanged"
    assert "rolled back" in result["reasons"][0]
    assert "make rollback VERSION=v2" in result["reasons"][0]
    assert registry.production_version() == "v1"
    assert snapshot(project / "models") == before


def test_candidate_equal_to_an_older_version_is_unchanged(project, config):
    promote.run(config)
    original = {p.name: p.read_bytes() for p in Path("models/candidate").iterdir()}
    original_metrics = Path("reports/metrics.json").read_bytes()
    train_candidate(config, **BETTER)
    promote.run(config)
    for name, data in original.items():
        Path("models/candidate", name).write_bytes(data)
    Path("reports/metrics.json").write_bytes(original_metrics)
    result = promote.run(config)
    assert result["decision"] == "unchanged"
    assert "identical to v1, replaced by v2 on " in result["reasons"][0]


def test_failed_validation_rejects(project, config):
    path = Path("reports/validation.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), "status": "failed"}))
    with pytest.raises(CheckFailed, match="validation failed"):
        promote.run(config)
    assert not Path("models/registry.json").exists()


def test_optional_floors(project, config):
    with pytest.raises(CheckFailed, match=r"recall 0\.\d+ < 0\.99 \(promotion\.min_recall\)"):
        promote.run(with_policy(config, min_recall=0.99))
    names = [item["name"] for item in report()["criteria"]]
    assert names == [
        "min_accuracy",
        "validation",
        "min_roc_auc",
        "min_recall",
        "raw_rows_parity",
        "onnx_parity",
    ]
    promote.run(with_policy(config, min_roc_auc=None))
    assert [item["name"] for item in report()["criteria"]] == [
        "min_accuracy",
        "validation",
        "raw_rows_parity",
        "onnx_parity",
    ]


def test_min_roc_auc_can_fail(project, config):
    with pytest.raises(CheckFailed, match=r"roc_auc 0\.\d+ < 0\.99 \(promotion\.min_roc_auc\)"):
        promote.run(with_policy(config, min_roc_auc=0.99))
    failed = [item["name"] for item in report()["criteria"] if not item["passed"]]
    assert failed == ["min_roc_auc"]
    assert not Path("models/registry.json").exists()


@pytest.mark.parametrize("metrics", [{"accuracy": 0.9}, {"accuracy": 0.9, "roc_auc": None}])
def test_a_missing_metric_never_passes_a_floor(config, metrics):
    """ROC-AUC is undefined on a one-class split: a floor on it fails rather than passing."""
    policy = with_policy(config, min_roc_auc=0.5, min_recall=None)
    criteria = promote.judge(policy, metrics, "passed", None, None)
    floor = next(item for item in criteria if item["name"] == "min_roc_auc")
    assert floor["passed"] is False
    assert promote.failure_reason(floor) == "roc_auc n/a < 0.5 (promotion.min_roc_auc)"


def test_a_raised_bar_rejects_an_unchanged_production(project, config):
    """The same candidate as production, a stricter policy: rejected, registry byte-identical."""
    promote.run(config)
    before = snapshot(project / "models", skip=("runs.jsonl",))
    with pytest.raises(CheckFailed, match=r"production v1 no longer meets min_accuracy 0\.99"):
        promote.run(with_policy(config, min_accuracy=0.99))
    result = report()
    assert result["decision"] == "rejected"
    assert [item["name"] for item in result["production"]["failed"]] == ["min_accuracy"]
    assert "identical to v1" in result["reasons"][-1]
    assert snapshot(project / "models", skip=("runs.jsonl",)) == before
    assert runlog.read_runs()[-1]["decision"] == "rejected"
    with pytest.raises(CheckFailed, match=r"production v1 no longer meets min_roc_auc 0\.99"):
        promote.run(with_policy(config, min_roc_auc=0.99))
    assert promote.run(config)["decision"] == "unchanged"  # the bar back where it was


def test_a_raised_bar_rejects_production_after_a_rollback(project, config):
    promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    registry.rollback(reason="v2 misbehaves")
    before = snapshot(project / "models", skip=("runs.jsonl",))
    with pytest.raises(CheckFailed, match=r"production v1 no longer meets min_recall 0\.99"):
        promote.run(with_policy(config, min_recall=0.99))  # the candidate is the rolled-back v2
    assert snapshot(project / "models", skip=("runs.jsonl",)) == before
    assert registry.production_version() == "v1"


def test_a_production_that_cannot_be_scored_cannot_hold_the_policy(project, config):
    promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    registry.rollback()
    metadata_path = Path("models/v1/metadata.json")
    metadata = json.loads(metadata_path.read_text())
    metadata["features"] = [*metadata["features"], "NOT_A_COLUMN"]
    metadata_path.write_text(json.dumps(metadata))  # not hashed: only the model file is
    with pytest.raises(CheckFailed, match="production v1 cannot be checked against the policy"):
        promote.run(config)  # the candidate is the rolled-back v2
    assert "NOT_A_COLUMN" in report()["reasons"][0]
    assert registry.production_version() == "v1"


def test_a_production_change_after_the_decision_stops_the_write(project, config):
    """What the gate decided against (production v1) is re-checked under the lock."""
    promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    train_candidate(config, **CLOSE)  # a new candidate the gate passed against production v2
    registry.rollback()  # another process's rollback, after the gate decided
    before = snapshot(project / "models")
    with pytest.raises(InputError, match="production changed to v1 while the gate ran"):
        add_candidate(expected_production="v2", why="test")
    assert snapshot(project / "models") == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda: Path("reports/metrics.json").unlink(), "reports/metrics.json: not found"),
        (lambda: Path("reports/validation.json").unlink(), "reports/validation.json: not found"),
        (
            lambda: Path("models/candidate/model.skops").write_bytes(b"x"),
            "models/candidate/model.skops: sha256 does not match",
        ),
        (
            lambda: Path("reports/metrics.json").write_text('{"status": "error"}'),
            "status 'error'",
        ),
        (
            lambda: Path("reports/metrics.json").write_text(
                json.dumps({"status": "success", "model_sha256": "0" * 64})
            ),
            "scores another model",
        ),
    ],
)
def test_bad_input_is_input_error(project, config, damage, message):
    damage()
    with pytest.raises(InputError, match=message):
        promote.run(config)
    assert not Path("models/registry.json").exists()


def test_forced_promotion_is_recorded(project, config):
    promote.run(config)
    train_candidate(config, **WEAK)
    with pytest.raises(InputError, match="must say why"):
        promote.run(config, force_reason="  ")
    result = promote.run(config, force_reason="hotfix for incident 42")
    assert (result["decision"], result["forced"]) == ("promoted", True)
    assert any("FORCED" in reason for reason in result["reasons"])
    last = registry.read_registry()["history"][-1]
    assert (last["event"], last["from"], last["to"]) == ("forced", "v1", "v2")
    assert last["why"].startswith("hotfix for incident 42 (overrode: accuracy 0.77")
    assert "(FORCED)" in Path("reports/promotion.md").read_text().splitlines()[0]
    assert runlog.read_runs()[-1]["forced"] is True
    # force never re-promotes a known model, and the forced production is still below the bar
    with pytest.raises(CheckFailed, match=r"production v2 no longer meets min_accuracy 0\.78"):
        promote.run(config, force_reason="again")
    assert "--force-reason ignored" in report()["reasons"][-1]
    assert registry.production_version() == "v2"


def test_unscorable_production_rejects_with_reason(project, config):
    promote.run(config)
    metadata_path = Path("models/v1/metadata.json")
    metadata = json.loads(metadata_path.read_text())
    metadata["features"] = [*metadata["features"], "NOT_A_COLUMN"]
    metadata_path.write_text(json.dumps(metadata))  # not hashed: only the model file is
    train_candidate(config, **BETTER)
    with pytest.raises(CheckFailed, match="NOT_A_COLUMN"):
        promote.run(config)
    assert report()["production"]["metrics"] is None


# --- exit codes through the real CLI ---------------------------------------------------------


def test_cli_exit_codes(project, config, capsys):
    assert run_cli(capsys, "promote")[0] == 0
    assert run_cli(capsys, "promote")[0] == 0  # unchanged
    train_candidate(config, **WEAK)
    rejected = run_module(project, "promote")
    assert rejected.returncode == 1
    assert "FAILED: candidate rejected: accuracy 0.77" in rejected.stderr
    assert "Traceback" not in rejected.stderr


def test_tampered_production_is_exit_2(project, config):
    promote.run(config)
    with open("models/v1/model.skops", "ab") as handle:
        handle.write(b"\0")
    train_candidate(config, **BETTER)
    before = snapshot(project / "models")
    result = run_module(project, "promote")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "models/v1/model.skops: sha256 does not match" in result.stderr
    assert snapshot(project / "models") == before


def test_threshold_outside_unit_interval_is_exit_2(project, capsys):
    edit_params(project / "params.yaml", lambda p: p["promotion"].update(min_accuracy=1.5))
    result = run_module(project, "promote")
    assert result.returncode == 2
    assert "promotion.min_accuracy" in result.stderr
    assert not (project / "models/registry.json").exists()
    edit_params(project / "params.yaml", lambda p: p["promotion"].update(min_accuracy=0.5))
    edit_params(project / "params.yaml", lambda p: p["promotion"].update(max_regression=-0.1))
    code, err = run_cli(capsys, "promote")
    assert code == 2
    assert "promotion.max_regression" in err


# --- SIGKILL during a promotion --------------------------------------------------------------


def assert_consistent(models: Path, allowed: set[str]) -> str:
    """Production is loadable and verified; every listed version matches its files."""
    assert registry.consistency_problems(models) == []
    found = registry.load_production(models)
    assert found is not None
    model, metadata = found
    assert metadata["version"] in allowed
    assert hasattr(model, "predict_proba")
    return metadata["version"]


@pytest.mark.parametrize(
    ("mode", "write", "expected"),
    [
        ("kill-before", "models/v2", "v1"),  # new version complete in its temp dir, not visible
        ("kill", "models/v2", "v1"),  # models/v2 in place, registry.json still the old one
        ("kill-before", "models/registry.json", "v1"),  # new registry in its temp file
        ("kill", "models/registry.json", "v2"),  # registry.json replaced: the promotion is done
    ],
)
def test_sigkill_at_each_point_of_a_promotion(project, config, mode, write, expected):
    promote.run(config)
    train_candidate(config, **BETTER)
    killed = subprocess.run(
        [sys.executable, str(FAULTS_PROBE), mode, write, "promote"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert assert_consistent(project / "models", {"v1", "v2"}) == expected
    # the next run finishes the job and cleans what the killed one left behind
    result = promote.run(config)
    assert result["decision"] == ("unchanged" if expected == "v2" else "promoted")
    assert assert_consistent(project / "models", {"v2"}) == "v2"
    leftovers = [p.name for p in (project / "models").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert sorted(registry.read_registry()["versions"]) == ["v1", "v2"]


def test_sigkill_while_staging_without_the_hook(project, config):
    """A kill from outside, the moment the new version's temp dir appears."""
    promote.run(config)
    train_candidate(config, **BETTER)
    models = project / "models"
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops", "promote"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if any(p.name.startswith(".stage-") for p in models.iterdir()):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
    assert assert_consistent(models, {"v1", "v2"}) in {"v1", "v2"}
    promote.run(config)
    assert assert_consistent(models, {"v2"}) == "v2"


def test_interrupted_promotion_leftovers_are_cleaned(project, config):
    promote.run(config)
    train_candidate(config, **BETTER)
    orphan = project / "models/v2"
    shutil.copytree(project / "models/v1", orphan)  # an orphan v2 a killed run renamed in place
    (project / "models/.stage-v2-abc").mkdir()
    assert assert_consistent(project / "models", {"v1"}) == "v1"
    promote.run(config)
    assert assert_consistent(project / "models", {"v2"}) == "v2"
    assert not (project / "models/.stage-v2-abc").exists()


# --- the decision functions on their own (no project: fast, and what `make mutate` runs first) ---

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def policy(**promotion):
    """params.yaml's config with some promotion settings replaced."""
    from mlops.config import load_config

    return with_policy(load_config(PARAMS), **promotion)


def test_judge_lists_every_criterion_with_its_value_threshold_and_result():
    config = policy(min_accuracy=0.78, max_regression=0.005, min_roc_auc=0.8, min_recall=0.5)
    metrics = {"accuracy": 0.79, "roc_auc": 0.85, "recall": 0.4}
    production = {"accuracy": 0.7951234}
    assert promote.judge(config, metrics, "failed", "v3", production, "unused") == [
        {
            "name": "min_accuracy",
            "value": 0.79,
            "threshold": 0.78,
            "passed": True,
            "metric": "accuracy",
        },
        {
            "name": "max_regression",
            "value": 0.79,
            "threshold": 0.791148,  # 0.7951234 * 0.995 = 0.79114778 to 6 digits, as metrics
            "passed": False,
            "metric": "accuracy",
            "production": "v3",
            "production_value": 0.7951234,
            "tolerance": 0.005,
        },
        {"name": "validation", "value": "failed", "threshold": "passed", "passed": False},
        {
            "name": "min_roc_auc",
            "value": 0.85,
            "threshold": 0.8,
            "passed": True,
            "metric": "roc_auc",
        },
        {
            "name": "min_recall",
            "value": 0.4,
            "threshold": 0.5,
            "passed": False,
            "metric": "recall",
        },
    ]


def test_judge_without_a_production_score_fails_the_regression_criterion():
    config = policy(min_roc_auc=None, min_recall=None)
    criteria = promote.judge(config, {"accuracy": 0.9}, "passed", "v2", None)
    assert criteria[1] == {
        "name": "max_regression",
        "value": 0.9,
        "threshold": None,
        "passed": False,
        "metric": "accuracy",
        "production": "v2",
        "note": "production cannot be scored on this test split",
    }
    assert [item["passed"] for item in criteria] == [True, False, True]
    assert [
        item["name"] for item in promote.judge(config, {"accuracy": 0.9}, "passed", None, None)
    ] == [
        "min_accuracy",
        "validation",
    ]


@pytest.mark.parametrize(
    ("accuracy", "passed"),
    [(0.78 - 1e-6, False), (0.78 - promote.EPSILON, True), (0.78, True), (0.9, True)],
)
def test_min_accuracy_passes_at_the_threshold_and_not_below(accuracy, passed):
    """metrics.json rounds to 6 digits: a value within 1e-9 of the threshold is at it."""
    criteria = promote.judge(
        policy(min_accuracy=0.78), {"accuracy": accuracy}, "passed", None, None
    )
    assert criteria[0]["passed"] is passed
    assert promote.at_least(accuracy, 0.78) is passed
    assert promote.at_least(None, 0.0) is False


def test_production_criteria_apply_the_floors_to_production():
    config = policy(min_accuracy=0.8, min_roc_auc=0.7, min_recall=None)
    scored = promote.production_criteria(
        config, "v2", {"accuracy": 0.79, "roc_auc": 0.75}, "passed", "a note"
    )
    assert scored == [
        {
            "name": "min_accuracy",
            "value": 0.79,
            "threshold": 0.8,
            "passed": False,
            "metric": "accuracy",
            "production": "v2",
        },
        {
            "name": "validation",
            "value": "passed",
            "threshold": "passed",
            "passed": True,
            "production": "v2",
        },
        {
            "name": "min_roc_auc",
            "value": 0.75,
            "threshold": 0.7,
            "passed": True,
            "metric": "roc_auc",
            "production": "v2",
        },
    ]
    assert promote.production_criteria(config, "v2", None, "passed", "no column SCHL") == [
        {
            "name": "scored",
            "value": None,
            "threshold": None,
            "passed": False,
            "production": "v2",
            "note": "no column SCHL",
        }
    ]


@pytest.mark.parametrize("status", ["passed", "failed"])
def test_validation_status_reads_the_report(tmp_path, monkeypatch, status):
    monkeypatch.chdir(tmp_path)
    files.write_json(promote.VALIDATION_REPORT, {"status": status, "other": "ignored"})
    assert promote.validation_status() == status


@pytest.mark.parametrize("content", [{"status": "skipped"}, {"result": "passed"}])
def test_validation_status_other_than_passed_or_failed_is_input_error(
    tmp_path, monkeypatch, content
):
    monkeypatch.chdir(tmp_path)
    files.write_json(promote.VALIDATION_REPORT, content)
    with pytest.raises(InputError, match=r"reports/validation.json: status '?\w*'? is neither"):
        promote.validation_status()


def test_a_model_file_that_disagrees_with_the_fast_path_is_refused(project, config):
    """raw_rows_parity: the candidate's metadata drops category MAR 5, so the fast path codes it
    as unseen while the model file encodes it: the gate names the largest difference, refuses
    (exit 1), and FORCE_REASON cannot override it."""
    path = Path("models/candidate/metadata.json")
    metadata = json.loads(path.read_text())
    metadata["categories"]["MAR"] = [1, 2, 3, 4]
    path.write_text(json.dumps(metadata))
    before = snapshot(project / "models", skip=("runs.jsonl",))
    pattern = r"differs from the fast path: largest probability difference 0\.\d+ \(test row \d+"
    with pytest.raises(CheckFailed, match=pattern):
        promote.run(config)
    item = next(item for item in report()["criteria"] if item["name"] == "raw_rows_parity")
    assert item["passed"] is False
    assert item["value"] > 1e-9
    assert item["labels_differ"] >= 0
    assert "| raw_rows_parity |" in Path("reports/promotion.md").read_text()
    with pytest.raises(CheckFailed, match="never overrides raw_rows_parity"):
        promote.run(config, force_reason="ship it")
    assert snapshot(project / "models", skip=("runs.jsonl",)) == before
    metadata.pop("input")
    path.write_text(json.dumps(metadata))
    with pytest.raises(CheckFailed, match="does not take raw rows by column name"):
        promote.run(config)


def test_parity_holds_on_the_test_split(project, config):
    promote.run(config)
    item = next(item for item in report()["criteria"] if item["name"] == "raw_rows_parity")
    assert item["passed"] is True
    assert item["value"] <= 1e-9
    assert item["labels_differ"] == 0
