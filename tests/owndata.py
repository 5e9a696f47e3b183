"""A small table of the kind users bring: string and boolean categories, gaps, dates, any labels.

Generated (seeded) so unit tests can aim at each feature; tests/test_own_data.py proves the same
on real public tables.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLANS = ["basic", "plus", "pro"]
SECTORS = ["Private", "Self-emp", "State-gov", "Federal-gov"]


def table(rows: int, seed: int, start: str) -> pd.DataFrame:
    """rows of customers: sector (str, 5% missing), remote (bool), plan (3 classes), churn."""
    rng = np.random.default_rng(seed)
    sector = rng.choice(SECTORS, rows, p=[0.55, 0.2, 0.15, 0.1]).astype(object)
    sector[rng.random(rows) < 0.05] = None
    remote = rng.random(rows) < 0.4
    age = rng.integers(18, 80, rows).astype(float)
    age[rng.random(rows) < 0.03] = np.nan
    spend = np.round(rng.gamma(2.0, 50.0, rows), 2)
    score = (spend / 100) + remote * 0.8 - (age / 60) + rng.normal(0, 0.7, rows)
    plan = np.where(score > 1.2, "pro", np.where(score > 0.2, "plus", "basic"))
    churn = np.where(score + rng.normal(0, 0.5, rows) < 0.4, "yes", "no")
    days = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, 28, rows), unit="D")
    return pd.DataFrame(
        {
            "customer_id": np.arange(seed * 100_000, seed * 100_000 + rows),
            "sector": sector,
            "remote": remote,
            "age": age,
            "spend": spend,
            "signup": days.strftime("%Y-%m-%d %H:%M:%S"),
            "plan": plan,
            "churn": churn,
        }
    )


def schema(target: str) -> dict:
    labels = PLANS if target == "plan" else ["no", "yes"]
    return {
        "target": target,
        "labels": labels,
        **({"positive": "yes"} if target == "churn" else {}),
        "min_rows": 100,
        "max_missing": 0.0,
        "max_duplicate_share": 0.1,
        "min_label_share": 0.05,
        "numeric": {
            "age": {"min": 18, "max": 80, "max_missing": 0.06},
            "spend": {"min": 0, "max": 5000},
        },
        "categorical": {
            "sector": {"values": SECTORS, "max_missing": 0.08},
            "remote": [False, True],
            **({"churn": ["no", "yes"]} if target == "plan" else {"plan": PLANS}),
        },
    }


def run_stages(root: Path, stages: tuple | None = None) -> None:
    """The stages (data → validate → train → evaluate → promote unless named) in root, in-process,
    as `make all` runs them."""
    from mlops import data, evaluate, promote, train, validate
    from mlops.config import load_config

    previous = Path.cwd()
    os.chdir(root)
    try:
        config = load_config()
        for stage in stages or (data, validate, train, evaluate, promote):
            stage.run(config)
    finally:
        os.chdir(previous)


def private_copy(source: Path, tmp_path: Path, monkeypatch) -> Path:
    """A copy of a shared project, made the working directory, free to modify."""
    root = tmp_path / "project"
    shutil.copytree(source, root)
    monkeypatch.chdir(root)
    return root


def make_project(root: Path, *, target: str = "churn", dated: bool = True) -> Path:
    """A project copy whose data/raw holds three monthly files of the table, accepted."""
    from mlops import data

    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(
        time_column="signup" if dated else None,
        period="month" if dated else None,
        current="latest",
    )
    params["schema"] = schema(target)
    params["drift"]["columns"] = {}
    params["promotion"].update(min_accuracy=0.6, min_roc_auc=0.7)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    raw = root / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "data" / "raw" / "README.md", raw / "README.md")
    for index, month in enumerate(["2024-01-01", "2024-02-01", "2024-03-01"]):
        frame = table(1500, index + 1, month)
        name = f"customers_{month[:7]}"
        if index == 1:
            frame.to_parquet(raw / f"{name}.parquet", index=False)
        else:
            frame.to_csv(raw / f"{name}.csv", index=False)
    data.accept(raw)
    return root
