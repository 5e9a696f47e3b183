import json
import os
import subprocess
import sys

import pytest

from helpers import edit_params, run_cli
from mlops import cli


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in out


def test_bad_argument_is_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-stage"])
    assert exit_info.value.code == 2


def test_bad_params_is_one_line_exit_2(project, capsys):
    edit_params(project / "params.yaml", lambda p: p["promotion"].update(min_accuracy=2))
    code, err = run_cli(capsys, "validate")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "promotion.min_accuracy" in err


def test_stage_logs_progress_and_run_log(project, capsys):
    code, err = run_cli(capsys, "validate")
    assert code == 0
    assert "[validate] train: " in err
    assert "[validate] done in" in err
    log = (project / "reports/run.log").read_text()
    assert " validate INFO mlops.validate: current: " in log


def test_module_entry_point_in_subprocess(project):
    (project / "params.yaml").write_text("seed: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlops", "data"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "[data] error: params.yaml: data: missing section"


def test_stage_runs_on_one_openmp_thread(project):
    probe = (
        "import json, sys; from mlops import cli; from threadpoolctl import threadpool_info\n"
        "import sklearn.ensemble  # what a stage module imports (params loading does not)\n"
        "cli.entry = lambda name: lambda config: print(json.dumps(threadpool_info()))\n"
        "sys.exit(cli.main(['validate']))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    threads = {lib["user_api"]: lib["num_threads"] for lib in json.loads(result.stdout)}
    assert threads["openmp"] == 1
