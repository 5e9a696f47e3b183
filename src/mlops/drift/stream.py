"""A drift batch of any size in one streaming pass: checked chunk by chunk, exact per-column
statistics over all rows (mlops.drift.exact), the model's predictions, labels and time values of
every row (performance and chunks; a Scorer given), and a seeded uniform sample of drift.sample_size
rows for Evidently's panels.

The sample keeps the rows with the smallest keys, a key being a hash of (seed, file, row): a
uniform sample without replacement that depends on neither the chunk size nor the engine. With
drift.engine `dask` each file is one Dask task; with `local` the same function runs here, file by
file. Either way the parts are merged in file order, so both engines give identical results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlops import batches, cluster, rowchecks
from mlops.config import Config
from mlops.drift.exact import CategoricalStats, Grid, NumericStats
from mlops.drift.labels import Labels
from mlops.drift.labels import join as labels_join
from mlops.errors import InputError

SMALL_CODES = 1 << 16  # integer categories spanning less are counted with np.bincount
# Batches of several files and at least this many bytes are passed on every core: below it,
# starting the processes (about 1 s) costs more than it saves.
POOL_BYTES = 256 * 2**20
# At most this many: each holds about 400 MiB on the 20M-row bench (1,315 MiB in all with this
# process), so memory stays bounded on any machine; the engine `dask` is the way to go wider.
POOL_PROCESSES = 2


@dataclass(frozen=True)
class Scorer:
    """The model, to predict every row of the pass (its own features and categories)."""

    model: Any
    positive: Any
    features: list[str]
    categories: dict[str, list]
    threaded: bool = False  # in this process: predict on a thread as the pass goes on
    legacy: bool = False  # a model file from before raw rows: its own coding (mlops.encoding)

    def matrix(self, chunk: batches.Chunk) -> np.ndarray:
        return _matrix(chunk, self.features, self.categories, self.legacy)

    def rows(self, chunk: batches.Chunk) -> Any:
        """The chunk's predictions (mlops.drift.performance.Predictions); threaded, their future:
        the second core builds the matrix and predicts (the model releases the GIL) while this one
        reads, counts and then runs Evidently. The pass waits only when the chunks not yet
        predicted hold PENDING_BYTES, so memory stays bounded on a batch of any size."""
        if not self.threaded:
            return _predicted(self.model, self.matrix(chunk), self.positive)
        size = _nbytes(chunk)
        _PENDING[:] = [(future, held) for future, held in _PENDING if not future.done()]
        while _PENDING and sum(held for _, held in _PENDING) + size > PENDING_BYTES:
            _PENDING.pop(0)[0].result()
        future = _predictor().submit(self._scored, chunk)
        _PENDING.append((future, size))
        return future

    def _scored(self, chunk: batches.Chunk) -> Any:
        return _predicted(self.model, self.matrix(chunk), self.positive)


# Chunks read but not yet predicted, at most this many bytes of Arrow data: the whole 1M-row bench
# batch (about 170 MiB) is read without waiting for the model, a 20M-row one in steps.
PENDING_BYTES = 256 * 2**20
_PENDING: list[tuple[Future, int]] = []
_PREDICTOR: list[ThreadPoolExecutor] = []


def _nbytes(chunk: batches.Chunk) -> int:
    data = chunk.data
    if isinstance(data, pd.DataFrame):
        return int(data.memory_usage(index=False, deep=False).sum())
    return int(data.nbytes)


def _predictor() -> ThreadPoolExecutor:
    """One thread for the predictions of this process's passes (its queue keeps their order)."""
    if not _PREDICTOR:
        _PREDICTOR.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-predict"))
    return _PREDICTOR[0]


def _predicted(model: Any, x: np.ndarray, positive: Any) -> Any:
    """Predictions with float32 probabilities (every row is kept: 8 bytes a class, not 16)."""
    from mlops.drift.performance import predict

    said = predict(model, x, positive)
    return replace(said, proba=said.proba.astype(np.float32))


def scorer(model: Any, model_info: dict, features: list[str], categories: dict) -> Scorer:
    """The model file as it scores the coded matrix, with that matrix's coding."""
    from mlops.predictions import matrix_model, model_positive, takes_raw_frame

    positive = model_positive(model, model_info)
    coded, legacy = matrix_model(model, model_info), not takes_raw_frame(model_info)
    return Scorer(coded, positive, features, categories, legacy=legacy)


