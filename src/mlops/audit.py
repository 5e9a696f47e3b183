"""Dependency audit: pip-audit on the lock files, where "could not be audited" is never a pass.

pip-audit exits 0 when it could not look a package up (its advisory service unreachable, a
package unknown to it), so its exit code alone proves nothing. This reads its JSON report:
on GitHub Actions (GITHUB_ACTIONS=true) any vulnerability or any package not audited fails;
elsewhere a vulnerability fails, while an audit that could not run is reported loudly as a
SKIP (exit 0), never as a pass. `CI=true` alone does not mean GitHub: offline CI runs skip.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.config import Config
from mlops.errors import CheckFailed, InputError
from mlops.files import write_json, write_text

log = logging.getLogger(__name__)

LOCKS = (Path("requirements.lock"), Path("requirements-dev.lock"))
REPORT = Path("reports/audit.json")
MARKDOWN = Path("reports/audit.md")
HEADINGS = {"passed": "✅ passed", "failed": "❌ FAILED", "skipped": "⚠️ SKIPPED (not a pass)"}
TIMEOUT_S = 900


@dataclass
class Outcome:
    """What pip-audit's JSON report says: audited packages, skipped ones, vulnerabilities."""

    audited: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)


def parse(report: Any) -> Outcome:
    """Outcome of a pip-audit `--format json` report; a malformed one is an InputError."""
    if not isinstance(report, dict) or not isinstance(report.get("dependencies"), list):
        raise InputError("pip-audit report: no 'dependencies' list")
    outcome = Outcome()
    for dep in report["dependencies"]:
        name = str(dep.get("name", "?")) if isinstance(dep, dict) else "?"
        if not isinstance(dep, dict) or "skip_reason" in dep or "vulns" not in dep:
            reason = dep.get("skip_reason") if isinstance(dep, dict) else None
            outcome.skipped.append((name, str(reason or "no result")))
            continue
        outcome.audited.append(name)
        for vuln in dep["vulns"] or []:
            outcome.vulnerabilities.append(
                {
                    "package": name,
                    "version": dep.get("version"),
                    "id": vuln.get("id"),
                    "fix_versions": vuln.get("fix_versions", []),
                }
            )
    return outcome


def command() -> list[str]:
    """pip-audit's command line prefix: $PIP_AUDIT if set, else this interpreter's pip_audit."""
    override = os.environ.get("PIP_AUDIT")
    return shlex.split(override) if override else [sys.executable, "-m", "pip_audit"]


def audit(locks: tuple[Path, ...]) -> tuple[Outcome | None, str]:
    """Run pip-audit on the hashed lock files: (outcome, "") or (None, why it could not run)."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "pip-audit.json"
        args = [*command(), "--disable-pip", "--format", "json", "--output", str(output)]
        args += ["--progress-spinner", "off"]
        for lock in locks:
            args += ["--requirement", str(lock)]
        for vuln in os.environ.get("AUDIT_IGNORE", "").split():
            args += ["--ignore-vuln", vuln]
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"pip-audit did not run: {exc}"
        if done.returncode not in (0, 1) or not output.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"pip-audit exited {done.returncode}: {last}"
        try:
            return parse(json.loads(output.read_text(encoding="utf-8"))), ""
        except ValueError as exc:
            return None, f"pip-audit wrote unreadable JSON: {exc}"


def banner(text: str) -> None:
    """A message nobody can miss in a CI log."""
    rule = "!" * 78
    print(f"{rule}\n!! {text}\n{rule}", file=sys.stderr, flush=True)


def judge(outcome: Outcome | None, problem: str, on_github: bool) -> tuple[str, str]:
    """(status, message): status is passed, failed or skipped."""
    if outcome is not None and outcome.vulnerabilities:
        found = ", ".join(
            f"{v['package']} {v['version']} {v['id']}"
            + (f" (fix: {', '.join(v['fix_versions'])})" if v["fix_versions"] else "")
            for v in outcome.vulnerabilities
        )
        return "failed", f"{len(outcome.vulnerabilities)} known vulnerabilities: {found}"
    if outcome is None:
        not_audited = f"NOTHING WAS AUDITED: {problem}"
    elif outcome.skipped:
        total = len(outcome.skipped) + len(outcome.audited)
        example = f"{outcome.skipped[0][0]}: {outcome.skipped[0][1]}"
        not_audited = f"{len(outcome.skipped)} of {total} packages COULD NOT BE AUDITED ({example})"
    else:
        return "passed", f"{len(outcome.audited)} packages audited, no known vulnerabilities"
    if on_github:
        return "failed", not_audited
    return "skipped", f"SKIPPED, NOT PASSED: {not_audited} (advisory service unreachable here?)"


def markdown(status: str, message: str, outcome: Outcome | None) -> str:
    """The job summary: verdict first, then a table of vulnerabilities if any."""
    lines = ["### Dependency audit (pip-audit)", "", f"**{HEADINGS[status]}**: {message}", ""]
    if outcome is not None and outcome.vulnerabilities:
        lines += ["| package | version | advisory | fixed in |", "|---|---|---|---|"]
        lines += [
            f"| {v['package']} | {v['version']} | {v['id']} | {', '.join(v['fix_versions'])} |"
            for v in outcome.vulnerabilities
        ]
    return "\n".join(lines).rstrip() + "\n"


def run(config: Config, locks: tuple[Path, ...] = LOCKS) -> None:
    """Audit the locks, write reports/audit.{json,md}, and fail as described in the module doc."""
    del config  # the audit reads no params; the signature is the stage convention
    missing = [str(lock) for lock in locks if not lock.is_file()]
    if missing:
        raise InputError(f"{', '.join(missing)}: lock file not found")
    on_github = os.environ.get("GITHUB_ACTIONS") == "true"
    log.info("pip-audit on %s (%s)", ", ".join(map(str, locks)), "GitHub" if on_github else "local")
    outcome, problem = audit(locks)
    status, message = judge(outcome, problem, on_github)
    write_json(
        REPORT,
        {
            "status": status,
            "message": message,
            "on_github": on_github,
            "audited": len(outcome.audited) if outcome else 0,
            "skipped": [list(item) for item in outcome.skipped] if outcome else [],
            "vulnerabilities": outcome.vulnerabilities if outcome else [],
        },
    )
    write_text(MARKDOWN, markdown(status, message, outcome))
    if status == "failed":
        raise CheckFailed(f"dependency audit: {message}")
    if status == "skipped":
        banner(message)
    else:
        log.info("dependency audit passed: %s", message)
