"""The run log: one line per gated training run, idempotent, shown best first or newest first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from candidates import BETTER, WEAK, train_candidate
from mlops import promote, runlog
from mlops.errors import CheckFailed, InputError


def test_every_gated_run_is_logged_once(project, config):
    promote.run(config)
    promote.run(config)  # unchanged: the same run, nothing appended
    train_candidate(config, **WEAK)
    for _ in range(2):
        with pytest.raises(CheckFailed):
            promote.run(config)
    runs = runlog.read_runs()
    assert [run["decision"] for run in runs] == ["promoted", "rejected"]
    first, second = runs
    assert first["version"] == "v1"
    assert second["version"] is None
    assert second["production_before"] == "v1"
    assert (
        second["params"]["train"]["hyperparameters"]["hist_gradient_boosting"]["max_iter"]
        == WEAK["max_iter"]
    )
    for key in ("model_sha256", "data_sha256", "git_commit", "trained_at", "logged_at"):
        assert first[key]
    assert first["metrics"]["accuracy"] > second["metrics"]["accuracy"]


def test_runs_table_best_first_or_newest_first(project, config, capsys):
    runlog.show_command(config)
    assert "no runs logged yet" in capsys.readouterr().out
    promote.run(config)
    train_candidate(config, **WEAK)
    with pytest.raises(CheckFailed):
        promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    capsys.readouterr()
    runlog.show_command(config, sort="best")
    best = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:4]]
    assert best == ["promoted", "promoted", "rejected"]
    runlog.show_command(config, sort="date")
    out = capsys.readouterr().out
    rows = out.splitlines()[1:4]
    assert [row.split()[2] for row in rows] == ["v2", "-", "v1"]
    assert f"max_iter={BETTER['max_iter']}" in rows[0]
    assert "3 run(s), sorted by date" in out
    with pytest.raises(InputError, match="--sort"):
        runlog.ordered([], "worst")


def test_broken_run_log_names_the_line(project, config):
    Path("models").mkdir(exist_ok=True)
    Path("models/runs.jsonl").write_text('{"model_sha256": "a"}\n\n{oops\n')
    with pytest.raises(InputError, match=r"models/runs\.jsonl:3: not JSON"):
        runlog.read_runs()
    Path("models/runs.jsonl").write_text("[1]\n")
    with pytest.raises(InputError, match=r"runs\.jsonl:1: not a run entry"):
        runlog.read_runs()


def test_append_keeps_earlier_lines_byte_identical(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"model_sha256": "a", "decision": "rejected"}')  # no final newline
    item = {"model_sha256": "b", "decision": "promoted", "metrics": {}}
    assert runlog.record(item, path) is True
    assert runlog.record(item, path) is False
    lines = path.read_text().splitlines()
    assert lines[0] == '{"model_sha256": "a", "decision": "rejected"}'
    assert json.loads(lines[1])["model_sha256"] == "b"
