"""`make drift CURRENT=<log> LABELS=<file|dir|glob>`: ground truth that arrives after the answer,
joined to the batch row by row by `request_id` (and `row`, a row's position in a request of
several, when the labels have it), else by score.id_columns.

The labels are read once (only the key and label columns) and held as one pandas Series; each
chunk of the batch then gets the label column by a hash lookup, so the batch is still streamed.
Rows without a label stay unlabelled: performance is measured on the labelled rows and estimated
(CBPE) on the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops import batches
from mlops.config import Config
from mlops.errors import InputError

REQUEST_ID = "request_id"
ROW = "row"  # the inference log's position of a row in its request
CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class Labels:
    """The ground truth by join key: keys (column names) and the labels indexed by them."""

    keys: tuple[str, ...]
    values: pd.Series
    source: str

    def __len__(self) -> int:
        return len(self.values)

    def lookup(self, frame: pd.DataFrame) -> pd.Series:
        """The label of each row of frame (its key columns), missing where none was given."""
        if len(self.keys) == 1:
            where = self.values.index.get_indexer(pd.Index(frame[self.keys[0]]))
        else:
            where = self.values.index.get_indexer(pd.MultiIndex.from_frame(frame[list(self.keys)]))
        if not len(self):
            return pd.Series([None] * len(frame), index=frame.index, dtype=object)
        found = self.values.to_numpy(dtype=object)[np.maximum(where, 0)]
        labels = np.where(where >= 0, found, np.array(None, dtype=object))
        return pd.Series(labels, index=frame.index, dtype=object)


def read(config: Config, spec: str | Path) -> Labels:
    """The LABELS= table: its key columns (request_id, else score.id_columns) and the label."""
    target = config.schema.target
    keys = _keys(config, spec)
    dataset = batches.open_batch(spec, [*keys, target])
    parts = [chunk.frame for chunk in batches.chunks(dataset, [*keys, target], CHUNK_ROWS)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keys, target])
    frame = frame[frame[target].notna()]
    unknown = ~frame[target].isin(config.schema.labels)
    if unknown.any():
        value = frame.loc[unknown, target].tolist()[0]
        raise InputError(
            f"{spec}: {target} = {value!r} is not one of schema.labels {config.schema.labels}"
        )
    frame = frame.drop_duplicates(list(keys), keep="last")  # a corrected label replaces the first
    index = pd.Index(frame[keys[0]]) if len(keys) == 1 else pd.MultiIndex.from_frame(frame[keys])
    return Labels(tuple(keys), pd.Series(frame[target].to_numpy(), index=index), str(spec))


def _keys(config: Config, spec: str | Path) -> list[str]:
    found = batches.open_batch(spec, []).schema.names
    if REQUEST_ID in found:  # one label per request, or per (request, row) of a batch request
        return [REQUEST_ID, ROW] if ROW in found else [REQUEST_ID]
    ids = list(config.score.id_columns)
    if ids and all(name in found for name in ids):
        return ids
    wanted = " or ".join([REQUEST_ID, *([", ".join(ids)] if ids and ids != [REQUEST_ID] else [])])
    raise InputError(f"{spec}: no column to join labels by: needs {wanted}")


def join(chunk: batches.Chunk, labels: Labels, target: str) -> batches.Chunk:
    """The chunk with the label column filled from labels (a label in the batch itself is kept
    where the table has none)."""
    frame = chunk.frame
    missing = [key for key in labels.keys if key not in frame.columns]
    if missing:
        raise InputError(
            f"{chunk.source}: no column {', '.join(missing)} to join LABELS= {labels.source} by"
        )
    joined = labels.lookup(frame)
    if target in frame.columns:
        joined = joined.where(joined.notna(), frame[target].astype(object))
    values = pd.array(joined.tolist()) if joined.notna().any() else joined
    data = frame.drop(columns=list(labels.keys)).assign(**{target: values})
    return batches.Chunk(data, chunk.source, chunk.first_row)
