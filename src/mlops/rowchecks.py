"""The API's per-row checks, vectorised over a chunk: used by `make score` (refused rows) and by
`make drift` (the first failure is the batch's one-line error)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import Config


@dataclass(frozen=True)
class Check:
    """Rows of one column failing one check: `kind` in words, `say` describes one value."""

    column: str
    kind: str
    mask: np.ndarray
    say: Callable[[Any], str]


def checks(
    frame: pd.DataFrame,
    config: Config,
    categories: dict[str, list],
    *,
    unseen_ok: bool = False,
    labels: bool = False,
) -> list[Check]:
    """Every check of every feature column (and of the label where `labels`), as row masks.

    A feature misses a value only where its max_missing allows it; numbers must be numbers within
    the declared range; categories must be allowed values unless `unseen_ok` (drift counts a
    category the model never saw as drift, not as bad input). Labels, where given, must be
    declared labels.
    """
    found: list[Check] = []
    for name in [*categories, *config.numeric]:
        column = frame[name]
        missing = column.isna().to_numpy()
        if config.max_missing(name) == 0:
            found.append(Check(name, "missing values", missing, lambda value: "missing"))
        if name in categories:
            if not unseen_ok:
                allowed = column.isin(categories[name]).to_numpy()
                found.append(
                    Check(
                        name,
                        "value not allowed",
                        ~missing & ~allowed,
                        lambda v: f"{v!r} is not an allowed value",
                    )
                )
            continue
        bounds = config.numeric[name]
        if pd.api.types.is_bool_dtype(column):  # as the API: true is not a number
            numbers = np.full(len(column), np.nan)
        else:
            numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        found += [
            Check(
                name,
                "not numeric",
                ~missing & np.isnan(numbers),
                lambda v: f"{v!r} is not a number",
            ),
            Check(
                name,
                "value out of range",
                numbers < bounds.min,
                partial(_below, bounds.min),
            ),
            Check(
                name,
                "value out of range",
                numbers > bounds.max,
                partial(_above, bounds.max),
            ),
        ]
    target = config.schema.target
    if labels and target in frame.columns:
        given = frame[target]
        wrong = given.notna().to_numpy() & ~given.isin(config.schema.labels).to_numpy()
        found.append(Check(target, "value not allowed", wrong, lambda v: f"{v!r} is not a label"))
    return found


def problems(frame: pd.DataFrame, config: Config, categories: dict[str, list]) -> pd.Series:
    """Why each row that cannot be scored is refused, e.g. "AGEP: 120 > 90; SEX: missing".

    Indexed like frame, good rows absent. Only refused rows are described one by one (they are
    few in any batch worth scoring).
    """
    reasons: dict[int, list[str]] = {}
    for check in checks(frame, config, categories):
        values = frame[check.column].to_numpy()
        for position in np.flatnonzero(check.mask):
            reasons.setdefault(int(position), []).append(
                f"{check.column}: {check.say(plain(values[position]))}"
            )
    rows = sorted(reasons)
    return pd.Series(["; ".join(reasons[r]) for r in rows], index=frame.index[rows], dtype=object)


def first_failure(frame: pd.DataFrame, found: list[Check], *, offset: int = 0) -> str | None:
    """The first failing check as "column X: <kind> (N row(s); first: row R, value V)", else None.

    R counts the file's data rows from 1 (the header is not a row), as score's rejects.parquet
    does; the frame's first row is data row `offset` + 1."""
    for check in found:
        failing = np.flatnonzero(check.mask)
        if len(failing):
            value = str(plain(frame[check.column].to_numpy()[failing[0]])).removesuffix(".0")
            return (
                f"column {check.column}: {check.kind} ({len(failing)} row(s); "
                f"first: data row {offset + int(failing[0]) + 1} (1-based), value {value})"
            )
    return None


def plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _below(low: float, value: Any) -> str:
    return f"{float(value):g} < {low:g}"


def _above(high: float, value: Any) -> str:
    return f"{float(value):g} > {high:g}"
