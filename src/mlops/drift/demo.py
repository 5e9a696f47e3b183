"""`make drift-demo`: a deliberately drifted copy of a real batch; the alert is expected."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mlops import files
from mlops.config import Config
from mlops.drift.evidently_run import import_evidently
from mlops.drift.history import REPORTS
from mlops.drift.inputs import read_frame
from mlops.drift.stage import report
from mlops.errors import CheckFailed

log = logging.getLogger(__name__)
DEMO_BATCH = Path("data/processed/drift_demo.csv")


def drifted_batch(frame: pd.DataFrame, config: Config, seed: int) -> tuple[pd.DataFrame, dict]:
    """A deliberately drifted copy of a real batch and a description of what was changed.

    The first numeric feature (AGEP, age) moves up by half a reference standard deviation (about
    ten years), clipped to its declared range; the categorical feature with the most codes (SCHL,
    schooling) gets 40% of its rows redrawn uniformly from its allowed codes, a different mix.
    Labels stay as they were, so a model that relies on these columns also loses accuracy.
    """
    rng = np.random.default_rng(seed)
    out = frame.copy()
    changes: dict[str, str] = {}
    if config.numeric:
        name, bounds = next(iter(config.numeric.items()))
        values = out[name].to_numpy(dtype=np.float64)
        step = 0.5 * float(np.std(values))
        moved = np.clip(values + step, bounds.min, bounds.max)
        if pd.api.types.is_integer_dtype(out[name]):
            moved = np.round(moved)
        out[name] = pd.Series(moved, index=out.index).astype(out[name].dtype)
        changes[name] = f"shifted up by {step:.1f} (half a standard deviation), clipped"
    if config.categorical:
        name, codes = max(config.categorical.items(), key=lambda item: len(item[1]))
        redraw = rng.random(len(out)) < 0.4
        out.loc[redraw, name] = rng.choice(codes, size=int(redraw.sum()))
        changes[name] = "40% of rows redrawn uniformly from the allowed codes"
    return out, changes


def demo_command(config: Config, current: Path | None = None) -> dict:
    """`make drift-demo`: drift a real batch on purpose, report on it, expect the alert.

    Writes data/processed/drift_demo.csv and reports/drift_demo.{html,json,md}. Exit 0 when the
    drifted batch raises the alert (the demo worked), 1 when it does not (monitoring too lax).
    """
    import_evidently()
    frame = read_frame(config, current)
    drifted, changes = drifted_batch(frame, config, config.seed)
    files.atomic_write(DEMO_BATCH, lambda tmp: drifted.to_csv(tmp, index=False))
    log.info("demo batch %s from %s: %s", DEMO_BATCH, current or "the current split", changes)
    result = report(config, DEMO_BATCH, prefix=REPORTS / "drift_demo")
    if result["status"] != "alert":
        raise CheckFailed(
            f"the deliberately drifted batch raised no alert (status {result['status']}): "
            "the drift policy in params.yaml may be too lax; see reports/drift_demo.html"
        )
    log.info(
        "demo: alert raised as expected (%s); open reports/drift_demo.html",
        "; ".join(result["alerts"]),
    )
    return result
