"""`python -m mlops STAGE`: runs one stage with progress output, a run log and exit codes.

Exit codes: 0 success, 1 a check that ran and said no, 2 bad input or config (one line on stderr).
`python -m mlops stages --stamps DIR STAGE...` runs several pipeline stages in this one process
(what Make does when more than one is stale), so the libraries are imported once.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mlops import layout, workdirs
from mlops.errors import CheckFailed, InputError
from mlops.storage import local_or_url

RUN_LOG = layout.RUN_LOG
log = logging.getLogger("mlops")

# command: (module, entry function, one-line help). Every entry takes the Config first.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("mlops.data", "run", "verify raw checksums, split into train/test/current"),
    "accept-data": (
        "mlops.dvc_remote",
        "accept_command",
        "record sha256 of new or changed raw files (with data/raw.dvc: dvc add and push them)",
    ),
    "data-remote": (
        "mlops.dvc_remote",
        "remote_command",
        "move data/raw out of git into a DVC remote (folder, s3://..., any DVC URL)",
    ),
    "dvc-pull": (
        "mlops.dvc_remote",
        "pull_command",
        "with data/raw.dvc: dvc pull data/raw when files are missing or differ",
    ),
    "dvc-yaml": ("mlops.stages", "dvc_yaml_command", "regenerate dvc.yaml and stages.mk"),
    "validate": ("mlops.validate", "run", "schema and quality checks of every split"),
    "train": ("mlops.train", "run", "fit the candidate pipeline"),
    "evaluate": ("mlops.evaluate", "run", "score the candidate on the test split"),
    "promote": ("mlops.promote", "run", "the gate: promote the candidate or say why not"),
    "rollback": ("mlops.registry", "rollback_command", "restore the previous production version"),
    "models": ("mlops.registry", "list_command", "list model versions and production"),
    "models-upgrade": (
        "mlops.registry",
        "upgrade_command",
        "convert legacy model.joblib versions to model.skops (sha256 checked first)",
    ),
    "runs": ("mlops.runlog", "show_command", "compare training runs"),
    "mlflow-sync": (
        "mlops.tracking",
        "sync_command",
        "mirror models/runs.jsonl, models/registry.json and the drift history into MLflow",
    ),
    "mlflow-ui": (
        "mlops.tracking",
        "ui_command",
        "sync into the embedded MLflow store under mlruns/ and serve MLflow's UI",
    ),
    "release-export": (
        "mlops.release",
        "export_command",
        "write the promoted (or --version) model as a release bundle into DIR",
    ),
    "release-import": (
        "mlops.release",
        "import_command",
        "install a downloaded release bundle in DIR as production (empty DIR: no-op)",
    ),
    "drift": ("mlops.drift", "run", "Evidently drift report: data, prediction, performance"),
    "drift-demo": ("mlops.drift", "demo_command", "make a drifted batch from real data and report"),
    "drift-ui": ("mlops.drift", "ui_command", "every drift run in Evidently's UI (local, offline)"),
    "score": ("mlops.score", "run", "predictions of the production model for a batch of any size"),
    "serve": ("mlops.serve", "serve_command", "serve the production model over HTTP"),
    "summary": ("mlops.summary", "run", "Markdown summary of metrics, gate and drift"),
    "audit": ("mlops.audit", "run", "pip-audit the lock files; never pass what was not audited"),
    "bench": ("mlops.bench", "run", "measure pipeline, drift and serving speed"),
    "schema": (
        "mlops.schema",
        "run",
        "infer params.yaml's schema (and time keys) from the files in data/raw",
    ),
    "mutate": ("mlops.mutation", "run", "mutation-test the decision functions (mutmut)"),
    "params-stamps": ("mlops.config", "stamps_command", "per-stage params stamps for Make"),
}
PIPELINE = ("data", "validate", "train", "evaluate", "promote", "drift")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="mlops", description=__doc__.splitlines()[0])
    root.add_argument(
        "--params",
        type=Path,
        default=Path(os.environ.get("PARAMS", "params.yaml")),
        help="params file (default params.yaml, or $PARAMS)",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, text) in COMMANDS.items():
        command = sub.add_parser(name, help=text, description=text)
        if name in ("drift", "drift-demo"):
            command.add_argument(
                "--current",
                type=local_or_url,
                help="a CSV or Parquet file, a folder of them, or a glob, local or s3://... "
                "(default: current split)",
            )
        if name == "drift":
            command.add_argument(
                "--labels",
                type=local_or_url,
                help="ground truth arriving later (file, folder or glob, local or s3://...): "
                "joined to the batch by request_id, else by score.id_columns",
            )
        if name == "score":
            command.add_argument(
                "--current",
                type=local_or_url,
                help="a CSV or Parquet file, a folder of them, or a glob, local or s3://...",
            )
            command.add_argument(
                "--out",
                type=local_or_url,
                help="output folder or s3://bucket/prefix (default reports/scores)",
            )
        if name == "rollback":
            command.add_argument(
                "--version", help="version to restore, e.g. v2 (default: previous)"
            )
            command.add_argument("--reason", help="why, recorded in the registry history")
        if name == "promote":
            command.add_argument(
                "--force-reason", help="emergency only: promote despite failed criteria, saying why"
            )
        if name in ("release-export", "release-import"):
            command.add_argument("directory", type=Path, metavar="DIR")
        if name == "release-export":
            command.add_argument("--version", help="export this version instead (e.g. v2)")
        if name in ("serve", "drift-ui", "mlflow-ui"):
            command.add_argument("--host")
            command.add_argument("--port", type=int)
        if name == "serve":
            command.add_argument(
                "--inference-log",
                default=os.environ.get("MLOPS_INFERENCE_LOG") or None,
                metavar="DIR|URL|off",
                help="log every scored row there (folder or s3://...), or `off`; default: "
                "$MLOPS_INFERENCE_LOG, else params.yaml serve.inference_log",
            )
        if name == "runs":
            command.add_argument("--sort", choices=("best", "date"), default="best")
        if name == "summary":
            command.add_argument("--output", type=Path, help="write here instead of stdout")
            command.add_argument(
                "--sections", help="comma-separated: metrics,gate,drift,artifacts (default: all)"
            )
        if name == "mutate":
            command.add_argument("--only", help="mutant globs (space-separated), a subset")
        if name == "bench":
            command.add_argument("--only", help="sections (space-separated), the others kept")
        if name == "data-remote":
            command.add_argument("--remote", default="", help="the DVC remote's URL")
        if name == "dvc-pull":
            command.add_argument("--stamp", type=Path, required=True, help="rewritten on change")
        if name == "params-stamps":
            command.add_argument("directory", type=Path)
        if name == "schema":
            command.add_argument("--target", required=True, help="the label column")
            command.add_argument("--time", help="the period column (default: each file a period)")
            command.add_argument("--period", help="dates: year, quarter, month, week or day")
            command.add_argument("--positive", help="binary: the positive label (default: rarer)")
            command.add_argument(
                "--into",
                type=Path,
                default=root.get_default("params"),
                help="params file to rewrite (default: params.yaml or $PARAMS)",
            )
    stages = sub.add_parser(
        "stages",
        help="run pipeline stages in order in this one process (Make's queue of stale stages)",
        description="Run each stage as `python -m mlops STAGE` would, in this one process; "
        "touch DIR/STAGE.ok after each success; stop at the first failure with its exit code.",
    )
    stages.add_argument("names", nargs="+", choices=PIPELINE, metavar="STAGE")
    stages.add_argument("--stamps", type=Path, required=True, metavar="DIR")
    stages.add_argument(
        "--record-rejection",
        action="store_true",
        help="a gate rejection (exit 1) is recorded in its report and the next stages still run",
    )
    stages.add_argument("--force-reason", help="passed to promote")
    return root


# An OSError with one of these is the machine's state, not a bug: one line, exit 2 (nothing
# half-written stays: every write is atomic), never a traceback.
ENVIRONMENT_ERRORS = {
    errno.ENOSPC: "no space left on the device: free some and run it again",
    errno.EDQUOT: "disk quota exceeded: free some space and run it again",
    errno.EFBIG: "file too large for this file system",
    errno.EROFS: "read-only file system: run it where this folder is writable",
    errno.EACCES: "permission denied: give this user write access",
    errno.EPERM: "operation not permitted: give this user write access",
    errno.EIO: "input/output error from the device",
    errno.ENOTDIR: "a file is where a folder is needed: name a folder",
    errno.EISDIR: "a folder is where a file is needed: name a file",
}


class RunLogHandler(logging.FileHandler):
    """reports/run.log: a failed append (full disk, read-only file) is one warning on stderr,
    then the log is skipped for the rest of the command; the command itself goes on."""

    def __init__(self, path: Path, stage: str) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.stage = stage
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        try:
            super().emit(record)  # opens the file on the first record (delay=True)
        except OSError as exc:
            self.fail(exc)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        self.fail(sys.exc_info()[1])

    def fail(self, exc: BaseException | None) -> None:
        if self.failed:
            return
        self.failed = True
        print(
            f"[{self.stage}] warning: {RUN_LOG}: not appended ({_reason(exc)}); "
            "going on without the run log",
            file=sys.stderr,
        )


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRORS:
        return exc.strerror or ENVIRONMENT_ERRORS[exc.errno]
    return str(exc) or type(exc).__name__


def setup_logging(stage: str) -> None:
    """Progress to stderr; a timestamped log (with the process id) appended to reports/run.log
    when it can be (a warning, not a failure, when not)."""
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(f"[{stage}] %(message)s"))
    record = RunLogHandler(RUN_LOG, stage)
    try:
        RUN_LOG.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        record.fail(exc)
    record.setFormatter(
        logging.Formatter(
            f"%(asctime)s pid=%(process)d {stage} %(levelname)s %(name)s: %(message)s"
        )
    )
    log.handlers[:] = [console, record]
    log.setLevel(logging.INFO)


def entry(command: str) -> Callable:
    module, function, _ = COMMANDS[command]
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    try:
        code = run(argv)
        sys.stdout.flush()  # inside the try: a pipe closed by now must not fail at exit
        return code
    except BrokenPipeError:  # `make runs | head`: the reader has all it wanted; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush would fail again
        return 0


def run(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the command or the stage queue; return the exit code."""
    args = parser().parse_args(argv)
    if message := workdirs.problem(args):  # e.g. a mounted folder this user cannot write
        print(f"[{args.command}] error: {message}", file=sys.stderr)
        return InputError.exit_code
    if args.command == "stages":
        return run_stages(args)
    return logged(args)


