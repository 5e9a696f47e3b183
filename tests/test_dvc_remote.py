"""data/raw in a real DVC remote (a local folder, and S3 on a loopback moto_server): convert with
`make data-remote`, clone elsewhere, `make train` pulls and trains the same model bytes; the bad
cases are one line and exit 2 with data/processed and models untouched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import objectstore
from helpers import GIT, ROOT, clone_env, git_clone, run_in, sha256
from mlops import dvc_remote
from mlops.config import load_config
from mlops.errors import InputError

MODEL = Path("models/candidate/model.skops")
RAW = ("employment_MA_2015.csv", "employment_MA_2016.csv", "employment_MA_2017.csv")


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def failed_one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The single error line of a command that exited 2, checked to contain every word."""
    assert result.returncode == 2, f"{result.args}: {result.stdout}{result.stderr}"
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def origin(trained_clone: Path) -> tuple[Path, str]:
    """A clone of this branch (raw data in git) after `make train`, and its model's sha256."""
    return trained_clone, sha256(trained_clone / MODEL)


def convert(
    origin: Path, where: Path, remote: str, env: dict | None = None, twice: bool = False
) -> Path:
    """A clone of origin whose data/raw moved to the remote, committed."""
    repo = git_clone(origin, where)
    env = env or clone_env(repo)
    result = ok(run_in(repo, "make", "data-remote", f"REMOTE={remote}", env=env))
    assert "git commit" in result.stdout
    staged = run_in(repo, "git", "diff", "--cached", "--name-status").stdout
    assert "A\tdata/raw.dvc" in staged
    assert "D\tdata/raw/employment_MA_2015.csv" in staged
    assert (repo / "data/raw/employment_MA_2015.csv").is_file()  # kept on disk
    if twice:  # idempotent
        again = ok(run_in(repo, "make", "data-remote", f"REMOTE={remote}", env=env))
        assert "git commit" in again.stdout
    ok(run_in(repo, *GIT, "commit", "--quiet", "-m", "data: data/raw in DVC", env=env))
    assert not run_in(repo, "git", "ls-files", "data/raw/").stdout.strip()
    return repo


