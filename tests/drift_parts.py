"""Shared by the drift tests: the shared pipeline's splits and model, and one analysis call."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from mlops.config import load_config
from mlops.drift import analysis, inputs


@pytest.fixture(scope="module")
def parts(pipeline_dir: Path) -> dict:
    """Reference, test, current and the candidate of the shared pipeline (read-only)."""
    previous = Path.cwd()
    os.chdir(pipeline_dir)
    try:
        config = load_config()
        model, info = inputs.load_model(config)
        return {
            "config": config,
            "reference": inputs.load_reference(config),
            "test": inputs.load_test(config),
            "current": pd.read_parquet(config.data.processed_dir / "current.parquet"),
            "model": model,
            "info": info,
            "root": pipeline_dir,
        }
    finally:
        os.chdir(previous)


def analyse(parts: dict, current: pd.DataFrame, config=None, *, labelled=None, info=None) -> dict:
    """drift.json's content for `current` against the shared pipeline's reference and model."""
    config = config or parts["config"]
    result, _ = analysis.analyse(
        config,
        parts["reference"],
        current,
        parts["test"],
        labelled=config.schema.target in current.columns if labelled is None else labelled,
        batch="test",
        model=parts["model"],
        model_info=info or parts["info"],
    )
    return result
