"""Own-data speed: `make schema` + `make all` on a table with strings vs `make all` on numbers.

Both tables have ROWS rows and COLUMNS features (a third categorical, 2% of numbers missing)
and the same signal; one writes categories and labels as text ("level 03", "yes"), the other as
integer codes. The goal of issue #10: the text table's schema + pipeline within 2x the numeric
table's pipeline.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlops.bench.pipeline import PROJECT_FILES, ROOT
from mlops.config import Config

log = logging.getLogger(__name__)
ROWS = 1_000_000
COLUMNS = 30
CATEGORICAL = 10
LEVELS = 12
HISTORY_SHARE = 0.8  # the first file (history); the rest is the current batch
GOAL = 2.0


def table(rows: int, *, strings: bool, seed: int = 0) -> pd.DataFrame:
    """A seeded binary classification table: text or integer categories, numbers with gaps."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    signal = np.zeros(rows)
    names = np.array([f"level {level:02d}" for level in range(LEVELS)], dtype=object)
    for i in range(CATEGORICAL):
        codes = rng.integers(0, LEVELS, rows)
        signal += (codes % 3 - 1) * 0.4
        column = names[codes] if strings else codes.astype(float)
        if i == 0:  # one categorical column with gaps: None in text, NaN in codes
            column = column.copy()
            column[rng.random(rows) < 0.01] = None if strings else np.nan
        columns[f"cat_{i:02d}"] = column
    for i in range(COLUMNS - CATEGORICAL):
        values = rng.normal(0.0, 1.0, rows)
        signal += values * (0.6 if i < 5 else 0.0)
        values[rng.random(rows) < 0.02] = np.nan
        columns[f"num_{i:02d}"] = values.round(4)
    positive = signal + rng.normal(0.0, 0.5, rows) > 0
    columns["label"] = np.where(positive, "yes", "no") if strings else positive.astype(int)
    return pd.DataFrame(columns)


def write_raw(raw: Path, frame: pd.DataFrame) -> list[Path]:
    """History and current batch as two Parquet files (no time column: a file is a period)."""
    raw.mkdir(parents=True, exist_ok=True)
    cut = int(len(frame) * HISTORY_SHARE)
    paths = [raw / "part_1_history.parquet", raw / "part_2_current.parquet"]
    frame.iloc[:cut].to_parquet(paths[0], index=False)
    frame.iloc[cut:].to_parquet(paths[1], index=False)
    return paths


def timed(root: Path, *args: str) -> float:
    """Wall seconds of `make ARGS` in root; a failure raises with the end of its stderr."""
    started = time.perf_counter()
    result = subprocess.run(
        ["make", *args, f"VENV={ROOT / '.venv'}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"make {' '.join(args)} exited {result.returncode}: {result.stderr[-800:]}"
        )
    return round(time.perf_counter() - started, 2)


def walkthrough(root: Path, rows: int, *, strings: bool) -> dict:
    """A fresh project on one table: make schema, accept-data and all, each timed."""
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, root / name)  # same mtimes: Make reuses the venv
    shutil.copytree(ROOT / "src", root / "src")
    write_raw(root / "data" / "raw", table(rows, strings=strings))
    result = {
        "schema_seconds": timed(root, "schema", "TARGET=label"),
        "accept_data_seconds": timed(root, "accept-data"),
        "make_all_seconds": timed(root, "all"),
    }
    log.info("%s table, %d rows: %s", "text" if strings else "numeric", rows, result)
    return result


def measure(config: Config, rows: int = ROWS) -> dict:
    """Both walkthroughs and the ratio the issue sets a goal for (at most 2)."""
    result: dict = {"rows": rows, "features": COLUMNS, "goal_ratio": GOAL}
    for kind in ("strings", "numeric"):
        with tempfile.TemporaryDirectory(prefix=f"bench-schema-{kind}-") as tmp:
            result[kind] = walkthrough(Path(tmp), rows, strings=kind == "strings")
    strings, numeric = result["strings"], result["numeric"]
    ratio = (strings["schema_seconds"] + strings["make_all_seconds"]) / numeric["make_all_seconds"]
    result["ratio"] = round(ratio, 2)
    result["within_goal"] = ratio <= GOAL
    log.info("schema + all (text) / all (numeric): %.2fx (goal <= %gx)", ratio, GOAL)
    return result
