"""The docs are executed, not trusted: every shell block of README.md, docs/ and the folder READMEs
runs in a project copy (real Make, real pipeline, real uvicorn on loopback) and what it prints is
compared with what the docs say it prints (convention: tests/docs_harness.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import docs_harness as harness
from helpers import MAKE_FILES, made_copy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docs_project(tmp_path_factory: pytest.TempPathFactory, promoted_dir: Path) -> Path:
    """The promoted project as Make left it after promote (conftest.made_copy), plus the docs:
    the docs' `make all` runs only what remains (drift) instead of the whole pipeline again."""
    root = made_copy(promoted_dir, tmp_path_factory.mktemp("docs") / "project")
    for name in harness.DOCS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    return root


def report(request: pytest.FixtureRequest, session: str, outcome: harness.Outcome) -> None:
    """Show the counts at the end of the run (and in junit XML); fail with every mismatch.

    The counts travel as a user property (so they reach the main process from a test worker);
    conftest.py prints every test's "docs" property in the terminal summary.
    """
    request.node.user_properties.append(("docs", f"[session {session}] {outcome.summary()}"))
    if outcome.failures:
        pytest.fail(outcome.summary() + "\n\n" + "\n\n".join(outcome.failures), pytrace=False)


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """What a fresh clone holds for the pipeline, with its own git history: no outputs at all."""
    root = tmp_path / "clone"
    for name in (*MAKE_FILES, "params.yaml", "src", "data/raw", "tests/data/titanic"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, root / name)
    (root / ".venv").symlink_to(Path(sys.prefix))
    git = ["git", "-c", "user.name=docs", "-c", "user.email=docs@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True, timeout=60)
    return root


def test_own_dataset_walkthrough_answers_what_it_says(
    fresh_clone: Path, request: pytest.FixtureRequest
) -> None:
    """docs/pipeline.md's walkthrough replaces data/raw, so it runs in a clone of its own."""
    outcome = harness.run_docs(fresh_clone, ("docs/pipeline.md",), session_name="own-data")
    report(request, "own-data", outcome)
    assert outcome.answers_compared > 0


def test_own_dataset_walkthrough_after_make_all(
    promoted_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The walkthrough in a repository that already ran the README's `make all` (production v1
    on the ACS columns): `make schema` starts a new lineage and the walkthrough's `make all`
    promotes v1 of the new table instead of rejecting it against the old model (#26, item 13)."""
    root = made_copy(promoted_dir, tmp_path / "clone")
    for name in ("tests/data/titanic", *harness.DOCS):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, root / name)
    git = ["git", "-c", "user.name=docs", "-c", "user.email=docs@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True, timeout=60)
    outcome = harness.run_docs(root, ("docs/pipeline.md",), session_name="own-data")
    report(request, "own-data-after-make-all", outcome)
    assert outcome.answers_compared > 0
    archived = list((root / "models/archive").iterdir())
    assert len(archived) == 1
    assert (archived[0] / "v1/model.skops").is_file()
    assert (archived[0] / "registry.json").is_file()


def test_runbook_gate_answers_what_it_says(
    promoted_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The runbook's gate session: a rejection said last even when drift alerts, PARAMS= honoured
    with fresh stamps, a failing validation, and the gate re-run after a forced promotion."""
    root = made_copy(promoted_dir, tmp_path / "gate")
    outcome = harness.run_docs(root, ("docs/runbook.md",), session_name="gate")
    report(request, "gate", outcome)
    assert outcome.answers_compared >= 4


def test_api_tokens_example_answers_what_it_says(
    docs_project: Path, request: pytest.FixtureRequest
) -> None:
    """README's API tokens example starts a server of its own (with a token): its own session."""
    outcome = harness.run_docs(docs_project, ("README.md",), session_name="tokens")
    report(request, "tokens", outcome)
    assert outcome.answers_compared > 0


def test_docs_answer_what_the_real_thing_answers(
    docs_project: Path, request: pytest.FixtureRequest
) -> None:
    outcome = harness.run_docs(docs_project)
    report(request, harness.MAIN, outcome)
    assert outcome.answers_compared > 0
    assert outcome.numbers_checked > 0


CONSOLE = """\
Intro.

```console
$ printf 'a\\nb\\n'
a
b
$ echo "$PORT" >&2; exit 3
…
[exit 3]
$ curl -s http://127.0.0.1:8000/x \\
> && echo
```

<!-- doc-test: skip (needs a Docker engine) -->
```bash
docker run \\
  image
```

```text
$ not run
```
"""


def test_parse_reads_commands_outputs_exit_codes_and_skips() -> None:
    console, docker = harness.parse(CONSOLE, "doc.md")
    assert [c.text for c in console.commands] == [
        "printf 'a\\nb\\n'",
        'echo "$PORT" >&2; exit 3',
        "curl -s http://127.0.0.1:8000/x \\\n&& echo",
    ]
    assert [c.expected for c in console.commands] == [["a", "b"], ["…"], None]
    assert [c.exit for c in console.commands] == [0, 3, 0]
    assert console.where == "doc.md:3"
    assert console.skip is None
    assert docker.skip == "needs a Docker engine"
    assert [c.text for c in docker.commands] == ["docker run \\\n  image"]


def test_parse_refuses_output_before_a_command() -> None:
    with pytest.raises(ValueError, match=r"doc\.md: line 2: output before"):
        harness.parse("```console\nstray\n$ true\n```\n", "doc.md")


def test_parse_refuses_commands_in_an_untagged_block() -> None:
    assert harness.parse("```\nmodels/v1/   a version\n```\n") == []
    with pytest.raises(ValueError, match=r"doc\.md:1: commands in an untagged block"):
        harness.parse("```\nmake rollback   # the previous one\n```\n", "doc.md")


@pytest.mark.parametrize(
    ("expected", "output", "ok"),
    [
        (['{"a":1}'], '{"a":1}\n', True),
        (['{"a":1}'], '{"a":2}\n', False),
        (["x-request-id: …"], "x-request-id: 3f2a\r\n", True),
        (["…", "last"], "one\ntwo\nlast\n", True),
        (["…", "last"], "last\n", True),
        (["first", "…"], "first\n", True),
        (["first"], "first\nextra\n", False),
        (["sha <sha256>"], "sha " + "ab" * 32 + "\n", True),
        (["sha <sha256>"], "sha abc\n", False),
        (["1.5 …"], "1.5 s  \n\n", True),
    ],
)
def test_expected_output_matches_only_through_declared_placeholders(expected, output, ok) -> None:
    assert harness.matches(expected, output) is ok


def test_a_drifted_answer_fails_with_both_texts(tmp_path: Path) -> None:
    (tmp_path / "doc.md").write_text(
        "```console\n$ echo 'label 1'\nlabel 0\n$ false\n$ true\n[exit 1]\n```\n"
        "<!-- doc-test: skip (needs GitHub) -->\n```bash\ngh release list\n```\n"
    )
    outcome = harness.run_docs(tmp_path, ("doc.md",), root=tmp_path)
    assert (outcome.blocks_run, outcome.commands_run, outcome.answers_compared) == (1, 3, 1)
    assert outcome.skipped == [("doc.md:9", "needs GitHub")]
    first, second, third = outcome.failures
    assert first.startswith("doc.md:2: `echo 'label 1'` prints something else")
    assert "the doc says:\nlabel 0\n--- it prints:\nlabel 1" in first
    assert "doc.md:4: `false` exited 1, the doc says 0" in second
    assert "doc.md:5: `true` exited 0, the doc says 1" in third


def test_numbers_are_checked_to_half_their_last_digit(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.79364, "columns": {"a": 1, "b": 2}}')
    text = (
        "reaches 0.794<!-- doc-number: metrics.json accuracy --> accuracy, "
        "0.7936 <!-- doc-number: metrics.json accuracy -->, 0.79<!-- doc-number: metrics.json "
        "accuracy -->, 0.795<!-- doc-number: metrics.json accuracy --> and "
        "2<!-- doc-number: metrics.json columns --> columns, 3<!-- doc-number: x.json y -->"
    )
    outcome = harness.Outcome()
    harness.check_numbers(text, "doc.md", tmp_path, outcome)
    assert outcome.numbers_checked == 5
    assert len(outcome.failures) == 2
    assert "says 0.795 for metrics.json accuracy; the run: 0.79364" in outcome.failures[0]
    assert "3 (x.json y): cannot read" in outcome.failures[1]


def test_a_background_server_is_waited_for_and_stopped(tmp_path: Path) -> None:
    session = harness.Session(tmp_path)
    try:
        assert session.start(f"{sys.executable} -m http.server --bind 127.0.0.1 $PORT &") is None
        output, code = session.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/")
        assert (output, code) == ("200", 0)
        ((server, _log),) = session.background
    finally:
        session.close()
    assert server.poll() is not None
