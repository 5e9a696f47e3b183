import os
import shutil
from pathlib import Path

import pytest

from helpers import run_module
from mlops import cli, workdirs


def args(*argv: str):
    return cli.parser().parse_args(list(argv))


def test_every_listed_command_exists():
    assert set(workdirs.WRITES) <= set(cli.COMMANDS)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve"], []),  # read-only commands: the run log is appended when it can be
        (["models"], []),
        (["drift"], ["reports", "reports/run.log"]),
        (["train"], ["reports", "models", "models/candidate", "reports/run.log"]),
        (["data"], ["reports", "data/processed", "reports/run.log"]),
        (["params-stamps", ".make/params"], [".make/params"]),
        (["release-export", "dist"], ["dist"]),
        (["summary", "--output", "out/summary.md"], ["out"]),
        (["score"], ["reports/scores"]),
        (["score", "--out", "/srv/scores"], ["/srv/scores"]),
        (
            ["schema", "--target", "y", "--into", "conf/p.yaml"],
            ["reports", "models", "reports/run.log", "conf"],  # models: a new lineage archives
        ),
    ],
)
def test_targets_are_the_folders_the_command_writes(argv, expected):
    assert workdirs.targets(args(*argv)) == [Path(p) for p in expected]


def test_a_writable_project_has_no_problem(fresh):
    for command in ("data", "train", "promote", "serve", "drift"):
        assert workdirs.problem(args(command)) is None


def unprivileged() -> tuple[str, ...]:
    """A command prefix: as this user, but without root's power to ignore permission bits."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits would not apply")
    return (setpriv, "--bounding-set=-all", "--inh-caps=-all")


@pytest.mark.parametrize(
    ("command", "locked", "named"),
    [
        ("train", "models", "models"),  # e.g. a host folder mounted into the container
        ("train", "models/candidate", "models/candidate"),
        ("validate", "reports/run.log", "reports/run.log"),  # a stage writing reports/
        ("data", "data", "data"),  # data/processed would have to be created in data/
    ],
)
def test_an_unwritable_folder_is_one_line_exit_2(fresh, command, locked, named):
    for folder in ("models/candidate", "reports"):
        (fresh / folder).mkdir(parents=True, exist_ok=True)
    (fresh / "reports/run.log").write_text("")
    (fresh / locked).chmod(0o555 if (fresh / locked).is_dir() else 0o444)
    try:
        result = run_module(fresh, command, prefix=unprivileged())
    finally:
        (fresh / locked).chmod(0o755)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"[{command}] error: {fresh / named} is not writable by uid ")
    assert f"chown -R {workdirs.IMAGE_UID} it" in result.stderr
    assert '--user "$(id -u)' in result.stderr
    assert "Traceback" not in result.stderr
    assert (fresh / "reports/run.log").read_text() == ""  # nothing ran, nothing logged
