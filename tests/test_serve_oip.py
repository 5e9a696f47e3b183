"""The Open Inference Protocol (V2) routes: metadata, health, infer through Triton's own client
against a real uvicorn, the same answers as /predict, and every bad input as {"error": ...}."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
import yaml
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from mlops import files, serve
from mlops.bench import serving
from mlops.config import Config, load_config
from mlops.errors import InputError
from mlops.serve.oip import declared_datatype

MODELS = Path("models")
NAME = "mlops"  # params.yaml serve.model_name


@pytest.fixture
def served(project: Path, config: Config) -> Config:
    """A private project with its candidate promoted (production v1), as working directory."""
    from mlops import promote

    promote.run(config)
    return config


@pytest.fixture(scope="module")
def client(promoted_dir: Path) -> Iterator[TestClient]:
    """A TestClient of the app serving the session's promoted project (production v1)."""
    config = load_config(promoted_dir / "params.yaml")
    app = serve.create_app(config, promoted_dir / MODELS, poll_seconds=3600)
    with TestClient(app) as test_client:
        test_client.root, test_client.config = promoted_dir, config
        yield test_client


@pytest.fixture(scope="module")
def plans_client(plans: Path) -> Iterator[TestClient]:
    """The same for the three-class table with string, boolean and missing values."""
    config = load_config(plans / "params.yaml")
    with TestClient(serve.create_app(config, plans / MODELS, poll_seconds=3600)) as test_client:
        test_client.root, test_client.config = plans, config
        yield test_client


def split_rows(config: Config, root: Path) -> pd.DataFrame:
    """The project's test split, features only."""
    return files.read_parquet(root / config.data.processed_dir / "test.parquet")[config.features]


