"""Your own data, end to end: two real public tables (tests/data/README.md) go through the
walkthrough of docs/pipeline.md in a scratch copy of the repository, with real Make, real
scikit-learn, real Evidently and a real uvicorn: `make schema`, `make accept-data`, `make all`,
`make serve` answering /predict with string categories and a null, and `make drift CURRENT=`
on a drifted batch made from the table's own rows."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from test_schema import sections

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
VENV = f"VENV={ROOT / '.venv'}"
FILES = ("Makefile", "stages.mk", "params.yaml", "pyproject.toml", "requirements-dev.lock")


@dataclass(frozen=True)
class Table:
    """One test table and what the walkthrough should find in it."""

    name: str
    schema_args: tuple[str, ...]
    target: str
    labels: list
    positive: object
    time_column: str | None
    period: str | None
    categorical: dict[str, list] = field(default_factory=dict)  # some of the expected columns
    left_out: tuple[str, ...] = ()
    null_column: str = ""  # a feature that allows missing values: /predict sends it as null
    # A measured degradation in the newest period that the drift verdict must flag (make all
    # then fails after promoting), or None where the newest period is quiet.
    degraded: str | None = None


TABLES = {
    "titanic": Table(
        name="titanic",
        schema_args=("TARGET=Survived",),
        target="Survived",
        labels=[0, 1],
        positive=1,
        time_column=None,
        period=None,
        categorical={"Sex": ["female", "male"], "Embarked": ["C", "Q", "S"], "Pclass": [1, 2, 3]},
        left_out=("PassengerId", "Name", "Ticket", "Cabin", "home.dest"),
        null_column="Age",
    ),
    "flights": Table(
        name="flights",
        schema_args=("TARGET=origin", "TIME=time_hour", "PERIOD=quarter"),
        target="origin",
        labels=["EWR", "JFK", "LGA"],
        positive=None,
        time_column="time_hour",
        period="quarter",
        categorical={"carrier": ["9E", "AA", "AS", "B6", "DL", "EV"]},  # the first six
        left_out=("year", "tailnum"),
        null_column="dep_delay",
        # The fourth quarter's realized accuracy is 0.982 against 0.992 on the test split, below
        # the alert line that the test split's own variability sets (0.984 at 1,526 rows).
        degraded="accuracy degraded (measured)",
    ),
}


def make(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", *args, VENV],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DO_NOT_TRACK": "1"},
        timeout=900,
    )


def install_table(table: str, raw: Path) -> None:
    """The table's files as a user drops them in data/raw (CSV unpacked, Parquet as is)."""
    for path in sorted((DATA / table).iterdir()):
        if path.name.endswith(".csv.gz"):
            (raw / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
        elif path.suffix == ".parquet":
            shutil.copy(path, raw / path.name)


@dataclass
class Walkthrough:
    root: Path
    table: Table
    params_before: str
    schema: subprocess.CompletedProcess
    params_after: str
    rerun: subprocess.CompletedProcess
    params_rerun: str
    accept: subprocess.CompletedProcess
    all: subprocess.CompletedProcess


@pytest.fixture(scope="module", params=sorted(TABLES))
def walked(request, tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    """One scratch repository per table after the whole walkthrough (read-only for tests)."""
    table = TABLES[request.param]
    root = tmp_path_factory.mktemp(table.name)
    for name in FILES:
        shutil.copy2(ROOT / name, root / name)  # same mtimes: Make reuses the venv
    shutil.copytree(ROOT / "src", root / "src")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(ROOT / "data" / "raw" / "README.md", raw / "README.md")
    install_table(table.name, raw)
    before = (root / "params.yaml").read_text()
    schema = make(root, "schema", *table.schema_args)
    after = (root / "params.yaml").read_text()
    rerun = make(root, "schema", *table.schema_args)
    rerun_text = (root / "params.yaml").read_text()
    accept = make(root, "accept-data")
    everything = make(root, "all")
    return Walkthrough(root, table, before, schema, after, rerun, rerun_text, accept, everything)


def test_make_schema_writes_the_schema_and_keeps_the_rest(walked):
    table = walked.table
    assert walked.schema.returncode == 0, walked.schema.stderr
    old, new = sections(walked.params_before), sections(walked.params_after)
    assert list(new) == list(old)
    assert [name for name in old if old[name] != new[name]] == ["data", "schema"]
    params = yaml.safe_load(walked.params_after)
    assert params["data"]["time_column"] == table.time_column
    assert params["data"]["period"] == table.period
    spec = params["schema"]
    assert spec["target"] == table.target
    assert spec["labels"] == table.labels
    assert spec["positive"] == table.positive
    declared = {**spec["numeric"], **spec["categorical"]}
    for name, values in table.categorical.items():
        found = spec["categorical"][name]
        found = found["values"] if isinstance(found, dict) else found
        assert found[: len(values)] == values, name
    for name in table.left_out:
        assert name not in declared, name
    assert table.null_column in spec["numeric"]
    assert spec["numeric"][table.null_column]["max_missing"] > 0
    lines = [line for line in walked.schema.stderr.splitlines() if line.startswith("[schema] ")]
    first = sorted((walked.root / "data" / "raw").glob(f"{walked.table.name}*"))[0]
    columns = (pd.read_csv if first.suffix == ".csv" else pd.read_parquet)(first).columns
    for name in columns:
        assert any(line.split()[1] == name for line in lines), f"no line for {name}"


def test_rerun_on_unchanged_data_changes_nothing(walked):
    assert walked.rerun.returncode == 0, walked.rerun.stderr
    assert walked.params_rerun == walked.params_after
    assert "unchanged" in walked.rerun.stderr


def pipeline_ran(walked: Walkthrough) -> bool:
    """`make all` went through: exit 0, or, where the table's newest period is degraded, the drift
    verdict's alert (exit 2 from Make) naming that degradation after the gate promoted."""
    done = walked.all
    if walked.table.degraded is None:
        return done.returncode == 0
    return (
        done.returncode == 2
        and f"[drift] FAILED: {walked.table.degraded}" in done.stderr
        and "[promote] promoted v1" in done.stderr
        and "error:" not in done.stderr
    )


def test_accept_data_and_make_all_succeed(walked):
    assert walked.accept.returncode == 0, walked.accept.stderr
    sums = (walked.root / "data" / "raw" / "SHA256SUMS").read_text()
    for path in (walked.root / "data" / "raw").iterdir():
        if path.suffix in (".csv", ".parquet"):
            assert path.name in sums
    assert pipeline_ran(walked), walked.all.stderr[-3000:]
    metrics = json.loads((walked.root / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.78  # the gate's bar, unchanged
    registry = json.loads((walked.root / "models" / "registry.json").read_text())
    assert registry["production"] == "v1"


# ---------------------------------------------------------------- serving


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def make_serve(root: Path, ready: str) -> Iterator[str]:
    """`make serve` in root on a free port until the block ends; yields its URL once `ready`
    (a path) answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        ["make", "serve", "HOST=127.0.0.1", f"PORT={port}", VENV],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DO_NOT_TRACK": "1"},
        start_new_session=True,  # its own process group: make and the server stop together
    )
    try:
        wait_for(f"{url}{ready}")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def wait_for(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {url}")


def request_rows(walked: Walkthrough, count: int = 5) -> list[dict]:
    """Rows of the current split as a client sends them: raw values, None where missing."""
    features = json.loads((walked.root / "models" / "v1" / "metadata.json").read_text())["features"]
    current = pd.read_parquet(walked.root / "data" / "processed" / "current.parquet")
    rows = []
    for _, row in current[features].head(count).iterrows():
        rows.append(
            {
                name: None
                if pd.isna(value)
                else (value.item() if hasattr(value, "item") else value)
                for name, value in row.items()
            }
        )
    rows[0][walked.table.null_column] = None
    return rows


def test_make_serve_predicts_from_string_categories_and_a_null(walked):
    assert pipeline_ran(walked), "make all failed; see test_accept_data_and_make_all_succeed"
    with make_serve(walked.root, "/health") as url:
        rows = request_rows(walked)
        assert any(isinstance(value, str) for value in rows[0].values())
        answer = httpx.post(f"{url}/predict", json={"instances": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == len(rows)
        labels = walked.table.labels
        for prediction in predictions:
            assert prediction["label"] in labels
            assert 0.0 <= prediction["probability"] <= 1.0
            if len(labels) > 2:
                assert sorted(prediction["probabilities"]) == sorted(map(str, labels))
        name = next(iter(walked.table.categorical))
        unknown = httpx.post(
            f"{url}/predict", json={"instances": [{**rows[1], name: "no such value"}]}, timeout=30
        )
        assert unknown.status_code == 422
        assert name in unknown.text


# ---------------------------------------------------------------- drift on a drifted batch


def drifted_batch(walked: Walkthrough, directory: Path) -> Path:
    """The current period's own rows, shifted: the null column moved by two standard deviations
    (kept inside its declared range: values outside it are bad input), one category dominant."""
    current = pd.read_parquet(walked.root / "data" / "processed" / "current.parquet")
    shifted = current.copy()
    column = walked.table.null_column
    bounds = yaml.safe_load(walked.params_after)["schema"]["numeric"][column]
    spread = float(np.nanstd(shifted[column])) or 1.0
    shifted[column] = (shifted[column] + 2 * spread).clip(bounds["min"], bounds["max"])
    name, values = next(iter(walked.table.categorical.items()))
    shifted[name] = values[0]
    if walked.table.time_column is None:
        path = directory / "drifted.csv"
        shifted.to_csv(path, index=False)
    else:
        path = directory / "drifted.parquet"
        shifted.to_parquet(path, index=False)
    return path


def test_make_drift_flags_a_drifted_batch(walked, tmp_path):
    assert pipeline_ran(walked), "make all failed; see test_accept_data_and_make_all_succeed"
    batch = drifted_batch(walked, tmp_path)
    result = make(walked.root, "drift", f"CURRENT={batch}")
    assert "error:" not in result.stderr, result.stderr[-2000:]  # drift found, not bad input
    report = json.loads((walked.root / "reports" / "drift.json").read_text())
    assert report["status"] in ("warning", "alert")
    assert (result.returncode == 0) == (report["status"] == "warning")  # an alert fails the run
    name = next(iter(walked.table.categorical))
    assert walked.table.null_column in report["drifted_columns"]
    assert name in report["drifted_columns"]


def json_rows(frame: pd.DataFrame, features: list[str], categories: dict) -> list[dict]:
    """Raw rows as a client sends them: None where missing, a category as declared (an integer
    category read as a float because of gaps goes back to an integer)."""
    rows = []
    for record in frame[features].to_dict(orient="records"):
        row = {}
        for name, value in record.items():
            if pd.isna(value):
                value = None
            elif hasattr(value, "item"):
                value = value.item()
            allowed = categories.get(name) or []
            if isinstance(value, float) and value.is_integer() and int(value) in allowed:
                value = int(value)
            row[name] = value
        rows.append(row)
    return rows


def test_every_test_row_served_equals_the_model_file_on_raw_rows(walked):
    """Parity on an own table (strings, missing values): the real server's answers on every row
    of the test split equal the model file's predict_proba on the raw rows, columns shuffled."""
    from mlops.model_file import load_model

    assert pipeline_ran(walked), "make all failed; see test_accept_data_and_make_all_succeed"
    metadata = json.loads((walked.root / "models" / "v1" / "metadata.json").read_text())
    model = load_model(walked.root / "models/v1/model.skops", metadata["model_sha256"])
    test = pd.read_parquet(walked.root / "data" / "processed" / "test.parquet")
    assert metadata["input"] == "raw_frame"
    assert test[metadata["features"]].isna().any().any()  # missing values among them
    rows = json_rows(test, metadata["features"], metadata["categories"])
    proba = model.predict_proba(test.sample(frac=1.0, axis=1, random_state=5))
    classes = metadata["classes"]
    with make_serve(walked.root, "/ready") as url:
        found = []
        for start in range(0, len(rows), 500):
            answer = httpx.post(
                f"{url}/predict", json={"instances": rows[start : start + 500]}, timeout=60
            )
            assert answer.status_code == 200, answer.text
            found += answer.json()["predictions"]
    assert len(found) == len(test)
    if len(classes) == 2:
        column = classes.index(metadata["positive"])
        labels = np.where(proba[:, column] >= 0.5, classes[column], classes[1 - column])
        served = np.array([p["probability"] for p in found])
        np.testing.assert_allclose(served, proba[:, column], rtol=0, atol=1e-9)
    else:
        labels = np.array(classes)[proba.argmax(axis=1)]
        served = np.array([[p["probabilities"][str(c)] for c in classes] for p in found])
        np.testing.assert_allclose(served, proba, rtol=0, atol=1e-9)
    assert [p["label"] for p in found] == labels.tolist()
