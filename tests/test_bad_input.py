"""The bad-input table (#26): params, data, CLI and HTTP, each case through the real entry point
(`python -m mlops ...` in-process, the served app over HTTP). Every case asserts its exit code or
status, one line saying what is wrong (no traceback), and that nothing changed: models/, the
reports, data/processed and params.yaml keep their bytes."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from mlops import cli, serve
from mlops.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory, promoted_dir) -> Path:
    """One promoted project for the whole table: no case may change it (each one checks)."""
    copy = tmp_path_factory.mktemp("bad") / "project"
    shutil.copytree(promoted_dir, copy)
    return copy


def state(root: Path) -> str:
    """The bytes of everything a command could change, run.log aside (it records the attempt)."""
    digest = hashlib.sha256()
    for folder in ("models", "reports", "data/processed"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.name != "run.log":
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    digest.update((root / "params.yaml").read_bytes())
    return digest.hexdigest()


@pytest.fixture
def project(root: Path, monkeypatch) -> Iterator[Path]:
    monkeypatch.chdir(root)
    before = state(root)
    yield root
    assert state(root) == before, "a bad input changed the project"


def one_error(capsys, *argv: str) -> tuple[int, str]:
    """Run the CLI; (exit code, its one error line). Fails on a traceback or more error lines."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own errors: usage, then one line
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line or "FAILED" in line]
    assert len(errors) == 1, err
    return code, errors[0]


# --- params ----------------------------------------------------------------------------------


