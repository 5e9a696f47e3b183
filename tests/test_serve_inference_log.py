"""The inference log: scored rows as hive-partitioned Parquet, off the request path, flushed on a
graceful stop, never a partial file; a valid drift batch as it is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from mlops import files, serve
from mlops.config import Config, load_config
from mlops.errors import InputError
from mlops.serve.app import with_inference_log
from mlops.serve.inference_log import InferenceLog
from test_serve import MODELS, expected, free_port, sample_rows, wait_for


def logging_config(config: Config, destination: str | Path, **settings) -> Config:
    """config with the inference log on at destination (and other serve.inference_log keys)."""
    config = with_inference_log(config, str(destination))
    changed = config.serve.inference_log.model_copy(update=settings)
    return config.model_copy(
        update={"serve": config.serve.model_copy(update={"inference_log": changed})}
    )


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def test_rows_and_answers_are_logged_as_hive_partitions(promoted_dir, tmp_path):
    config = load_config(promoted_dir / "params.yaml")
    root = tmp_path / "log"
    logged = logging_config(config, root, flush_rows=1_000_000, flush_seconds=3600)
    rows, x = sample_rows(config, 30, promoted_dir)
    labels, probabilities = expected(x, promoted_dir / MODELS)
    app = serve.create_app(logged, promoted_dir / MODELS, poll_seconds=3600)
    with TestClient(app) as client:
        first = client.post(
            "/predict", json={"instances": rows[:20]}, headers={"x-request-id": "a1"}
        )
        second = client.post("/predict", json={"instances": rows[20:]})
        assert first.status_code == second.status_code == 200
        assert not parquet_files(root)  # nothing written yet: flush_rows and flush_seconds
    # The app stopped (a graceful shutdown): the queue was flushed.
    found = parquet_files(root)
    assert len(found) == 1
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert found[0].parent.name == f"date={today}"
    assert found[0].name.startswith("part-")
    assert found[0].name.endswith(f"-{os.getpid()}.parquet")
    table = pq.read_table(found[0])
    assert table.column_names == [
        *config.features,
        "prediction",
        "probability",
        "model_version",
        "request_id",
        "row",
        "timestamp",
    ]
    assert table.column("row").to_pylist() == [*range(20), *range(10)]
    frame = table.to_pandas()
    for name in config.features:  # the features as they were sent
        assert frame[name].tolist() == [row[name] for row in rows]
    assert frame["prediction"].tolist() == labels
    assert frame["probability"].tolist() == probabilities
    assert set(frame["model_version"]) == {"v1"}
    ids = frame["request_id"].tolist()
    assert ids[:20] == ["a1"] * 20
    assert ids[20] == second.headers["x-request-id"]
    assert len(set(ids[20:])) == 1
    assert str(frame["timestamp"].dt.tz) == "UTC"
    # The folder is a drift batch as it is: a hive-partitioned dataset with a date column.
    dataset = ds.dataset(root, partitioning="hive")
    assert dataset.count_rows() == 30


def test_flush_rows_writes_while_serving(promoted_dir, tmp_path):
    config = load_config(promoted_dir / "params.yaml")
    root = tmp_path / "log"
    logged = logging_config(config, root, flush_rows=10, flush_seconds=3600)
    rows, _ = sample_rows(config, 10, promoted_dir)
    with TestClient(serve.create_app(logged, promoted_dir / MODELS, poll_seconds=3600)) as client:
        client.post("/predict", json={"instances": rows})
        wait_for(lambda: parquet_files(root), timeout=30, what="a file after flush_rows")
        assert client.app.state.inference_log.written == 10


def test_a_full_queue_drops_and_counts_rows_and_requests_still_succeed(
    promoted_dir, tmp_path, caplog
):
    config = load_config(promoted_dir / "params.yaml")
    logged = logging_config(config, tmp_path / "log", queue_rows=5, flush_seconds=3600)
    rows, _ = sample_rows(config, 4, promoted_dir)
    with TestClient(serve.create_app(logged, promoted_dir / MODELS, poll_seconds=3600)) as client:
        answers = [client.post("/predict", json={"instances": rows}) for _ in range(3)]
        assert {answer.status_code for answer in answers} == {200}
        log = client.app.state.inference_log
        assert (log.queued, log.dropped) == (4, 8)
        metrics = client.get("/metrics").text
        assert "mlops_inference_log_rows_dropped_total 8.0" in metrics
    warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1  # at most one a minute
    assert log.written == 4


def test_a_destination_failing_while_running_drops_counts_and_warns(promoted_dir, tmp_path, caplog):
    config = load_config(promoted_dir / "params.yaml")
    root = tmp_path / "log"
    logged = logging_config(config, root, flush_seconds=3600)
    rows, _ = sample_rows(config, 3, promoted_dir)
    with TestClient(serve.create_app(logged, promoted_dir / MODELS, poll_seconds=3600)) as client:
        root.rmdir()
        root.write_text("not a folder any more")  # the disk is gone from under the server
        assert client.post("/predict", json={"instances": rows}).status_code == 200
        log = client.app.state.inference_log
    assert (log.written, log.dropped) == (0, 3)
    assert any(
        "writing to" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records
    )


def test_an_unwritable_destination_refuses_to_start(promoted_dir, tmp_path):
    config = load_config(promoted_dir / "params.yaml")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=rf"serve.inference_log.dir {blocker}/log: cannot write"):
        serve.create_app(logging_config(config, blocker / "log"), promoted_dir / MODELS)
    off = with_inference_log(logging_config(config, blocker / "log"), "off")
    assert off.serve.inference_log.enabled is False
    serve.create_app(off, promoted_dir / MODELS)  # enabled: false: no check at all


def test_the_cli_refuses_to_start_with_one_line_exit_2(promoted_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = subprocess.run(
        [sys.executable, "-m", "mlops", "serve", "--port", str(free_port())],
        cwd=promoted_dir,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLOPS_INFERENCE_LOG": str(blocker / "log")},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"serve.inference_log.dir {blocker}/log" in lines[0]


def test_multiclass_answers_log_every_probability(plans, tmp_path):
    config = load_config(plans / "params.yaml")
    root = tmp_path / "log"
    frame = files.read_parquet(plans / config.data.processed_dir / "test.parquet").head(5)
    rows = json.loads(frame[config.features].to_json(orient="records"))
    app = serve.create_app(logging_config(config, root), plans / MODELS, poll_seconds=3600)
    with TestClient(app) as client:
        answer = client.post("/predict", json={"instances": rows}).json()["predictions"]
    frame = pq.read_table(parquet_files(root)[0]).to_pandas()
    assert frame["prediction"].tolist() == [p["label"] for p in answer]
    logged = [dict(pairs) for pairs in frame["probabilities"]]
    assert logged == [p["probabilities"] for p in answer]


def test_sigterm_flushes_and_sigkill_leaves_no_partial_file(promoted_dir, tmp_path):
    """A real server: SIGTERM writes every queued row; SIGKILL loses only the queue, and no
    half-written .parquet is ever visible."""
    root = tmp_path / "log"
    config = load_config(promoted_dir / "params.yaml")
    rows, _ = sample_rows(config, 50, promoted_dir)

    def start(port: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "mlops", "serve", "--port", str(port)],
            cwd=promoted_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MLOPS_INFERENCE_LOG": str(root), "OMP_NUM_THREADS": "1"},
        )

    port = free_port()
    server = start(port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, what="the server")
        for _ in range(4):
            assert httpx.post(f"{url}/predict", json={"instances": rows}).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert sum(pq.read_metadata(p).num_rows for p in parquet_files(root)) == 200

    port = free_port()
    server = start(port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, what="the server")
        with httpx.Client(base_url=url) as http:
            for _ in range(20):
                http.post("/predict", json={"instances": rows})
    finally:
        server.kill()
        server.wait(timeout=60)
    files = parquet_files(root)
    for path in files:  # every visible file is whole
        assert pq.read_metadata(path).num_rows > 0
    written = sum(pq.read_metadata(p).num_rows for p in files)
    assert 200 <= written <= 200 + 20 * 50
    assert written % 50 == 0
    leftovers = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert all(p.name.startswith(".") for p in leftovers)  # a temporary name at most


def test_a_schema_column_named_like_an_answer_is_refused(promoted_dir):
    config = load_config(promoted_dir / "params.yaml")
    renamed = config.model_copy(
        update={"schema_": config.schema.model_copy(update={"target": "prediction"})}
    )
    with pytest.raises(InputError, match="prediction"):
        InferenceLog(renamed)


def test_the_log_writes_nothing_when_nothing_was_scored(promoted_dir, tmp_path):
    config = load_config(promoted_dir / "params.yaml")
    root = tmp_path / "log"
    with TestClient(serve.create_app(logging_config(config, root), promoted_dir / MODELS)):
        pass
    assert not parquet_files(root)
    assert root.is_dir()


def served_log(served: Path, destination: str | Path, rows: int, per_request: int = 50) -> list:
    """Score the first `rows` rows of served's test split through the API with the inference log
    at destination, per_request rows a request (request ids r0, r1, ...); return the split's
    labels of those rows with their request ids and rows: [(request_id, row, label)]."""
    config = load_config(served / "params.yaml")
    frame = files.read_parquet(served / config.data.processed_dir / "test.parquet").head(rows)
    instances, _ = sample_rows(config, rows, served)
    app = serve.create_app(logging_config(config, destination), served / MODELS, poll_seconds=3600)
    truth = []
    with TestClient(app) as client:
        for start in range(0, rows, per_request):
            request_id = f"r{start // per_request}"
            part = instances[start : start + per_request]
            reply = client.post(
                "/predict", json={"instances": part}, headers={"x-request-id": request_id}
            )
            assert reply.status_code == 200
            labels = frame[config.schema.target].iloc[start : start + per_request].tolist()
            truth += [(request_id, row, label) for row, label in enumerate(labels)]
    return truth
