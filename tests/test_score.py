"""`make score`: streamed batch predictions and row-level rejects, from files, folders, globs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from helpers import edit_params, run_cli
from mlops import cluster, predictions, registry
from mlops.config import load_config
from owndata import private_copy


@pytest.fixture
def scoring(promoted_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the promoted project (production v1) as working directory; chunks of 1,000."""
    root = tmp_path / "project"
    shutil.copytree(promoted_dir, root)
    monkeypatch.chdir(root)
    edit_params(root / "params.yaml", lambda p: p["score"].update(chunk_rows=1000))
    return root


def expected(frame: pd.DataFrame) -> tuple[list, list]:
    config = load_config()
    model, metadata = registry.load_production(registry.MODELS_DIR)
    rows = frame[config.features[::-1]]  # the model file itself, on raw rows by name
    labels, proba = predictions.predict(model, rows, predictions.model_positive(model, metadata))
    return labels.tolist(), proba[:, 1].tolist()


def current_rows(root: Path, rows: int = 2500) -> pd.DataFrame:
    return pd.read_parquet(root / "data/processed/current.parquet").head(rows)


def test_file_folder_and_glob_give_the_same_predictions(scoring, capsys):
    frame = current_rows(scoring).assign(person=lambda f: range(len(f)))
    edit_params(scoring / "params.yaml", lambda p: p["score"].update(id_columns=["person"]))
    frame.to_csv(scoring / "batch.csv", index=False)
    for part, rows in enumerate([frame.iloc[:1200], frame.iloc[1200:]]):
        folder = scoring / f"batch/day=2018-01-0{part + 1}"
        folder.mkdir(parents=True)
        rows.to_parquet(folder / "part-0.parquet", index=False)
    labels, probability = expected(frame)
    for spec in ("batch.csv", "batch", "batch/*/*.parquet"):
        code, err = run_cli(capsys, "score", "--current", spec, "--out", f"out/{spec[:5]}")
        assert code == 0, err
        out = pd.read_parquet(scoring / f"out/{spec[:5]}/predictions.parquet")
        assert out["person"].tolist() == list(range(2500))
        assert out["label"].tolist() == labels
        assert out["probability"].tolist() == pytest.approx(probability)
        summary = json.loads((scoring / f"out/{spec[:5]}/score.json").read_text())
        assert summary["rows"] == summary["scored"] == 2500
        assert summary["rejected"] == 0
        assert summary["model_version"] == "v1"


def test_rows_the_api_would_refuse_go_to_rejects_with_the_reason(scoring, capsys):
    frame = current_rows(scoring, 3000)
    frame["AGEP"] = frame["AGEP"].astype(object)
    frame.loc[10, "AGEP"] = 120
    frame.loc[1500, "SEX"] = 7
    frame.loc[2999, "MAR"] = None
    frame.loc[2999, "AGEP"] = "old"
    frame.to_csv(scoring / "batch.csv", index=False)
    code, err = run_cli(capsys, "score", "--current", "batch.csv", "--out", "out")
    assert code == 0, err
    rejects = pd.read_parquet(scoring / "out/rejects.parquet")
    assert rejects["row"].tolist() == [11, 1501, 3000]  # 1-based data rows of batch.csv
    assert rejects["reason"].tolist() == [
        "AGEP: 120 > 90",
        "SEX: 7 is not an allowed value",
        "MAR: missing; AGEP: 'old' is not a number",
    ]
    assert set(rejects["source"]) == {"batch.csv"}  # as the user named it
    scored = pd.read_parquet(scoring / "out/predictions.parquet")
    assert len(scored) == 2997
    assert "rejected 3" in err


@pytest.mark.parametrize(
    ("setup", "spec", "message"),
    [
        (lambda root: None, "nothing/*.csv", "nothing/*.csv: the pattern matches no file"),
        (lambda root: None, "absent.csv", "absent.csv: no such file or folder"),
        (
            lambda root: (root / "b").mkdir() or (root / "b/x.txt").write_text("x"),
            "b",
            "b: no CSV or Parquet files in this folder",
        ),
        (
            lambda root: (
                (root / "b").mkdir(),
                current_rows(root, 10).to_parquet(root / "b/1.parquet"),
                current_rows(root, 10).drop(columns="SEX").to_parquet(root / "b/2.parquet"),
            ),
            "b",
            "b/2.parquet: missing column(s) SEX",
        ),
        (
            lambda root: (
                (root / "b").mkdir(),
                current_rows(root, 10).to_parquet(root / "b/1.parquet"),
                current_rows(root, 10).astype({"MAR": str}).to_parquet(root / "b/2.parquet"),
            ),
            "b",
            "b/2.parquet: column MAR holds text, an earlier file holds numbers",
        ),
        (
            lambda root: ((root / "b").mkdir(), (root / "b/1.parquet").write_bytes(b"PAR1 junk")),
            "b",
            "b/1.parquet",
        ),
    ],
)
def test_unusable_batch_is_exit_2_one_line_and_leaves_nothing(
    scoring, capsys, setup, spec, message
):
    (scoring / "out").mkdir()
    (scoring / "out/predictions.parquet").write_bytes(b"earlier run")
    setup(scoring)
    code, err = run_cli(capsys, "score", "--current", spec, "--out", "out")
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0
    assert (scoring / "out/predictions.parquet").read_bytes() == b"earlier run"
    assert sorted(p.name for p in (scoring / "out").iterdir()) == ["predictions.parquet"]


