import os
import sys

from mlops.cli import main
from mlops.imports import still_importing

if __name__ == "__main__":  # not when a worker process re-imports the main module
    code = main()
    if code and still_importing():
        # Failed before it needed the import running on another thread (Evidently: seconds):
        # exit now rather than wait for it. The command's log handlers are already closed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