def edited(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        edit(params)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    return write


def text(replace: str, by: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        original = (ROOT / "params.yaml").read_text()
        assert replace in original
        path.write_text(original.replace(replace, by, 1))

    return write


def raw(content: bytes | None) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)

    return write


PARAMS = {
    "unknown top-level key": (edited(lambda p: p.update(extra=1)), "extra: unknown key"),
    "unknown train key": (edited(lambda p: p["train"].update(estimatr="x")), "train.estimatr"),
    "missing section": (edited(lambda p: p.pop("promotion")), "promotion: missing section"),
    "missing key": (edited(lambda p: p["promotion"].pop("min_accuracy")), "missing key"),
    "min_accuracy above 1": (
        edited(lambda p: p["promotion"].update(min_accuracy=1.5)),
        "promotion.min_accuracy",
    ),
    "min_accuracy below 0": (
        edited(lambda p: p["promotion"].update(min_accuracy=-0.1)),
        "promotion.min_accuracy",
    ),
    "min_accuracy text": (
        edited(lambda p: p["promotion"].update(min_accuracy="high")),
        "promotion.min_accuracy",
    ),
    "max_regression negative": (
        edited(lambda p: p["promotion"].update(max_regression=-0.1)),
        "promotion.max_regression",
    ),
    "min_roc_auc above 1": (
        edited(lambda p: p["promotion"].update(min_roc_auc=1.1)),
        "promotion.min_roc_auc",
    ),
    "seed as text": (edited(lambda p: p.update(seed="42")), "seed: Input should be"),
    "seed as float": (edited(lambda p: p.update(seed=4.5)), "seed"),
    "unknown estimator": (
        edited(lambda p: p["train"].update(estimator="xgboost")),
        "train.estimator",
    ),
    "unknown hyperparameter": (
        edited(lambda p: p["train"]["hyperparameters"]["random_forest"].update(depth=3)),
        "not a parameter of RandomForestClassifier",
    ),
    "search without cv": (
        edited(lambda p: p["train"].update(search={"max_iter": [10]})),
        "search needs cv_folds",
    ),
    "cv_folds 1": (edited(lambda p: p["train"].update(cv_folds=1)), "cv_folds"),
    "drift method": (
        edited(lambda p: p["drift"]["numeric"].update(method="magic")),
        "drift.numeric.method",
    ),
    "drift columns unknown": (
        edited(lambda p: p["drift"].update(columns={"nope": {"method": "psi", "threshold": 0.1}})),
        "nope",
    ),
    "drift reference": (edited(lambda p: p["drift"].update(reference="other")), "drift.reference"),
    "drift share above 1": (edited(lambda p: p["drift"].update(drift_share=1.5)), "drift_share"),
    "drift engine": (edited(lambda p: p["drift"].update(engine="spark")), "drift.engine"),
    "test_size 1": (edited(lambda p: p["data"].update(test_size=1.0)), "data.test_size"),
    "test_size 0": (edited(lambda p: p["data"].update(test_size=0)), "data.test_size"),
    "period unknown": (edited(lambda p: p["data"].update(period="decade")), "data.period"),
    "period without time column": (
        edited(lambda p: p["data"].update(time_column=None, period="month")),
        "period: needs a time",
    ),
    "range upside down": (
        edited(lambda p: p["schema"]["numeric"].update(AGEP={"min": 5, "max": 1})),
        "min 5.0 is above max",
    ),
    "numeric and categorical": (
        edited(lambda p: p["schema"]["numeric"].update(SEX={"min": 1, "max": 2})),
        "both numeric and",
    ),
    "labels mixed": (
        edited(lambda p: p["schema"].update(labels=[True, 1])),
        "booleans and numbers mixed",
    ),
    "labels twice": (edited(lambda p: p["schema"].update(labels=["yes", "yes"])), "listed twice"),
    "one label": (edited(lambda p: p["schema"].update(labels=[0])), "schema.labels"),
    "positive not a label": (edited(lambda p: p["schema"].update(positive=2)), "positive: 2"),
    "category twice": (
        edited(lambda p: p["schema"]["categorical"].update(SEX=[1, 1.0])),
        "1 listed twice",
    ),
    "max_missing above 1": (
        edited(
            lambda p: p["schema"]["categorical"].update(SEX={"values": [1, 2], "max_missing": 2})
        ),
        "max_missing",
    ),
    "a key twice": (text("seed: 42\n", "seed: 42\nseed: 7\n"), "seed"),
    "not YAML": (raw(b"seed: [1\n"), "not valid YAML"),
    "a list": (raw(b"- 1\n- 2\n"), "mapping of sections"),
    "empty file": (raw(b""), "params"),
    "not UTF-8": (raw(b"seed: 42\ndata:\n  source: r\xe9w\n"), "not UTF-8 text"),
    "a folder": (raw(None), "is a folder"),
    "tab indentation": (raw(b"seed: 42\ndata:\n\tsource: raw\n"), "params"),
}


@pytest.mark.parametrize("case", list(PARAMS))
def test_bad_params(project, tmp_path, capsys, case):
    write, fragment = PARAMS[case]
    path = tmp_path / "bad.yaml"
    write(path)
    code, line = one_error(capsys, "--params", str(path), "validate")
    assert code == 2
    assert line.startswith("[validate] error: ")
    assert str(path) in line
    assert fragment in line


def test_missing_params_file(project, tmp_path, capsys):
    code, line = one_error(capsys, "--params", str(tmp_path / "none.yaml"), "models")
    assert code == 2
    assert "none.yaml" in line
    assert "not found" in line


# --- data: batches for score and drift --------------------------------------------------------


def batch(root: Path, rows: int = 300) -> pd.DataFrame:
    return pd.read_parquet(root / "data/processed/current.parquet").head(rows)


BATCHES: dict[str, tuple[Callable[[Path, Path], str], str]] = {
    "empty file": (lambda root, d: _bytes(d / "b.csv", b""), "empty file"),
    "missing column": (
        lambda root, d: _csv(d / "b.csv", batch(root).drop(columns=["SCHL"])),
        "SCHL",
    ),
    "binary bytes": (lambda root, d: _bytes(d / "b.csv", bytes(range(256)) * 8), "b.csv"),
    "broken parquet": (lambda root, d: _bytes(d / "b.parquet", b"PAR1 not really"), "b.parquet"),
    "no such file": (lambda root, d: str(d / "none.csv"), "none.csv"),
    "empty folder": (lambda root, d: _folder(d / "empty"), "empty"),
    "glob without match": (lambda root, d: str(d / "*.nomatch.csv"), "nomatch"),
    "a text file": (lambda root, d: _bytes(d / "b.txt", b"AGEP\n1\n"), "b.txt"),
    "files that disagree": (lambda root, d: _disagree(root, d / "mixed"), "mixed"),
}
# score refuses such rows one by one (rejects.parquet), drift refuses the batch
DRIFT_ONLY = {
    "header only": (
        lambda root, d: _bytes(d / "b.csv", (",".join(batch(root).columns) + "\n").encode()),
        "b.csv",
    ),
    "text in a number column": (
        lambda root, d: _csv(d / "b.csv", batch(root).assign(AGEP="old")),
        "AGEP",
    ),
    "age out of range": (
        lambda root, d: _csv(d / "b.csv", batch(root).assign(AGEP=140)),
        "AGEP: value out of range",
    ),
    "too few rows": (lambda root, d: _csv(d / "b.csv", batch(root, 50)), "drift.min_rows"),
}


def _bytes(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def _csv(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def _folder(path: Path) -> str:
    path.mkdir()
    return str(path)


def _disagree(root: Path, folder: Path) -> str:
    folder.mkdir()
    batch(root).to_csv(folder / "a.csv", index=False)
    batch(root).drop(columns=["MAR"]).to_csv(folder / "b.csv", index=False)
    return str(folder)


@pytest.mark.parametrize("command", ["score", "drift"])
@pytest.mark.parametrize("case", list(BATCHES))
def test_bad_batch(project, tmp_path, capsys, command, case):
    make, fragment = BATCHES[case]
    current = make(project, tmp_path)
    extra = ("--out", str(tmp_path / "out")) if command == "score" else ()
    code, line = one_error(capsys, command, "--current", current, *extra)
    assert code == 2
    assert line.startswith(f"[{command}] error: ")
    assert fragment in line
    assert not (tmp_path / "out" / "score.json").exists()


@pytest.mark.parametrize("case", list(DRIFT_ONLY))
def test_bad_batch_for_drift(project, tmp_path, capsys, case):
    make, fragment = DRIFT_ONLY[case]
    code, line = one_error(capsys, "drift", "--current", make(project, tmp_path))
    assert code == 2
    assert fragment in line


# --- CLI ---------------------------------------------------------------------------------------


def cli_cases(d: Path) -> dict[str, tuple[list[str], str]]:
    return {
        "rollback to an unknown version": (["rollback", "--version", "v99"], "v99"),
        "rollback to no version name": (["rollback", "--version", "x1"], "not a version name"),
        "rollback with nothing earlier": (["rollback"], "no earlier production version"),
        "export an unknown version": (["release-export", str(d / "dist"), "--version", "v9"], "v9"),
        "export a bad version name": (["release-export", str(d / "x"), "--version", "9"], "'9'"),
        "export into a file": (["release-export", str(d / "a-file")], "a-file"),
        "score without a batch": (["score"], "name the batch"),
        "score into a file": (
            ["score", "--current", "data/processed/current.parquet", "--out", str(d / "a-file")],
            "a file, not a folder",
        ),
        "force without a reason": (["promote", "--force-reason", "  "], "--force-reason: empty"),
        "labels without a batch": (["drift", "--labels", str(d / "a-file")], "LABELS="),
        "schema of no column": (["schema", "--target", "nope"], "'nope' is not a column"),
        "schema time is the target": (
            ["schema", "--target", "employed", "--time", "employed"],
            "is the target",
        ),
        "schema period unknown": (
            ["schema", "--target", "employed", "--period", "fortnight"],
            "fortnight",
        ),
        "schema period without time": (
            ["schema", "--target", "employed", "--period", "month"],
            "PERIOD: needs TIME",
        ),
        "summary section unknown": (["summary", "--sections", "nope"], "--sections: nope"),
        "runs sorted by nothing": (["runs", "--sort", "size"], "invalid choice"),
        "no such command": (["nonsense"], "invalid choice"),
        "rollback to the flag's value missing": (["rollback", "--version"], "expected one"),
        "serve on a port number too big": (["serve", "--port", "many"], "invalid int"),
        "params folder": (["--params", str(d), "models"], "is a folder"),
    }


CLI = list(cli_cases(Path("/nonexistent")))


@pytest.mark.parametrize("case", CLI)
def test_bad_command_line(project, tmp_path, capsys, case):
    (tmp_path / "a-file").write_text("x")
    argv, fragment = cli_cases(tmp_path)[case]
    code, line = one_error(capsys, *argv)
    assert code == 2
    assert fragment in line


# --- HTTP --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(root: Path) -> Iterator[TestClient]:
    config = load_config(root / "params.yaml")
    with TestClient(serve.create_app(config, root / "models", poll_seconds=3600)) as app:
        app.example = serve.example_instance(config)
        yield app


DROP = object()
INSTANCES = {
    "extra field": ({"EXTRA": 1}, "instances[0].EXTRA"),
    "the label": ({"employed": 1}, "instances[0].employed"),
    "missing field": ({"AGEP": DROP}, "instances[0].AGEP"),
    "number as text": ({"AGEP": "40"}, "instances[0].AGEP"),
    "boolean number": ({"AGEP": True}, "instances[0].AGEP"),
    "null number": ({"AGEP": None}, "instances[0].AGEP"),
    "list number": ({"AGEP": [40]}, "instances[0].AGEP"),
    "object number": ({"AGEP": {"v": 40}}, "instances[0].AGEP"),
    "below range": ({"AGEP": 15}, "instances[0].AGEP"),
    "above range": ({"AGEP": 90.5}, "instances[0].AGEP"),
    "code as text": ({"SCHL": "21"}, "instances[0].SCHL"),
    "code as float": ({"SCHL": 21.0}, "instances[0].SCHL"),
    "code fraction": ({"SCHL": 21.5}, "instances[0].SCHL"),
    "code boolean": ({"SEX": True}, "instances[0].SEX"),
    "unknown code": ({"MAR": 7}, "instances[0].MAR"),
    "negative code": ({"SEX": -1}, "instances[0].SEX"),
}
BODIES = {
    "truncated JSON": ('{"instances": [', "application/json", "body"),
    "not JSON": ("not json at all", "application/json", "body"),
    "empty body": ("", "application/json", "body"),
    "a list": ("[]", "application/json", "body"),
    "a string": ('"instances"', "application/json", "body"),
    "no instances": ("{}", "application/json", "instances"),
    "zero instances": ('{"instances": []}', "application/json", "instances"),
    "instances an object": ('{"instances": {}}', "application/json", "instances"),
    "instance a number": ('{"instances": [1]}', "application/json", "instances[0]"),
    "instances a string": ('{"instances": "all"}', "application/json", "instances"),
    "extra top-level key": ('{"instances": [], "extra": 1}', "application/json", None),
    "text/plain": ('{"instances": []}', "text/plain", "body"),
    "no content type": ('{"instances": []}', None, "body"),
    "NaN": ('{"instances": [{"AGEP": NaN}]}', "application/json", None),
    "Infinity": ('{"instances": [{"AGEP": Infinity}]}', "application/json", None),
}


@pytest.mark.parametrize("case", list(INSTANCES))
def test_bad_instance(client, root, case):
    change, field = INSTANCES[case]
    row = {**client.example, **change}
    row = {key: value for key, value in row.items() if value is not DROP}
    before = state(root)
    answer = client.post("/predict", json={"instances": [row]})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert len(detail) == 1
    assert detail[0]["field"] == field
    assert "\n" not in detail[0]["reason"]
    assert state(root) == before


@pytest.mark.parametrize("case", list(BODIES))
def test_bad_body(client, root, case):
    body, content_type, field = BODIES[case]
    headers = {"content-type": content_type} if content_type else {}
    before = state(root)
    answer = client.post("/predict", content=body, headers=headers)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert len(detail) >= 1
    assert all("\n" not in item["reason"] for item in detail)
    if field is not None:
        assert detail[0]["field"] == field
    assert state(root) == before


def test_the_table_holds_at_least_100_cases():
    params = len(PARAMS) + 1
    data = 2 * len(BATCHES) + len(DRIFT_ONLY)
    http = len(INSTANCES) + len(BODIES)
    assert params + data + len(CLI) + http >= 100
