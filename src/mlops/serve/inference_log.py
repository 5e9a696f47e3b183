"""The inference log: every scored row, with its answer, as Parquet in hive partitions.

`<dir>/date=YYYY-MM-DD/part-<UTC time>-<pid>.parquet`, one file per flush. Rows hold the
features as received (the schema's columns, categories as their declared values), then
`prediction` (the label), `probability` (binary: P(positive); multiclass: the top class's),
`probabilities` (multiclass only: {class: probability}), `model_version`, `request_id`, `row`
(the row's position in its request: request_id and row identify it) and `timestamp` (UTC). So
the folder is a drift batch as it is: `make drift CURRENT=<dir>`.

Off the request path: record() only appends to a bounded queue (serve.inference_log.queue_rows;
beyond it rows are dropped, counted, and a warning is logged at most once a minute). A writer
thread flushes every flush_rows rows or flush_seconds, and stop() (lifespan shutdown: SIGTERM)
flushes what is left. A local file is written under a hidden temporary name, then renamed; an
object-store upload is published only once complete: no partial `.parquet` is ever visible.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlops import storage
from mlops.config import Config
from mlops.encoding import encoder_categories
from mlops.errors import InputError

log = logging.getLogger("mlops.serve")
ANSWER_COLUMNS = (
    "prediction",
    "probability",
    "probabilities",
    "model_version",
    "request_id",
    "row",
)
TIME_COLUMN = "timestamp"
WARN_EVERY = 60.0  # seconds between two warnings about dropped rows


@dataclass(frozen=True)
class Answered:
    """One request's rows as the model saw them (coded, config.features order) and its answer."""

    x: np.ndarray
    labels: np.ndarray
    probability: np.ndarray
    proba: np.ndarray | None  # multiclass: every class's probability
    classes: tuple | None  # multiclass: the classes of proba's columns
    version: str
    request_id: str
    timestamp: float


