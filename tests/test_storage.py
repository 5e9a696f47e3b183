"""Object storage: the inference log, CURRENT= and OUT= on s3:// against a real S3-compatible
server (moto_server on loopback, tests/objectstore.py), never a patched client."""

from __future__ import annotations

import json

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import objectstore
from helpers import run_cli
from mlops import storage
from mlops.config import load_config
from mlops.errors import InputError
from test_serve_inference_log import logging_config, served_log


def objects(url: str) -> list[str]:
    system, path = storage.filesystem(url)
    found = system.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(info.path for info in found if info.type == pafs.FileType.File)


def test_the_inference_log_goes_to_a_bucket_and_drift_reads_it_there(
    s3, promoted_dir, project, capsys
):
    log = f"{s3}/logs/inference"
    served_log(promoted_dir, log, 300)
    found = objects(log)
    assert len(found) == 1
    bucket = s3.removeprefix("s3://")
    assert found[0].startswith(f"{bucket}/logs/inference/date=")
    assert found[0].rsplit("/", 1)[1].startswith("part-")
    system, _ = storage.filesystem(s3)
    assert pq.read_metadata(found[0], filesystem=system).num_rows == 300

    code, err = run_cli(capsys, "drift", "--current", log)
    assert code in (0, 1), err
    result = json.loads((project / "reports" / "drift.json").read_text())
    assert result["current_rows"] == 300
    assert result["batch"] == log
    assert result["labelled_rows"] == 0
    assert result["performance"]["judged_by"] == "estimated"

    # A glob over the bucket names the same files.
    code, err = run_cli(capsys, "drift", "--current", f"{log}/date=*/*.parquet")
    assert code in (0, 1), err
    assert json.loads((project / "reports" / "drift.json").read_text())["current_rows"] == 300


def test_score_reads_and_writes_a_bucket(s3, promoted_dir, tmp_path, capsys, monkeypatch):
    log = f"{s3}/logs"
    served_log(promoted_dir, log, 120, per_request=60)
    out = f"{s3}/scores/run1"
    monkeypatch.chdir(promoted_dir)  # read-only: score writes only to the bucket
    code, err = run_cli(capsys, "score", "--current", log, "--out", out)
    assert code == 0, err
    names = [path.rsplit("/", 1)[1] for path in objects(out)]
    assert names == ["predictions.parquet", "rejects.parquet", "score.json"]
    system, path = storage.filesystem(out)
    with system.open_input_stream(f"{path}/score.json") as stream:
        assert json.loads(stream.read())["scored"] == 120


def test_a_missing_bucket_refuses_to_start_the_server(s3, promoted_dir):
    from mlops import serve

    config = load_config(promoted_dir / "params.yaml")
    missing = f"{s3}-missing/logs"
    with pytest.raises(InputError, match=rf"serve.inference_log.dir {missing}: cannot write"):
        serve.create_app(logging_config(config, missing), promoted_dir / "models")


def test_a_missing_prefix_is_one_line(s3, project, capsys):
    code, err = run_cli(capsys, "drift", "--current", f"{s3}/nothing/here")
    assert code == 2
    assert f"{s3}/nothing/here: no such file or folder" in err


def test_an_unreachable_store_refuses_to_start_the_server(s3, promoted_dir, monkeypatch):
    from mlops import serve
    from test_serve import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    config = load_config(promoted_dir / "params.yaml")
    with pytest.raises(InputError, match=rf"serve.inference_log.dir {s3}/logs: cannot write"):
        serve.create_app(logging_config(config, f"{s3}/logs"), promoted_dir / "models")


def test_a_bucket_failing_while_serving_drops_and_counts(s3, promoted_dir, s3_server):
    from fastapi.testclient import TestClient

    from mlops import serve
    from test_serve import sample_rows

    config = load_config(promoted_dir / "params.yaml")
    bucket = objectstore.new_bucket(s3_server)
    logged = logging_config(config, f"{bucket}/logs", flush_seconds=3600)
    rows, _ = sample_rows(config, 4, promoted_dir)
    with TestClient(serve.create_app(logged, promoted_dir / "models", poll_seconds=3600)) as client:
        name = bucket.removeprefix("s3://")
        system = pafs.S3FileSystem(
            endpoint_override=s3_server, allow_bucket_deletion=True, region="us-east-1"
        )
        system.delete_dir(name)  # the bucket is gone while the server runs
        assert client.post("/predict", json={"instances": rows}).status_code == 200
        log = client.app.state.inference_log
    assert (log.written, log.dropped) == (0, 4)