@dataclass(frozen=True)
class Plan:
    """What a pass over one file needs (pickled to Dask workers with the engine `dask`)."""

    config: Config
    columns: list[str]  # read: the features, then the label and time column where present
    grids: dict[str, Grid]  # numeric features
    categorical: list[str]  # categorical features
    categories: dict[str, list]  # the model's, for unseen values
    checked: bool
    labels: Labels | None = None  # LABELS=: joined to each chunk by its key columns
    scorer: Scorer | None = None

    @classmethod
    def of(
        cls,
        config: Config,
        reference: pd.DataFrame,
        features: list[str],
        categories: dict[str, list],
        *,
        available: Iterable[str],
        checked: bool = True,
        labels: Labels | None = None,
        scorer: Scorer | None = None,
    ) -> Plan:
        extra = [config.schema.target, config.data.time_column]
        names = set(available)
        if labels is not None:  # the keys are read; the label is there once joined
            names |= {config.schema.target}
            extra = [*labels.keys, *extra]
        columns = [*features, *(c for c in extra if c and c in names and c not in features)]
        categorical = [name for name in features if name in config.categorical]
        return cls(
            config=config,
            columns=columns,
            grids={n: Grid.of(reference[n]) for n in features if n not in config.categorical},
            categorical=categorical,
            categories={n: categories[n] for n in categorical if n in categories},
            checked=checked,
            labels=labels,
            scorer=scorer,
        )


@dataclass
class Part:
    """One file's (or several merged files') statistics and sample candidates."""

    rows: int = 0
    labelled_rows: int = 0
    numeric: dict[str, NumericStats] = field(default_factory=dict)
    categorical: dict[str, CategoricalStats] = field(default_factory=dict)
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    positions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    sample: pd.DataFrame | pa.RecordBatch | None = None  # an Arrow chunk while it is offered
    # every row's {"x": predictions, "target", "time"} (a Scorer given), a list per chunk
    every: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """What drift judges: the sample in batch order with its row numbers, and all-row stats."""

    name: str
    sample: pd.DataFrame
    rows: np.ndarray
    total: int
    labelled: bool
    numeric: dict[str, NumericStats]
    categorical: dict[str, CategoricalStats]
    unseen: dict[str, dict[str, int]]
    grids: dict[str, Grid]
    files: int = 1
    labelled_rows: int = 0
    # every row in batch order (a Scorer given): "x", per chunk read its predictions or (a pass in
    # this process) their future; "target" and "time", as read
    every: dict[str, Any] | None = None

    def missing_share(self, name: str) -> float:
        stats = self.numeric.get(name) or self.categorical[name]
        return round(stats.missing / stats.rows, 6) if stats.rows else 0.0

    def summary(self, name: str) -> dict[str, Any]:
        if name in self.numeric:
            return self.numeric[name].summary(self.grids[name])
        return self.categorical[name].summary()


# --- one pass ------------------------------------------------------------------------------------


def keys(seed: int, file: int, first_row: int, count: int) -> np.ndarray:
    """Each row's sampling key: splitmix64 of (seed, file, row), uniform over 64 bits."""
    with np.errstate(over="ignore"):
        z = np.arange(first_row, first_row + count, dtype=np.uint64)
        z += np.uint64((seed * 1_000_003 + file) % 2**24) << np.uint64(40)
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def pass_chunks(chunks: Iterable[batches.Chunk], file: int, plan: Plan) -> Part:
    """Check, count and sample one file's chunks (rows numbered from 0 within the file)."""
    config, part = plan.config, Part()
    part.numeric = {name: NumericStats() for name in plan.grids}
    part.categorical = {name: CategoricalStats() for name in plan.categorical}
    target = config.schema.target
    for chunk in chunks:
        if plan.labels is not None:
            chunk = labels_join(chunk, plan.labels, target)
        suspect = False  # a cheap sign from the statistics that a row check fails
        for name, grid in plan.grids.items():
            stats = part.numeric[name]
            numbers = _numbers(chunk, name)
            if numbers is None:  # not numbers to Arrow: pandas converts, the checks will say
                column = _series(chunk, name)
                stats.add(column, grid)
                suspect |= _not_numbers(column)
            else:
                stats.add_numbers(numbers, grid)
            bounds = config.numeric.get(name)
            suspect |= (stats.chunk_missing > 0 and not config.max_missing(name)) or (
                bounds is not None and stats.chunk_outside(bounds.min, bounds.max)
            )
        for name in plan.categorical:
            missing = _count(chunk, name, part.categorical[name])
            suspect |= missing > 0 and not config.max_missing(name)
        if target in plan.columns and target in _names(chunk):
            labelled, unknown = _labels(chunk, target, config.schema.labels)
            part.labelled_rows += labelled
            suspect |= unknown
        if plan.checked and suspect:
            check(chunk, config)  # find and name the failure
        if plan.scorer is not None:
            _keep_every(part, chunk, plan)
        candidates = Part(
            keys=keys(config.seed, file, chunk.first_row, len(chunk)),
            positions=np.arange(chunk.first_row, chunk.first_row + len(chunk), dtype=np.int64),
            sample=chunk.data,
        )
        _keep_smallest(part, candidates, config.drift.sample_size)
        part.rows += len(chunk)
    return part