@pytest.fixture(scope="module")
def converted(origin, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A clone of origin moved to a local-folder remote (converted twice: idempotent) and that
    remote; shared by this module's tests (read-only: clone it to change anything)."""
    where = tmp_path_factory.mktemp("converted")
    remote = where / "remote"
    repo = convert(origin[0], where / "repo", str(remote), twice=True)
    assert any(remote.rglob("*")), "dvc push wrote nothing to the remote"
    return repo, remote


def test_local_folder_remote_clone_pull_train_same_model(origin, converted, tmp_path):
    _, expected = origin
    repo, _ = converted

    elsewhere = git_clone(repo, tmp_path / "elsewhere")
    assert not (elsewhere / "data/raw").exists()
    result = ok(run_in(elsewhere, "make", "train"))
    assert "dvc pull data/raw" in result.stdout
    assert sha256(elsewhere / MODEL) == expected

    # Nothing to pull: no Python process at all, nothing rewritten, no stage runs.
    state = elsewhere / ".make/raw.json"
    before = state.stat().st_mtime_ns
    again = ok(run_in(elsewhere, "make", "data"))
    assert "[dvc-pull]" not in again.stderr
    assert "==> data" not in again.stdout
    # A file touched but unchanged: checked again (hashed) and not pulled (data re-runs, as
    # for a touched raw file in git).
    (elsewhere / "data/raw" / RAW[2]).touch()
    touched = ok(run_in(elsewhere, "make", "data"))
    assert "[dvc-pull]" in touched.stderr
    assert "dvc pull" not in touched.stdout
    assert state.stat().st_mtime_ns == before

    # A deleted raw file is pulled again; the split is re-made from identical bytes.
    (elsewhere / "data/raw" / RAW[0]).unlink()
    assert "dvc pull data/raw" in ok(run_in(elsewhere, "make", "data")).stdout
    assert (elsewhere / "data/raw" / RAW[0]).is_file()


def test_s3_remote_on_moto_clone_pull_train_same_model(origin, tmp_path, s3):
    source, expected = origin
    repo = convert(source, tmp_path / "converted", f"{s3}/dvc")
    elsewhere = git_clone(repo, tmp_path / "elsewhere")
    assert "dvc pull data/raw" in ok(run_in(elsewhere, "make", "train")).stdout
    assert sha256(elsewhere / MODEL) == expected


def test_accept_data_adds_and_pushes_new_files(converted, tmp_path):
    repo = git_clone(converted[0], tmp_path / "repo")
    ok(run_in(repo, "make", "data"))  # pulls data/raw
    extra = repo / "data/raw/employment_MA_2019.csv"
    shutil.copy(repo / "data/raw" / RAW[0], extra)
    ok(run_in(repo, "make", "accept-data"))
    assert "employment_MA_2019.csv" in (repo / "data/raw/SHA256SUMS").read_text()
    assert run_in(repo, "git", "status", "--porcelain", "data/raw.dvc").stdout.strip()
    ok(run_in(repo, *GIT, "commit", "--quiet", "-am", "data: 2019"))
    elsewhere = git_clone(repo, tmp_path / "elsewhere")
    ok(run_in(elsewhere, "make", "data"))
    assert (elsewhere / "data/raw/employment_MA_2019.csv").read_bytes() == extra.read_bytes()


@pytest.fixture
def pulled(converted, tmp_path) -> Path:
    """A clone of the converted repository after `make data` (which pulled data/raw)."""
    elsewhere = git_clone(converted[0], tmp_path / "elsewhere")
    ok(run_in(elsewhere, "make", "data"))
    return elsewhere


def outputs(repo: Path) -> dict[str, str]:
    return {
        str(path.relative_to(repo)): sha256(path)
        for folder in ("data/processed", "models")
        for path in sorted((repo / folder).rglob("*"))
        if path.is_file()
    }


def test_pointer_not_in_the_remote(pulled, tmp_path):
    repo = pulled
    before = outputs(repo)
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    ok(run_in(repo, "dvc", "remote", "modify", "--local", "storage", "url", str(empty)))
    shutil.rmtree(repo / ".dvc/cache")
    (repo / "data/raw" / RAW[1]).unlink()
    failed_one_line(run_in(repo, "make", "data"), "data/raw.dvc", "dvc push data/raw")
    assert outputs(repo) == before


def test_corrupted_cache_file_is_fetched_again(pulled):
    repo = pulled
    cached = next(p for p in (repo / ".dvc/cache").rglob("*") if p.is_file() and p.suffix != ".dir")
    cached.chmod(0o644)
    cached.write_bytes(b"corrupted\n")
    for name in RAW:
        (repo / "data/raw" / name).unlink()
    ok(run_in(repo, "make", "data"))
    assert run_in(repo, "make", "data").returncode == 0
    ok(run_in(repo, sys.executable, "-m", "mlops", "data"))  # the checksums verify


def test_local_edits_are_not_overwritten(pulled):
    repo = pulled
    edited = repo / "data/raw" / RAW[0]
    edited.write_text(edited.read_text() + edited.read_text().splitlines()[-1] + "\n")
    failed_one_line(run_in(repo, "make", "data"), "make accept-data", "dvc checkout --force")
    assert edited.read_text().count("\n") > 1


def test_unreachable_s3_remote(origin, tmp_path, s3_server, s3):
    source, _ = origin
    repo = convert(source, tmp_path / "converted", f"{s3}/dvc")
    elsewhere = git_clone(repo, tmp_path / "elsewhere")
    # botocore's retries (with back-off) are what a user waits through too; one attempt here.
    closed = {**objectstore.environment("http://127.0.0.1:9"), "AWS_MAX_ATTEMPTS": "1"}
    result = run_in(elsewhere, "make", "data", env=clone_env(elsewhere, **closed))
    failed_one_line(result, "unreachable", "dvc remote list")
    assert not (elsewhere / "data/processed").exists()


def test_wrong_credentials(origin, tmp_path, s3):
    """A second moto_server that checks every request's credentials (IAM): the keys are not
    its users', so the pull is refused."""
    source, _ = origin
    repo = convert(source, tmp_path / "converted", f"{s3}/dvc")
    elsewhere = git_clone(repo, tmp_path / "elsewhere")
    checking = {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    with objectstore.moto_server(tmp_path / "moto.log", env=checking) as endpoint:
        env = clone_env(elsewhere, **objectstore.environment(endpoint))
        result = run_in(elsewhere, "make", "data", env=env)
    failed_one_line(result, "refused", "AWS_ACCESS_KEY_ID")
    assert not (elsewhere / "data/processed").exists()


def test_dvc_not_installed(pulled, tmp_path):
    """The pointer is there, DVC is not importable (a site hook refuses it, as when it is not
    installed): one line saying how to install it."""
    repo = pulled
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoDvc:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'dvc' or name.startswith('dvc.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, NoDvc())\n"
    )
    (repo / "data/raw" / RAW[0]).unlink()
    env = clone_env(repo, PYTHONPATH=f"{hook}:{repo / 'src'}")
    failed_one_line(run_in(repo, "make", "data", env=env), "DVC is not installed", "[dvc]")


def test_refuses_uncommitted_raw_changes(origin, tmp_path):
    source, _ = origin
    repo = git_clone(source, tmp_path / "repo")
    (repo / "data/raw" / RAW[0]).write_text("changed\n")
    result = run_in(repo, "make", "data-remote", f"REMOTE={tmp_path / 'remote'}")
    failed_one_line(result, "data/raw", "uncommitted")
    assert not (repo / "data/raw.dvc").exists()


def test_make_all_without_a_pointer_imports_nothing_of_dvc(tmp_path):
    """The pipeline's entry (Make's queue runner), in a fresh interpreter: no dvc module loaded."""
    from conftest import copy_project

    root = copy_project(tmp_path / "project")
    code = (
        "import sys\n"
        "from mlops.cli import main\n"
        "code = main(['stages', '--stamps', '.make', 'data', 'validate'])\n"
        "loaded = sorted(m for m in sys.modules if m == 'dvc' or m.startswith(('dvc.', 'dvc_')))\n"
        "print('DVC-MODULES', loaded)\n"
        "sys.exit(code)\n"
    )
    result = ok(run_in(root, sys.executable, "-c", code, env=clone_env(ROOT)))
    assert "DVC-MODULES []" in result.stdout


# ---------------------------------------------------------------- in this process


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "ERROR: failed to pull data from the cloud - Can't remove the following unsaved "
            "files without confirmation. Use `--force` to force.\n/x/data/raw/a.csv",
            "`make accept-data` keeps them",
        ),
        (
            "ERROR: failed to pull data from the cloud - Checkout failed for following targets:"
            "\ndata/raw\nIs your cache up to date?",
            "`dvc push data/raw`",
        ),
        ("ERROR: unexpected error - Unable to locate credentials", "no credentials"),
        ("An error occurred (InvalidAccessKeyId) when calling", "refused the credentials"),
        ("An error occurred (SignatureDoesNotMatch) when calling", "refused the credentials"),
        ("An error occurred (AccessDenied): Access Denied", "denied access"),
        ("failed to connect to s3 (b/x) - Forbidden: An error occurred (403)", "refused access"),
        ("ERROR: unexpected error - The bucket does not exist (NoSuchBucket)", "bucket"),
        ('ERROR: unexpected error - Could not connect to the endpoint URL: "x"', "unreachable"),
        ("No remote provided and no default remote set.", "make data-remote REMOTE="),
        ("ERROR: something new\n\nHaving any troubles? Hit us up", "dvc: something new"),
    ],
)
def test_dvc_errors_become_one_line_with_the_fix(output, expected):
    line = dvc_remote.problem(output)
    assert expected in line
    assert "\n" not in line


