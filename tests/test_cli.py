import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import edit_params, run_cli
from mlops import cli, promote


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


def test_stages_run_in_order_in_one_process_and_touch_their_stamps(project, capsys):
    code = cli.main(["stages", "--stamps", ".make", "validate", "evaluate"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines() == ["==> validate", "==> evaluate"]
    assert "[validate] done in" in err
    assert "[evaluate] done in" in err
    assert (project / ".make/validate.ok").is_file()
    assert (project / ".make/evaluate.ok").is_file()
    log = (project / "reports/run.log").read_text()
    assert " validate INFO " in log
    assert " evaluate INFO " in log


def test_a_failing_stage_stops_the_queue_with_its_exit_code(project, capsys):
    stamps = project / ".make"
    stamps.mkdir()
    for name in ("validate", "train"):
        (stamps / f"{name}.ok").touch()
    (project / "data/processed/train.parquet").unlink()
    code = cli.main(["stages", "--stamps", str(stamps), "validate", "train"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out.splitlines() == ["==> validate"]  # train never started
    assert "[validate] error: data/processed/train.parquet" in err
    assert sorted(stamps.iterdir()) == []  # both stale for the next make


def test_a_gate_rejection_stops_unless_recorded(project, capsys):
    edit_params(project / "params.yaml", lambda p: p["promotion"].update(min_accuracy=0.99))
    code = cli.main(["stages", "--stamps", ".make", "promote"])
    assert code == 1
    assert not (project / ".make/promote.ok").exists()
    code = cli.main(["stages", "--stamps", ".make", "--record-rejection", "promote"])
    assert code == 0
    assert (project / ".make/promote.ok").is_file()
    assert "FAILED: candidate rejected" in capsys.readouterr().err
    assert json.loads(promote.REPORT_JSON.read_text())["decision"] == "rejected"


def test_a_reader_that_stops_early_gets_no_traceback(promoted_dir, tmp_path):
    """`make models | head -1`: the closed pipe ends the command quietly, exit 0."""
    shutil.copytree(promoted_dir, tmp_path / "p")
    result = subprocess.run(
        f"{sys.executable} -m mlops models | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        cwd=tmp_path / "p",
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "0", result.stderr
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
