"""The model server: endpoints, strict request validation, verified loading, reloads and logs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

from mlops import files, onnx_runtime, promote, registry, serve, train
from mlops.config import Config, load_config
from mlops.encoding import feature_matrix
from mlops.errors import InputError
from mlops.predictions import predict
from mlops.serve.schema import PredictResponse

MODELS = Path("models")


# ---------------------------------------------------------------- helpers and fixtures


@pytest.fixture
def served(project: Path, config: Config) -> Config:
    """A private project with its candidate promoted (production v1), as working directory."""
    promote.run(config)
    assert registry.production_version(MODELS) == "v1"
    return config


@pytest.fixture(scope="module")
def shared(promoted_dir: Path) -> Path:
    """The session's promoted project (read-only)."""
    return promoted_dir


@pytest.fixture(scope="module")
def client(shared: Path) -> Iterator[TestClient]:
    """A TestClient of the app serving the shared project's production model."""
    config = load_config(shared / "params.yaml")
    with TestClient(serve.create_app(config, shared / MODELS, poll_seconds=3600)) as test_client:
        test_client.root = shared
        test_client.config = config
        yield test_client


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """uvicorn applies its log config process-wide; put our loggers back afterwards."""
    names = ("mlops.serve", "mlops.serve.access", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.propagate, logger.level, logger.disabled)
    try:
        yield
    finally:
        for name, (handlers, propagate, level, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.level, logger.disabled = level, disabled


def sample_rows(
    config: Config, count: int | None, root: Path = Path()
) -> tuple[list[dict], pd.DataFrame]:
    """The first rows of the test split (all: None) as request instances, and as raw rows."""
    frame = files.read_parquet(root / config.data.processed_dir / "test.parquet").head(count)
    rows = [
        {name: row[name].item() for name in config.features}
        for _, row in frame[config.features].iterrows()
    ]
    return rows, frame


def shuffled(frame: pd.DataFrame) -> pd.DataFrame:
    """The raw rows with their columns in another order (extra columns kept)."""
    return frame.sample(frac=1.0, axis=1, random_state=1)


def expected(frame: pd.DataFrame, models_dir: Path = MODELS) -> tuple[list, list]:
    """Labels and positive-class probabilities of production's model file on the raw rows (its
    model.onnx on the coded rows when it has one: what the server answers with)."""
    model, metadata = registry.load_production(models_dir)
    found = onnx_runtime.version_files(Path(models_dir), metadata["version"], "auto", "-")
    if found is not None:
        onnx = onnx_runtime.OnnxModel(
            found[0].read_bytes(), metadata["features"], metadata["classes"], found[0], 1
        )
        x = feature_matrix(frame, metadata["features"], metadata["categories"])
        labels, proba = predict(onnx, x, metadata.get("positive"))
        return labels.tolist(), proba[:, 1].tolist()
    rows = shuffled(frame)
    return model.predict(rows).tolist(), model.predict_proba(rows)[:, 1].tolist()


def add_small_version(config: Config, max_iter: int = 5) -> str:
    """A second real model (fewer trees: other predictions) promoted as the next version."""
    frame = files.read_parquet(config.data.processed_dir / "train.parquet")
    small = config.train.model_copy(
        update={"hyperparameters": {"hist_gradient_boosting": {"max_iter": max_iter}}}
    )
    pipeline = train.build_pipeline(config.model_copy(update={"train": small}))
    pipeline.fit(frame[config.features], frame[config.schema.target].to_numpy())
    return install(config, lambda path: joblib.dump(pipeline, path))


def legacy_model(config: Config, max_iter: int = 5) -> Pipeline:
    """A model as versions before raw rows were: Pipeline(passthrough → estimator) on the
    legacy codes (numeric categories as their own value), no feature_names_in_."""
    frame = files.read_parquet(config.data.processed_dir / "train.parquet")
    x = feature_matrix(frame, config.features, config.categorical, legacy=True)
    model = HistGradientBoostingClassifier(max_iter=max_iter, random_state=config.seed)
    pipeline = Pipeline([("preprocess", "passthrough"), ("model", model)])
    return pipeline.fit(x, frame[config.schema.target].to_numpy())


def install(config: Config, write, raw: bool = True) -> str:
    """Register the file write(path) produces as the next production version (forced); raw:
    its metadata says it takes raw rows (else it is a matrix model, as older versions were)."""
    path = Path("scratch-model.joblib")
    write(path)
    metadata = {
        **files.read_json(train.CANDIDATE_DIR / train.METADATA_FILE),
        "model_sha256": files.sha256_file(path),
        "model_file": "model.joblib",  # a pickle: loaded as a legacy version, behind its sha256
        "metrics": {"accuracy": 0.5},
    }
    if not raw:
        metadata.pop("input")
    return registry.add_version(
        MODELS,
        path,
        metadata,
        expected_production=registry.production_version(MODELS),
        kind="forced",
        why="test",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, timeout: float = 60.0, what: str = "condition"):
    """Poll check() until it returns something truthy (bounded); return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            result = check()
            if result:
                return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------- endpoints


def test_health_ready_and_metadata(client):
    config, root = client.config, client.root
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_version": "v1"}

    answer = client.get("/metadata")
    assert answer.status_code == 200
    meta = answer.json()
    entry = registry.read_registry(root / MODELS)["versions"]["v1"]
    candidate = files.read_json(root / train.CANDIDATE_DIR / train.METADATA_FILE)
    assert meta["model_version"] == "v1"
    assert meta["model_sha256"] == entry["sha256"]
    assert meta["data_sha256"] == candidate["data_sha256"]
    assert meta["metrics"]["accuracy"] == pytest.approx(entry["metrics"]["accuracy"])
    assert meta["max_batch"] == config.serve.max_batch
    assert [item["name"] for item in meta["features"]] == config.features
    by_name = {item["name"]: item for item in meta["features"]}
    assert by_name["MAR"] == {
        "name": "MAR",
        "type": "categorical",
        "allowed": [1, 2, 3, 4, 5],
        "nullable": False,
    }
    assert by_name["AGEP"] == {
        "name": "AGEP",
        "type": "numeric",
        "min": 16.0,
        "max": 90.0,
        "nullable": False,
    }
    assert meta["labels"] == {"negative": 0, "positive": 1}
    assert answer.headers["x-model-version"] == "v1"


def test_predict_equals_in_process_predictions(client):
    rows, x = sample_rows(client.config, 40, client.root)
    labels, probabilities = expected(x, client.root / MODELS)
    answer = client.post("/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    PredictResponse.model_validate_json(answer.content)  # the declared response model, exactly
    assert body["model_version"] == "v1"
    assert answer.headers["x-model-version"] == "v1"
    assert [p["label"] for p in body["predictions"]] == labels
    assert [p["probability"] for p in body["predictions"]] == probabilities
    single = client.post("/predict", json={"instances": rows[:1]}).json()
    assert single["predictions"] == [{"label": labels[0], "probability": probabilities[0]}]


def answers(client: TestClient, rows: list[dict], batch: int) -> list[dict]:
    """/predict's predictions for rows, sent batch rows per request."""
    found = []
    for start in range(0, len(rows), batch):
        answer = client.post("/predict", json={"instances": rows[start : start + batch]})
        assert answer.status_code == 200, answer.text
        found += answer.json()["predictions"]
    return found


def test_every_test_row_equals_the_model_file_on_raw_rows(client):
    """Parity, proven: the API (coded rows, the fast path) on every row of the test split gives
    the labels of pipeline.predict_proba on the raw rows in shuffled column order, and its
    probabilities within 1e-9."""
    rows, frame = sample_rows(client.config, None, client.root)
    labels, probabilities = expected(frame, client.root / MODELS)
    found = answers(client, rows, client.config.serve.max_batch)
    assert len(found) == len(frame) == 7_500
    assert [p["label"] for p in found] == labels
    np.testing.assert_allclose([p["probability"] for p in found], probabilities, rtol=0, atol=1e-9)


def test_a_legacy_version_still_serves_and_scores_identically(served):
    """A version trained before raw rows (a matrix model on the legacy codes, no "input" in its
    metadata) is served and scored with the legacy coding: the answers it always gave."""
    from mlops import score

    model = legacy_model(served)
    version = install(served, lambda path: joblib.dump(model, path), raw=False)
    rows, frame = sample_rows(served, 300)
    x = feature_matrix(frame, served.features, served.categorical, legacy=True)
    assert not hasattr(model, "feature_names_in_")
    want = model.predict_proba(x)[:, 1]
    with TestClient(serve.create_app(served, poll_seconds=3600)) as test_client:
        assert test_client.get("/ready").json()["model_version"] == version
        found = answers(test_client, rows, 100)
    assert [p["probability"] for p in found] == want.tolist()
    assert [p["label"] for p in found] == model.predict(x).tolist()
    loaded, metadata = registry.load_production(MODELS)
    scored = score.predictions_frame(loaded, metadata, frame, served)
    assert scored["probability"].tolist() == want.tolist()


def test_a_full_batch_is_accepted(served):
    config = served.model_copy(update={"serve": served.serve.model_copy(update={"max_batch": 3})})
    rows, x = sample_rows(config, 3)
    with TestClient(serve.create_app(config, poll_seconds=3600)) as small:
        answer = small.post("/predict", json={"instances": rows})
        too_many = small.post("/predict", json={"instances": [*rows, rows[0]]})
    assert answer.status_code == 200
    assert [p["probability"] for p in answer.json()["predictions"]] == expected(x)[1]
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["field"] == "instances"
    assert too_many.json()["detail"][0]["type"] == "too_long"


def test_concurrent_requests_share_model_calls_with_the_same_answers(client):
    rows, x = sample_rows(client.config, 16, client.root)
    labels, probabilities = expected(x, client.root / MODELS)
    app = serve.create_app(client.config, client.root / MODELS, poll_seconds=3600)

    async def scenario() -> list[dict]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                answers = await asyncio.gather(
                    *(http.post("/predict", json={"instances": [row]}) for row in rows)
                )
        return [answer.json()["predictions"][0] for answer in answers]

    predictions = asyncio.run(scenario())
    assert [p["label"] for p in predictions] == labels
    assert [p["probability"] for p in predictions] == probabilities
    assert app.state.batcher.rows == 16  # every row scored once...
    assert app.state.batcher.calls < 16  # ...in fewer model calls than requests


def test_without_production_model_not_ready(project, config):
    rows, _ = sample_rows(config, 1)
    with TestClient(serve.create_app(config, poll_seconds=3600)) as bare:
        assert bare.get("/health").status_code == 200
        ready = bare.get("/ready")
        assert ready.status_code == 503
        assert "no production model" in ready.json()["reason"]
        assert bare.get("/metadata").status_code == 503
        assert bare.post("/predict", json={"instances": rows}).status_code == 503
        # a bad request is still a 422 without a model
        assert bare.post("/predict", json={"instances": []}).status_code == 422


def test_a_model_whose_sha256_does_not_match_is_not_served(served, caplog):
    rows, _ = sample_rows(served, 1)
    model_file = MODELS / "v1" / "model.skops"
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    app = serve.create_app(served, poll_seconds=3600)
    with caplog.at_level(logging.ERROR, "mlops.serve"), TestClient(app) as tampered:
        ready = tampered.get("/ready")
        predicted = tampered.post("/predict", json={"instances": rows})
    assert ready.status_code == 503
    assert "sha256" in ready.json()["reason"]
    assert "models/" not in ready.text  # no paths
    assert ready.json()["detail"][0]["type"] == "not_ready"
    assert predicted.status_code == 503
    assert any("sha256" in record.getMessage() for record in caplog.records)


def test_a_model_for_other_features_is_refused(served):
    metadata_file = MODELS / "v1" / "metadata.json"
    metadata = files.read_json(metadata_file)
    files.write_json(metadata_file, {**metadata, "features": list(reversed(served.features))})
    with TestClient(serve.create_app(served, poll_seconds=3600)) as other:
        ready = other.get("/ready")
    assert ready.status_code == 503
    assert "trained on features" in ready.json()["reason"]


def test_a_matrix_model_that_claims_raw_rows_is_refused(served):
    """Metadata saying "input": "raw_frame" on a file without feature_names_in_: not served."""
    install(served, lambda path: joblib.dump(legacy_model(served), path))
    with TestClient(serve.create_app(served, poll_seconds=3600)) as other:
        ready = other.get("/ready")
    assert ready.status_code == 503
    assert "takes raw rows, but by columns none" in ready.json()["reason"]


def test_docs_list_the_real_fields(client):
    served = client.config
    spec = client.get("/openapi.json").json()
    instance = spec["components"]["schemas"]["Instance"]
    assert list(instance["properties"]) == served.features
    assert sorted(instance["required"]) == sorted(served.features)
    assert instance["additionalProperties"] is False
    assert instance["properties"]["SEX"]["enum"] == [1, 2]
    assert instance["properties"]["AGEP"]["minimum"] == 16
    assert instance["properties"]["AGEP"]["maximum"] == 90
    request = spec["components"]["schemas"]["PredictRequest"]
    assert request["properties"]["instances"]["maxItems"] == served.serve.max_batch
    example = request["examples"][0]
    assert client.post("/predict", json=example).status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


# ---------------------------------------------------------------- bad requests: 422, never 500


JSON = "application/json"
DROP = object()  # one_row(config, AGEP=DROP): the row without AGEP


def one_row(config: Config, **changes) -> dict:
    row = serve.example_instance(config)
    row.update(changes)
    return {key: value for key, value in row.items() if value is not DROP}


@pytest.mark.parametrize(
    ("change", "field", "kind", "reason"),
    [
        ({"EXTRA": 1}, "instances[0].EXTRA", "extra_forbidden", "not permitted"),
        ({"AGEP": DROP}, "instances[0].AGEP", "missing", "required"),
        ({"AGEP": "40"}, "instances[0].AGEP", "float_type", "valid number"),
        ({"AGEP": True}, "instances[0].AGEP", "float_type", "valid number"),
        ({"AGEP": None}, "instances[0].AGEP", "float_type", "valid number"),
        ({"AGEP": [40]}, "instances[0].AGEP", "float_type", "valid number"),
        ({"SCHL": "21"}, "instances[0].SCHL", "int_type", "valid integer"),
        ({"SCHL": 21.0}, "instances[0].SCHL", "int_type", "valid integer"),
        ({"SCHL": 21.5}, "instances[0].SCHL", "int_type", "valid integer"),
        ({"SEX": True}, "instances[0].SEX", "int_type", "valid integer"),
        ({"MAR": 7}, "instances[0].MAR", "category_code", "allowed values: 1, 2, 3, 4, 5"),
        ({"SEX": -1}, "instances[0].SEX", "category_code", "allowed values: 1, 2"),
        ({"AGEP": 15}, "instances[0].AGEP", "greater_than_equal", "greater than or equal to 16"),
        ({"AGEP": 90.5}, "instances[0].AGEP", "less_than_equal", "less than or equal to 90"),
    ],
)
def test_bad_instance_is_422_naming_field_and_reason(client, change, field, kind, reason):
    answer = client.post("/predict", json={"instances": [one_row(client.config, **change)]})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail == [{"field": field, "reason": detail[0]["reason"], "type": kind}]
    assert reason in detail[0]["reason"]


def raw(config: Config, instance: str) -> str:
    """A request body with one instance whose AGEP is the literal text given."""
    row = json.dumps(one_row(config, AGEP=DROP))
    return '{"instances": [' + row[:-1] + f', "AGEP": {instance}' + "}]}"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_422(client, literal):
    answer = client.post(
        "/predict",
        content=raw(client.config, literal),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    reason = "Input should be a finite number"
    assert answer.json()["detail"] == [
        {"field": "instances[0].AGEP", "reason": reason, "type": "finite_number"}
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "field", "reason"),
    [
        ('{"instances": [', "application/json", "body", "malformed JSON"),
        ("not json at all", "application/json", "body", "malformed JSON"),
        ("", "application/json", "body", "empty body"),
        ("[]", "application/json", "body", "not a JSON object"),
        ('"instances"', "application/json", "body", "not a JSON object"),
        ("{}", "application/json", "instances", "required"),
        ('{"instances": []}', "application/json", "instances", "at least 1 item"),
        ('{"instances": {}}', "application/json", "instances", "valid array"),
        ('{"instances": [1]}', "application/json", "instances[0]", "an object"),
        ('{"instances": "all"}', "application/json", "instances", "valid array"),
        ('{"instances": [], "extra": 1}', "application/json", "extra", "not permitted"),
        ('{"instances": []}', "text/plain", "body", "Content-Type: application/json"),
        ('{"instances": []}', None, "body", "Content-Type: application/json"),
        ('{"instances": []}', "application/problem+json", "body", "Content-Type: application/json"),
        ('{"instances": []}', "application/jsonp", "body", "Content-Type: application/json"),
        ('{"instances": []}', "application/json; charset=utf-8", "instances", "at least 1 item"),
        ('{"instances": [{"AGEP": 1' + "0" * 400 + "}]}", JSON, "instances[0].AGEP", "finite"),
    ],
)
def test_bad_body_is_422_naming_field_and_reason(client, body, content_type, field, reason):
    headers = {"content-type": content_type} if content_type else {}
    answer = client.post("/predict", content=body.encode(), headers=headers)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert any(item["field"] == field and reason in item["reason"] for item in detail), detail


def test_oversized_batch_is_422(client):
    rows = [one_row(client.config)] * (client.config.serve.max_batch + 1)
    answer = client.post("/predict", json={"instances": rows})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "instances"
    assert "at most 1000 items" in answer.json()["detail"][0]["reason"]


def test_many_errors_are_capped(client):
    rows = [one_row(client.config, MAR=99)] * 80
    detail = client.post("/predict", json={"instances": rows}).json()["detail"]
    assert len(detail) == serve.MAX_ERRORS + 1
    assert detail[-1] == {"field": "", "reason": "30 more error(s) not shown", "type": "more"}


def test_a_huge_body_is_refused_before_parsing(client):
    answer = client.post(
        "/predict",
        content=b'{"instances": [' + b" " * 3_000_000 + b"]}",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 413


def test_unknown_route_and_method(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/nope").status_code == 404


# ---------------------------------------------------------------- reloads


def test_reload_swaps_to_new_production_and_refuses_a_bad_one(served, caplog):
    rows, x = sample_rows(served, 20)
    app = serve.create_app(served, poll_seconds=3600)
    slot = app.state.slot
    with TestClient(app) as test_client:
        first = test_client.post("/predict", json={"instances": rows}).json()
        assert first["model_version"] == "v1"
        assert slot.refresh() is False  # nothing changed

        version = add_small_version(served)
        assert version == "v2"
        assert slot.refresh() is True
        second = test_client.post("/predict", json={"instances": rows}).json()
        assert second["model_version"] == "v2"
        assert [p["probability"] for p in second["predictions"]] == expected(x)[1]
        assert second["predictions"] != first["predictions"]

        # A registered, sha256-consistent file that is not a model: refused, v2 keeps serving.
        with caplog.at_level(logging.ERROR, "mlops.serve"):
            install(served, lambda path: path.write_bytes(b"not a pickle"))
            assert slot.refresh() is False
        assert "production model refused" in caplog.text
        assert test_client.get("/ready").json()["model_version"] == "v2"
        still = test_client.post("/predict", json={"instances": rows}).json()
        assert still == second

        # Rolling back to v1 is picked up too.
        registry.rollback(MODELS, version="v1")
        assert slot.refresh() is True
        assert test_client.post("/predict", json={"instances": rows}).json() == first


class NaNModel:
    """Unpickles fine, but predicts NaN."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x):
        return np.full((len(x), 2), np.nan)


def test_a_model_that_fails_its_trial_prediction_is_refused(served):
    install(served, lambda path: joblib.dump(NaNModel(), path), raw=False)
    with TestClient(serve.create_app(served, poll_seconds=3600)) as test_client:
        ready = test_client.get("/ready")
    assert ready.status_code == 503
    assert "trial prediction" in ready.json()["reason"]


def test_watcher_picks_up_a_new_production_model(served):
    app = serve.create_app(served, poll_seconds=0.05)
    with TestClient(app) as test_client:
        assert test_client.get("/ready").json()["model_version"] == "v1"
        add_small_version(served)

        def on_v2():
            return test_client.get("/ready").json()["model_version"] == "v2"

        wait_for(on_v2, timeout=30, what="the watcher to load v2")
        app.state.wake.set()  # a forced reload (what SIGHUP does) keeps serving v2
        wait_for(on_v2, timeout=30, what="v2 after a forced reload")


# ---------------------------------------------------------------- logs


def test_access_log_is_json_with_request_id_and_no_body(client, caplog):
    row = one_row(client.config, AGEP=47.123)
    with caplog.at_level(logging.INFO, "mlops.serve.access"):
        answer = client.post("/predict", json={"instances": [row]}, headers={"x-request-id": "r-1"})
        generated = client.get("/health", headers={"x-request-id": "bad id with spaces"})
    assert answer.headers["x-request-id"] == "r-1"
    assert len(generated.headers["x-request-id"]) == 32
    records = [r for r in caplog.records if r.name == "mlops.serve.access"]
    assert len(records) == 2
    fields = records[0].fields
    assert fields["request_id"] == "r-1"
    assert fields["status"] == 200
    assert fields["path"] == "/predict"
    assert fields["model_version"] == "v1"
    assert fields["latency_ms"] > 0
    assert records[1].fields["request_id"] == generated.headers["x-request-id"]
    formatter = serve.JsonFormatter()
    for record in records:
        line = formatter.format(record)
        assert "47.123" not in line
        parsed = json.loads(line)
        assert parsed["event"] == "access"
        assert parsed["level"] == "info"


def test_json_formatter_includes_exceptions():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    parsed = json.loads(serve.JsonFormatter().format(record))
    assert parsed["message"] == "failed"
    assert "ValueError: boom" in parsed["exception"]


# ---------------------------------------------------------------- real servers


def test_make_server_serves_until_told_to_stop(served):
    port = free_port()
    with restored_logging():
        server = serve.make_server(served, "127.0.0.1", port)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, what="the server")
            rows, x = sample_rows(served, 5)
            answer = httpx.post(f"{url}/predict", json={"instances": rows}).json()
            assert [p["probability"] for p in answer["predictions"]] == expected(x)[1]
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.mark.parametrize("port", [0, 70_000])
def test_bad_port_is_input_error(client, port):
    with pytest.raises(InputError, match="--port"):
        serve.make_server(client.config, "127.0.0.1", port)


def test_real_uvicorn_process(served, tmp_path):
    """`python -m mlops serve` on 127.0.0.1: HTTP answers equal in-process predictions, a new
    production model is picked up while requests keep flowing, SIGTERM stops it cleanly."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rows, x = sample_rows(served, 25)
    labels, probabilities = expected(x)
    out = tmp_path / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(out, "wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlops", "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, what="/health")
        assert httpx.get(f"{url}/ready").json()["model_version"] == "v1"
        answer = httpx.post(f"{url}/predict", json={"instances": rows}).json()
        assert [p["label"] for p in answer["predictions"]] == labels
        assert [p["probability"] for p in answer["predictions"]] == probabilities
        single = [
            httpx.post(f"{url}/predict", json={"instances": [row]}).json()["predictions"][0]
            for row in rows[:5]
        ]
        assert [p["probability"] for p in single] == probabilities[:5]
        bad = httpx.post(f"{url}/predict", json={"instances": [{"AGEP": "old"}]})
        assert bad.status_code == 422

        # Requests keep flowing while production changes: none fails, the version switches.
        seen: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=url) as http:
                while not stop.is_set():
                    reply = http.post("/predict", json={"instances": rows[:2]})
                    seen.append((reply.status_code, reply.json().get("model_version")))

        worker = threading.Thread(target=hammer, daemon=True)
        worker.start()
        try:
            wait_for(lambda: len(seen) > 5, what="requests before the promotion")
            add_small_version(served)
            wait_for(lambda: seen and seen[-1][1] == "v2", timeout=30, what="v2 to be served")
        finally:
            stop.set()
            worker.join(timeout=30)
        assert {status for status, _ in seen} == {200}
        versions = [version for _, version in seen]
        switch = versions.index("v2")
        assert set(versions[:switch]) == {"v1"}
        assert set(versions[switch:]) == {"v2"}

        # SIGHUP reloads at once (here: after a rollback to v1).
        registry.rollback(MODELS, version="v1")
        server.send_signal(signal.SIGHUP)
        wait_for(
            lambda: httpx.get(f"{url}/ready").json()["model_version"] == "v1",
            timeout=30,
            what="v1 after SIGHUP",
        )
    finally:
        server.terminate()
        code = server.wait(timeout=30)
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a graceful shutdown
    lines = out.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    access = [entry for entry in entries if entry.get("event") == "access"]
    assert len(access) >= len(seen) + 7
    assert all({"request_id", "latency_ms", "status", "model_version"} <= set(a) for a in access)
    assert {a["model_version"] for a in access} >= {"v1", "v2"}
    assert '"instances"' not in out.read_text()  # request bodies are never logged
    assert any("scored" in entry["message"] for entry in entries)


# ---------------------------------------------------------------- defensive paths


class OtherLabels:
    """Predicts probabilities, but for labels the schema does not know."""

    classes_ = np.array([0, 7])

    def predict_proba(self, x):
        return np.full((len(x), 2), 0.5)


class Fails:
    classes_ = np.array([0, 1])

    def predict_proba(self, x):
        raise RuntimeError("model exploded")


def test_a_model_without_the_positive_label_is_refused(served):
    install(served, lambda path: joblib.dump(OtherLabels(), path), raw=False)
    with TestClient(serve.create_app(served, poll_seconds=3600)) as test_client:
        reason = test_client.get("/ready").json()["reason"]
    assert "no probability for label 1" in reason


def test_a_failing_model_is_a_logged_json_500(served, caplog):
    rows, _ = sample_rows(served, 2)
    app = serve.create_app(served, poll_seconds=3600)
    with TestClient(app) as test_client, caplog.at_level(logging.ERROR, "mlops.serve"):
        slot = app.state.slot
        slot.current = dataclasses.replace(slot.current, coded=Fails())
        answer = test_client.post("/predict", json={"instances": rows})
    assert answer.status_code == 500
    reason = "prediction failed; see the server log"
    assert answer.json() == {"detail": [{"field": "", "reason": reason, "type": "internal"}]}
    assert "model exploded" in caplog.text


def test_a_registry_without_production_keeps_the_served_model(served, caplog):
    app = serve.create_app(served, poll_seconds=3600)
    with TestClient(app) as test_client, caplog.at_level(logging.WARNING, "mlops.serve"):
        content = registry.read_registry(MODELS)
        registry.write_registry(MODELS, {**content, "production": None})
        assert app.state.slot.refresh() is False
        assert test_client.get("/ready").json()["model_version"] == "v1"
    assert "still serving v1" in caplog.text


def test_batcher_skips_requests_that_went_away(client):
    app = serve.create_app(client.config, client.root / MODELS, poll_seconds=3600)
    _, frame = sample_rows(client.config, 2, client.root)
    x = feature_matrix(frame, client.config.features, client.config.categorical)

    async def scenario():
        async with app.router.lifespan_context(app):
            batcher = app.state.batcher
            gone = asyncio.ensure_future(batcher.predict(x[:1]))
            kept = asyncio.ensure_future(batcher.predict(x[1:]))
            await asyncio.sleep(0)  # both enqueued
            gone.cancel()
            return await kept

    _, probabilities, _, version = asyncio.run(scenario())
    assert version == "v1"
    assert probabilities.tolist() == expected(frame.iloc[1:], client.root / MODELS)[1]


def test_error_items_without_position():
    items = serve.error_items([{"type": "json_invalid", "loc": (), "msg": "Invalid JSON: bad"}])
    assert items == [{"field": "body", "reason": "malformed JSON: bad", "type": "json_invalid"}]


def test_a_raw_rows_model_coding_other_categories_is_refused(served):
    """Its first step's encoder must hold the declared categories the fast path codes by."""
    frame = files.read_parquet(served.data.processed_dir / "train.parquet").head(2000)
    schema = served.schema.model_copy(
        update={
            "categorical": {
                **served.schema.categorical,
                "MAR": served.schema.categorical["MAR"].model_copy(update={"values": [1, 2, 3, 4]}),
            }
        }
    )
    other = served.model_copy(update={"schema_": schema})
    pipeline = train.build_pipeline(other).fit(frame[served.features], frame["employed"])
    install(served, lambda path: joblib.dump(pipeline, path))
    with TestClient(serve.create_app(served, poll_seconds=3600)) as test_client:
        ready = test_client.get("/ready")
    assert ready.status_code == 503
    assert "encodes other categories" in ready.json()["reason"]