def test_without_a_pointer_nothing_is_checked(fresh):
    stamp = fresh / ".make/raw.json"
    dvc_remote.pull_command(load_config("params.yaml"), stamp)
    assert not stamp.exists()


def test_a_pointer_that_is_not_one(fresh):
    (fresh / "data/raw.dvc").write_text("not: a pointer\n")
    with pytest.raises(InputError, match=r"data/raw\.dvc: not a DVC pointer"):
        dvc_remote.pull_command(load_config("params.yaml"), fresh / ".make/raw.json")


def test_data_remote_needs_a_url_and_a_git_checkout(fresh):
    config = load_config("params.yaml")
    with pytest.raises(InputError, match="REMOTE=<url> is required"):
        dvc_remote.remote_command(config, "")
    with pytest.raises(InputError, match="not a git checkout"):
        dvc_remote.remote_command(config, str(fresh / "remote"))


def test_pull_in_process_restores_and_records(pulled, monkeypatch):
    """The check and the pull as Make's step runs them, here: a deleted file comes back, the
    state lists every file, and Make's list of them is written beside it."""
    repo = pulled
    monkeypatch.chdir(repo)
    (repo / "data/raw" / RAW[0]).unlink()
    stamp = repo / ".make/raw.json"
    dvc_remote.pull_command(load_config("params.yaml"), stamp)
    assert (repo / "data/raw" / RAW[0]).is_file()
    state = json.loads(stamp.read_text())
    assert set(state["files"]) >= {*RAW, "SHA256SUMS"}
    assert f"data/raw/{RAW[0]}" in (repo / ".make/raw.mk").read_text()
    checked = dvc_remote.up_to_date(load_config("params.yaml"), stamp)
    assert {name: seen[2] for name, seen in checked["files"].items()} == state["files"]
