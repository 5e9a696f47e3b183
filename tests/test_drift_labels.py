"""`make drift CURRENT=<log> LABELS=...`: ground truth joined by request id; a log folder holding
a partial or foreign file is named, exit 2."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from helpers import edit_params, run_cli
from test_serve_inference_log import served_log


@pytest.fixture(scope="module")
def logged(promoted_dir, tmp_path_factory):
    """An inference log of 300 test rows in 6 requests of 50, and their true labels."""
    root = tmp_path_factory.mktemp("inference") / "log"
    truth = served_log(promoted_dir, root, 300)
    return root, pd.DataFrame(truth, columns=["request_id", "row", "employed"])


def drift_json(project) -> dict:
    return json.loads((project / "reports" / "drift.json").read_text())


def test_labels_join_by_request_id_and_row(logged, project, capsys, tmp_path):
    root, truth = logged
    labels = tmp_path / "labels"
    labels.mkdir()
    # Two files, as labels arriving on two days; 200 of the 300 rows labelled.
    truth.iloc[:120].to_csv(labels / "day1.csv", index=False)
    truth.iloc[120:200].to_csv(labels / "day2.csv", index=False)
    code, err = run_cli(capsys, "drift", "--current", str(root), "--labels", str(labels))
    assert code in (0, 1), err
    result = drift_json(project)
    assert result["labelled_rows"] == 200
    perf = result["performance"]
    assert perf["judged_by"] == "measured+estimated"
    assert perf["labelled_rows"] == 200
    assert perf["unlabelled"]["rows"] == 100
    assert perf["current"]["accuracy"] is not None
    # Measured on the labelled rows alone: the accuracy of the logged answers on those rows.
    frame = pq.read_table(root).to_pandas().merge(truth, on=["request_id", "row"])
    right = (frame["prediction"] == frame["employed"]).iloc[:200]
    assert perf["current"]["accuracy"] == pytest.approx(right.mean(), abs=1e-6)
    assert "labels on 200 sampled rows" in (project / "reports" / "drift.md").read_text()


def test_every_row_labelled_is_measured(logged, project, capsys, tmp_path):
    root, truth = logged
    labels = tmp_path / "labels.parquet"
    truth.to_parquet(labels)
    code, err = run_cli(capsys, "drift", "--current", str(root), "--labels", str(labels))
    assert code in (0, 1), err
    result = drift_json(project)
    assert result["labelled_rows"] == 300
    assert result["performance"]["judged_by"] == "measured"


def test_labels_by_request_id_alone_or_the_score_id_columns(logged, project, capsys, tmp_path):
    root, truth = logged
    labels = tmp_path / "labels.csv"
    # request_id alone: every row of the request gets that label (here: requests r0 and r1).
    truth[truth["row"] == 0].head(2).drop(columns="row").to_csv(labels, index=False)
    code, err = run_cli(capsys, "drift", "--current", str(root), "--labels", str(labels))
    assert code in (0, 1), err
    assert drift_json(project)["labelled_rows"] == 100

    renamed = tmp_path / "renamed.csv"
    truth.rename(columns={"request_id": "rid"}).to_csv(renamed, index=False)
    code, err = run_cli(capsys, "drift", "--current", str(root), "--labels", str(renamed))
    assert code == 2
    assert f"{renamed}: no column to join labels by: needs request_id" in err
    edit_params(project / "params.yaml", lambda p: p["score"].update(id_columns=["rid"]))
    code, err = run_cli(capsys, "drift", "--current", str(root), "--labels", str(renamed))
    assert code == 2
    assert "missing column(s) rid" in err  # the batch's file is named


def test_labels_without_a_batch_and_bad_labels_are_one_line(logged, project, capsys, tmp_path):
    root, truth = logged
    code, err = run_cli(capsys, "drift", "--labels", "x.csv")
    assert code == 2
    assert "LABELS= joins ground truth to a CURRENT= batch" in err
    labels = tmp_path / "labels.csv"
    truth.assign(employed=7).to_csv(labels, index=False)
    code, err = run_cli(capsys, "drift", "--current", str(root), "--labels", str(labels))
    assert code == 2
    assert f"{labels}: employed = 7 is not one of schema.labels" in err


def test_a_partial_or_foreign_file_in_the_log_is_named(logged, project, capsys, tmp_path):
    source, _ = logged
    root = tmp_path / "log"
    shutil.copytree(source, root)
    day = next(root.iterdir())
    whole = next(day.glob("*.parquet"))
    # The writer's own temporary files (hidden) are not part of the batch.
    (day / ".part-x-1.parquet.tmp").write_bytes(whole.read_bytes()[:100])
    code, err = run_cli(capsys, "drift", "--current", str(root))
    assert code in (0, 1), err

    partial = day / "part-zzz-1.parquet"
    partial.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    code, err = run_cli(capsys, "drift", "--current", str(root))
    assert code == 2
    assert str(partial) in err
    assert len(err.strip().splitlines()) == 1
    partial.unlink()

    foreign = day / "part-other.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(foreign)
    code, err = run_cli(capsys, "drift", "--current", str(root))
    assert code == 2
    assert f"{foreign}: missing column(s)" in err
    foreign.unlink()

    (day / "notes.csv").write_text("a,b\n1,2\n")
    code, err = run_cli(capsys, "drift", "--current", str(root))
    assert code == 2
    assert "mixes CSV and Parquet files" in err
