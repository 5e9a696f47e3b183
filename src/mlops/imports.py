"""Importing a large library (Evidently) for less: GC paused and frozen, or on another thread."""

from __future__ import annotations

import gc
import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

_STARTED: list[threading.Thread] = []  # background imports, finished ones dropped as others start


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Pause the cyclic GC while importing, then freeze what the imports created.

    Importing Evidently allocates a few hundred thousand long-lived objects (classes, pydantic
    schemas); with the GC on, each full collection during and after the import walks all of them
    again, and so does the collection at interpreter exit. Frozen objects are skipped by every
    later collection (gc.freeze); cyclic garbage made afterwards is still collected. Measured on
    `make drift`: about 1-2 s less per run. Nesting is fine: only the outermost block re-enables.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def import_in_background(*modules: str) -> threading.Thread:
    """Start importing `modules` on another thread and return it; nothing to join.

    An import is CPU work under the GIL, but what the caller does meanwhile (reading Parquet,
    sorting, predicting) mostly runs without it, so on two cores the import is nearly free. A later
    `import` of the same module simply waits for this one. A failure here is left for that later
    import to raise, with its usual traceback.
    """

    def load() -> None:
        with suppress(Exception), heavy_imports():
            for name in modules:
                importlib.import_module(name)

    thread = threading.Thread(target=load, name=f"import {', '.join(modules)}")
    thread.start()
    _STARTED[:] = [*(started for started in _STARTED if started.is_alive()), thread]
    return thread


def still_importing() -> bool:
    """Whether an import started by import_in_background has not finished."""
    return any(thread.is_alive() for thread in _STARTED)
