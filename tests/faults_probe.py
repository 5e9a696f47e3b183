"""Run the CLI with one fault at one write (tests/test_faults.py): `faults_probe.py MODE AT ARGV`.

Every os.replace / os.rename inside the working directory is a write's commit, counted from 1.
AT names the write: its number, or its destination relative to the working directory.
MODE kill: SIGKILL right after write AT; kill-before: right before it; enospc: write AT fails with
ENOSPC (a full disk) before it happens; trace: append each write's path to $FAULT_TRACE; none: no
fault.
`faults_probe.py serve`: the same runs from a fork server, without re-importing per run.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable


def hooked(real: Callable, mode: str, at: int | str, count: list[int]) -> Callable:
    root = os.getcwd() + os.sep

    def call(src, dst, *args, **kwargs):
        where = os.path.abspath(dst)
        if not where.startswith(root):  # a library's cache elsewhere: not the project's write
            return real(src, dst, *args, **kwargs)
        count[0] += 1
        path = os.path.relpath(where, root)
        if mode == "trace":
            with open(os.environ["FAULT_TRACE"], "a", encoding="utf-8") as trace:
                trace.write(path + "\n")
        chosen = count[0] == at if isinstance(at, int) else path == at
        if chosen and mode == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        if chosen and mode == "kill-before":
            os.kill(os.getpid(), signal.SIGKILL)
        done = real(src, dst, *args, **kwargs)
        if chosen and mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    return call


def run(mode: str, at: int | str, argv: list[str]) -> int:
    count = [0]
    os.replace = hooked(os.replace, mode, at, count)
    os.rename = hooked(os.rename, mode, at, count)
    from mlops import cli

    return cli.main(argv)


# What the commands import (seconds of a run): loaded once by `serve`, before any fork.
PRELOAD = (
    "mlops.cli",
    "mlops.train",
    "mlops.evaluate",
    "mlops.promote",
    "mlops.score",
    "mlops.drift.stage",
    "mlops.onnx_runtime",
    "onnxruntime",  # drift and score judge production through its model.onnx
    "skops.io",
    # drift's Evidently (with plotly, litestar, nltk: 1,300 modules), 4 of its 6 s a run
    "evidently",
    "evidently.metrics",
    "evidently.core.report",
    "evidently.legacy.calculations.stattests",
    "mlops.drift.analysis",
    "mlops.drift.html_report",
    "mlops.drift.ui",
)


def serve() -> int:
    """A fork server: import what the commands use once, then for each request on stdin (one JSON
    line: cwd, mode, at, argv, env, out, err) fork a child that runs it exactly as `faults_probe.py
    MODE AT ARGV` would from that cwd, and answer its exit code (negative: the signal). Forking is
    safe only without other threads: with any, it answers not ready and the tests start processes
    instead."""
    import importlib
    import json

    for name in PRELOAD:
        importlib.import_module(name)
    # pyarrow's jemalloc starts its background thread at import; jemalloc is fork-safe (its
    # pthread_atfork handlers, the thread restarted in the child). Any other thread: unsafe.
    names = [
        open(f"/proc/self/task/{task}/comm").read().strip()  # noqa: SIM115
        for task in os.listdir("/proc/self/task")
        if int(task) != os.getpid()
    ]
    safe = all(name == "jemalloc_bg_thd" for name in names)
    print(json.dumps({"ready": safe, "threads": names}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: a fresh run of the command, nothing of it ran in the parent
            code = 1
            try:
                os.chdir(request["cwd"])
                os.environ.update(request["env"])
                for fd, path in ((1, request["out"]), (2, request["err"])):
                    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(target, fd)
                    os.close(target)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                code = run(request["mode"], request["at"], request["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)
    return 0


def main() -> int:
    if sys.argv[1] == "serve":
        return serve()
    at = sys.argv[2]
    return run(sys.argv[1], int(at) if at.isdigit() else at, sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())