def plain(value):
    """A frame's cell as JSON takes it: NaN and None as None, numpy scalars as Python ones."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def instances(frame: pd.DataFrame) -> list[dict]:
    """/predict rows (missing values as null)."""
    names = list(frame.columns)
    return [dict(zip(names, map(plain, row), strict=True)) for row in frame.itertuples(False)]


def tensors(config: Config, rows: list[dict]) -> list[dict]:
    """The same rows as OIP input tensors (JSON), one per feature, datatype from the schema."""
    metadata = {
        name: declared_datatype(config.categorical.get(name))[0] for name in config.features
    }
    return [
        {
            "name": name,
            "shape": [len(rows)],
            "datatype": metadata[name],
            "data": [row[name] for row in rows],
        }
        for name in config.features
    ]


def infer(http, config: Config, rows: list[dict], **extra) -> httpx.Response:
    body = {"inputs": tensors(config, rows), **extra}
    return http.post(f"/v2/models/{NAME}/infer", json=body)


def predictions(http, rows: list[dict]) -> list[dict]:
    answer = http.post("/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def outputs(answer: httpx.Response) -> dict[str, dict]:
    assert answer.status_code == 200, answer.text
    return {output["name"]: output for output in answer.json()["outputs"]}


# ---------------------------------------------------------------- metadata and health


def test_server_and_model_metadata(client):
    config = client.config
    assert client.get("/v2").json() == {"name": "mlops", "version": "0.1.0", "extensions": []}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    for path in (f"/v2/models/{NAME}/ready", f"/v2/models/{NAME}/versions/v1/ready"):
        assert client.get(path).json() == {"name": NAME, "ready": True}
    meta = client.get(f"/v2/models/{NAME}").json()
    assert client.get(f"/v2/models/{NAME}/versions/v1").json() == meta
    assert meta["name"] == NAME
    assert meta["versions"] == ["v1"]
    assert meta["platform"] == "scikit-learn"
    assert [tensor["name"] for tensor in meta["inputs"]] == config.features
    by_name = {tensor["name"]: tensor for tensor in meta["inputs"]}
    assert by_name["MAR"] == {
        "name": "MAR",
        "datatype": "INT64",
        "shape": [-1],
        "parameters": {"allowed": [1, 2, 3, 4, 5], "nullable": False},
    }
    assert by_name["AGEP"]["datatype"] == "FP64"
    assert by_name["AGEP"]["parameters"] == {"min": 16.0, "max": 90.0, "nullable": False}
    assert meta["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probability", "datatype": "FP64", "shape": [-1]},
    ]


def test_multiclass_metadata_names_bytes_bool_and_class_order(plans_client):
    meta = plans_client.get(f"/v2/models/{NAME}").json()
    by_name = {tensor["name"]: tensor for tensor in meta["inputs"]}
    assert by_name["sector"]["datatype"] == "BYTES"
    assert by_name["sector"]["parameters"]["nullable"] is True
    assert by_name["remote"]["datatype"] == "BOOL"
    assert by_name["age"]["datatype"] == "FP64"
    assert meta["outputs"][0] == {"name": "label", "datatype": "BYTES", "shape": [-1]}
    assert meta["outputs"][2] == {
        "name": "probabilities",
        "datatype": "FP64",
        "shape": [-1, 3],
        "parameters": {"classes": ["basic", "plus", "pro"]},
    }


def test_not_ready_without_a_production_model(project, config, caplog):
    rows = instances(split_rows(config, project).head(2))
    with TestClient(serve.create_app(config, poll_seconds=3600)) as bare:
        assert bare.get("/v2/health/live").status_code == 200
        for path in ("/v2/health/ready", f"/v2/models/{NAME}/ready", f"/v2/models/{NAME}"):
            answer = bare.get(path)
            assert answer.status_code == 503
            assert "no production model" in answer.json()["error"]
        assert infer(bare, config, rows).status_code == 503
        # a bad request is still a 400, an unknown model a 404
        assert infer(bare, config, rows[:0]).status_code == 400
        assert bare.get("/v2/models/other/ready").status_code == 404


# ---------------------------------------------------------------- answers equal /predict


def test_tritonclient_against_a_real_server_equals_predict(promoted_dir, tmp_path):
    """Triton's own HTTP client, every row of the test split, a real uvicorn on loopback."""
    config = load_config(promoted_dir / "params.yaml")
    frame = split_rows(config, promoted_dir)
    port = serving.free_port()
    params = (promoted_dir / "params.yaml").resolve()
    log_file = tmp_path / "server.log"
    with serving.running_server(promoted_dir, params, port, log_file) as (ready, _):
        assert ready["model_version"] == "v1"
        oip = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert oip.is_server_live()
        assert oip.is_server_ready()
        assert oip.is_model_ready(NAME)
        assert oip.is_model_ready(NAME, "v1")
        assert not oip.is_model_ready(NAME, "v9")
        metadata = oip.get_model_metadata(NAME)
        assert [tensor["name"] for tensor in metadata["inputs"]] == config.features
        assert oip.get_server_metadata()["name"] == "mlops"
        labels, probabilities, expected_labels, expected_probabilities = [], [], [], []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for start in range(0, len(frame), config.serve.max_batch):
                chunk = frame.iloc[start : start + config.serve.max_batch]
                inputs = []
                for name in config.features:
                    column = chunk[name].to_numpy()
                    tensor = triton.InferInput(name, [len(chunk)], np_to_triton_dtype(column.dtype))
                    tensor.set_data_from_numpy(column, binary_data=False)
                    inputs.append(tensor)
                result = oip.infer(NAME, inputs, request_id=f"chunk-{start}")
                response = result.get_response()
                assert response["id"] == f"chunk-{start}"
                assert response["model_name"] == NAME
                assert response["model_version"] == "v1"
                labels += result.as_numpy("label").tolist()
                probabilities += result.as_numpy("probability").tolist()
                answers = predictions(http, instances(chunk))
                expected_labels += [p["label"] for p in answers]
                expected_probabilities += [p["probability"] for p in answers]
            # the /versions/{version} form, as [n, 1] tensors
            chunk = frame.head(5)
            inputs = []
            for name in config.features:
                column = chunk[name].to_numpy().reshape(-1, 1)
                tensor = triton.InferInput(name, [5, 1], np_to_triton_dtype(column.dtype))
                tensor.set_data_from_numpy(column, binary_data=False)
                inputs.append(tensor)
            outputs = [triton.InferRequestedOutput("probability", binary_data=False)]
            result = oip.infer(NAME, inputs, model_version="v1", outputs=outputs)
            assert result.as_numpy("label") is None  # only what was asked for
            assert result.as_numpy("probability").tolist() == expected_probabilities[:5]
            with pytest.raises(InferenceServerException, match="version 'v9' not found"):
                oip.infer(NAME, inputs, model_version="v9")
            with pytest.raises(InferenceServerException, match="not found"):
                oip.infer("other", inputs)
        oip.close()
    assert len(labels) == len(frame)
    assert labels == expected_labels
    assert probabilities == expected_probabilities
    access = [json.loads(line) for line in log_file.read_text().splitlines() if '"access"' in line]
    assert any(entry["path"] == f"/v2/models/{NAME}/infer" for entry in access)