class InferenceLog:
    """A bounded queue of answered requests and the thread that writes them as Parquet."""

    def __init__(self, config: Config, destination: str | None = None) -> None:
        settings = config.serve.inference_log
        self.config = config
        # Each categorical feature's values by code: what the log writes back for a code.
        self.decoded = {name: encoder_categories(vs) for name, vs in config.categorical.items()}
        self.destination = str(destination or settings.dir)
        self.flush_rows = settings.flush_rows
        self.flush_seconds = settings.flush_seconds
        self.queue_rows = settings.queue_rows
        self.queue: deque[Answered] = deque()
        self.queued = 0
        self.written = 0
        self.dropped = 0
        self.files = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = -WARN_EVERY
        self._last_name = ""
        clash = sorted({*ANSWER_COLUMNS, TIME_COLUMN} & {*config.features, config.schema.target})
        if clash:
            raise InputError(
                f"serve.inference_log: column(s) {', '.join(clash)} of the schema clash with the "
                "log's answer columns: rename them, or set serve.inference_log.enabled: false"
            )

    # --- the destination --------------------------------------------------------------------

    def _target(self) -> tuple[Any, str, bool]:
        from pyarrow import fs

        if storage.is_url(self.destination):
            system, root = storage.filesystem(self.destination)
        else:
            system, root = fs.LocalFileSystem(), os.path.abspath(self.destination)
        return system, root.rstrip("/"), isinstance(system, fs.LocalFileSystem)

    def check(self) -> None:
        """Refuse an unwritable or unreachable destination (InputError naming it)."""
        name = f"serve.inference_log.dir {self.destination}"
        try:
            system, root, local = self._target()
            if local:
                system.create_dir(root, recursive=True)
            probe = storage.join(root, f".probe-{os.getpid()}")
            with system.open_output_stream(probe) as out:
                out.write(b"")
            system.delete_file(probe)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{name}: cannot write there ({storage.reason(exc)})") from None

    # --- the request side -------------------------------------------------------------------

    def record(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        probability: np.ndarray,
        proba: np.ndarray | None,
        classes: Any,
        version: str,
        request_id: str,
    ) -> None:
        """Queue one request's rows; never blocks, never raises (full queue: dropped, counted)."""
        rows = len(x)
        now = time.time()
        with self._lock:
            if self.queued + rows > self.queue_rows or self._stop.is_set():
                self.dropped += rows
                warn = now - self._warned >= WARN_EVERY
                if warn:
                    self._warned = now
            else:
                multiclass = proba is not None and proba.shape[1] > 2
                entry = Answered(
                    x,
                    labels,
                    probability,
                    proba if multiclass else None,
                    tuple(classes) if multiclass else None,
                    version,
                    request_id,
                    now,
                )
                self.queue.append(entry)
                self.queued += rows
                warn = False
                if self.queued >= self.flush_rows:
                    self._wake.set()
        if warn:
            log.warning(
                "inference log: queue full (%d rows): %d row(s) dropped so far",
                self.queue_rows,
                self.dropped,
            )

    # --- the writer ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (its libraries imported now, before any request: an import holds
        the interpreter lock for a while, which would stall the event loop mid-traffic)."""
        import pyarrow as pa
        import pyarrow.parquet

        pa.table({"warm": [0]})
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Flush every queued row, then end the writer (graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()  # anything queued between the writer's last pass and the stop
        log.info(
            "inference log: %d row(s) written in %d file(s), %d dropped, to %s",
            self.written,
            self.files,
            self.dropped,
            self.destination,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write what is queued now (one file per date); a failure drops those rows, counted."""
        with self._lock:
            entries, self.queue, self.queued = list(self.queue), deque(), 0
        if not entries:
            return
        by_date: dict[str, list[Answered]] = {}
        for entry in entries:
            day = datetime.fromtimestamp(entry.timestamp, UTC).strftime("%Y-%m-%d")
            by_date.setdefault(day, []).append(entry)
        for day, group in by_date.items():
            rows = sum(len(entry.x) for entry in group)
            try:
                self._write(day, group)
            except Exception as exc:  # disk full, bucket gone, a bug: the server keeps answering
                with self._lock:
                    self.dropped += rows
                now = time.time()
                if now - self._warned >= WARN_EVERY:
                    self._warned = now
                    log.warning(
                        "inference log: writing to %s failed (%s): %d row(s) dropped so far",
                        self.destination,
                        storage.reason(exc),
                        self.dropped,
                    )
            else:
                self.written += rows
                self.files += 1

    def _name(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"part-{stamp}-{os.getpid()}"
        if name <= self._last_name:  # the same microsecond: keep names unique and in order
            name = self._last_name + "1"
        self._last_name = name
        return name

    def _write(self, day: str, entries: list[Answered]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = self.table(entries)
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        data = buffer.getvalue()
        system, root, local = self._target()
        folder = storage.join(root, f"date={day}")
        name = self._name()
        final = storage.join(folder, f"{name}.parquet")
        if not local:  # an object is published only once its upload completes
            with system.open_output_stream(final) as out:
                out.write(data)
            return
        system.create_dir(folder, recursive=True)
        temporary = storage.join(folder, f".{name}.parquet.tmp")
        try:
            with open(temporary, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def table(self, entries: list[Answered]) -> Any:
        """The entries as one Arrow table: features as received, then the answer columns."""
        import pyarrow as pa

        x = np.concatenate([entry.x for entry in entries]) if len(entries) > 1 else entries[0].x
        columns: dict[str, Any] = {}
        categorical = self.config.categorical
        for index, name in enumerate(self.config.features):
            values = x[:, index]
            missing = np.isnan(values)
            if name not in categorical:
                columns[name] = pa.array(values, mask=missing, type=pa.float64())
                continue
            # A code is the value's position in the model's encoder (mlops.encoding).
            positions = pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing)
            columns[name] = pa.array(self.decoded[name]).take(positions)
        lengths = [len(entry.x) for entry in entries]
        labels = np.concatenate([entry.labels for entry in entries])
        columns["prediction"] = pa.array(labels.tolist())
        columns["probability"] = pa.array(
            np.concatenate([entry.probability for entry in entries]), pa.float64()
        )
        if all(entry.proba is not None for entry in entries):
            proba = np.concatenate([entry.proba for entry in entries])
            names = [str(label) for label in entries[0].classes or ()]
            count, width = proba.shape
            offsets = pa.array(np.arange(0, (count + 1) * width, width, dtype=np.int32))
            keys = pa.array(names * count)
            columns["probabilities"] = pa.MapArray.from_arrays(
                offsets, keys, pa.array(proba.ravel(), pa.float64())
            )
        columns["model_version"] = pa.array(
            np.repeat([entry.version for entry in entries], lengths).tolist(), pa.string()
        )
        columns["request_id"] = pa.array(
            np.repeat([entry.request_id for entry in entries], lengths).tolist(), pa.string()
        )
        columns["row"] = pa.array(np.concatenate([np.arange(n) for n in lengths]), pa.int32())
        times = np.repeat([int(entry.timestamp * 1000) for entry in entries], lengths)
        columns[TIME_COLUMN] = pa.array(times, pa.timestamp("ms", tz="UTC"))
        return pa.table(columns)