def _keep_every(part: Part, chunk: batches.Chunk, plan: Plan) -> None:
    """The chunk's model input, labels and time values, kept for every row (the analysis predicts
    on a thread while Evidently runs: the model releases the GIL)."""
    assert plan.scorer is not None  # pass_chunks keeps every row only with a scorer
    found = {"x": plan.scorer.rows(chunk)}
    names = _names(chunk)
    config = plan.config
    for key, name in (("target", config.schema.target), ("time", config.data.time_column)):
        if name and name in plan.columns and name in names:
            found[key] = _values(chunk, name)
    for key, values in found.items():
        part.every.setdefault(key, []).append(values)


def _values(chunk: batches.Chunk, name: str) -> np.ndarray:
    if isinstance(chunk.data, pd.DataFrame):
        return chunk.data[name].to_numpy()
    return chunk.data.column(name).to_pandas().to_numpy()


def _matrix(
    chunk: batches.Chunk, features: list[str], categories: dict, legacy: bool = False
) -> np.ndarray:
    """The model's input (mlops.encoding.feature_matrix), numbers straight from Arrow."""
    from mlops.encoding import encode_column, numeric_codes, numeric_positions

    if isinstance(chunk.data, pd.DataFrame):
        from mlops.encoding import feature_matrix

        return feature_matrix(chunk.data, features, categories, legacy)
    matrix = np.empty((len(chunk), len(features)), dtype=np.float64)
    for index, name in enumerate(features):
        numbers = _numbers(chunk, name)
        values = categories.get(name)
        if values is None:
            matrix[:, index] = (
                numbers
                if numbers is not None
                else pd.to_numeric(_series(chunk, name), errors="coerce").to_numpy(np.float64)
            )
        elif numbers is not None and numeric_codes(values):
            matrix[:, index] = (
                np.where(np.isin(numbers, values), numbers, np.nan)
                if legacy
                else numeric_positions(numbers, values)
            )
        else:
            matrix[:, index] = encode_column(_series(chunk, name), values, legacy)
    return matrix


# Columns straight from Arrow where their type allows: a chunk becomes a pandas frame only when a
# row check must name a failure, and only the sampled rows do.


def _names(chunk: batches.Chunk) -> list[str]:
    data = chunk.data
    return list(data.columns) if isinstance(data, pd.DataFrame) else data.schema.names


def _series(chunk: batches.Chunk, name: str) -> pd.Series:
    data = chunk.data
    return data[name] if isinstance(data, pd.DataFrame) else data.column(name).to_pandas()


def _numbers(chunk: batches.Chunk, name: str) -> np.ndarray | None:
    """An Arrow integer or float column as float64 with NaN where missing; else None."""
    if isinstance(chunk.data, pd.DataFrame):
        return None
    array = chunk.data.column(name)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        return None
    return array.to_numpy(zero_copy_only=False).astype(float, copy=False)


