"""GET /metrics: Prometheus text with low-cardinality labels, and a real Prometheus scraping it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from helpers import edit_params
from mlops import serve
from mlops.config import load_config
from mlops.errors import InputError
from test_serve import MODELS, free_port, sample_rows, wait_for


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_rows_and_the_model(promoted_dir):
    config = load_config(promoted_dir / "params.yaml")
    rows, _ = sample_rows(config, 12, promoted_dir)
    with TestClient(serve.create_app(config, promoted_dir / MODELS, poll_seconds=3600)) as client:
        answer = client.post("/predict", json={"instances": rows}).json()
        client.post("/predict", json={"instances": [{"AGEP": "old"}]})
        client.get("/no/such/path/123")
        client.get("/ready")
        reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    found = samples(reply.text)
    ok = (("method", "POST"), ("route", "/predict"), ("status", "200"))
    bad = (("method", "POST"), ("route", "/predict"), ("status", "422"))
    assert found["mlops_http_requests_total", ok] == 1
    assert found["mlops_http_requests_total", bad] == 1
    assert found["mlops_http_request_duration_seconds_count", ok] == 1
    other = (("method", "GET"), ("route", "other"), ("status", "404"))
    assert found["mlops_http_requests_total", other] == 1  # never the raw path
    assert not any("/no/such" in str(key) for key in found)
    predicted = [p["label"] for p in answer["predictions"]]
    for label in set(predicted):
        key = ("mlops_rows_scored_total", (("label", str(label)),))
        assert found[key] == predicted.count(label)
    assert found["mlops_model_info", (("version", "v1"),)] == 1
    assert found["mlops_model_reloads_total", ()] == 0
    assert ("mlops_inference_log_rows_written_total", ()) not in found  # the log is off


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the `prometheus` binary is not installed (apt-get install prometheus; .ci/run tries)",
)
def test_a_real_prometheus_scrapes_the_server(promoted_dir, tmp_path):
    """A `python -m mlops serve` process, and Debian's Prometheus scraping it every second: the
    request counter read back through Prometheus's HTTP query API."""
    config = load_config(promoted_dir / "params.yaml")
    rows, _ = sample_rows(config, 5, promoted_dir)
    port, prometheus_port = free_port(), free_port()
    scrape = tmp_path / "prometheus.yml"
    scrape.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: mlops\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "mlops", "serve", "--port", str(port)],
        cwd=promoted_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={scrape}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, what="the server")
        for _ in range(3):
            assert httpx.post(f"{url}/predict", json={"instances": rows}).status_code == 200
        api = f"http://127.0.0.1:{prometheus_port}/api/v1/query"
        query = 'sum(mlops_http_requests_total{route="/predict",status="200"})'

        def scraped() -> float | None:
            body = httpx.get(api, params={"query": query}).json()
            result = body["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        assert wait_for(lambda: scraped() == 3, timeout=60, what="Prometheus to scrape 3")
        rows_query = "sum(mlops_rows_scored_total)"
        body = httpx.get(api, params={"query": rows_query}).json()
        assert float(body["data"]["result"][0]["value"][1]) == 15
        up = httpx.get(api, params={"query": 'up{job="mlops"}'}).json()["data"]["result"]
        assert up[0]["value"][1] == "1"
    finally:
        for process in (prometheus, server):
            process.terminate()
        for process in (prometheus, server):
            process.wait(timeout=60)


def test_metrics_route_is_documented(promoted_dir):
    config = load_config(promoted_dir / "params.yaml")
    spec = serve.create_app(config, promoted_dir / MODELS).openapi()
    assert "/metrics" in spec["paths"]
    assert Path(promoted_dir / MODELS).is_dir()


def test_a_reload_is_counted_and_the_info_follows_the_version(project, config):
    from mlops import promote
    from test_serve import add_small_version

    promote.run(config)
    with TestClient(serve.create_app(config, MODELS, poll_seconds=0.05)) as client:
        assert samples(client.get("/metrics").text)["mlops_model_info", (("version", "v1"),)] == 1
        add_small_version(config)
        wait_for(lambda: client.get("/ready").json().get("model_version") == "v2", what="v2")
        found = samples(client.get("/metrics").text)
    assert found["mlops_model_reloads_total", ()] == 1
    assert found["mlops_model_info", (("version", "v2"),)] == 1


def test_bad_inference_log_params_name_the_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    edit_params(params, lambda p: p["serve"]["inference_log"].update(flush_rows=0))
    with pytest.raises(InputError, match=r"serve\.inference_log\.flush_rows"):
        load_config(params)
    edit_params(params, lambda p: p["serve"]["inference_log"].update(flush_rows=5, bucket="x"))
    with pytest.raises(InputError, match=r"serve\.inference_log\.bucket: unknown key"):
        load_config(params)
