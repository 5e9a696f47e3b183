"""Run the CLI with one fault at one write (tests/test_faults.py): `faults_probe.py MODE AT ARGV`.

Every os.replace / os.rename inside the working directory is a write's commit, counted from 1.
MODE kill: SIGKILL right after write AT; enospc: write AT fails with ENOSPC (a full disk) before
it happens; trace: append each write's path to $FAULT_TRACE; none: no fault.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable


def hooked(real: Callable, mode: str, at: int, count: list[int]) -> Callable:
    root = os.getcwd() + os.sep

    def call(src, dst, *args, **kwargs):
        where = os.path.abspath(dst)
        if not where.startswith(root):  # a library's cache elsewhere: not the project's write
            return real(src, dst, *args, **kwargs)
        count[0] += 1
        if mode == "trace":
            with open(os.environ["FAULT_TRACE"], "a", encoding="utf-8") as trace:
                trace.write(os.path.relpath(where, root) + "\n")
        if count[0] == at and mode == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        done = real(src, dst, *args, **kwargs)
        if count[0] == at and mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    return call


def main() -> int:
    mode, at, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    count = [0]
    os.replace = hooked(os.replace, mode, at, count)
    os.rename = hooked(os.rename, mode, at, count)
    from mlops import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
