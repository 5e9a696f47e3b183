"""The stage table is the one source of Make's stage rules and of dvc.yaml, and `dvc repro` runs
the same stages as Make: the same model bytes on a fresh clone, and DVC's experiments, metrics and
plots commands work on them."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from helpers import GIT, ROOT, git_clone, run_in, sha256
from mlops import stages
from mlops.config import STAGE_SECTIONS

MODEL = "models/candidate/model.skops"


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def test_generated_files_are_fresh():
    """Fails when dvc.yaml or stages.mk lags the table: run `make dvc-yaml` and commit them."""
    for path, text in stages.generated().items():
        assert (ROOT / path).read_text(encoding="utf-8") == text, f"{path} is stale: make dvc-yaml"


def test_dvc_yaml_declares_every_stage_its_params_metrics_and_plots():
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(declared) == [stage.name for stage in stages.STAGES] == list(STAGE_SECTIONS)
    for stage in stages.STAGES:
        entry = declared[stage.name]
        assert entry["params"] == list(STAGE_SECTIONS[stage.name])
        assert stage.name in entry["cmd"]
        listed = [*entry.get("outs", []), *entry.get("metrics", []), *entry.get("plots", [])]
        assert sorted(listed) == sorted(stage.outs)
    assert declared["evaluate"]["metrics"] == ["reports/metrics.json"]
    assert len(declared["evaluate"]["plots"]) == 4


def test_make_reads_the_table(tmp_path):
    """Make's rules use the generated variables: `make -n` after the table's outputs lists them."""
    printed = subprocess.run(
        ["make", "-pn", "help", f"VENV={ROOT / '.venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for stage in stages.STAGES:
        assert f"{stage.name.upper()}_OUT := {' '.join(stage.outs)}" in printed
    # The stamp rules (written by hand in the Makefile): each stage's stamp follows the one
    # before and its params, code and outputs, so a change or a deleted output re-runs it and
    # what follows (tests/test_pipeline.py deletes outputs of four stages for real).
    rules = {
        line.split(":")[0]: line.split(":", 1)[1].split()
        for line in printed.splitlines()
        if re.match(r"^\.make/[a-z]+\.ok:", line)
    }
    previous = None
    for stage in stages.STAGES:
        prerequisites = rules[f".make/{stage.name}.ok"]
        if previous is not None:
            assert f".make/{previous}.ok" in prerequisites, stage.name
        assert f".make/params/{stage.name}.json" in prerequisites, stage.name
        assert set(stage.outs) <= set(prerequisites), stage.name
        for name in stage.code:
            assert any(p.startswith(f"src/mlops/{name}") for p in prerequisites), name
        previous = stage.name


def test_dvc_repro_on_a_fresh_clone_makes_the_same_model_and_experiments_work(
    tmp_path, trained_clone
):
    made = trained_clone  # `make train`'s model

    repo = git_clone(ROOT, tmp_path / "dvc")
    ok(run_in(repo, "dvc", "repro"))
    assert sha256(repo / MODEL) == sha256(made / MODEL)
    assert json.loads((repo / "reports/promotion.json").read_text())["decision"]
    ok(run_in(repo, *GIT, "add", "dvc.lock"))
    ok(run_in(repo, *GIT, "commit", "--quiet", "-m", "dvc.lock"))
    assert "up to date" in ok(run_in(repo, "dvc", "status")).stdout

    key = "train.hyperparameters.hist_gradient_boosting.learning_rate"
    ok(run_in(repo, "dvc", "exp", "run", "-S", f"{key}=0.05"))
    assert sha256(repo / MODEL) != sha256(made / MODEL)
    metrics = json.loads(ok(run_in(repo, "dvc", "metrics", "diff", "--json")).stdout)
    assert any("accuracy" in name for name in metrics["reports/metrics.json"]), metrics
    params = json.loads(ok(run_in(repo, "dvc", "params", "diff", "--json")).stdout)
    assert params["params.yaml"][key]["old"] == 0.1
    assert params["params.yaml"][key]["new"] == 0.05
    ok(run_in(repo, "dvc", "plots", "diff", "--out", str(tmp_path / "plots")))
    assert (tmp_path / "plots" / "index.html").is_file()


def test_make_dvc_yaml_writes_only_what_changed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    stages.dvc_yaml_command(None)
    assert "wrote dvc.yaml" in capsys.readouterr().out
    assert (tmp_path / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()
    assert (tmp_path / "stages.mk").read_text() == (ROOT / "stages.mk").read_text()
    stages.dvc_yaml_command(None)
    assert capsys.readouterr().out == ""