def test_multiclass_strings_booleans_and_missing_values_equal_predict(plans_client):
    config = plans_client.config
    frame = split_rows(config, plans_client.root)
    assert frame["sector"].isna().any()
    assert frame["age"].isna().any()
    rows = instances(frame)
    answer = outputs(infer(plans_client, config, rows, id="plans-1"))
    expected = predictions(plans_client, rows)
    assert answer["label"]["datatype"] == "BYTES"
    assert answer["label"]["data"] == [p["label"] for p in expected]
    assert answer["probability"]["data"] == [p["probability"] for p in expected]
    probabilities = answer["probabilities"]
    assert probabilities["shape"] == [len(rows), 3]
    flat = [p["probabilities"][name] for p in expected for name in ("basic", "plus", "pro")]
    assert probabilities["data"] == flat
    # NaN is numpy's missing value: accepted as null where the schema allows nulls
    body = {"inputs": tensors(config, rows[:20])}
    age = next(tensor for tensor in body["inputs"] if tensor["name"] == "age")
    age["data"] = [math.nan if value is None else value for value in age["data"]]
    content = json.dumps(body).encode()  # NaN as the literal numpy's JSON writers emit
    nan = plans_client.post(f"/v2/models/{NAME}/infer", content=content)
    assert outputs(nan)["probabilities"]["data"] == flat[: 20 * 3]


def test_concurrent_infer_and_predict_share_model_calls(client):
    import asyncio

    config = client.config
    rows = instances(split_rows(config, client.root).head(12))
    expected = [p["probability"] for p in predictions(client, rows)]
    app = serve.create_app(config, client.root / MODELS, poll_seconds=3600)

    async def scenario() -> list[float]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                answers = await asyncio.gather(*(infer(http, config, [row]) for row in rows))
        return [outputs(answer)["probability"]["data"][0] for answer in answers]

    assert asyncio.run(scenario()) == expected
    assert app.state.batcher.rows == 12
    assert app.state.batcher.calls < 12


# ---------------------------------------------------------------- bad input: {"error"}, no 500


