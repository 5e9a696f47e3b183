"""`make score`: the production model's predictions for a batch of any size, streamed.

The batch (a file, a folder or a glob of CSV or Parquet files; see mlops.batches) is read in
chunks of score.chunk_rows. Each row is checked as the API checks a request: every feature
present, numbers within range, categories among the allowed values, null only where max_missing
allows it. Good rows are scored; the others go to rejects.parquet with the reason. Outputs in OUT:
predictions.parquet, rejects.parquet and score.json, each written to a temporary file and renamed
only when the whole batch is done, so a failed run never leaves a partial result behind. score.json
is removed first and written last: when it is there, the two Parquet files are the run it
describes (a run killed between the renames leaves no score.json).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops import batches, cluster, files, layout, onnx_runtime, registry, storage
from mlops.config import Config
from mlops.errors import InputError
from mlops.predictions import matrix_model, model_matrix, model_positive, predict
from mlops.rowchecks import problems

log = logging.getLogger(__name__)


def predictions_frame(
    model: Any, metadata: dict, frame: pd.DataFrame, config: Config
) -> pd.DataFrame:
    """label and probability per row (and one probability column per class when multiclass).

    Prediction uses every core (OpenMP): each row's answer is computed alone, so the threads
    change nothing in it, unlike training, which the CLI keeps on one thread.
    """
    from threadpoolctl import threadpool_limits

    positive = model_positive(model, metadata)
    matrix = model_matrix(frame, metadata, config)
    scorer = matrix_model(model, metadata)  # an OnnxModel scores on its own threads
    with threadpool_limits(limits=os.cpu_count() or 1, user_api="openmp"):
        labels, proba = predict(scorer, matrix, positive)
    classes = model.classes_.tolist()
    out = pd.DataFrame({"label": labels}, index=frame.index)
    if len(classes) == 2:
        out["probability"] = proba[
            :, classes.index(positive if positive is not None else classes[1])
        ]
    else:
        out["probability"] = proba.max(axis=1)
        for index, label in enumerate(classes):
            out[f"probability_{label}"] = proba[:, index]
    return out


class StreamedParquet:
    """A Parquet file written chunk by chunk to a temporary name, renamed by finish()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        else:
            table = pa.Table.from_pandas(frame, schema=self.writer.schema, preserve_index=False)
        self.writer.write_table(table)
        self.rows += len(frame)

    def finish(self, empty: pd.DataFrame) -> None:
        if self.writer is None:
            self.write(empty)
        assert self.writer is not None  # write() opened it
        self.writer.close()
        self.tmp.replace(self.path)

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Job:
    """What scoring one chunk needs; pickled to Dask workers with the engine `dask`."""

    model: Any
    metadata: dict
    config: Config
    columns: list[str]

    @property
    def ids(self) -> list[str]:
        return list(self.config.score.id_columns)


def score_chunk(chunk: batches.Chunk, job: Job) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions of the good rows, refused rows with file, 1-based row and reason)."""
    frame, ids = chunk.frame, job.ids
    categories = job.metadata.get("categories") or job.config.categorical
    why = problems(frame, job.config, categories)
    bad = frame.index.isin(why.index)
    good = frame[~bad]
    scored = predictions_frame(job.model, job.metadata, good, job.config) if len(good) else None
    scored = pd.concat([good[ids], scored], axis=1) if scored is not None else good[ids].iloc[:0]
    rows = np.flatnonzero(bad) + chunk.first_row + 1  # 1-based, as a reader counts
    refused = frame.loc[bad, ids].assign(source=chunk.source, row=rows, reason=why)
    return scored, refused


def score_fragment(fragment: Any, schema: Any, job: Job) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One file of the batch, chunk by chunk: a Dask task (engine `dask`)."""
    parts = [
        score_chunk(chunk, job)
        for chunk in batches.fragment_chunks(
            fragment, schema, job.columns, job.config.score.chunk_rows
        )
    ]
    if not parts:
        return pd.DataFrame(), pd.DataFrame()
    return tuple(pd.concat(side, ignore_index=True) for side in zip(*parts, strict=True))


def results(dataset: Any, job: Job) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Scored chunks in the batch's order: in this process, or as one Dask task per file."""
    if job.config.score.engine == "local":
        for chunk in batches.chunks(dataset, job.columns, job.config.score.chunk_rows):
            yield score_chunk(chunk, job)
        return
    calls = [(fragment, dataset.schema) for fragment in dataset.get_fragments()]
    yield from cluster.in_order(score_fragment, calls, job)  # in file order, like the local one


def run(config: Config, current: Path | str | None = None, out: Path | str | None = None) -> dict:
    """Score the batch with the production model; write OUT/{predictions,rejects}.parquet.

    OUT may be a URL (s3://bucket/prefix): the files are made in a local temporary folder and
    uploaded once the whole batch is scored, so a failed run leaves nothing there either.
    """
    if current is None:
        raise InputError(
            "score: name the batch: make score CURRENT=<file|folder|glob> OUT=<folder>"
        )
    if storage.is_url(out or ""):
        import tempfile

        storage.filesystem(str(out))  # an unusable URL fails before any scoring
        with tempfile.TemporaryDirectory(prefix="mlops-score-") as staged:
            summary = run(config, current, Path(staged))
            try:
                storage.upload_folder(Path(staged), str(out))
            except OSError as exc:
                raise InputError(f"{out}: cannot write there ({storage.reason(exc)})") from None
        log.info("uploaded to %s", out)
        return summary
    out = Path(out or layout.SCORES)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: a file, not a folder (OUT names the folder to write into)")
    found = onnx_runtime.production(
        registry.MODELS_DIR, config, config.score.runtime, "score.runtime"
    ) or registry.load_production(registry.MODELS_DIR)
    if found is None:
        raise InputError("score: no production model yet (promote one: make promote)")
    model, metadata = found
    ids = list(config.score.id_columns)
    job = Job(model, metadata, config, [*(metadata.get("features") or config.features), *ids])
    dataset = batches.open_batch(current, job.columns)
    out.mkdir(parents=True, exist_ok=True)
    scored = StreamedParquet(out / "predictions.parquet")
    rejected = StreamedParquet(out / "rejects.parquet")
    started = time.perf_counter()
    (out / "score.json").unlink(missing_ok=True)  # written last: present = the files match it
    try:
        for good, refused in results(dataset, job):
            if len(good):
                scored.write(good)
            if len(refused):
                rejected.write(refused)
        scored.finish(pd.DataFrame(columns=[*ids, "label", "probability"]))
        rejected.finish(pd.DataFrame(columns=[*ids, "source", "row", "reason"]))
    except BaseException:
        scored.abandon()
        rejected.abandon()
        raise
    seconds = time.perf_counter() - started
    total = scored.rows + rejected.rows
    summary = {
        "batch": str(current),
        "files": len(dataset.files),
        "engine": config.score.engine,
        "runtime": getattr(model, "runtime", "sklearn"),
        "rows": total,
        "scored": scored.rows,
        "rejected": rejected.rows,
        "model_version": metadata.get("version"),
        "seconds": round(seconds, 2),
        "rows_per_second": round(total / seconds) if seconds > 0 else None,
    }
    files.write_json(out / "score.json", summary)
    log.info(
        "scored %d row(s), rejected %d, with model %s in %.1fs → %s",
        scored.rows,
        rejected.rows,
        metadata.get("version"),
        seconds,
        out,
    )
    return summary
