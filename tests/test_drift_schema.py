"""A schema switch never crashes drift: production trained on columns params.yaml no longer
declares is judged by the candidate of the new schema (and the report says so), or, without
one, refused in one line saying what to do (exit 2). Through the CLI, and `make all` in a fresh
process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from helpers import made_copy, run_cli
from mlops import evaluate, promote, train
from mlops.config import load_config
from test_pipeline import make


def rename_schl(root: Path, *, raw: bool) -> None:
    """SCHL becomes EDU in params.yaml and in the data (raw CSVs, or the processed splits)."""
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("\n    SCHL: [", "\n    EDU: ["))
    if raw:
        for path in sorted((root / "data" / "raw").glob("*.csv")):
            lines = path.read_text().split("\n", 1)
            path.write_text(lines[0].replace("SCHL", "EDU") + "\n" + lines[1])
        return
    for path in sorted((root / "data" / "processed").glob("*.parquet")):
        pd.read_parquet(path).rename(columns={"SCHL": "EDU"}).to_parquet(path)


def test_renamed_feature_judged_by_the_candidate_or_refused_in_one_line(project, capsys):
    promote.run(load_config())  # production v1 needs SCHL
    rename_schl(project, raw=False)
    config = load_config()
    train.run(config)
    evaluate.run(config)

    code, stderr = run_cli(capsys, "drift")
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "production v1 was trained on other columns (missing here: SCHL)" in stderr
    saved = json.loads(Path("reports/drift.json").read_text())
    assert saved["model"]["source"] == "candidate"
    assert "judged with the candidate instead" in saved["model"]["note"]
    assert "EDU" in saved["columns"]
    assert "judged with the candidate instead" in Path("reports/drift.md").read_text()

    shutil.rmtree("models/candidate")
    code, stderr = run_cli(capsys, "drift")
    assert code == 2
    assert "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("[drift] error: production v1 needs column(s) SCHL that params.yaml")
    assert "promote a model trained on this schema" in line
    assert "make rollback" in line


def test_make_all_after_a_dataset_switch_has_no_traceback(promoted_dir, tmp_path):
    root = made_copy(promoted_dir, tmp_path / "repo")  # `make all` ran up to production v1
    rename_schl(root, raw=True)
    make(root, "accept-data")
    done = make(root, "all", check=False)
    assert "Traceback" not in done.stderr
    # The renamed table trains a model file that takes EDU by name (not production's bytes), and
    # production's own columns are gone: the gate refuses in one line (it cannot compare), drift
    # still reports, with the candidate, and says so; Make's own exit code for the failed `all`
    # is 2.
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot compare with production v1: production v1 needs column(s) SCHL" in done.stderr
    assert "make all: the gate rejected the candidate" in done.stderr
    assert "judged with the candidate instead" in done.stderr
    saved = json.loads((root / "reports" / "drift.json").read_text())
    assert saved["model"]["source"] == "candidate"
    assert saved["status"] == "ok"