def test_no_batch_or_no_production_model_is_exit_2(scoring, capsys):
    code, err = run_cli(capsys, "score")
    assert code == 2
    assert "make score CURRENT=" in err
    shutil.rmtree(scoring / "models")
    code, err = run_cli(capsys, "score", "--current", "data/processed/current.parquet")
    assert code == 2
    assert "no production model yet" in err


def test_strings_gaps_and_multiclass_probabilities(plans, tmp_path, monkeypatch, capsys):
    root = private_copy(plans, tmp_path, monkeypatch)
    edit_params(root / "params.yaml", lambda p: p["score"].update(id_columns=["customer_id"]))
    code, err = run_cli(
        capsys, "score", "--current", "data/raw/customers_2024-03.csv", "--out", "out"
    )
    assert code == 0, err
    out = pd.read_parquet(root / "out/predictions.parquet")
    rejects = pd.read_parquet(root / "out/rejects.parquet")
    assert len(out) + len(rejects) == 1500
    assert set(out["label"]) <= {"basic", "plus", "pro"}
    classes = out[["probability_basic", "probability_plus", "probability_pro"]]
    assert classes.sum(axis=1).tolist() == pytest.approx([1.0] * len(out))
    assert out["probability"].tolist() == pytest.approx(classes.max(axis=1).tolist())
    assert out["customer_id"].is_unique
    # gaps are allowed in sector and age; plan is the target here, not a feature
    assert rejects.empty, rejects["reason"].head().tolist()
    assert os.path.exists(root / "out/score.json")


def partitioned_batch(root: Path) -> None:
    """Three hive partitions of the current split, with a few rows the API would refuse."""
    frame = current_rows(root, 3000).assign(person=lambda f: range(len(f)))
    frame.loc[[5, 1700], "AGEP"] = 150
    for part in range(3):
        folder = root / f"batch/part={part}"
        folder.mkdir(parents=True)
        frame.iloc[part * 1000 : (part + 1) * 1000].to_parquet(folder / "rows.parquet", index=False)


def test_dask_engine_decides_exactly_as_the_local_one(scoring, capsys, monkeypatch):
    """A 2-worker LocalCluster (one task per file) writes the same predictions and rejects."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    partitioned_batch(scoring)
    edit_params(scoring / "params.yaml", lambda p: p["score"].update(id_columns=["person"]))
    outputs = {}
    for engine in ("local", "dask"):
        edit_params(scoring / "params.yaml", lambda p, e=engine: p["score"].update(engine=e))
        code, err = run_cli(capsys, "score", "--current", "batch", "--out", engine)
        assert code == 0, err
        outputs[engine] = [
            pd.read_parquet(scoring / engine / name)
            for name in ("predictions.parquet", "rejects.parquet")
        ]
        assert json.loads((scoring / engine / "score.json").read_text())["engine"] == engine
    for local, dask in zip(outputs["local"], outputs["dask"], strict=True):
        pd.testing.assert_frame_equal(local, dask)
    assert outputs["dask"][1]["reason"].tolist() == ["AGEP: 150 > 90"] * 2


def test_unreachable_scheduler_is_exit_2_naming_it(scoring, capsys, monkeypatch):
    partitioned_batch(scoring)
    edit_params(scoring / "params.yaml", lambda p: p["score"].update(engine="dask"))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)  # the real client's retries, shorter
    code, err = run_cli(capsys, "score", "--current", "batch", "--out", "out")
    assert code == 2
    assert "DASK_SCHEDULER_ADDRESS=tcp://127.0.0.1:9: no Dask scheduler answers" in err
    assert err.strip().count("\n") == 0
    assert not (scoring / "out/predictions.parquet").exists()
