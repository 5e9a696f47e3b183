import json
import os

import pytest

from mlops import files
from mlops.errors import InputError


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out" / "report.json"
    files.write_json(target, {"a": 1})
    files.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(target.parent) == ["report.json"]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "model.bin"
    files.write_bytes(target, b"old")

    def crash(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(target, crash)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        (b"", "empty file"),
        (b"a,b\n", "header only"),
        (b"a,b\n1,2\n", "missing column\\(s\\) c"),
        (b'a,b,c\n1,"2\n', "not a readable CSV"),
        (b"\xff\xfe\x00\x81garbage\x00", "not a readable CSV"),
    ],
)
def test_read_csv_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "batch.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        files.read_table(path, ["a", "b", "c"])
    assert str(info.value).startswith(str(path))


def test_read_json_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        files.read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="unreadable JSON"):
        files.read_json(tmp_path / "bad.json")
    with pytest.raises(InputError, match="make data"):
        files.read_parquet(tmp_path / "train.parquet")


def test_sha256_file(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert files.sha256_file(tmp_path / "x") == expected


def test_written_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        files.write_text(tmp_path / "registry.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "registry.json").stat().st_mode & 0o777 == 0o644


def test_plain_json_turns_numpy_scalars_into_rounded_python_values():
    import numpy as np

    plain = files.plain_json({"a": np.float32(0.1234567891), 1: {"n": np.int64(3), "s": "x"}})
    assert plain == {"a": 0.123457, "1": {"n": 3, "s": "x"}}
    assert type(plain["1"]["n"]) is int
