"""Executable docs: run the shell blocks of the docs in a project copy and compare what they print.

The convention (summed up in README.md, "Commands in these docs are tested"):

- A ```console block is a terminal session. A line starting with `$ ` is a command; lines that
  follow starting with `> ` continue it (the shell's second prompt). Every other line up to the
  next `$ ` is the expected output: stdout and stderr together, as a terminal shows them. A last
  line `[exit N]` says the command exits N; otherwise it must exit 0. A command without output
  lines is run and must exit 0, its output is not compared.
- A ```bash / ```sh / ```shell block is run line by line (a trailing `\\` continues a line); each
  command must exit 0.
- Placeholders in expected output: `…` inside a line matches any text; a line that is only `…`
  matches any number of lines; `<sha256>` matches 64 hex digits. Nothing else may differ.
- `<!-- doc-test: skip (reason) -->` right above a block skips it; the reason is reported.
  `<!-- doc-test: session NAME -->` puts a block in a session of its own (another fresh copy,
  e.g. a walkthrough that replaces data/raw); the others run in the session `main`.
- A command ending in ` &` is started in the background (a server); the run waits until it
  listens on $PORT and stops it at the end.
- Declared substitutions: `127.0.0.1:8000` (or `localhost:8000`) in a command becomes the free
  port the run uses (also exported as PORT, which `make serve` reads); commands run with the
  PATH of a plain shell (no activated venv: a doc that says `python -m mlops` where a reader needs
  `.venv/bin/python -m mlops` fails) and unbuffered Python, from the project root.
- A number followed by `<!-- doc-number: FILE KEY -->` is checked against reports/FILE's KEY
  (dots separate keys; a list or mapping counts its items) to within half a unit of its last
  shown digit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The documents whose commands are run, in this order, in one project copy.
DOCS = (
    "README.md",
    "docs/pipeline.md",
    "docs/runbook.md",
    "data/raw/README.md",
    "models/README.md",
    "reports/README.md",
)
SHELLS = {"console", "bash", "sh", "shell"}
# An untagged block starting a line like this holds commands the run would silently pass over.
UNTAGGED_COMMAND = re.compile(r"^\s*(\$ |make |curl |python |\.venv/|docker |gh )")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
SKIP = re.compile(r"<!--\s*doc-test:\s*skip\s*\((.+)\)\s*-->")
SESSION = re.compile(r"<!--\s*doc-test:\s*session\s+([\w-]+)\s*-->")
MAIN = "main"
EXIT = re.compile(r"^\[exit (\d+)\]$")
NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*<!--\s*doc-number:\s*(\S+)\s+(\S+)\s*-->")
PLACEHOLDERS = {"…": "[^\n]*?", "<sha256>": "[0-9a-f]{64}"}
DOC_PORTS = ("127.0.0.1:8000", "localhost:8000")
COMMAND_TIMEOUT = 600


@dataclass
class Command:
    text: str
    line: int
    expected: list[str] | None = None  # None: output not compared
    exit: int = 0

    @property
    def background(self) -> bool:
        return self.text.rstrip().endswith("&") and not self.text.rstrip().endswith("&&")


@dataclass
class Block:
    path: str
    line: int
    lang: str
    commands: list[Command]
    skip: str | None = None
    session: str = MAIN

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Outcome:
    """What a run found: counts, skips and every mismatch with its place in the docs."""

    blocks_run: int = 0
    commands_run: int = 0
    answers_compared: int = 0
    numbers_checked: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"docs: {self.blocks_run} block(s) run, {self.commands_run} command(s), "
            f"{self.answers_compared} answer(s) compared, {self.numbers_checked} number(s) "
            f"checked, {len(self.skipped)} skipped, {len(self.failures)} failed"
        ]
        lines += [f"  skipped {where}: {reason}" for where, reason in self.skipped]
        return "\n".join(lines)


def _console(lines: list[tuple[int, str]]) -> list[Command]:
    commands: list[Command] = []
    for number, text in lines:
        if text.startswith("$ "):
            commands.append(Command(text[2:], number, expected=[]))
        elif text.startswith("> ") and commands and not commands[-1].expected:
            commands[-1].text += "\n" + text[2:]
        elif commands:
            commands[-1].expected.append(text)
        elif text.strip():
            raise ValueError(f"line {number}: output before the first `$ ` command: {text!r}")
    for command in commands:
        while command.expected and not command.expected[-1].strip():
            command.expected.pop()
        if command.expected and (status := EXIT.match(command.expected[-1].strip())):
            command.exit = int(status.group(1))
            command.expected.pop()
        if not command.expected:
            command.expected = None
    return commands


def _script(lines: list[tuple[int, str]]) -> list[Command]:
    commands: list[Command] = []
    pending: Command | None = None
    for number, text in lines:
        if pending is None:
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            pending = Command(text, number)
        else:
            pending.text += "\n" + text
        if not text.endswith("\\"):
            commands.append(pending)
            pending = None
    if pending is not None:
        commands.append(pending)
    return commands


def parse(text: str, path: str = "<doc>") -> list[Block]:
    """Every shell block of a Markdown text, with its commands and expected answers."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        indent, lang, start = fence.group(1), fence.group(2).lower(), index
        body: list[tuple[int, str]] = []
        index += 1
        while index < len(lines) and not FENCE.match(lines[index]):
            body.append((index + 1, lines[index][len(indent) :].rstrip()))
            index += 1
        index += 1
        if not lang and any(UNTAGGED_COMMAND.match(text) for _, text in body):
            raise ValueError(f"{path}:{start + 1}: commands in an untagged block: tag it console")
        if lang not in SHELLS:
            continue
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        skip = SKIP.search(previous)
        session = SESSION.search(previous)
        try:
            commands = _console(body) if lang == "console" else _script(body)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        blocks.append(
            Block(
                path,
                start + 1,
                lang,
                commands,
                skip.group(1) if skip else None,
                session.group(1) if session else MAIN,
            )
        )
    return blocks


