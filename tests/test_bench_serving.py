"""The serving benchmark: a real server, a bounded load, and the report's shape (no timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.bench import serving
from mlops.config import Config, load_config

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def promoted(promoted_dir: Path) -> Path:
    """The session's promoted project (read-only)."""
    return promoted_dir


@pytest.fixture
def served(promoted: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.chdir(promoted)
    return load_config()


def test_drive_measures_every_phase_against_a_real_server(served, tmp_path):
    params = Path("params.yaml").resolve()
    port, naive_port = serving.free_port(), serving.free_port()
    naive_log = tmp_path / "naive.log"
    with (
        serving.running_server(Path.cwd(), params, port, tmp_path / "server.log") as (ready, pid),
        serving.running_server(Path.cwd(), params, naive_port, naive_log, naive=True) as naive,
    ):
        assert ready == {"status": "ready", "model_version": "v1"}
        assert naive[0] == ready
        plan = {"port": port, "seconds": 0.5, "rounds": 2, "server_pid": pid}
        plan["bodies"] = serving.sample_bodies(served, count=8)
        plan["v2_bodies"] = serving.v2_bodies(served, count=8)
        plan["model_name"] = served.serve.model_name
        plan["naive_port"], plan["naive_pid"] = naive_port, naive[1]
        result = serving.drive(plan)
    assert set(result) == {
        "sequential",
        "concurrent_predict",
        "concurrent_baseline",
        "concurrent_v2",
        "concurrent_naive",
    }
    for phase in result.values():
        assert phase["requests"] > 0
        assert phase["errors"] == 0
        assert phase["p50_ms"] <= phase["p99_ms"]
        assert phase["server_cpu_ms_per_request"] >= 0
    log_lines = (tmp_path / "server.log").read_text().splitlines()
    assert any('"event": "access"' in line for line in log_lines)


def test_measure_reports_latency_throughput_and_ratio(served):
    report = serving.measure(served, seconds=0.5, rounds=1, memory_requests=(200, 600))
    assert report["model_version"] == "v1"
    assert report["errors"] == 0
    assert report["concurrency"] == serving.CONCURRENCY
    assert report["baseline_endpoint"] == "/health"
    for key in ("sequential_p50_ms", "sequential_p99_ms", "concurrent_rps", "baseline_rps"):
        assert report[key] > 0
    assert report["ratio"] == pytest.approx(
        report["concurrent_rps"] / report["baseline_rps"], abs=1e-3
    )
    v2_ratio = report["v2_rps"] / report["concurrent_rps"]
    assert report["v2_ratio"] == pytest.approx(v2_ratio, abs=1e-3)
    assert report["naive_ratio"] == pytest.approx(
        report["concurrent_rps"] / report["naive_rps"], abs=1e-3
    )
    assert report["v2_endpoint"] == "/v2/models/mlops/infer"
    cpu = report["server_cpu_ms_per_request"]
    expected = cpu["concurrent_predict"] / cpu["concurrent_v2"]
    assert report["v2_cpu_ratio"] == pytest.approx(expected, abs=1e-3)
    expected = cpu["concurrent_naive"] / cpu["concurrent_predict"]
    assert report["naive_cpu_ratio"] == pytest.approx(expected, abs=1e-3)
    assert isinstance(report["meets_goal"], bool)
    assert report["rows_per_model_call"] >= 1
    phases = report["phases"]
    requests = sum(phase["requests"] for phase in phases.values())
    assert report["access_log_lines"] >= requests
    # The inference log, off vs on side by side: both served, the on side's rows all written.
    logged = report["inference_log"]
    assert report["inference_log_ratio"] == logged["ratio"]
    assert logged["ratio"] == pytest.approx(
        logged["log_on"]["rps"] / logged["log_off"]["rps"], abs=1e-3
    )
    assert logged["log_on"]["errors"] == logged["log_off"]["errors"] == 0
    assert logged["rows_logged_during_load"] >= logged["log_on"]["requests"]
    assert logged["writer_rows_per_second"] > 0
    assert logged["cpu_ratio"] > 0
    memory = logged["memory"]
    assert memory["rows_logged"] == 600  # every request's row, flushed at SIGTERM
    assert set(memory["rss_mib_after"]) == {"200", "600"}
    assert memory["rss_growth_mib"] is not None
    assert logged["bytes_per_million_rows"] > 0
    assert isinstance(logged["meets_goal"], bool)
    # The same version served from model.onnx and from the model file, side by side.
    for runtime in ("onnx", "sklearn"):
        side = report[runtime]
        assert side["errors"] == 0
        assert side["sequential_p99_ms"] > 0
        assert side["load_ms"] > 0
        assert side["ratio"] == pytest.approx(
            side["concurrent_rps"] / side["baseline_rps"], abs=1e-3
        )
    assert report["onnx"]["goal"] == serving.ONNX_GOAL
    assert isinstance(report["onnx"]["meets_goal"], bool)
    # Tokens off vs on, side by side: every request answered (the token accepted), both timed.
    tokens = report["auth_ratio"]
    assert tokens["tokens_on"]["errors"] == tokens["tokens_off"]["errors"] == 0
    assert tokens["tokens_on"]["requests"] > 0
    assert tokens["p50_ratio"] == pytest.approx(
        tokens["tokens_on"]["p50_ms"] / tokens["tokens_off"]["p50_ms"], abs=1e-3
    )
    assert isinstance(tokens["meets_goal"], bool)
    loading = report["load_seconds"]
    assert loading["skops"] > 0
    assert loading["joblib"] > 0
    assert loading["bytes"]["skops"] > 0
    json.dumps(report)


def test_sample_bodies_are_valid_requests(served):
    from fastapi.testclient import TestClient

    from mlops import serve

    with TestClient(serve.create_app(served, poll_seconds=3600)) as client:
        for body in serving.sample_bodies(served, count=20):
            answer = client.post("/predict", content=body, headers=JSON)
            assert answer.status_code == 200, answer.text


def test_v2_bodies_answer_as_the_predict_bodies(served):
    from fastapi.testclient import TestClient

    from mlops import serve

    with TestClient(serve.create_app(served, poll_seconds=3600)) as client:
        pairs = zip(serving.sample_bodies(served, 10), serving.v2_bodies(served, 10), strict=True)
        for predict, v2 in pairs:
            expected = client.post("/predict", content=predict, headers=JSON).json()
            answer = client.post("/v2/models/mlops/infer", content=v2).json()
            outputs = {output["name"]: output["data"] for output in answer["outputs"]}
            assert outputs["label"] == [p["label"] for p in expected["predictions"]]
            assert outputs["probability"] == [p["probability"] for p in expected["predictions"]]


def test_naive_app_predicts_the_same_labels(served):
    from fastapi.testclient import TestClient

    from mlops import serve

    bodies = [json.loads(body) for body in serving.sample_bodies(served, 10)]
    with (
        TestClient(serving.naive_app(served)) as naive,
        TestClient(serve.create_app(served, poll_seconds=3600)) as fast,
    ):
        assert naive.get("/ready").json()["model_version"] == "v1"
        for body in bodies:
            expected = fast.post("/predict", json=body).json()["predictions"]
            answer = naive.post("/predict", json=body).json()["predictions"]
            assert [p["label"] for p in answer] == [p["label"] for p in expected]


def test_summary_and_merge():
    first = serving.summary([0.001, 0.002, 0.003], errors=1, seconds=1.0)
    assert first["requests"] == 3
    assert first["rps"] == 3.0
    assert first["p50_ms"] == pytest.approx(2.0)
    merged = serving.merge([first, serving.summary([0.004], errors=0, seconds=1.0)])
    assert merged["requests"] == 4
    assert merged["errors"] == 1
    assert merged["rps"] == 2.0
    assert serving.summary([], errors=0, seconds=0.0)["rps"] == 0.0
    assert serving.cpu_seconds(None) is None


def test_server_that_never_gets_ready_is_reported(project, config, tmp_path):
    port = serving.free_port()
    params = Path("params.yaml").resolve()
    server = serving.running_server(Path.cwd(), params, port, tmp_path / "log", timeout=2)
    with pytest.raises(TimeoutError, match="not ready after 2s"), server:
        pass