def _count(chunk: batches.Chunk, name: str, stats: CategoricalStats) -> int:
    """Count a categorical column's values into `stats` (keys as pandas would read them: integers
    with missing values become floats); return its missing values."""
    array = None if isinstance(chunk.data, pd.DataFrame) else chunk.data.column(name)
    if array is not None and pa.types.is_integer(array.type):
        values = (array.drop_null() if array.null_count else array).to_numpy()
        low, high = (int(values.min()), int(values.max())) if len(values) else (0, 0)
        if high - low < SMALL_CODES:
            offset = 0 if low >= 0 and high < SMALL_CODES else low  # small codes: no copy
            codes = values - offset if offset else values
            counts = np.bincount(codes.astype(np.intp, copy=False), minlength=1)
            kind = float if array.null_count else int
            found = np.flatnonzero(counts)
            pairs = zip((kind(offset + int(i)) for i in found), counts[found].tolist(), strict=True)
            return stats.add_counted(pairs, len(array), array.null_count)
    elif array is not None and _is_text(array.type):
        counted = pc.value_counts(array)
        values, counts = counted.field("values"), counted.field("counts")
        pairs = zip(values.to_pylist(), counts.to_pylist(), strict=True)
        present = ((value, count) for value, count in pairs if value is not None)
        return stats.add_counted(present, len(array), array.null_count)
    return stats.add(_series(chunk, name))


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _labels(chunk: batches.Chunk, target: str, labels: list) -> tuple[int, bool]:
    """(rows with a label, whether any label is not a declared one)."""
    counted = CategoricalStats()
    _count(chunk, target, counted)
    seen = pd.Series(list(counted.counts), dtype=object)
    return counted.rows - counted.missing, not bool(seen.isin(labels).all())


def _not_numbers(column: pd.Series) -> bool:
    """Text or booleans in a numeric column: the row checks will say which value."""
    kind = column.dtype
    return not pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)


def check(chunk: batches.Chunk, config: Config) -> None:
    """The API's checks (an unseen category is drift, not bad input); the first failure is the
    batch's one-line error, naming the file and the row within it."""
    frame = chunk.frame
    found = rowchecks.checks(frame, config, config.categorical, unseen_ok=True, labels=True)
    failure = rowchecks.first_failure(frame, found, offset=chunk.first_row)
    if failure:
        raise InputError(f"{chunk.source}: {failure}")


def _rows(sample: pa.RecordBatch | pd.DataFrame, which: np.ndarray) -> pd.DataFrame:
    """The chosen rows as pandas (an Arrow chunk converts only those)."""
    if isinstance(sample, pd.DataFrame):
        return sample.iloc[which].reset_index(drop=True)
    return sample.take(pa.array(which)).to_pandas()


def _keep_smallest(into: Part, more: Part, size: int) -> None:
    """into's sample becomes the `size` rows of both with the smallest keys (in no set order:
    finish() puts them in batch order)."""
    if more.sample is None or not len(more.keys):
        return
    offered = np.arange(len(more.keys))
    if into.sample is not None and len(into.keys) >= size:
        offered = np.flatnonzero(more.keys < into.keys.max())  # only rows that can still enter
        if not len(offered):
            return
    all_keys = np.concatenate([into.keys, more.keys[offered]])
    kept = np.argpartition(all_keys, size - 1)[:size] if len(all_keys) > size else None
    held = len(into.keys)
    if kept is None:
        old, new = np.arange(held), offered
    else:
        kept.sort()
        old, new = kept[kept < held], offered[kept[kept >= held] - held]
    frames = [_rows(more.sample, new)]
    if into.sample is not None and len(old):
        frames.insert(0, into.sample if len(old) == held else _rows(into.sample, old))
    into.sample = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    into.keys = np.concatenate([into.keys[old], more.keys[new]])
    into.positions = np.concatenate([into.positions[old], more.positions[new]])


def merge(total: Part, part: Part, size: int) -> None:
    """Add the next file's part to the parts before it (rows numbered on from theirs)."""
    shifted = Part(keys=part.keys, positions=part.positions + total.rows, sample=part.sample)
    _keep_smallest(total, shifted, size)
    for key, values in part.every.items():
        total.every.setdefault(key, []).extend(values)
    for name, stats in part.numeric.items():
        total.numeric.setdefault(name, NumericStats()).merge(stats)
    for name, counted in part.categorical.items():
        total.categorical.setdefault(name, CategoricalStats()).merge(counted)
    total.rows += part.rows
    total.labelled_rows += part.labelled_rows


# --- the whole batch --------------------------------------------------------------------------


def read(
    config: Config,
    spec: str | Path,
    reference: pd.DataFrame,
    features: list[str],
    categories: dict[str, list],
    *,
    checked: bool = True,
    labels: Labels | None = None,
    scorer: Scorer | None = None,
) -> Batch:
    """The batch a CURRENT= names (a file, folder or glob), streamed with drift.engine; with
    LABELS=, each chunk gets its labels joined by key."""
    dataset = batches.open_batch(spec, [*features, *(labels.keys if labels else ())])
    plan = Plan.of(
        config,
        reference,
        features,
        categories,
        available=dataset.schema.names,
        checked=checked,
        labels=labels,
        scorer=scorer,
    )
    total = Part()
    for part in _parts(dataset, plan):
        merge(total, part, config.drift.sample_size)
    return finish(total, plan, str(spec), files=len(dataset.files))