def pattern(expected: list[str]) -> re.Pattern[str]:
    """The regular expression an expected output stands for (placeholders expanded)."""
    parts = []
    for line in expected:
        if line.strip() == "…":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = re.split(r"(…|<sha256>)", line.rstrip())
        parts += [PLACEHOLDERS.get(piece) or re.escape(piece) for piece in pieces]
        parts.append("\n")
    return re.compile("".join(parts), re.DOTALL)


def normalise(output: str) -> str:
    """Terminal output as compared: no carriage returns or trailing spaces, no blank edges."""
    lines = [line.rstrip() for line in output.replace("\r", "").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "".join(line + "\n" for line in lines)


def matches(expected: list[str], output: str) -> bool:
    return pattern(expected).fullmatch(normalise(output)) is not None


def lookup(document: object, key: str) -> object:
    for part in key.split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return len(document) if isinstance(document, list | dict) else document


def check_numbers(text: str, path: str, reports: Path, outcome: Outcome) -> None:
    """Every `<!-- doc-number: FILE KEY -->` number against the report, half a last digit."""
    for number, name, key in NUMBER.findall(text):
        decimals = len(number.partition(".")[2])
        try:
            actual = lookup(json.loads((reports / name).read_text()), key)
        except (OSError, KeyError, IndexError, ValueError) as exc:
            outcome.failures.append(f"{path}: {number} ({name} {key}): cannot read: {exc!r}")
            continue
        outcome.numbers_checked += 1
        tolerance = 0.5 * 10**-decimals
        if not isinstance(actual, int | float) or abs(float(number) - actual) > tolerance:
            outcome.failures.append(f"{path}: says {number} for {name} {key}; the run: {actual}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Session:
    """Commands run one after another in one project directory, servers in the background."""

    def __init__(self, project: Path, port: int | None = None) -> None:
        self.project = project
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            "DO_NOT_TRACK": "1",
        }
        self.env.pop("MAKEFLAGS", None)
        self.env.pop("MAKELEVEL", None)
        self.background: list[tuple[subprocess.Popen, Path]] = []

    def command(self, text: str) -> str:
        for port in DOC_PORTS:
            text = text.replace(port, f"127.0.0.1:{self.port}")
        return text

    def run(self, text: str) -> tuple[str, int]:
        result = subprocess.run(
            ["bash", "-c", self.command(text)],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            encoding="utf-8",
            errors="replace",
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return result.stdout, result.returncode

    def start(self, text: str, timeout: float = 60) -> str | None:
        """Start a background command; None once it listens on the port, else why not."""
        log = self.project / f".doc-background-{len(self.background)}.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                ["bash", "-c", self.command(text.rstrip().removesuffix("&"))],
                cwd=self.project,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((process, log))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return f"exited {process.returncode}: {log.read_text()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return None
            except OSError:
                time.sleep(0.2)
        return f"not listening on port {self.port} after {timeout:.0f} s: {log.read_text()[-2000:]}"

    def close(self) -> None:
        for process, _ in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.background.clear()


def run_block(block: Block, session: Session, outcome: Outcome) -> None:
    outcome.blocks_run += 1
    for command in block.commands:
        where = f"{block.path}:{command.line}"
        outcome.commands_run += 1
        if command.background:
            problem = session.start(command.text)
            if problem:
                outcome.failures.append(f"{where}: `{command.text}` {problem}")
            continue
        output, code = session.run(command.text)
        if code != command.exit:
            outcome.failures.append(
                f"{where}: `{command.text}` exited {code}, the doc says {command.exit}\n"
                + normalise(output)[-3000:]
            )
        if command.expected is None:
            continue
        outcome.answers_compared += 1
        if not matches(command.expected, output):
            outcome.failures.append(
                f"{where}: `{command.text}` prints something else.\n--- the doc says:\n"
                + "\n".join(command.expected)
                + "\n--- it prints:\n"
                + normalise(output)[-3000:]
            )


def run_docs(
    project: Path, docs: tuple[str, ...] = DOCS, root: Path = ROOT, session_name: str = MAIN
) -> Outcome:
    """Run the shell blocks of one session of `docs` (read from root) in project, in order.

    The main session also checks the docs' annotated numbers against project/reports.
    """
    outcome = Outcome()
    session = Session(project)
    try:
        for path in docs:
            text = (root / path).read_text(encoding="utf-8")
            try:
                blocks = parse(text, path)
            except ValueError as exc:
                outcome.failures.append(str(exc))
                continue
            for block in (block for block in blocks if block.session == session_name):
                if block.skip:
                    outcome.skipped.append((block.where, block.skip))
                else:
                    run_block(block, session, outcome)
            if session_name == MAIN:
                check_numbers(text, path, project / "reports", outcome)
    finally:
        session.close()
    return outcome