def tensor_body(config: Config, row: dict, **changes) -> dict:
    """One row as tensors, with changes: {input name: {key: value}} or {input: None} to drop."""
    inputs = []
    for tensor in tensors(config, [row]):
        change = changes.get(tensor["name"], {})
        if change is not None:
            inputs.append({**tensor, **change})
    return {"inputs": inputs}


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({"SCHL": {"datatype": "FP64", "data": [21.0]}}, 400, "datatype FP64, expected INT64"),
        ({"AGEP": {"datatype": "BYTES", "data": ["40"]}}, 400, "datatype BYTES, expected FP64"),
        ({"AGEP": {"datatype": "FLOAT"}}, 400, "input AGEP: datatype FLOAT, expected FP64"),
        ({"MAR": {"data": ["1"]}}, 400, "input MAR, row 0: Input should be a valid integer"),
        ({"AGEP": {"data": [True]}}, 400, "input AGEP, row 0: Input should be a valid number"),
        ({"AGEP": {"shape": [2]}}, 400, "shape [2] holds 2 element(s), data has 1"),
        ({"AGEP": {"shape": [1, 2]}}, 400, "shape [1, 2], expected [n] or [n, 1]"),
        ({"AGEP": {"shape": [2], "data": [40, 41]}}, 400, "inputs of different lengths"),
        ({"AGEP": None}, 400, "missing input(s): AGEP"),
        ({"AGEP": {"name": "age"}}, 400, "unknown input 'age'"),
        ({"MAR": {"data": [7]}}, 400, "input MAR, row 0: Input should be one of the allowed "),
        ({"AGEP": {"data": [15]}}, 400, "input AGEP, row 0: Input should be greater than or"),
        ({"AGEP": {"data": [None]}}, 400, "input AGEP, row 0: Input should be a valid number"),
        ({"AGEP": {"shape": [], "data": []}}, 400, "shape [], expected [n] or [n, 1]"),
        ({"AGEP": {"shape": "1"}}, 400, "inputs[15].AGEP.shape: Input should be a valid array"),
    ],
)
def test_bad_tensors_are_400_naming_input_and_reason(client, caplog, changes, status, reason):
    body = tensor_body(client.config, serve.example_instance(client.config), **changes)
    with caplog.at_level(logging.INFO, "mlops.serve"):
        answer = client.post(f"/v2/models/{NAME}/infer", json=body)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"}
    assert reason in answer.json()["error"]
    assert [record.getMessage() for record in caplog.records] == ["request"]  # the access line
    assert caplog.records[0].fields["status"] == status