def from_frame(
    config: Config,
    frame: pd.DataFrame,
    reference: pd.DataFrame,
    features: list[str],
    categories: dict[str, list],
    *,
    name: str,
    checked: bool = False,
    scorer: Scorer | None = None,
) -> Batch:
    """A batch already in memory, through the same pass (as one chunk)."""
    plan = Plan.of(
        config,
        reference,
        features,
        categories,
        available=frame.columns,
        checked=checked,
        scorer=scorer,
    )
    chunk = batches.Chunk(frame[plan.columns].reset_index(drop=True), name, 0)
    total = Part()
    merge(total, pass_chunks([chunk], 0, _threaded(plan)), config.drift.sample_size)
    return finish(total, plan, name)


def _parts(dataset: Any, plan: Plan) -> Iterator[Part]:
    """Each file's part in file order, so every engine merges alike."""
    rows = plan.config.drift.chunk_rows
    calls = [(file, f, dataset.schema, rows) for file, f in enumerate(dataset.get_fragments())]
    if plan.config.drift.engine == "dask":
        yield from cluster.in_order(fragment_part, calls, plan)
        return
    workers = min(cluster.local_workers(), len(calls), POOL_PROCESSES)
    size = sum(info.size for info in dataset.filesystem.get_file_info(dataset.files))
    if workers > 1 and size >= POOL_BYTES:
        # The pass is one Python thread per process (np.bincount holds the GIL): a large batch
        # of several files is read on every core, one file per process, merged in file order.
        yield from cluster.in_processes(fragment_part, calls, plan, workers)
        return
    here = _threaded(plan)
    for call in calls:
        yield fragment_part(*call, here)


def _threaded(plan: Plan) -> Plan:
    """The plan for a pass in this process: predictions on a thread."""
    if plan.scorer is None:
        return plan
    return replace(plan, scorer=replace(plan.scorer, threaded=True))


def fragment_part(file: int, fragment: Any, schema: Any, rows: int, plan: Plan) -> Part:
    """One file's pass: a Dask task with the engine `dask`, a pool process for a large batch."""
    columns = [name for name in plan.columns if name in schema.names]
    return pass_chunks(batches.fragment_chunks(fragment, schema, columns, rows), file, plan)


def _unseen(counted: dict[str, CategoricalStats], categories: dict) -> dict[str, dict[str, int]]:
    """{column: {value: rows}} of values the model never saw, most frequent first."""
    from mlops.encoding import unseen_counts

    found = {}
    for name, values in categories.items():
        outside = unseen_counts(counted[name].counts, values)
        if outside:
            found[name] = dict(sorted(outside.items(), key=lambda item: (-item[1], item[0])))
    return found


def finish(total: Part, plan: Plan, name: str, files: int = 1) -> Batch:
    """The merged pass as a Batch, after the checks that need every row."""
    config = plan.config
    if not total.rows:
        raise InputError(f"{name}: no rows")
    if plan.checked:
        columns: dict[str, NumericStats | CategoricalStats] = {
            **total.numeric,
            **total.categorical,
        }
        for stats_name, stats in columns.items():
            share, limit = stats.missing / stats.rows, config.max_missing(stats_name)
            if 0 < limit < share:
                raise InputError(
                    f"{name}: column {stats_name}: too many missing values "
                    f"(share {share:.3f} > max_missing {limit})"
                )
    if total.rows < config.drift.min_rows:
        raise InputError(
            f"{name}: {total.rows} rows, fewer than drift.min_rows ({config.drift.min_rows})"
        )
    order = np.argsort(total.positions, kind="stable")
    assert total.sample is not None  # rows were read, so some were sampled
    sample = total.sample.iloc[order].reset_index(drop=True)
    return Batch(
        name=name,
        sample=sample,
        rows=total.positions[order],
        total=total.rows,
        labelled=total.labelled_rows > 0,
        numeric=total.numeric,
        categorical=total.categorical,
        unseen=_unseen(total.categorical, plan.categories),
        grids=plan.grids,
        files=files,
        labelled_rows=total.labelled_rows,
        every={k: v if k == "x" else _joined(v) for k, v in total.every.items()} or None,
    )


def _joined(values: list[np.ndarray]) -> np.ndarray:
    return values[0] if len(values) == 1 else np.concatenate(values)
