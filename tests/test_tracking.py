"""MLflow tracking against a real `mlflow server` (SQLite backend, local artifacts) on loopback:
make all, a rejection, a promotion and a rollback, a drift check, read back with MlflowClient;
a server stopped mid-run, caught up by `make mlflow-sync`; bad URIs, names and versions."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from candidates import BETTER, WEAK, train_candidate
from helpers import edit_params, made_copy, run_module
from mlops import files, promote, registry, runlog, serve, tracking
from mlops.config import load_config
from mlops.errors import CheckFailed, InputError

pytest.importorskip("mlflow")
from fastapi.testclient import TestClient
from mlflow import MlflowClient

NAME = "mlops"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1, started and stopped by the tests (same store each time)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=log, start_new_session=True, cwd=self.root
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("mlflow server did not answer /health in 180 s")

    def stop(self) -> None:
        """Killed, as a crashed or unplugged server is (and a SIGTERM takes it 20 s)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("mlflow-server"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tracked(server: Server, tmp_path_factory: pytest.TempPathFactory, promoted_dir: Path) -> Path:
    """A project where `make all` ran with MLFLOW_TRACKING_URI set: evaluate (the candidate's
    run, its plots and model), promote (v1, champion) and drift (a monitoring run)."""
    root = made_copy(promoted_dir, tmp_path_factory.mktemp("tracked") / "project")
    shutil.rmtree(root / "models")  # the gate decides again, logging as it goes
    (root / "models").mkdir()
    (root / ".make/evaluate.ok").unlink()
    done = subprocess.run(
        ["make", "all"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": server.uri, "DO_NOT_TRACK": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "MLflow: candidate" in done.stderr
    assert "MLflow: drift check" in done.stderr
    assert "Traceback" not in done.stderr
    assert "View run" not in done.stdout
    return root


@pytest.fixture
def inside(
    tracked: Path, server: Server, monkeypatch: pytest.MonkeyPatch, candidate_fits: None
) -> Path:
    monkeypatch.chdir(tracked)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    tracking._DOWN.clear()
    return tracked


def client(server: Server) -> MlflowClient:
    return MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)


def runs(mlflow: MlflowClient, experiment: str) -> list:
    found = mlflow.get_experiment_by_name(experiment)
    return [] if found is None else mlflow.search_runs([found.experiment_id], max_results=1000)


def champion(mlflow: MlflowClient) -> str:
    return mlflow.get_model_version_by_alias(NAME, "champion").tags[tracking.VERSION_TAG]


def counts(mlflow: MlflowClient) -> tuple:
    """Runs, their params, metrics and tags, model versions and their tags, aliases."""
    every = runs(mlflow, NAME) + runs(mlflow, f"{NAME}-monitoring")
    versions = mlflow.search_model_versions(f"name = '{NAME}'")
    return (
        len(every),
        sum(len(run.data.params) for run in every),
        sum(len(run.data.metrics) for run in every),
        sorted((run.info.run_id, sorted(run.data.tags.items())) for run in every),
        sorted((v.version, sorted(v.tags.items())) for v in versions),
        mlflow.get_registered_model(NAME).aliases,
    )


def test_make_all_logs_the_candidate_version_and_drift_check(inside, server):
    mlflow = client(server)
    (run,) = runs(mlflow, NAME)
    sha = runlog.read_runs()[0]["model_sha256"]
    assert run.data.tags[tracking.SHA_TAG] == sha
    assert run.data.params["estimator"] == "hist_gradient_boosting"
    assert run.data.params["seed"] == "42"
    assert run.data.params["model.max_iter"] == "100"
    assert "model.l2_regularization" in run.data.params  # effective, not only the configured
    assert len(run.data.params["data_sha256"]) == 64
    assert run.data.metrics["accuracy"] == pytest.approx(0.7936, abs=5e-4)
    assert run.data.tags["gate.decision"] == "promoted"
    artifacts = {item.path for item in mlflow.list_artifacts(run.info.run_id)}
    assert {*tracking.PLOTS, "validation.json"} <= artifacts
    model = mlflow.get_logged_model(run.data.tags[tracking.MODEL_TAG].rsplit("/", 1)[-1])
    assert model.source_run_id == run.info.run_id
    (version,) = mlflow.search_model_versions(f"name = '{NAME}'")
    assert version.run_id == run.info.run_id
    assert champion(mlflow) == "v1"
    (check,) = runs(mlflow, f"{NAME}-monitoring")
    assert check.data.tags["drift.status"] == "ok"
    assert check.data.metrics["share_drifted"] == 0.0
    assert "performance.current.accuracy" in check.data.metrics
    assert "performance.estimated.accuracy" in check.data.metrics
    assert "column.AGEP.score" in check.data.metrics
    logged = {item.path for item in mlflow.list_artifacts(check.info.run_id)}
    assert logged == {"drift.html", "drift.json", "drift.md"}


def test_rejection_promotion_and_rollback_move_tags_versions_and_champion(inside, server):
    mlflow = client(server)
    config = load_config()
    train_candidate(config, **WEAK)
    with pytest.raises(CheckFailed):
        promote.run(config)
    rejected = runlog.read_runs()[-1]
    (run,) = [
        r for r in runs(mlflow, NAME) if r.data.tags[tracking.SHA_TAG] == rejected["model_sha256"]
    ]
    assert run.data.tags["gate.decision"] == "rejected"
    assert "< 0.78" in run.data.tags["gate.reasons"]
    assert run.data.params["model.max_iter"] == str(WEAK["max_iter"])
    assert len(mlflow.search_model_versions(f"name = '{NAME}'")) == 1
    train_candidate(config, **BETTER)
    assert promote.run(config)["decision"] == "promoted"
    assert champion(mlflow) == "v2"
    registry.rollback_command(config, reason="test")
    assert registry.production_version() == "v1"
    assert champion(mlflow) == "v1"
    assert len(mlflow.search_model_versions(f"name = '{NAME}'")) == 2
    before = counts(mlflow)
    assert tracking.sync_command(config) == 0  # promote and rollback mirrored everything
    assert counts(mlflow) == before


def test_a_server_stopped_mid_run_costs_one_warning_and_sync_catches_up(inside, server, capsys):
    """The candidate's run is logged at evaluate, then the server goes: the gate's decision and
    the new version are kept in the files, one warning line says so, and the sync adds them."""
    mlflow = client(server)
    config = load_config()
    train_candidate(config, max_iter=90)
    expected = registry.next_version(registry.read_registry())
    server.stop()
    started = time.monotonic()
    code = run_module(inside, "promote", env={"MLFLOW_TRACKING_URI": server.uri})
    assert code.returncode == 0, code.stderr
    assert time.monotonic() - started < 120
    warnings = [line for line in code.stderr.splitlines() if "MLflow at" in line]
    assert len(warnings) == 1, code.stderr
    assert f"MLflow at {server.uri}: unreachable" in warnings[0]
    assert "make mlflow-sync catches up" in warnings[0]
    assert registry.production_version() == expected
    # required: the same gate exits 2 with one line, its files kept all the same
    edit_params(Path("params.yaml"), lambda p: p["tracking"].update(required=True))
    again = run_module(inside, "promote", env={"MLFLOW_TRACKING_URI": server.uri})
    assert again.returncode == 2
    (line,) = [line for line in again.stderr.splitlines() if "MLflow" in line]
    assert line.startswith(f"[promote] error: MLflow at {server.uri}: unreachable")
    assert registry.production_version() == expected
    edit_params(Path("params.yaml"), lambda p: p["tracking"].update(required=False))
    server.start()
    assert champion(mlflow) != expected
    assert tracking.sync_command(config) > 0
    assert champion(mlflow) == expected
    assert len(mlflow.search_model_versions(f"name = '{NAME}'")) == int(expected[1:])
    before = counts(mlflow)
    assert tracking.sync_command(config) == 0
    assert counts(mlflow) == before


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("htp://127.0.0.1:5000", "not a tracking URI (scheme 'htp'"),
        ("http://user:secret@127.0.0.1:{port}", "MLflow at http://127.0.0.1:{port}: unreachable"),
    ],
)
def test_bad_or_unreachable_uri_is_one_line_exit_2_when_required(
    project, capsys, monkeypatch, uri, expected
):
    port = free_port()
    uri, expected = uri.format(port=port), expected.format(port=port)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking._DOWN.clear()
    config = load_config()
    required = config.model_copy(
        update={"tracking": config.tracking.model_copy(update={"required": True})}
    )
    with pytest.raises(InputError, match=r"tracking\.required") as error:
        promote.run(required)
    assert expected in str(error.value)
    assert "secret" not in str(error.value)
    assert registry.production_version() == "v1"  # the gate's files were written first
    assert runlog.read_runs()[0]["decision"] == "promoted"
    tracking._DOWN.clear()
    result = run_module(project, "promote", env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0
    (line,) = [line for line in result.stderr.splitlines() if "MLflow" in line]
    assert expected in line
    assert "secret" not in result.stderr


def test_a_name_mlflow_refuses_is_one_line(project, monkeypatch):
    """The embedded store (SQLite, the real thing without a server) refuses `a/b`."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    edit_params(
        project / "params.yaml",
        lambda p: p.setdefault("tracking", {}).update(mlflow=True, registered_model="team/model"),
    )
    result = run_module(project, "promote")
    assert result.returncode == 0, result.stderr
    assert "tracking.registered_model 'team/model': refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert registry.production_version() == "v1"
    sync = run_module(project, "mlflow-sync")
    assert sync.returncode == 2
    (line,) = sync.stderr.strip().splitlines()
    assert "tracking.registered_model 'team/model': refused" in line


def test_an_mlflow_outside_the_extras_range_is_refused(project, tmp_path):
    """A distribution mlflow 2.9.0 found first on the path (as an old install would be)."""
    old = tmp_path / "site" / "mlflow-2.9.0.dist-info"
    old.mkdir(parents=True)
    (old / "METADATA").write_text("Metadata-Version: 2.1\nName: mlflow\nVersion: 2.9.0\n")
    result = run_module(
        project,
        "mlflow-sync",
        env={"PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "mlflow 2.9.0 is installed; this project needs mlflow>=3.1,<4" in line


def test_shown_strips_credentials_and_tokens():
    assert tracking.shown("https://u:p@mlflow.example:8443/x?token=1") == (
        "https://mlflow.example:8443/x"
    )
    assert tracking.shown("sqlite:///mlruns/mlflow.db") == "sqlite:///mlruns/mlflow.db"


def test_signature_and_input_example_come_from_the_schema(config):
    signature = tracking.signature(config)
    columns = {spec.name: spec.type.to_numpy().kind for spec in signature.inputs.inputs}
    assert list(columns) == config.features
    assert columns["AGEP"] == "f"
    assert columns["SCHL"] == "i"
    example = tracking.input_example(config)
    assert list(example.columns) == config.features
    assert example.loc[0, "AGEP"] == 53.0
    assert example.loc[0, "SCHL"] == 0


def test_mlflow_ui_syncs_into_the_embedded_store_and_serves_it(promoted_dir, tmp_path):
    """`make mlflow-ui` with nothing set up (even with a team's URI in the environment): the
    registry synced into mlruns/ (SQLite) and MLflow's UI and API on loopback."""
    root = shutil.copytree(promoted_dir, tmp_path / "project")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "DO_NOT_TRACK": "1"}
    env.pop(tracking.JOBS_ENV, None)  # the command's own default: no job runners
    command = [sys.executable, "-m", "mlops", "mlflow-ui", "--port", str(port)]
    with (tmp_path / "ui.log").open("wb") as output:
        ui = subprocess.Popen(
            command, cwd=root, env=env, stdout=output, stderr=output, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert ui.poll() is None, (tmp_path / "ui.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "make mlflow-ui did not answer in 300 s"
                time.sleep(0.5)
        mlflow = MlflowClient(tracking_uri=base, registry_uri=base)
        (run,) = runs(mlflow, NAME)
        assert run.data.tags["gate.decision"] == "promoted"
        assert champion(mlflow) == "v1"
        with urllib.request.urlopen(base, timeout=10) as page:  # the UI itself
            assert b"<html" in page.read().lower()
        assert not [line for line in group_commands(ui.pid) if "huey" in line]
    finally:
        os.killpg(ui.pid, signal.SIGKILL)
        ui.wait()
    assert (root / "mlruns" / "mlflow.db").is_file()
    assert "[mlflow-ui] MLflow UI on http://127.0.0.1:" in (tmp_path / "ui.log").read_text()


def group_commands(group: int) -> list[str]:
    """The command lines of the processes in a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == group:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def test_champion_served_by_mlflow_models_serve_answers_as_the_api(inside, server, tmp_path):
    """`mlflow models serve` of models:/<name>@champion (the logged pipeline, its pyfunc calling
    predict) gives the labels /predict gives on 200 rows of the test split, sent by column name
    in another order (a missing value would go as null; schema.max_missing 0 leaves none)."""
    config = load_config()
    mlflow = client(server)
    name = config.tracking.registered_model
    served = mlflow.get_model_version_by_alias(name, "champion")
    assert served.tags[tracking.VERSION_TAG] == registry.production_version()
    frame = files.read_parquet(Path(config.data.processed_dir) / "test.parquet").head(200)
    raw = frame[config.features].sample(frac=1.0, axis=1, random_state=1)
    assert list(raw.columns) != config.features
    data = [
        [None if value != value else value for value in row]  # NaN (missing): null
        for row in raw.astype(object).itertuples(index=False)
    ]
    rows = [dict(zip(raw.columns, row, strict=True)) for row in data]
    with TestClient(serve.create_app(config, Path("models"), poll_seconds=3600)) as api:
        answer = api.post("/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == registry.production_version()
    labels = [p["label"] for p in answer.json()["predictions"]]
    port = free_port()
    command = [
        *(sys.executable, "-m", "mlflow", "models", "serve"),
        *("-m", f"models:/{name}@champion", "--env-manager", "local"),
        *("--host", "127.0.0.1", "--port", str(port), "--no-conda"),
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri, "DO_NOT_TRACK": "1"}
    # it runs `uvicorn` from PATH: this interpreter's, as an activated environment would
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = tmp_path / "models-serve.log"
    with log.open("wb") as output:
        model_server = subprocess.Popen(
            command, env=env, stdout=output, stderr=output, start_new_session=True, cwd=tmp_path
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert model_server.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        body = {"dataframe_split": {"columns": list(raw.columns), "data": data}}
        request = urllib.request.Request(
            f"{base}/invocations",
            data=json.dumps(body, allow_nan=False).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            predictions = json.loads(reply.read())["predictions"]
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group may be gone (it failed)
            os.killpg(model_server.pid, signal.SIGKILL)
        model_server.wait()
    assert len(predictions) == len(labels) == 200
    assert predictions == labels
    assert 0 < sum(labels) < len(labels)  # both classes among the rows compared


def test_connect_turns_mlflow_telemetry_off_outside_ci(tmp_path):
    """MLflow sends usage events unless MLFLOW_DISABLE_TELEMETRY or DO_NOT_TRACK is "true"; it
    stays quiet on its own only under CI markers, so the child gets none of them."""
    script = (
        "import sys; from mlops import tracking; "
        "tracking.connect(sys.argv[1]) if len(sys.argv) > 1 else None; "
        "from mlflow.telemetry.utils import is_telemetry_disabled; print(is_telemetry_disabled())"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DO_NOT_TRACK": "1"}

    def disabled(*argv: str) -> str:
        found = subprocess.run(
            [sys.executable, "-c", script, *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert found.returncode == 0, found.stderr
        return found.stdout.strip().splitlines()[-1]

    assert disabled() == "False"  # what a user's machine does without the project's switch
    assert disabled(tracking.EMBEDDED_URI) == "True"