def logged(args: argparse.Namespace) -> int:
    """One command under its own `[command]` console prefix and run.log lines."""
    setup_logging(args.command)
    try:
        return dispatch(args)
    finally:
        for handler in log.handlers[:]:
            handler.close()
            log.removeHandler(handler)


def run_stages(args: argparse.Namespace) -> int:
    """Each stage in turn as its own command would run; its stamp is touched only on success.

    Every listed stamp is removed first, so a stage that fails or is interrupted, and every
    stage after it, is stale for the next `make`. A promote with --force-reason leaves its stamp
    absent: the next `make all` runs the gate again (which rejects while production falls short).
    """
    args.stamps.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        (args.stamps / f"{name}.ok").unlink(missing_ok=True)
    for name in args.names:
        stamp = args.stamps / f"{name}.ok"
        print(f"==> {name}", flush=True)
        extras = {"force_reason": args.force_reason} if name == "promote" else {}
        if name == "drift":
            extras["current"] = None
        code = logged(argparse.Namespace(command=name, params=args.params, **extras))
        rejected = code == CheckFailed.exit_code and name == "promote" and args.record_rejection
        if code and not rejected:
            return code
        if name == "promote" and args.force_reason:
            continue  # a forced run is no verdict of the gate: the next `make all` judges again
        stamp.touch()
    return 0


def catch_up() -> None:
    """Before any command: a promotion killed (or out of disk) after registry.json left a
    journal; write its reports and run-log line now (mlops.runlog.recover). A read-only models/
    or reports/ only warns."""
    from mlops import runlog

    try:
        runlog.recover()
    except OSError as exc:
        log.warning("a promotion's reports and run log not caught up (%s)", _reason(exc))


def dispatch(args: argparse.Namespace) -> int:
    """Run the command under one thread; map the two expected failures to exit codes."""
    from threadpoolctl import threadpool_limits

    from mlops.config import load_config

    started = time.perf_counter()
    extras = {k: v for k, v in vars(args).items() if k not in ("command", "params")}
    try:
        config, function = load_config(args.params), entry(args.command)
        catch_up()
        # One thread: the same model bytes on any machine, no OpenMP thrashing on small runners.
        # Entered after the imports above: threadpoolctl limits only libraries already loaded.
        with threadpool_limits(limits=1):
            function(config, **extras)
    except InputError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    except CheckFailed as exc:
        log.error("FAILED: %s", exc)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRORS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        log.error("error: %s%s", where, ENVIRONMENT_ERRORS[exc.errno])
        return InputError.exit_code
    log.info("done in %.1fs", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