@pytest.mark.parametrize(("feature", "value"), [("MAR", 7), ("SEX", -1), ("SCHL", 99)])
def test_a_category_outside_the_schema_is_treated_as_predict_treats_it(client, feature, value):
    row = {**serve.example_instance(client.config), feature: value}
    oip = infer(client, client.config, [row])
    rest = client.post("/predict", json={"instances": [row]})
    if rest.status_code == 200:  # accepted (coded as unseen): the same answer
        assert outputs(oip)["probability"]["data"] == [rest.json()["predictions"][0]["probability"]]
    else:  # refused: 400 here, with /predict's reason
        assert (oip.status_code, rest.status_code) == (400, 422)
        assert rest.json()["detail"][0]["reason"] in oip.json()["error"]
        assert oip.json()["error"].startswith(f"input {feature}, row 0: ")


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"not json", {}, 400, "malformed JSON"),
        (b'{"inputs": [', {"content-type": "application/json"}, 400, "malformed JSON"),
        (b"", {}, 400, "empty body"),
        (b"[]", {}, 400, "not a JSON object"),
        (b"{}", {}, 400, "inputs: Field required"),
        (b'{"inputs": []}', {}, 400, "inputs: List should have at least 1 item"),
        (b'{"inputs": [1]}', {}, 400, "inputs[0]: Input should be an object"),
        (b'{"inputs": [{}]}', {}, 400, "inputs[0].name: Field required"),
        (b"{}", {"inference-header-content-length": "2"}, 415, "binary tensor data"),
        (b"{}", {"content-encoding": "gzip"}, 415, "Content-Encoding gzip"),
    ],
)
def test_bad_bodies(client, body, headers, status, reason):
    answer = client.post(f"/v2/models/{NAME}/infer", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["error"]


def test_the_version_follows_production(served):
    """After a promotion the new version answers; the old one's routes are 404 from then on."""
    from test_serve import add_small_version

    rows = instances(split_rows(served, Path()).head(3))
    app = serve.create_app(served, poll_seconds=3600)
    with TestClient(app) as test_client:
        first = outputs(infer(test_client, served, rows))["probability"]["data"]
        assert add_small_version(served) == "v2"
        assert app.state.slot.refresh() is True
        assert test_client.get(f"/v2/models/{NAME}").json()["versions"] == ["v2"]
        assert test_client.get(f"/v2/models/{NAME}/versions/v1/ready").status_code == 404
        assert test_client.get(f"/v2/models/{NAME}/versions/v2/ready").status_code == 200
        body = {"inputs": tensors(served, rows)}
        old = test_client.post(f"/v2/models/{NAME}/versions/v1/infer", json=body)
        assert old.status_code == 404
        assert old.json() == {"error": "model 'mlops' version 'v1' not found: serving v2"}
        new = test_client.post(f"/v2/models/{NAME}/versions/v2/infer", json=body)
        assert new.json()["model_version"] == "v2"
        assert outputs(new)["probability"]["data"] != first
        expected = [p["probability"] for p in predictions(test_client, rows)]
        assert outputs(new)["probability"]["data"] == expected


def test_unknown_model_or_version_is_404(client):
    body = tensor_body(client.config, serve.example_instance(client.config))
    for path in ("/v2/models/other/infer", "/v2/models/other", "/v2/models/other/ready"):
        answer = client.post(path, json=body) if path.endswith("infer") else client.get(path)
        assert answer.status_code == 404
        assert answer.json() == {"error": "model 'other' not found: this server serves 'mlops'"}
    for path in (f"/v2/models/{NAME}/versions/v9", f"/v2/models/{NAME}/versions/v9/ready"):
        assert client.get(path).status_code == 404
    answer = client.post(f"/v2/models/{NAME}/versions/v9/infer", json=body)
    assert answer.status_code == 404
    assert answer.json() == {"error": "model 'mlops' version 'v9' not found: serving v1"}
    assert client.post(f"/v2/models/{NAME}/versions/v1/infer", json=body).status_code == 200


def test_oversized_body_and_batch(client):
    answer = client.post(
        f"/v2/models/{NAME}/infer",
        content=b'{"inputs": [' + b" " * 3_000_000 + b"]}",
    )
    assert answer.status_code == 413
    assert "request body larger than" in answer.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it streams in
        yield b'{"inputs": ['
        for _ in range(300):
            yield b" " * 10_000
        yield b"]}"

    streamed = client.post(f"/v2/models/{NAME}/infer", content=chunks())
    assert streamed.status_code == 413
    rows = [serve.example_instance(client.config)] * (client.config.serve.max_batch + 1)
    too_many = infer(client, client.config, rows)
    assert too_many.status_code == 400
    assert "1001 rows: at most serve.max_batch = 1000 per request" in too_many.json()["error"]


def test_unknown_requested_output_and_nested_data(client):
    row = serve.example_instance(client.config)
    body = tensor_body(client.config, row)
    answer = client.post(
        f"/v2/models/{NAME}/infer", json={**body, "outputs": [{"name": "probabilities"}]}
    )
    assert answer.status_code == 400
    assert "unknown output 'probabilities': this model gives label, probability" in answer.text
    nested = {"inputs": [{**t, "shape": [1, 1], "data": [t["data"]]} for t in body["inputs"]]}
    flat = client.post(f"/v2/models/{NAME}/infer", json=body).json()["outputs"]
    assert client.post(f"/v2/models/{NAME}/infer", json=nested).json()["outputs"] == flat
    assert np.isclose(flat[1]["data"][0], predictions(client, [row])[0]["probability"])


def test_the_model_name_is_serve_model_name(client, tmp_path):
    config = client.config
    renamed = config.model_copy(
        update={"serve": config.serve.model_copy(update={"model_name": "employment"})}
    )
    app = serve.create_app(renamed, client.root / MODELS, poll_seconds=3600)
    row = serve.example_instance(config)
    with TestClient(app) as test_client:
        assert test_client.get("/v2/models/employment/ready").status_code == 200
        answer = test_client.post("/v2/models/employment/infer", json=tensor_body(config, row))
        assert answer.json()["model_name"] == "employment"
        assert test_client.get(f"/v2/models/{NAME}").status_code == 404
    params = yaml.safe_load((client.root / "params.yaml").read_text())
    params["serve"]["model_name"] = "my model"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(InputError, match=r"params.yaml: serve.model_name: String should match"):
        load_config(tmp_path / "params.yaml")
