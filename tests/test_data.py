import hashlib

import pandas as pd
import pytest

from helpers import edit_params, run_cli
from mlops import data
from mlops.config import load_config
from mlops.errors import InputError

RAW = "data/raw"


def processed_bytes(root):
    return {p.name: p.read_bytes() for p in sorted((root / "data/processed").iterdir())}


def test_split_by_period(fresh):
    manifest = data.run(load_config())
    assert manifest["periods"] == {"current": 2018, "train": [2015, 2016, 2017]}
    assert manifest["rows"] == {"train": 30_000, "test": 7_500, "current": 12_500}
    train = pd.read_parquet(fresh / "data/processed/train.parquet")
    test = pd.read_parquet(fresh / "data/processed/test.parquet")
    current = pd.read_parquet(fresh / "data/processed/current.parquet")
    assert set(current["year"]) == {2018}
    assert set(train["year"]) == set(test["year"]) == {2015, 2016, 2017}
    assert abs(train["employed"].mean() - test["employed"].mean()) < 0.005  # stratified


def test_split_is_deterministic(fresh):
    data.run(load_config())
    first = processed_bytes(fresh)
    data.run(load_config())
    assert processed_bytes(fresh) == first


def test_new_year_file_needs_no_code_change(fresh, capsys):
    frame = pd.read_csv(fresh / RAW / "employment_MA_2018.csv").assign(year=2019)
    frame.to_csv(fresh / RAW / "employment_MA_2019.csv", index=False)
    code, err = run_cli(capsys, "data")
    assert code == 2
    assert "employment_MA_2019.csv: no recorded sha256" in err
    assert run_cli(capsys, "accept-data")[0] == 0
    assert "employment_MA_2019.csv" in (fresh / RAW / "README.md").read_text()
    assert run_cli(capsys, "data")[0] == 0
    manifest = data.run(load_config())
    assert manifest["periods"] == {"current": 2019, "train": [2015, 2016, 2017, 2018]}


def test_configured_periods(fresh):
    edit_params(
        fresh / "params.yaml", lambda p: p["data"].update(current=2017, train_periods=[2015])
    )
    manifest = data.run(load_config())
    assert manifest["periods"] == {"current": 2017, "train": [2015]}
    edit_params(fresh / "params.yaml", lambda p: p["data"].update(current=2030))
    with pytest.raises(InputError, match=r"data\.current: period 2030 not in the data"):
        data.run(load_config())
    edit_params(
        fresh / "params.yaml", lambda p: p["data"].update(current=2017, train_periods=[2017])
    )
    with pytest.raises(InputError, match="train_periods"):
        data.run(load_config())
    edit_params(
        fresh / "params.yaml", lambda p: p["data"].update(current=2015, train_periods="earlier")
    )
    with pytest.raises(InputError, match="no training periods"):
        data.run(load_config())


def corrupt(root, name, content: bytes, *, accept=True):
    path = root / RAW / name
    path.write_bytes(content)
    if accept:
        data.accept(root / RAW)
    return path


@pytest.mark.parametrize(
    ("content", "accept", "message"),
    [
        (b"not,the,schema\n", False, "sha256 mismatch"),
        (b"", True, "empty file"),
        (b"AGEP,SCHL,employed,year\n", True, "header only"),
        (b"AGEP,year\n30,2015\n", True, "missing column(s) SCHL"),
        (b'AGEP,SCHL\n"30,2\n', True, "not a readable CSV"),
    ],
)
def test_bad_raw_file_is_exit_2_and_touches_nothing(project, capsys, content, accept, message):
    before = processed_bytes(project)
    corrupt(project, "employment_MA_2016.csv", content, accept=accept)
    code, err = run_cli(capsys, "data")
    assert code == 2
    assert "employment_MA_2016.csv" in err
    assert message in err
    assert "Traceback" not in err
    assert processed_bytes(project) == before


def test_missing_listed_file_and_missing_checksums(project, capsys):
    (project / RAW / "employment_MA_2015.csv").unlink()
    code, err = run_cli(capsys, "data")
    assert code == 2
    assert "employment_MA_2015.csv: listed in SHA256SUMS but missing (restore it" in err
    assert "or drop it from the record: `make accept-data`)" in err
    (project / RAW / "SHA256SUMS").unlink()
    assert "SHA256SUMS: not found" in run_cli(capsys, "data")[1]


def test_malformed_checksum_file(project):
    (project / RAW / "SHA256SUMS").write_text("nonsense\n")
    with pytest.raises(InputError, match="SHA256SUMS: line 1"):
        data.verify_raw(project / RAW)


def test_no_raw_files(fresh):
    for path in (fresh / RAW).glob("*.csv"):
        path.unlink()
    with pytest.raises(InputError, match="no CSV or Parquet files"):
        data.run(load_config())


def test_accept_records_sha256(fresh):
    path = corrupt(fresh, "employment_MA_2016.csv", b"AGEP\n1\n")
    recorded = data.recorded_checksums(fresh / RAW)
    assert recorded[path.name] == hashlib.sha256(b"AGEP\n1\n").hexdigest()


def test_synthetic_source(fresh):
    edit_params(fresh / "params.yaml", lambda p: p["data"].update(source="synthetic"))
    config = load_config()
    manifest = data.run(config)
    assert manifest["rows"] == {"train": 16_000, "test": 4_000, "current": 5_000}
    current = pd.read_parquet(fresh / "data/processed/current.parquet")
    assert list(current.columns) == [*config.features, "employed"]
