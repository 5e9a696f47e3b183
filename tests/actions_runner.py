"""A small stand-in for the GitHub Actions runner: runs a job's `run:` steps on this machine.

What it does as the runner does: bash --noprofile --norc -eo pipefail per step (the `shell: bash`
default), GITHUB_OUTPUT / GITHUB_ENV / GITHUB_STEP_SUMMARY / GITHUB_PATH files, GITHUB_ACTIONS=true,
workflow/job/step `env:` with `${{ }}` expressions evaluated, step `if:` conditions (status
functions, ==, !=, &&, ||, !, hashFiles, startsWith, contains), step outputs and outcomes,
continue-on-error. What it cannot do is skipped and recorded: `uses:` steps (actions), and steps
that call GitHub's API (their env names GH_TOKEN or GITHUB_TOKEN).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*))"
)
TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
API_TOKENS = ("GH_TOKEN", "GITHUB_TOKEN")


def load_workflow(path: Path) -> dict[str, Any]:
    """A workflow as a dict; PyYAML reads the key `on` as True, so it is renamed back."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


def text(value: Any) -> str:
    """How an expression result reads when interpolated into a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Expression:
    """Recursive-descent evaluator for the subset of GitHub expressions the workflows use."""

    def __init__(self, source: str, context: dict[str, Any], functions: dict[str, Any]):
        self.tokens: list[tuple[str, str]] = []
        position, source = 0, source.strip()
        while position < len(source):
            match = TOKEN.match(source, position)
            if not match or match.end() == position:
                raise ValueError(f"cannot parse expression at {source[position:]!r}")
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
            while position < len(source) and source[position].isspace():
                position += 1
        self.index, self.context, self.functions = 0, context, functions

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ValueError(f"expected {value!r}, got {token!r}")
        self.index += 1
        return token

    def evaluate(self) -> Any:
        value = self.either()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()!r}")
        return value

    def either(self) -> Any:
        value = self.both()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.both()
            value = value if truthy(value) else right
        return value

    def both(self) -> Any:
        value = self.compare()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.compare()
            value = right if truthy(value) else value
        return value

    def compare(self) -> Any:
        left = self.unary()
        if self.peek() in (("op", "=="), ("op", "!=")):
            operator = self.take()[1]
            equal = loose_equal(left, self.unary())
            return equal if operator == "==" else not equal
        return left

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value)
        if value == "(":
            inner = self.either()
            self.take(")")
            return inner
        if kind != "name":
            raise ValueError(f"unexpected {value!r}")
        if value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        if self.peek() == ("op", "("):
            self.take()
            args = []
            while self.peek() != ("op", ")"):
                args.append(self.either())
                if self.peek() == ("op", ","):
                    self.take()
            self.take(")")
            return self.functions[value](*args)
        node: Any = self.context
        for part in value.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node


def truthy(value: Any) -> bool:
    return value not in (None, False, "", 0, 0.0)


def loose_equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    return left == right


@dataclass
class StepResult:
    name: str
    status: str  # success, failure, skipped
    reason: str = ""
    returncode: int | None = None
    output: str = ""


@dataclass
class JobResult:
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return all(step.status != "failure" for step in self.steps)

    def ran(self) -> list[str]:
        return [step.name for step in self.steps if step.status != "skipped"]

    def step(self, name: str) -> StepResult:
        return next(step for step in self.steps if step.name == name)


def parse_file_commands(path: Path) -> dict[str, str]:
    """NAME=value lines and NAME<<DELIMITER heredocs, as in GITHUB_OUTPUT and GITHUB_ENV."""
    values: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    position = 0
    while position < len(lines):
        line = lines[position]
        position += 1
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            while position < len(lines) and lines[position] != delimiter:
                body.append(lines[position])
                position += 1
            position += 1
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


class Runner:
    """Runs one job of a workflow in workspace, as a GitHub-hosted runner would run its `run:`s."""

    def __init__(self, workspace: Path, scratch: Path, github: dict[str, Any], base_env: dict):
        self.workspace, self.scratch, self.github = workspace, scratch, github
        self.base_env = base_env

    def hash_files(self, *patterns: str) -> str:
        digest, found = hashlib.sha256(), False
        for pattern in patterns:
            for path in sorted(self.workspace.glob(pattern)):
                if path.is_file():
                    found = True
                    digest.update(path.read_bytes())
        return digest.hexdigest() if found else ""

    def evaluate(self, source: str, context: dict[str, Any], job_failed: bool) -> Any:
        functions = {
            "success": lambda: not job_failed,
            "failure": lambda: job_failed,
            "always": lambda: True,
            "cancelled": lambda: False,
            "hashFiles": self.hash_files,
            "startsWith": lambda a, b: text(a).lower().startswith(text(b).lower()),
            "contains": lambda a, b: text(b).lower() in text(a).lower(),
        }
        return Expression(source, context, functions).evaluate()

    def interpolate(self, value: Any, context: dict[str, Any], job_failed: bool = False) -> str:
        return TEMPLATE.sub(
            lambda m: text(self.evaluate(m.group(1), context, job_failed)), text(value)
        )

    def condition(self, source: Any, context: dict[str, Any], job_failed: bool) -> bool:
        """A step's `if:`; without a status function, success() is implied, as on GitHub."""
        if source is None:
            return not job_failed
        source = str(source).strip()
        match = TEMPLATE.fullmatch(source)
        source = match.group(1) if match else source
        result = truthy(self.evaluate(source, context, job_failed))
        if not re.search(r"\b(success|failure|always|cancelled)\(", source):
            result = result and not job_failed
        return result

    def run_job(
        self,
        workflow: dict[str, Any],
        job_id: str,
        extra_env: dict | None = None,
        contexts: dict[str, dict] | None = None,
    ):
        """contexts: e.g. {"secrets": {...}, "vars": {...}} (absent ones read as empty)."""
        job = workflow["jobs"][job_id]
        result = JobResult()
        context: dict[str, Any] = {
            **(contexts or {}),
            "github": self.github,
            "steps": result.outputs,
            "env": {},
        }
        env = dict(self.base_env)
        for scope in (workflow.get("env") or {}, job.get("env") or {}):
            for key, value in scope.items():
                env[key] = self.interpolate(value, {**context, "env": env})
        env.update(extra_env or {})
        summary_parts: list[str] = []
        job_failed = False
        for number, step in enumerate(job["steps"]):
            name = step.get("name") or step.get("uses") or f"step {number}"
            step_id = step.get("id", f"__{number}")
            context["env"] = env
            if "uses" in step:
                result.steps.append(StepResult(name, "skipped", "uses: an action"))
                continue
            if not self.condition(step.get("if"), context, job_failed):
                result.steps.append(StepResult(name, "skipped", f"if: {step.get('if')}"))
                result.outputs[step_id] = {"outputs": {}, "outcome": "skipped"}
                continue
            step_env = {
                key: self.interpolate(value, context, job_failed)
                for key, value in (step.get("env") or {}).items()
            }
            if any(key in step_env for key in API_TOKENS):
                result.steps.append(StepResult(name, "skipped", "calls GitHub's API"))
                result.outputs[step_id] = {"outputs": {}, "outcome": "skipped"}
                continue
            files = {
                key: self.scratch / f"{job_id}-{number}-{key.lower()}"
                for key in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY", "GITHUB_PATH")
            }
            for path in files.values():
                path.write_text("")
            script = self.scratch / f"{job_id}-{number}.sh"
            script.write_text(step["run"])
            workdir = self.workspace / step.get("working-directory", ".")
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=workdir,
                env={**env, **step_env, **{k: str(v) for k, v in files.items()}},
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
            )
            outcome = "success" if done.returncode == 0 else "failure"
            result.outputs[step_id] = {
                "outputs": parse_file_commands(files["GITHUB_OUTPUT"]),
                "outcome": outcome,
            }
            env.update(parse_file_commands(files["GITHUB_ENV"]))
            added = files["GITHUB_PATH"].read_text().split()
            if added:
                env["PATH"] = os.pathsep.join([*reversed(added), env.get("PATH", "")])
            summary_parts.append(files["GITHUB_STEP_SUMMARY"].read_text())
            status = outcome
            if outcome == "failure" and step.get("continue-on-error"):
                status = "success"
            elif outcome == "failure":
                job_failed = True
            result.steps.append(
                StepResult(name, status, "", done.returncode, done.stdout + done.stderr)
            )
        result.summary = "".join(summary_parts)
        return result
