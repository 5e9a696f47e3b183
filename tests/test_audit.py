import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from helpers import run_cli
from mlops import audit

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "pip_audit"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A project dir with params.yaml and two lock files; pip-audit replaced by a fake."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    for lock in audit.LOCKS:
        (tmp_path / lock).write_text("numpy==2.3.1 --hash=sha256:00\n")
    script = FIXTURES / "fake_pip_audit.py"
    monkeypatch.setenv("PIP_AUDIT", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}")
    monkeypatch.setenv("FAKE_AUDIT_ARGV", str(tmp_path / "argv.txt"))
    monkeypatch.setenv("CI", "true")  # this project's own CI: offline, and not GitHub
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("AUDIT_IGNORE", raising=False)

    def use(report: str | None, rc: int = 0, github: bool = False, stderr: str = ""):
        if report:
            monkeypatch.setenv("FAKE_AUDIT_REPORT", str(FIXTURES / f"{report}.json"))
        else:
            monkeypatch.delenv("FAKE_AUDIT_REPORT", raising=False)
        monkeypatch.setenv("FAKE_AUDIT_RC", str(rc))
        if stderr:
            monkeypatch.setenv("FAKE_AUDIT_STDERR", stderr)
        if github:
            monkeypatch.setenv("GITHUB_ACTIONS", "true")

    return use


def result(path: Path = Path("reports/audit.json")) -> dict:
    return json.loads(path.read_text())


def test_clean_audit_passes_on_github(fake, capsys, tmp_path):
    fake("clean", github=True)
    code, err = run_cli(capsys, "audit")
    assert code == 0
    assert "dependency audit passed: 2 packages audited, no known vulnerabilities" in err
    assert result()["status"] == "passed"
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert "--disable-pip" in argv
    assert argv[argv.index("--format") + 1] == "json"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--requirement"] == [
        "requirements.lock",
        "requirements-dev.lock",
    ]
    assert "**✅ passed**" in Path("reports/audit.md").read_text()


def test_not_audited_is_a_loud_skip_locally_even_with_ci_true(fake, capsys):
    fake("unreachable")  # real pip-audit output on this machine: every package skipped
    code, err = run_cli(capsys, "audit")
    assert code == 0
    assert "!! SKIPPED, NOT PASSED: 5 of 5 packages COULD NOT BE AUDITED" in err
    assert "annotated-doc: Dependency not found on PyPI" in err
    report = result()
    assert report["status"] == "skipped"
    assert report["audited"] == 0
    assert len(report["skipped"]) == 5
    assert "SKIPPED (not a pass)" in Path("reports/audit.md").read_text()


def test_not_audited_fails_on_github(fake, capsys):
    fake("unreachable", github=True)
    code, err = run_cli(capsys, "audit")
    assert code == 1
    assert "FAILED: dependency audit: 5 of 5 packages COULD NOT BE AUDITED" in err
    assert result()["status"] == "failed"


@pytest.mark.parametrize("github", [False, True])
def test_partly_audited(fake, capsys, github):
    fake("partial", github=github)
    code, err = run_cli(capsys, "audit")
    assert code == (1 if github else 0)
    assert "1 of 2 packages COULD NOT BE AUDITED (private-lib:" in err


@pytest.mark.parametrize("github", [False, True])
def test_vulnerability_fails_everywhere(fake, capsys, github):
    fake("vulnerable", rc=1, github=github)
    code, err = run_cli(capsys, "audit")
    assert code == 1
    assert "2 known vulnerabilities: jinja2 3.1.4 GHSA-q2x7-8rv6-6q7h (fix: 3.1.5)" in err
    assert "h11 0.14.0 GHSA-vqfr-h8mv-ghfj" in err
    assert len(result()["vulnerabilities"]) == 2
    assert (
        "| jinja2 | 3.1.4 | GHSA-q2x7-8rv6-6q7h | 3.1.5 |" in Path("reports/audit.md").read_text()
    )


@pytest.mark.parametrize("github", [False, True])
def test_pip_audit_crash_is_never_a_pass(fake, capsys, github):
    fake(None, rc=1, github=github, stderr="Traceback...\nConnectionError: Failed to resolve")
    code, err = run_cli(capsys, "audit")
    assert code == (1 if github else 0)
    assert "NOTHING WAS AUDITED: pip-audit exited 1: ConnectionError: Failed to resolve" in err
    assert result()["status"] == ("failed" if github else "skipped")


def test_missing_command_and_ignored_vulns(fake, capsys, monkeypatch, tmp_path):
    fake("clean")
    monkeypatch.setenv("AUDIT_IGNORE", "GHSA-1 PYSEC-2")
    assert run_cli(capsys, "audit")[0] == 0
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[argv.index("--ignore-vuln") + 1] == "GHSA-1"
    assert argv.count("--ignore-vuln") == 2
    monkeypatch.setenv("PIP_AUDIT", str(tmp_path / "no-such-pip-audit"))
    code, err = run_cli(capsys, "audit")
    assert code == 0
    assert "NOTHING WAS AUDITED: pip-audit did not run" in err


def test_missing_lock_is_exit_2(fake, capsys):
    fake("clean")
    Path("requirements.lock").unlink()
    code, err = run_cli(capsys, "audit")
    assert code == 2
    assert "requirements.lock: lock file not found" in err


def test_malformed_reports(fake, capsys, tmp_path, monkeypatch):
    (tmp_path / "bad.json").write_text("[]")
    fake(None)
    monkeypatch.setenv("FAKE_AUDIT_REPORT", str(tmp_path / "bad.json"))
    code, err = run_cli(capsys, "audit")
    assert code == 2
    assert "pip-audit report: no 'dependencies' list" in err
    (tmp_path / "bad.json").write_text("not json")
    code, err = run_cli(capsys, "audit")
    assert code == 0
    assert "NOTHING WAS AUDITED: pip-audit wrote unreadable JSON" in err
    outcome = audit.parse({"dependencies": ["odd", {"name": "x", "version": "1", "vulns": None}]})
    assert outcome.skipped == [("?", "no result")]
    assert outcome.audited == ["x"]


def test_real_pip_audit_is_the_default(monkeypatch):
    monkeypatch.delenv("PIP_AUDIT", raising=False)
    assert audit.command() == [sys.executable, "-m", "pip_audit"]
    import subprocess

    done = subprocess.run([*audit.command(), "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.startswith("pip-audit ")
